"""End-to-end tests: the web UI in a real browser. Registers the ``e2e`` marker."""

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "e2e: starts real services (webserver, daemon, browser); run by make test"
    )
