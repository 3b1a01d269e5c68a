"""Model files under the data root: the champion pointer and its immutable snapshot."""

import pytest

from cbi_pipeline.store.models import current_champion, snapshot_model, write_champion
from cbi_pipeline.store.root import DataRoot, StorageError, write_json


def _family(root: DataRoot, horizon: str, family: str, content: str) -> None:
    write_json({"family": family}, root.model_dir(horizon, family) / "manifest.json")
    (root.model_dir(horizon, family) / "model.txt").write_text(content)


def test_no_pointer_means_no_champion(tmp_path):
    assert current_champion(DataRoot(tmp_path), "1m") is None


def test_a_snapshot_is_a_copy_that_retraining_never_touches(tmp_path):
    root = DataRoot(tmp_path)
    _family(root, "1m", "lightgbm", "first")
    snap = snapshot_model(root, "1m", "lightgbm")
    write_champion(root, "1m", {"family": "lightgbm", "model_dir": str(snap.relative_to(tmp_path))})
    _family(root, "1m", "lightgbm", "retrained")
    pointer = current_champion(root, "1m")
    assert pointer is not None and pointer["family"] == "lightgbm"
    assert (root.path(pointer["model_dir"]) / "model.txt").read_text() == "first"
    assert not [p for p in snap.parent.iterdir() if p.name.endswith(".tmp")]


def test_a_family_without_a_manifest_cannot_be_snapshotted(tmp_path):
    with pytest.raises(StorageError, match=r"manifest\.json: not found; cannot promote gru"):
        snapshot_model(DataRoot(tmp_path), "1m", "gru")


def test_a_pointer_to_a_missing_folder_is_an_error_naming_both(tmp_path):
    root = DataRoot(tmp_path)
    write_champion(root, "1w", {"family": "drift", "model_dir": "models/1w/champions/gone"})
    with pytest.raises(
        StorageError, match=r"champion\.json: points to .*gone, which does not exist"
    ):
        current_champion(root, "1w")


@pytest.mark.parametrize("model_dir", ["../../outside", "/etc", "models/../../elsewhere", ""])
def test_a_pointer_that_leaves_the_data_root_is_refused(tmp_path, model_dir):
    root = DataRoot(tmp_path / "root")
    (tmp_path / "outside").mkdir()
    write_champion(root, "1m", {"family": "drift", "model_dir": model_dir})
    with pytest.raises(StorageError, match=r"champion\.json: model_dir .* inside the data root"):
        current_champion(root, "1m")


def test_a_pointer_through_a_link_out_of_the_data_root_is_refused(tmp_path):
    root = DataRoot(tmp_path / "root")
    (tmp_path / "outside").mkdir()
    (tmp_path / "root" / "models").mkdir(parents=True)
    (tmp_path / "root" / "models" / "link").symlink_to(tmp_path / "outside")
    write_champion(root, "1m", {"family": "drift", "model_dir": "models/link"})
    with pytest.raises(StorageError, match="leads outside the data root"):
        current_champion(root, "1m")
