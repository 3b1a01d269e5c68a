"""Fixtures of the scale-out tests."""

from cbi_pipeline_tests.scaleout.postgres_server import postgres_server  # noqa: F401  (a fixture)
