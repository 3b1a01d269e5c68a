"""The combination step: ``ensemble`` over every other family's out-of-fold forecasts.

Reads the horizon's predictions of every family trained so far (``predictions/{h}/*.parquet``,
the random walk among them), fits the purged combination weights fold by fold
(``core.models.ensemble``), calibrates its quantiles like any family and writes
``predictions/{h}/ensemble.parquet`` and ``models/{h}/ensemble/manifest.json``. The manifest's
``final`` holds tonight's forecast: the final weights applied to each member's own final-model
forecast from the export's last row, so a promoted ensemble forecasts from its snapshot alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cbi_pipeline.core.intervals import add_quantiles
from cbi_pipeline.core.models.ensemble import walk_forward_ensemble
from cbi_pipeline.core.vocabulary import COMPLEXITY, ENSEMBLE, RANDOM_WALK
from cbi_pipeline.core.walkforward import WalkForwardResult
from cbi_pipeline.settings import Settings
from cbi_pipeline.steps.forecast import family_pred_return
from cbi_pipeline.store.models import FamilyOutput, LoadedExport, build_manifest, write_family
from cbi_pipeline.store.root import DataRoot, StorageError, read_parquet

MEMBERS = tuple(f for f in COMPLEXITY if f != ENSEMBLE)


def train_ensemble(
    root: DataRoot,
    settings: Settings,
    loaded: LoadedExport,
    progress: Callable[[str], None] | None = None,
) -> FamilyOutput:
    """Fit, calibrate and write the ensemble of the families whose predictions exist."""
    start = time.perf_counter()
    data = loaded.data
    horizon = data.horizon
    paths = {f: root.predictions(horizon, f) for f in MEMBERS}
    if not paths[RANDOM_WALK].exists():
        raise StorageError(
            f"{paths[RANDOM_WALK]}: not found; materialize baselines[{horizon}] before the ensemble"
        )
    members = {f: read_parquet(p, f"{f} predictions") for f, p in paths.items() if p.exists()}
    spec = settings.ensemble_spec()
    run = walk_forward_ensemble(members, data, spec)
    if progress is not None:
        progress(
            f"{horizon} ensemble of {', '.join(run.members)}: final weights "
            + ", ".join(f"{f} {w:.3f}" for f, w in run.final_weights.items())
        )
    member_returns = {
        f: family_pred_return(root, settings, horizon, f, root.model_dir(horizon, f))
        for f, w in run.final_weights.items()
        if w > 0
    }
    pred_return = sum(run.final_weights[f] * r for f, r in member_returns.items())
    result = WalkForwardResult(
        ENSEMBLE,
        add_quantiles(run.result.predictions, data, settings.interval_spec()),
        run.result.folds,
    )
    manifest = build_manifest(
        loaded,
        settings,
        settings.walk_forward_spec(horizon),
        result,
        time.perf_counter() - start,
        model_file=None,
        model_bytes=None,
        features=[],
        parameters={
            "shrinkage_periods": spec.shrinkage_periods,
            "departure_p": spec.departure_p,
            "members": list(run.members),
        },
        final={
            "pred_return": float(pred_return),
            "weights": run.final_weights,
            "member_returns": member_returns,
            "rule": "final weights (every out-of-fold row whose label has ended) applied to "
            "each member's final-model forecast from the export's last row",
        },
        feature_selection={"method": "none", "max_features": 0, "candidates": len(data.features)},
    )
    return write_family(root, horizon, result, manifest, None)
