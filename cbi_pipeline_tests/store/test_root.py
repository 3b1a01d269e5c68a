"""The data root: fixed layout, atomic writes, reads that name the file and its producer."""

import json

import polars as pl
import pytest

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


def test_the_layout_is_the_documented_one(tmp_path):
    root = DataRoot(tmp_path)
    assert root.raw_market == tmp_path / "raw" / "market.parquet"
    assert (
        root.predictions("1m", "lightgbm") == tmp_path / "predictions" / "1m" / "lightgbm.parquet"
    )
    assert root.model_dir("3m", "gru") == tmp_path / "models" / "3m" / "gru"
    assert root.champion_pointer("1w") == tmp_path / "models" / "1w" / "champion.json"
    assert root.evaluation("12m") == tmp_path / "evaluations" / "12m.json"
    assert root.forecast("6m") == tmp_path / "forecasts" / "6m.parquet"
    assert not root.remote


def test_writes_round_trip_and_leave_no_temporary_file(tmp_path):
    frame = pl.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    path = write_parquet(frame, tmp_path / "deep" / "f.parquet")
    assert read_parquet(path, "test").equals(frame)
    write_json({"k": [1, 2]}, tmp_path / "deep" / "f.json")
    assert read_json(tmp_path / "deep" / "f.json", "test") == {"k": [1, 2]}
    write_bytes(b"abc", tmp_path / "deep" / "f.bin")
    assert read_bytes(tmp_path / "deep" / "f.bin", "test") == b"abc"
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["f.bin", "f.json", "f.parquet"]


def test_a_failed_write_keeps_the_earlier_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = write_json({"good": True}, tmp_path / "f.json")

    def fail(fd: int) -> None:  # the temporary file is written, then the disk gives up
        raise OSError("disk full")

    monkeypatch.setattr("cbi_pipeline.store.root.os.fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        write_json({"good": False}, path)
    assert json.loads(path.read_text()) == {"good": True}
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_missing_and_corrupt_files_name_themselves_and_their_producer(tmp_path):
    with pytest.raises(StorageError, match=r"nope\.parquet: not found; materialize market_panel"):
        read_parquet(tmp_path / "nope.parquet", "market_panel")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(StorageError, match=r"bad\.parquet: unreadable parquet"):
        read_parquet(tmp_path / "bad.parquet", "x")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(StorageError, match=r"bad\.json: unreadable JSON"):
        read_json(tmp_path / "bad.json", "x")


def test_a_file_that_is_not_what_its_manifest_recorded_is_refused(tmp_path):
    import hashlib

    path = write_bytes(b"model bytes", tmp_path / "model.txt")
    good = hashlib.sha256(b"model bytes").hexdigest()
    assert read_bytes(path, "m", good) == b"model bytes"
    path.write_bytes(b"model byt")  # truncated
    with pytest.raises(StorageError, match=r"model\.txt: 9 bytes that do not match the sha256"):
        read_bytes(path, "m", good)


def test_a_staged_removal_happens_on_commit_and_after_a_crash(tmp_path, monkeypatch):
    """A Batch's ``remove`` takes an earlier file away with the commit, never before it; a crash
    during the renames leaves it in the journal and ``finish_swap`` completes it."""
    import cbi_pipeline.store.root as store_root

    root = DataRoot(tmp_path / "root")
    old = pl.DataFrame({"x": [1]})
    store_root.write_parquet(old, root.raw_curve)
    with pytest.raises(RuntimeError), root.batch() as batch:
        batch.remove(root.raw_curve)
        raise RuntimeError("input refused")
    assert root.raw_curve.is_file()  # an aborted batch removes nothing
    with root.batch() as batch:
        batch.parquet(old, root.raw_market)
        batch.remove(root.raw_curve)
        assert root.raw_curve.is_file()  # not before the commit
    assert not root.raw_curve.exists() and root.raw_market.is_file()

    store_root.write_parquet(old, root.raw_curve)

    real_replace = store_root.os.replace

    def crash(src, dst):
        if dst == root.raw_signals:  # the batch's rename, after its journal is written
            raise KeyboardInterrupt("killed during the renames")
        return real_replace(src, dst)

    monkeypatch.setattr(store_root.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt), root.batch() as batch:
        batch.parquet(old, root.raw_signals)
        batch.remove(root.raw_curve)
    monkeypatch.undo()
    assert root.raw_curve.is_file() and root.swap_journal.exists()
    assert root.finish_swap() == [root.raw_signals]
    assert not root.raw_curve.exists() and not root.swap_journal.exists()
