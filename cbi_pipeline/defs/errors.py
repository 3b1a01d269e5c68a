"""Input errors as the step's failure message in the Dagster UI, not an internal traceback.

The steps raise precise errors that name the file, column, setting or regime at fault
(``DataContractError``, ``SettingsError``, ``RegimeConfigError``, ``StorageError``, ...). Raised
as they are inside an asset, Dagster reports "Error occurred while executing op ..." with the
message buried in the cause's stack. ``reports_input_errors`` re-raises them as ``dg.Failure``,
whose description is the step's failure message; the original stays chained as its cause, and
no retry is attempted (the same input fails the same way).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import dagster as dg

from cbi_pipeline.steps.promotion import PromotionError
from cbi_pipeline.store.root import StorageError

# The project's own errors are ValueError subclasses (data contracts, settings, regimes, models)
# or StorageError / PromotionError; OSError covers unreadable or unwritable files.
INPUT_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, StorageError, PromotionError)

P = ParamSpec("P")
R = TypeVar("R")


def reports_input_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Wrap an asset's compute function (under ``@dg.asset``) so its input errors fail the step
    with their own message."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except dg.Failure:
            raise
        except INPUT_ERRORS as exc:
            raise dg.Failure(
                description=f"{type(exc).__name__}: {exc}", allow_retries=False
            ) from exc

    return wrapper
