"""The data root as an fsspec URL: the pipeline on an S3 object store (moto's server on
127.0.0.1, reached over HTTP through s3fs) writes the same files as on a local disk."""

import datetime as dt
import io
import logging
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cbi_pipeline.store.root import (
    DataRoot,
    StorageError,
    read_bytes,
    read_json,
    read_parquet,
    write_bytes,
    write_json,
    write_parquet,
)
from cbi_pipeline.store.tracking import resolve_tracking_uri
from cbi_pipeline_tests.sample_cycle import HORIZON, run_sample_cycle, sample_settings
from cbi_pipeline_tests.services import LOOPBACK, REPO

pytestmark = pytest.mark.slow

BUCKET = "cbi"
H = HORIZON


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    """An S3 endpoint on 127.0.0.1 (moto's server in a thread) with bucket ``cbi``; the AWS
    variables point s3fs and boto3 at it for the module's tests."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
            "NO_PROXY": f"{LOOPBACK},localhost",
        }.items():
            mp.setenv(key, value)
        for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "HTTP_PROXY", "HTTPS_PROXY"):
            mp.delenv(key, raising=False)
        import boto3
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()  # an instance made before would keep its endpoint
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        try:
            yield endpoint
        finally:
            s3fs.S3FileSystem.clear_instance_cache()
            server.stop()


def _keys(prefix: str) -> list[str]:
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    return sorted(k.removeprefix(f"{BUCKET}/{prefix}/") for k in fs.find(f"{BUCKET}/{prefix}"))


def test_local_roots_are_unchanged_and_urls_become_object_store_paths(tmp_path):
    assert DataRoot(tmp_path).root == tmp_path and not DataRoot(tmp_path).remote
    assert DataRoot(f"file://{tmp_path}").root == tmp_path
    assert DataRoot("data").raw_market == Path("data/raw/market.parquet")
    remote = DataRoot("s3://bucket/prefix")
    assert remote.remote
    assert str(remote.raw_market) == "s3://bucket/prefix/raw/market.parquet"
    assert str(remote.model_dir("1w", "lightgbm")) == "s3://bucket/prefix/models/1w/lightgbm"


def test_storage_round_trips_on_s3_and_names_bad_objects(s3):
    root = DataRoot(f"s3://{BUCKET}/unit")
    frame = pl.DataFrame({"date": [dt.date(2020, 1, 2)], "close": [31.5]})
    write_parquet(frame, root.raw_market)
    write_json({"horizon": H, "values": [1, 2]}, root.evaluation(H))
    write_bytes(b"model bytes", root.model_dir(H, "lightgbm") / "model.txt")
    assert_frame_equal(read_parquet(root.raw_market, "raw_market"), frame)
    assert read_json(root.evaluation(H), "evaluation") == {"horizon": H, "values": [1, 2]}
    import hashlib

    model = root.model_dir(H, "lightgbm") / "model.txt"
    assert read_bytes(model, "lightgbm_model", hashlib.sha256(b"model bytes").hexdigest()) == (
        b"model bytes"
    )
    # Any other tool reads the objects with a plain GET.
    import boto3

    body = boto3.client("s3").get_object(Bucket=BUCKET, Key="unit/raw/market.parquet")["Body"]
    assert_frame_equal(pl.read_parquet(io.BytesIO(body.read())), frame)
    # One PUT per file: no temporary objects, ever.
    assert _keys("unit") == [
        "evaluations/1w.json",
        "models/1w/lightgbm/model.txt",
        "raw/market.parquet",
    ]

    missing = root.forecast(H)
    with pytest.raises(StorageError, match=f"s3://{BUCKET}/unit/forecasts/1w.parquet: not found"):
        read_parquet(missing, "forecast")
    write_bytes(b"PAR1 not really", root.market_panel)
    with pytest.raises(StorageError, match=f"s3://{BUCKET}/unit/exports/market_panel.parquet"):
        read_parquet(root.market_panel, "market_panel")
    with pytest.raises(StorageError, match="do not match the sha256"):
        read_bytes(model, "lightgbm_model", "0" * 64)


def test_mlflow_needs_its_own_store_when_the_data_root_is_an_object_store():
    with pytest.raises(ValueError, match="set MLFLOW_TRACKING_URI"):
        resolve_tracking_uri(f"s3://{BUCKET}/x", env={})
    assert resolve_tracking_uri(f"s3://{BUCKET}/x", env={"MLFLOW_TRACKING_URI": "http://m:5000"})


def test_a_horizon_cycle_on_s3_writes_what_a_local_run_writes(
    s3, sample_cycle_root, tmp_path, monkeypatch, mlflow_db
):
    """The sample cycle on ``s3://cbi/cycle`` against the same cycle on a local disk: the same
    files, the same exports, predictions and forecast; MLflow's artifacts on the object store."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_db())
    monkeypatch.chdir(tmp_path)  # a path mistaken for a local one would show up here
    local = sample_cycle_root
    run_sample_cycle(sample_settings(f"s3://{BUCKET}/cycle"))

    keys = _keys("cycle")
    on_disk = sorted(
        str(p.relative_to(local))
        for p in local.rglob("*")
        if p.is_file() and "mlflow" not in p.parts
    )
    assert [k for k in keys if not k.startswith("mlflow/")] == sorted(
        _same_stamp(k, keys) for k in on_disk
    )
    assert not any(".tmp" in k for k in keys)
    # MLflow's artifacts went to the object store beside the data.
    assert any(k.startswith("mlflow/artifacts/") and k.endswith("/model/model.txt") for k in keys)

    root = DataRoot(f"s3://{BUCKET}/cycle")
    for rel in (
        "exports/zl_training_prod_allhistory_1w.parquet",
        "exports/market_panel.parquet",
        "predictions/1w/lightgbm.parquet",
        "predictions/1w/random_walk.parquet",
    ):
        assert_frame_equal(read_parquet(root.path(rel), rel), pl.read_parquet(local / rel))
    drop = ["promoted_at", "created_at", "label"]  # the label names the promotion time
    assert_frame_equal(
        read_parquet(root.forecast(H), "forecast").drop(drop),
        pl.read_parquet(local / "forecasts" / "1w.parquet").drop(drop),
    )
    pointer = read_json(root.champion_pointer(H), "champion")
    assert pointer["family"] == "lightgbm" and pointer["model_dir"].startswith(
        "models/1w/champions/"
    )
    assert not Path(tmp_path, "s3:").exists() and not Path(REPO, "s3:").exists()


def _same_stamp(local_key: str, remote_keys: list[str]) -> str:
    """The champion snapshot folder carries a timestamp and a random suffix: map the local one to
    the remote one so the two listings compare file for file."""
    if "/champions/" not in local_key:
        return local_key
    name = local_key.rsplit("/", 1)[1]
    (remote,) = [k for k in remote_keys if "/champions/" in k and k.endswith("/" + name)]
    return remote
