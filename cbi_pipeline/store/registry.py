"""MLflow side of evaluation and promotion: evaluation metrics under the seed's names with the
evaluation JSON and chart as artifacts, and the registered model ``{target}_{h}`` (e.g.
``zl_1m``): every evaluation registers its candidate under the alias ``candidate``, promotion
registers the champion under ``champion``."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cbi_pipeline.core.intervals import QUANTILE_COLUMNS
from cbi_pipeline.core.vocabulary import (
    GATE_MAPE,
    TAG_FAMILY,
    TAG_FOLD,
    TAG_HORIZON,
    TAG_MLFLOW_STAGE,
)
from cbi_pipeline.store.tracking import (
    MLFLOW_NOTE,
    Tracker,
    experiment_name,
    local_copy,
    run_url,
)

CHAMPION_ALIAS = "champion"
# The latest evaluation's candidate (best skill), promoted or not.
CANDIDATE_ALIAS = "candidate"
# Where a forecast comes from: "champion" or "benchmark" (steps.forecast).
TAG_FORECAST_SOURCE = "cbi.forecast_source"
# The evaluation run that chose a candidate version (on the version), and the version an
# evaluation registered (on the run).
TAG_EVALUATION_RUN = "cbi.evaluation_run"
TAG_CANDIDATE_VERSION = "cbi.candidate_version"
# Where an evaluation run's JSON and chart go among its artifacts.
EVALUATION_ARTIFACTS = "evaluation"


class Registry:
    def __init__(self, tracker: Tracker, target_symbol: str = "ZL") -> None:
        self.tracker = tracker
        self.target = target_symbol

    def model_name(self, horizon: str) -> str:
        return f"{self.target.lower()}_{horizon}"

    def training_run_id(self, horizon: str, family: str) -> str | None:
        """The newest top-level training run of a family at a horizon, if tracked."""
        client = self.tracker.client
        experiment = client.get_experiment_by_name(experiment_name(self.target, horizon))
        if experiment is None:
            return None
        runs = client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.`{TAG_FAMILY}` = '{family}' and tags.`{TAG_HORIZON}` = '{horizon}'",
            order_by=["attributes.start_time DESC"],
            max_results=20,
        )
        for run in runs:
            if "mlflow.parentRunId" not in run.data.tags and run.data.tags.get(TAG_FOLD) is None:
                return str(run.info.run_id)
        return None

    def ensure_model(self, horizon: str) -> str:
        """The registered model of a horizon, created on first use; returns its name."""
        from mlflow.exceptions import MlflowException

        client = self.tracker.client
        name = self.model_name(horizon)
        try:
            client.get_registered_model(name)
        except MlflowException:
            client.create_registered_model(
                name,
                description=f"{self.target} {horizon} forecaster. Alias `{CANDIDATE_ALIAS}`: the "
                f"latest evaluation's best family; alias `{CHAMPION_ALIAS}`: the promoted one, "
                "which forecasts.",
            )
        return name

    def _register(
        self, horizon: str, family: str, model_dir: str, tags: Mapping[str, str], alias: str
    ) -> dict[str, Any]:
        """A new version of the family's model, sourced from its newest training run's
        ``model`` artifacts (else ``model_dir``), with ``alias`` pointed at it."""
        client = self.tracker.client
        name = self.ensure_model(horizon)
        run_id = self.training_run_id(horizon, family)
        source = f"runs:/{run_id}/model" if run_id else model_dir
        tags = {TAG_FAMILY: family, "cbi.model_dir": model_dir, **tags}
        version = client.create_model_version(name, source, run_id=run_id, tags=tags)
        client.set_registered_model_alias(name, alias, version.version)
        return {"model": name, "version": str(version.version), "alias": alias, "run_id": run_id}

    def set_champion(self, horizon: str, family: str, pointer: Mapping[str, Any]) -> dict[str, Any]:
        """Register the promoted model as a new version and point the alias at it."""
        tags = {"cbi.mape": f"{float(pointer['mape']):.6f}"}
        override = pointer.get("override")
        if override:
            tags |= {"cbi.override_by": override["by"], "cbi.override_reason": override["reason"]}
        return self._register(horizon, family, str(pointer["model_dir"]), tags, CHAMPION_ALIAS)

    def set_candidate(
        self,
        horizon: str,
        payload: Mapping[str, Any],
        model_dir: str,
        evaluation_run_id: str | None = None,
    ) -> dict[str, Any] | None:
        """Register the evaluation's candidate (``model_dir``: its model files under the data
        root) as a new version under the alias ``candidate``, linked both ways to the evaluation
        run; ``champion`` is left alone. Without a candidate the alias is removed (a stale one
        would name a model this evaluation did not choose) and None returned."""
        family = payload["candidate"]
        if not family:
            client, name = self.tracker.client, self.model_name(horizon)
            found = client.search_registered_models(filter_string=f"name = '{name}'")
            if found and CANDIDATE_ALIAS in found[0].aliases:
                client.delete_registered_model_alias(name, CANDIDATE_ALIAS)
            return None
        overall = payload["families"][family]["overall"]
        tags = {
            "cbi.mape": f"{float(overall['mape']):.6f}",
            "cbi.promotable": str(bool(payload["promotable"])).lower(),
        }
        if evaluation_run_id:
            tags[TAG_EVALUATION_RUN] = evaluation_run_id
        out = self._register(horizon, str(family), model_dir, tags, CANDIDATE_ALIAS)
        if evaluation_run_id:
            self.tracker.client.set_tag(
                evaluation_run_id, TAG_CANDIDATE_VERSION, f"{out['model']}/{out['version']}"
            )
        return out

    def alias_version(self, horizon: str, alias: str) -> dict[str, str] | None:
        """An alias's current version and its tags, or None when the alias is not set."""
        from mlflow.exceptions import MlflowException

        try:
            mv = self.tracker.client.get_model_version_by_alias(self.model_name(horizon), alias)
        except MlflowException:
            return None
        return {"version": str(mv.version), **{k: str(v) for k, v in mv.tags.items()}}

    def champion_version(self, horizon: str) -> dict[str, str] | None:
        """The alias's current version and its tags, or None when no champion is registered."""
        return self.alias_version(horizon, CHAMPION_ALIAS)

    def log_evaluation(
        self,
        horizon: str,
        payload: Mapping[str, Any],
        tags: Mapping[str, str] | None = None,
        artifacts: Sequence[Path] = (),
    ) -> tuple[str, str]:
        """One run per evaluation: the candidate under the seed's names, every family prefixed;
        ``artifacts`` (the evaluation JSON and chart) under ``evaluation/``."""
        from mlflow.entities import Metric, Param, RunTag

        client = self.tracker.client
        eid = self.tracker.experiment_id(experiment_name(self.target, horizon))
        run = client.create_run(
            eid,
            run_name=f"evaluation {horizon}",
            tags={TAG_HORIZON: horizon, TAG_MLFLOW_STAGE: "evaluation", **(tags or {})},
        )
        now = int(time.time() * 1000)
        metrics: list[Metric] = []

        def add(key: str, value: object) -> None:
            if isinstance(value, bool):
                value = float(value)
            if isinstance(value, int | float):
                metrics.append(Metric(key, float(value), now, 0))

        cand = payload["candidate"]
        if cand:
            body = payload["families"][cand]
            add("val_mape", body["overall"]["mape"])
            for regime, m in body["breakdowns"]["market_regime"].items():
                add(f"mape_{regime}", m["mape"])
                add(f"sharpe_{regime}", m["sharpe"])
            gates = {g["name"]: g for g in payload["gates"]}
            add("meets_mape_threshold", gates[GATE_MAPE]["passed"])
            for key in ("skill", "mase", "hit_rate", "sharpe", "psr", "rw_mape", "smape", "rmse"):
                add(key, body["overall"][key])
            add("promotable", payload["promotable"])
            dm = payload.get("diebold_mariano") or {}
            add("dm_statistic", dm.get("statistic"))
            add("dm_p_value", dm.get("p_value"))
        for family, body in payload["families"].items():
            for key in ("mape", "skill", "sharpe", "psr"):
                add(f"{family}.{key}", body["overall"][key])
            prob = body.get("probabilistic")
            if prob:
                add(f"{family}.pinball", prob["overall"]["pinball"])
                add(f"{family}.crps", prob["overall"]["crps"])
                add(f"{family}.pinball_skill", prob["pinball_skill_vs_constant_rw"])
                for level, covered in prob["overall"]["coverage"].items():
                    add(f"{family}.coverage_{level}", covered)
        client.log_batch(
            run.info.run_id,
            metrics=metrics,
            params=[Param("candidate", str(cand)), Param("cost_bp", str(payload["cost_bp"]))],
            tags=[
                RunTag(f"cbi.gate.{g['name']}", "pass" if g["passed"] else "fail")
                for g in payload["gates"]
            ],
        )
        try:
            for path in artifacts:
                with local_copy(path) as local:
                    client.log_artifact(run.info.run_id, str(local), EVALUATION_ARTIFACTS)
        except BaseException:
            client.set_terminated(run.info.run_id, status="FAILED")
            raise
        client.set_terminated(run.info.run_id)
        return run.info.run_id, run_url(self.tracker.ui_url, eid, run.info.run_id)

    def log_forecast(
        self,
        horizon: str,
        row: Mapping[str, Any],
        chart: Path,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """One run per forecast: the point and all nine quantiles as metrics; where it comes from
        (source, family, label, failed gates) as params and tags, the label also as the run's
        description; the fan chart as an artifact."""
        from mlflow.entities import Metric, Param

        client = self.tracker.client
        eid = self.tracker.experiment_id(experiment_name(self.target, horizon))
        run = client.create_run(
            eid,
            run_name=f"forecast {horizon}",
            tags={
                TAG_HORIZON: horizon,
                TAG_MLFLOW_STAGE: "forecast",
                TAG_FAMILY: str(row["family"]),
                TAG_FORECAST_SOURCE: str(row["source"]),
                MLFLOW_NOTE: str(row["label"]),
                **(tags or {}),
            },
        )
        now = int(time.time() * 1000)
        keys = ("price", "pred_return", "forecast_price", *QUANTILE_COLUMNS)
        params = {
            k: str(row[k])
            for k in ("source", "family", "label", "origin_date", "target_date", "data_last_date")
        }
        params["failed_gates"] = ", ".join(row["failed_gates"]) or "-"
        params["promoted_at"] = str(row["promoted_at"] or "-")
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(k, float(row[k]), now, 0) for k in keys],
            params=[Param(k, v) for k, v in params.items()],
        )
        with local_copy(chart) as local_chart:
            client.log_artifact(run.info.run_id, str(local_chart), "forecast")
        client.set_terminated(run.info.run_id)
        return str(run.info.run_id)
