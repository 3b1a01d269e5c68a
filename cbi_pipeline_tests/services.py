"""Helpers for tests that start real services on 127.0.0.1: free ports, bounded waits, process
groups that are always torn down, and installing what a fresh CI machine lacks."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
LOOPBACK = "127.0.0.1"
REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CHROMIUM = Path("/usr/bin/chromium")

# No proxy for loopback, whatever the environment says.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def wait_until(probe: Callable[[], T | None], timeout: float, what: str, every: float = 0.5) -> T:
    """Call ``probe`` until it returns something other than None (exceptions count as not yet);
    raise TimeoutError naming ``what`` and the last error after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except Exception as exc:  # not up yet: connection refused, partial state, ...
            last = exc
        else:
            if value is not None:
                return value
        time.sleep(every)
    raise TimeoutError(f"{what}: not reached within {timeout:.0f}s (last error: {last!r})")


def http_get(url: str, timeout: float = 5) -> bytes:
    with _OPENER.open(url, timeout=timeout) as response:
        return bytes(response.read())


def graphql(base: str, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
    body = json.dumps({"query": query, "variables": dict(variables or {})}).encode()
    request = urllib.request.Request(
        f"{base}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with _OPENER.open(request, timeout=30) as response:
        payload = json.loads(response.read())
    if payload.get("errors"):
        raise RuntimeError(f"GraphQL errors: {payload['errors']}")
    return dict(payload["data"])


@contextmanager
def process_group(
    cmd: Sequence[str],
    env: Mapping[str, str],
    log: Path,
    cwd: Path = REPO,
    stop_signal: int = signal.SIGINT,
    grace: float = 15,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd`` in its own session; on exit signal the whole group, then SIGKILL it."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            _stop_group(proc, stop_signal, grace)


def _stop_group(proc: subprocess.Popen[bytes], stop_signal: int, grace: float) -> None:
    pgid = proc.pid  # start_new_session: the leader's pid is the group id
    with suppress(ProcessLookupError):
        os.killpg(pgid, stop_signal)
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    with suppress(ProcessLookupError):  # children that outlived the leader, or a stuck leader
        os.killpg(pgid, signal.SIGKILL)
    proc.wait(timeout=30)


def service_env(**extra: str) -> dict[str, str]:
    """The current environment without CBI_/DAGSTER_/MLFLOW_ settings, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CBI_", "DAGSTER_", "MLFLOW_", "PYTEST_"))
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def write_instance_yaml(home: Path, extra: str = "") -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "dagster.yaml"
    path.write_text("telemetry:\n  enabled: false\n" + extra, encoding="utf-8")
    return path


def ensure_chromium() -> Path:
    """Debian's chromium, installed with apt when absent (CI runs as root on Debian)."""
    if CHROMIUM.exists():
        return CHROMIUM
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        raise RuntimeError(
            f"{CHROMIUM} is missing and cannot be installed here (needs apt-get as root): "
            "install Debian's chromium package"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [apt, "install", "-y", "chromium"]
    if subprocess.run(install, env=env, capture_output=True, timeout=900).returncode != 0:
        subprocess.run([apt, "update"], env=env, capture_output=True, timeout=600, check=True)
        done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"apt-get install chromium failed:\n{done.stderr[-2000:]}")
    if not CHROMIUM.exists():
        raise RuntimeError(f"chromium installed but {CHROMIUM} is absent")
    return CHROMIUM


def ensure_python_package(module: str, requirement: str) -> None:
    """Import ``module``; pip-install ``requirement`` into this interpreter first if missing."""
    import importlib

    try:
        importlib.import_module(module)
        return
    except ImportError:
        pass
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", requirement],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        raise RuntimeError(f"pip install {requirement} failed:\n{done.stderr[-2000:]}")
    importlib.invalidate_caches()
    importlib.import_module(module)
