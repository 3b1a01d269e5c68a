"""The ensemble step over a data root: it combines what the other families wrote."""

import json

import numpy as np
import polars as pl
import pytest

from cbi_pipeline.core.intervals import STORED_PREDICTION_COLUMNS
from cbi_pipeline.steps import models as training
from cbi_pipeline.steps.forecast import family_pred_return
from cbi_pipeline.store.root import StorageError
from cbi_pipeline_tests.conftest import assert_quantiles_are_ordered
from cbi_pipeline_tests.steps.test_models import SYSTEM, fresh_root
from cbi_pipeline_tests.steps.test_models import export_root as export_root


def test_the_ensemble_combines_the_families_on_disk_and_stores_tonights_forecast(
    export_root, tmp_path
):
    settings, root = fresh_root(export_root, tmp_path)
    with pytest.raises(
        StorageError, match=r"random_walk\.parquet: not found; materialize baselines"
    ):
        training.train(root, settings, "1m", "ensemble", SYSTEM)
    training.train(root, settings, "1m", "baselines", SYSTEM)
    training.train(root, settings, "1m", "lightgbm", SYSTEM)
    (out,) = training.train(root, settings, "1m", "ensemble", SYSTEM)

    predictions = pl.read_parquet(out.predictions_path)
    assert tuple(predictions.columns) == STORED_PREDICTION_COLUMNS
    assert_quantiles_are_ordered(predictions)
    rw = pl.read_parquet(root.predictions("1m", "random_walk"))
    assert predictions.select("date", "fold", "price").equals(rw.select("date", "fold", "price"))
    # The first fold has no earlier out-of-fold rows: it is the random walk.
    first = predictions.filter(pl.col("fold") == predictions["fold"].min())
    assert (first["pred_return"] == 0).all()

    manifest = json.loads((root.model_dir("1m", "ensemble") / "manifest.json").read_text())
    final = manifest["final"]
    assert set(final["weights"]) == {"random_walk", "drift", "ets", "lightgbm"}
    assert sum(final["weights"].values()) == pytest.approx(1.0)
    assert all(w >= 0 for w in final["weights"].values())
    # Tonight's forecast: the final weights on each member's own final-model forecast.
    expected = sum(
        w * family_pred_return(root, settings, "1m", f, root.model_dir("1m", f))
        for f, w in final["weights"].items()
        if w > 0
    )
    assert final["pred_return"] == pytest.approx(expected)
    folds = manifest["folds"]
    assert [f["earned"] for f in folds[:2]] == [False, False]
    assert all(np.isclose(sum(f["weights"].values()), 1.0) for f in folds)
