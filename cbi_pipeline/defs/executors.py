"""Which executor runs the steps of a run: Dagster's default here, a Dask cluster when scaled out.

``CBI_EXECUTOR`` (read when the code location loads):

- empty or ``default``: Dagster's default (a process per step; in-process for ``dg.materialize``).
- ``in_process`` or ``multiprocess``: that Dagster executor.
- ``dask``: ``dagster-dask``'s executor. ``CBI_DASK_SCHEDULER`` (e.g. ``tcp://10.0.0.5:8786``)
  names an existing ``dask.distributed`` scheduler; empty starts a LocalCluster per run with
  ``CBI_DASK_WORKERS`` worker processes (default 2). Every worker needs this package installed
  and the same ``CBI_*`` settings (they load the code location to run a step), and a shared data
  root (a shared disk or an object store URL) and a persistent Dagster instance (Postgres).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import dagster as dg

EXECUTORS = ("default", "in_process", "multiprocess", "dask")


class ExecutorConfigError(ValueError):
    """CBI_EXECUTOR names no known executor, or its settings are malformed."""


def executor_from_env(env: Mapping[str, str] | None = None) -> dg.ExecutorDefinition | None:
    """The executor CBI_EXECUTOR asks for; None leaves Dagster's default in place."""
    env = os.environ if env is None else env
    kind = env.get("CBI_EXECUTOR", "").strip().lower() or "default"
    if kind == "default":
        return None
    if kind == "in_process":
        return dg.in_process_executor
    if kind == "multiprocess":
        return dg.multiprocess_executor
    if kind == "dask":
        from dagster_dask import dask_executor

        address = env.get("CBI_DASK_SCHEDULER", "").strip()
        if address:
            cluster: dict[str, object] = {"existing": {"address": address}}
        else:
            raw = env.get("CBI_DASK_WORKERS", "2").strip()
            if not raw.isdigit() or int(raw) < 1:
                raise ExecutorConfigError(f"CBI_DASK_WORKERS={raw!r}: expected a positive integer")
            cluster = {
                "local": {
                    "n_workers": int(raw),
                    "host": "127.0.0.1",
                    "dashboard_address": "127.0.0.1:0",
                }
            }
        return dask_executor.configured({"cluster": cluster}, name="dask")
    raise ExecutorConfigError(f"CBI_EXECUTOR={kind!r}: expected one of {', '.join(EXECUTORS)}")
