"""Promotion over files: the candidate becomes the champion only when every gate passed on the
current evaluation and the diagnostics pass now (or by an explicit, recorded override); the step
behind ``champion``. The pointer and its snapshot live in ``store.models``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cbi_pipeline.core.vocabulary import COMPLEXITY, RANDOM_WALK
from cbi_pipeline.steps.evaluation import diagnostics_status, file_sha256
from cbi_pipeline.store.models import current_champion, snapshot_model, write_champion
from cbi_pipeline.store.root import DataRoot, as_path, read_json


class PromotionError(RuntimeError):
    """A promotion was asked for that cannot be done (stale evaluation, bad override)."""


@dataclass(frozen=True)
class Override:
    family: str
    by: str
    reason: str

    def __post_init__(self) -> None:
        if not self.by.strip() or not self.reason.strip():
            raise PromotionError("an override needs both who ('by') and why ('reason')")
        if self.family == RANDOM_WALK or self.family not in COMPLEXITY:
            raise PromotionError(
                f"override family {self.family!r} cannot be promoted; expected one of "
                f"{[f for f in COMPLEXITY if f != RANDOM_WALK]}"
            )


@dataclass(frozen=True)
class PromotionResult:
    horizon: str
    promoted: bool
    family: str | None
    reason: str
    champion: dict[str, Any] | None


def check_evaluation_is_current(root: DataRoot, payload: Mapping[str, Any]) -> None:
    """The evaluation must describe the predictions on disk now (no stale promotion)."""
    for family, src in payload["predictions"].items():
        path = as_path(src["path"])
        if not path.exists() or file_sha256(path) != src["sha256"]:
            raise PromotionError(
                f"evaluations/{payload['horizon']}.json is stale: {family} predictions at {path} "
                "changed since it was written; materialize evaluation again"
            )


def promote(
    root: DataRoot,
    horizon: str,
    override: Override | None = None,
    registry: Any | None = None,
) -> PromotionResult:
    """Promote the evaluation's candidate when every gate passed (or an explicit override).

    Reads ``evaluations/{h}.json`` and re-checks it against the predictions on disk, so it is
    safe to run in a separate run from the checks. ``registry`` (``registry.Registry``) sets the
    MLflow alias; without one only the local pointer moves.
    """
    previous = current_champion(root, horizon)
    if not as_path(root.evaluation(horizon)).exists() and override is None:
        kept = f"; keeping {previous['family']}" if previous else "; no champion"
        return PromotionResult(
            horizon,
            False,
            None,
            f"no evaluation of {horizon} yet (diagnostics or training did not complete)" + kept,
            previous,
        )
    payload = read_json(root.evaluation(horizon), "evaluation")
    check_evaluation_is_current(root, payload)
    if override is None:
        diag_ok, diag_failing = diagnostics_status(root, horizon)
        if not diag_ok:
            kept = f"; keeping {previous['family']}" if previous else "; no champion"
            return PromotionResult(
                horizon,
                False,
                None,
                f"diagnostics fail now: {', '.join(diag_failing)}" + kept,
                previous,
            )
        if not payload["promotable"]:
            failed = [g["name"] for g in payload["gates"] if not g["passed"]]
            why = f"gates failed: {', '.join(failed)}" if failed else "no candidate to promote"
            kept = f"; keeping {previous['family']}" if previous else "; no champion"
            return PromotionResult(horizon, False, None, why + kept, previous)
        family = str(payload["candidate"])
    else:
        family = override.family
        if family not in payload["families"]:
            raise PromotionError(f"override family {family!r} has no evaluation for {horizon}")
    model_dir = snapshot_model(root, horizon, family)
    mape = float(payload["families"][family]["overall"]["mape"])
    pointer: dict[str, Any] = {
        "horizon": horizon,
        "family": family,
        "mape": mape,
        "evaluation": payload["families"][family]["overall"],
        "model_dir": str(model_dir.relative_to(root.root)),
        "promoted_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "override": None if override is None else {"by": override.by, "reason": override.reason},
        "previous": None if previous is None else previous["family"],
    }
    if registry is not None:
        pointer["mlflow"] = registry.set_champion(horizon, family, pointer)
    write_champion(root, horizon, pointer)
    why = "override" if override else "every gate passed"
    return PromotionResult(horizon, True, family, why, pointer)
