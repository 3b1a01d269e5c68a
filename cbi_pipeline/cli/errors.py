"""Errors the CLI reports as plain messages (kept free of heavy imports)."""


class CycleError(RuntimeError):
    """A step of the cycle raised (a failing check is not an error: it is reported)."""
