"""Reliability drills: kill a run mid-training and rerun it, race two runs of one partition, kill
writers mid-write, and corrupt files by hand. After each drill every file where a reader looks
parses completely, models match their manifests, and the champion still loads."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cbi_pipeline.definitions import ASSETS, build_resources
from cbi_pipeline.settings import Settings
from cbi_pipeline.steps import forecast as forecasting
from cbi_pipeline.steps.promotion import promote
from cbi_pipeline.store.models import current_champion, load_export
from cbi_pipeline.store.root import DataRoot, StorageError, read_json, read_parquet
from cbi_pipeline_tests.reliability.scan import scan
from cbi_pipeline_tests.sample_cycle import (
    HORIZON,
    SAMPLE_ENV,
    TRAINING,
    sample_settings,
)
from cbi_pipeline_tests.services import BIN, REPO, service_env, wait_until, write_instance_yaml

pytestmark = pytest.mark.slow

H = HORIZON


def _settings(root: Path, **extra: str) -> Settings:
    return sample_settings(root, **extra)


def _materialize(settings: Settings, selection, partition=None, run_config=None):
    return dg.materialize(
        ASSETS,
        selection=selection,
        partition_key=partition,
        resources=build_resources(settings),
        instance=dg.DagsterInstance.ephemeral(),
        run_config=run_config or {},
        raise_on_error=False,
    )


@pytest.fixture
def root(sample_cycle_root, tmp_path, monkeypatch) -> Path:
    """A copy of the sample cycle's data root: LightGBM is champion, with a forecast."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    copy = tmp_path / "root"
    shutil.copytree(sample_cycle_root, copy)
    assert current_champion(DataRoot(copy), H)["family"] == "lightgbm"
    return copy


def _champion_forecast(root: Path) -> float:
    """The champion's predicted return at the last date: loads its immutable model snapshot."""
    pointer = current_champion(DataRoot(root), H)
    assert pointer is not None and pointer["family"] == "lightgbm"
    _, _, pred = forecasting.champion_pred_return(DataRoot(root), _settings(root), H, pointer)
    assert np.isfinite(pred)
    return pred


def _assert_clean(root: Path) -> None:
    report = scan(root)
    assert report.problems == [], report.problems
    assert report.checked[".parquet"] >= 8 and report.checked[".json"] >= 6
    assert report.checked.get(".txt", 0) >= 2  # the LightGBM model and its champion snapshot
    assert all(".tmp" in t or ".old" in t for t in report.hidden_temps), report.hidden_temps


def _run_cmd(selection: list[str]) -> list[str]:
    return [
        str(BIN / "dagster"),
        "asset",
        "materialize",
        "-m",
        "cbi_pipeline.definitions",
        "--select",
        ",".join(selection),
        "--partition",
        H,
    ]


def _run_env(root: Path, home: Path, **extra: str) -> dict[str, str]:
    write_instance_yaml(home)
    # One process per run (the in-process executor): the kill hits the training itself.
    settings = {
        **SAMPLE_ENV,
        "CBI_DATA_ROOT": str(root),
        "DAGSTER_HOME": str(home),
        "CBI_EXECUTOR": "in_process",
        **extra,
    }
    return service_env(**settings)


class Lines:
    """Collect a process's output lines in a thread, to wait for one of them."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert proc.stdout is not None
        self._thread = threading.Thread(target=self._read, args=(proc.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line)

    def join(self) -> None:
        self._thread.join(timeout=30)

    def seen(self, text: str) -> bool | None:
        return True if any(text in line for line in self.lines) else None


def test_a_run_killed_mid_training_leaves_readable_files_and_the_champion(root, tmp_path):
    before = _champion_forecast(root)
    predictions = root / "predictions" / H / "lightgbm.parquet"
    old_predictions = predictions.read_bytes()
    # Fewer features: the rerun's model differs, so a mix of old and new files would show;
    # monthly refits: ~24 folds, so the kill lands long before the outputs are written.
    env = _run_env(root, tmp_path / "home", CBI_MAX_FEATURES="16", CBI_REFIT_STEP_DAYS="21")
    proc = subprocess.Popen(
        _run_cmd(TRAINING),
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines = Lines(proc)
    try:
        wait_until(lambda: lines.seen(f"{H} lightgbm fold 2/"), 120, "training under way")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole run, as an OOM kill or power loss would
        proc.wait(timeout=30)
        lines.join()
    assert proc.returncode == -signal.SIGKILL
    assert not any("final model" in line for line in lines.lines), "killed too late"
    _assert_clean(root)
    assert predictions.read_bytes() == old_predictions  # nothing half-replaced
    assert _champion_forecast(root) == before

    # The rerun (default refits, for time) completes and replaces the outputs whole.
    env = _run_env(root, tmp_path / "home", CBI_MAX_FEATURES="16")
    done = subprocess.run(
        _run_cmd(TRAINING), cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    _assert_clean(root)
    manifest = read_json(root / "models" / H / "lightgbm" / "manifest.json", "lightgbm_model")
    assert manifest["feature_selection"]["max_features"] == 16
    assert predictions.read_bytes() != old_predictions
    assert _champion_forecast(root) == before  # the champion is a snapshot: untouched


def test_two_concurrent_runs_of_one_partition_leave_one_consistent_result(root, tmp_path):
    reference = read_parquet(root / "predictions" / H / "lightgbm.parquet", "lightgbm")
    model_sha = read_json(root / "models" / H / "lightgbm" / "manifest.json", "lgbm")[
        "model_sha256"
    ]
    for p in (root / "predictions", root / "models" / H / "lightgbm"):
        shutil.rmtree(p)  # both runs start from nothing: neither can pass off the old files
    # One run in a separate process and one in this process, at the same time.
    proc = subprocess.Popen(
        _run_cmd(TRAINING),
        cwd=REPO,
        env=_run_env(root, tmp_path / "home"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        lines = Lines(proc)
        wait_until(lambda: lines.seen("STEP_START"), 120, "the other run started")
        here = _materialize(_settings(root), TRAINING, H)
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    assert here.success
    assert proc.returncode == 0, "".join(lines.lines)[-3000:]
    _assert_clean(root)
    # Deterministic training: whichever run wrote last, the files are the single-run result.
    assert_frame_equal(
        read_parquet(root / "predictions" / H / "lightgbm.parquet", "lightgbm"), reference
    )
    manifest = read_json(root / "models" / H / "lightgbm" / "manifest.json", "lightgbm_model")
    assert manifest["model_sha256"] == model_sha
    # Both runs were tracked in the one MLflow store, which stayed intact.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")
    (experiment,) = [e for e in client.search_experiments() if e.name.endswith(H)]
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string="tags.`cbi.family` = 'lightgbm'",
        max_results=200,
    )
    parents = [
        r
        for r in runs
        if "mlflow.parentRunId" not in r.data.tags and r.data.tags.get("cbi.stage") != "forecast"
    ]
    assert len(parents) == 3  # the template's run and the two concurrent ones


WRITER = """
import sys
import polars as pl
from pathlib import Path
from cbi_pipeline.store.root import write_json, write_parquet
out = Path(sys.argv[1])
n = 400_000
for version in range(1_000_000):
    frame = pl.DataFrame({"version": [version] * n, "x": range(n)})
    write_parquet(frame, out / "frame.parquet")
    write_json({"version": version, "filler": "x" * 200_000}, out / "state.json")
    print(version, flush=True)
"""


def test_writers_killed_at_random_moments_never_leave_a_partial_file(tmp_path):
    """Kill a process that rewrites a 400k-row parquet and a 200 kB JSON in a loop, eight times
    at random moments: each file is either absent or one whole version, never a mix or a stub."""
    out = tmp_path / "out"
    rng = random.Random(8)
    for _ in range(8):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(out)],
            stdout=subprocess.PIPE,
            text=True,
            env=service_env(),
        )
        assert proc.stdout is not None
        proc.stdout.readline()  # one full version written: the loop is under way
        time.sleep(rng.uniform(0.0, 0.3))
        proc.kill()
        proc.wait(timeout=30)
        frame = pl.read_parquet(out / "frame.parquet")
        assert frame.height == 400_000 and frame["version"].n_unique() == 1
        assert frame["x"].to_list()[-1] == 399_999
        state = json.loads((out / "state.json").read_text())
        assert len(state["filler"]) == 200_000
    visible = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert visible == ["frame.parquet", "state.json"]


@pytest.fixture
def truncate() -> Iterator:
    def cut(path: Path, keep: float = 0.5) -> None:
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])

    yield cut


def test_truncated_files_raise_errors_that_name_them(root, truncate):
    data_root = DataRoot(root)
    settings = _settings(root)
    export = root / "exports" / "zl_training_prod_allhistory_1w.parquet"
    whole = export.read_bytes()
    truncate(export)
    with pytest.raises(StorageError, match=str(export)):
        read_parquet(export, "training_export")

    with pytest.raises(StorageError, match=str(export)):
        load_export(data_root, settings, H)
    export.write_bytes(whole)

    evaluation = data_root.evaluation(H)
    truncate(evaluation)
    with pytest.raises(StorageError, match=f"{evaluation}: unreadable JSON"):
        promote(data_root, H)

    # The champion's LightGBM model: a truncated file is named, never loaded as a shorter model.
    pointer = current_champion(data_root, H)
    model = root / pointer["model_dir"] / "model.txt"
    truncate(model, keep=0.9)
    with pytest.raises(StorageError, match=f"{model}: .* do not match the sha256"):
        forecasting.champion_pred_return(data_root, settings, H, pointer)
    # Even without a recorded checksum the loader's failure names the file.
    manifest_path = root / pointer["model_dir"] / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["model_sha256"] = None
    manifest_path.write_text(json.dumps(manifest))
    model.write_bytes(model.read_bytes()[:200])
    with pytest.raises(StorageError, match=f"{model}: unreadable lightgbm model"):
        forecasting.champion_pred_return(data_root, settings, H, pointer)

    partition = next((root / "exports" / "cache").iterdir())
    state = partition / "state.npz"
    truncate(state)
    from cbi_pipeline.store import correlations as correlation_store

    (info,) = [i for i in correlation_store.list_partitions(data_root) if i.path == partition]
    with pytest.raises(StorageError, match=str(state)):
        correlation_store.read_partition(info)


def test_the_scan_itself_catches_damage(root, truncate):
    """The drills' oracle can fail: truncation, a stray temp name and a model/manifest mismatch."""
    assert scan(root).problems == []
    truncate(root / "exports" / "market_panel.parquet")
    (root / "forecasts").mkdir(exist_ok=True)
    (root / "forecasts" / "1w.parquet.tmp").write_bytes(b"partial")
    model = root / "models" / H / "lightgbm" / "model.txt"
    model.write_text(model.read_text().replace("tree_sizes", "tree_sizes ", 1))
    problems = scan(root).problems
    assert any(p.startswith("exports/market_panel.parquet: unreadable") for p in problems)
    assert "forecasts/1w.parquet.tmp: a temp file under a name readers see" in problems
    assert f"models/{H}/lightgbm/manifest.json: model.txt does not match its model_sha256" in (
        problems
    )


NEW_STORE = """
import sys
from cbi_pipeline.store.tracking import Tracker
print(Tracker.for_data_root(sys.argv[1]).experiment_id("zl_1w"))
"""


def test_processes_starting_on_a_new_mlflow_store_all_succeed(tmp_path):
    """The first run of a horizon starts several steps on a store that does not exist yet; their
    schema migrations raced (alembic errors) until the tracker serialised store creation."""
    env = service_env()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", NEW_STORE, str(tmp_path / "root")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    assert len({out.strip() for out, _ in outputs}) == 1  # one experiment, seen by both
