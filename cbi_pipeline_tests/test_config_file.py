"""The project configuration file: it changes gates, hyperparameters, families and settings; a bad
one is refused before anything runs, naming the file and the key; and the guide's own calls."""

import dataclasses
import json

import polars as pl
import pytest

from cbi_pipeline.cli.main import main
from cbi_pipeline.config_file import ConfigFileError
from cbi_pipeline.core.gates import GateSpec
from cbi_pipeline.core.hardware import detect_system, get_config_for_model
from cbi_pipeline.settings import Settings, settings_from_env
from cbi_pipeline.steps import evaluation as evaluate
from cbi_pipeline.steps import models as training
from cbi_pipeline_tests.conftest import build_tiny_exports, tiny_training_settings
from cbi_pipeline_tests.steps.test_evaluation import H, predictions, state  # noqa: F401

SYSTEM = detect_system(cores=1, ram_gb=16, device="cpu")


def write(path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_a_gate_in_the_file_changes_the_verdict(state, tmp_path):  # noqa: F811
    """Seed gate at 1w: MAPE <= 3%. Predictions 4% off (MAPE about 5%) fail it; a file that sets the 1w bar at
    6% passes the same predictions, and a bar relative to the random walk fails them again."""
    settings, root, export, price, _y_true = state
    predictions(root, export, "random_walk", price)
    predictions(root, export, "drift", price * 1.04)
    seed = evaluate.evaluate_root(root, H, settings=settings)
    gate = {g.name: g for g in seed.gates}["mape_threshold"]
    assert not gate.passed and gate.threshold == 3.0

    loose = write(tmp_path / "loose.toml", "[gates.1w]\nmape_max = 6.0\n")
    out = evaluate.evaluate_root(root, H, settings=dataclasses.replace(settings, config_path=loose))
    gate = {g.name: g for g in out.gates}["mape_threshold"]
    assert gate.passed and gate.threshold == 6.0
    assert out.payload["config"]["file"] == loose
    assert out.payload["config"]["gates"]["mape_max"] == 6.0

    relative = write(
        tmp_path / "relative.toml", "[gates.1w]\nmape_max = false\nmape_max_vs_random_walk = 1.0\n"
    )
    out = evaluate.evaluate_root(
        root, H, settings=dataclasses.replace(settings, config_path=relative)
    )
    gate = {g.name: g for g in out.gates}["mape_threshold"]
    rw = out.evaluation.random_walk.overall.mape
    assert not gate.passed and gate.threshold == pytest.approx(rw)
    assert "1.0 x random walk" in gate.detail


def test_a_dm_p_value_bar_gates_the_skill(state, tmp_path):  # noqa: F811
    settings, root, export, price, y_true = state
    predictions(root, export, "random_walk", price)
    predictions(root, export, "drift", price + 0.9 * (y_true - price))
    plain = evaluate.evaluate_root(root, H, settings=settings)
    skill = {g.name: g for g in plain.gates}["skill_vs_random_walk"]
    p = plain.evaluation.diebold_mariano.p_value
    assert skill.passed
    strict = write(tmp_path / "dm.toml", f"[gates.default]\nmax_dm_p = {p / 2}\n")
    out = evaluate.evaluate_root(
        root, H, settings=dataclasses.replace(settings, config_path=strict)
    )
    skill = {g.name: g for g in out.gates}["skill_vs_random_walk"]
    assert not skill.passed and f"needs p < {p / 2}: not met" in skill.detail


BAD = [
    ("[gates.1m]\nmape_maxx = 4.0\n", "gates.1m.mape_maxx: unknown key"),
    ("[gates.2m]\nmape_max = 4.0\n", "gates.2m: unknown horizon"),
    ('[gates.1m]\nmape_max = "4"\n', "gates.1m.mape_max: '4' is not a number > 0"),
    ("[gates.1m]\ncoverage_tolerance = 0.05\n", "gates.1m.coverage_tolerance: a setting"),
    ("[hyperparameters.lightgbm]\nnum_leave = 7\n", "hyperparameters.lightgbm.num_leave: unknown"),
    ("[hyperparameters.catboost]\ndepth = 7\n", "hyperparameters.catboost: unknown model family"),
    ("[hyperparameters.xgboost.2w]\nmax_depth = 3\n", "hyperparameters.xgboost.2w: a table here"),
    ("[neural]\nnum_layers = 0\n", "neural.num_layers: 0 is not an integer from 1 to 8"),
    ("[neural.lstm]\nhidden = 8\n", "neural.lstm.hidden: unknown key"),
    ('families = ["lightgbm", "prophet"]\n', "families: unknown families ['prophet']"),
    ("[settings]\nrefit_step_dayz = 5\n", "settings.refit_step_dayz: unknown setting"),
    ('[settings]\nrefit_step_days = "5"\n', "settings.refit_step_days: '5': expected an integer"),
    ("[gates\n", "not valid TOML"),
    ("[traning]\n", "traning: unknown section"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_an_invalid_file_fails_before_anything_runs_naming_the_key(
    tmp_path, monkeypatch, text, message
):
    config = write(tmp_path / "cbi.toml", text)
    root = tmp_path / "root"
    with pytest.raises(ConfigFileError) as caught:
        settings = settings_from_env({"config_path": config, "data_root": str(root)})
        settings.gate_spec("1m")
        settings.model_params("lightgbm", "1m", SYSTEM)
    assert str(caught.value).startswith(f"{config}: ")
    assert message in str(caught.value)
    assert main(["config", "--config", config, "--data-root", str(root)]) != 0
    monkeypatch.setenv("CBI_CONFIG", config)
    assert main(["export", "--horizon", "1w", "--data-root", str(root)]) != 0
    assert not root.exists()  # the export refused before writing anything


def test_cbi_export_refuses_a_bad_file_in_the_data_root_and_writes_nothing(tmp_path, capsys):
    root = tmp_path / "root"
    root.mkdir()
    write(root / "cbi.toml", "[gates.1m]\nmape_maxx = 4.0\n")
    before = sorted(p.name for p in root.iterdir())
    assert main(["export", "--data-root", str(root)]) != 0
    err = capsys.readouterr().err
    assert f"{root / 'cbi.toml'}: gates.1m.mape_maxx: unknown key" in err
    assert sorted(p.name for p in root.iterdir()) == before


def test_settings_precedence_file_then_env_then_flags(tmp_path):
    config = write(tmp_path / "c.toml", '[settings]\nrefit_step_days = 126\nsurface = "lab"\n')
    s = settings_from_env({"config_path": config}, env={})
    assert (s.refit_step_days, s.surface) == (126, "lab")
    s = settings_from_env({"config_path": config}, env={"CBI_REFIT_STEP_DAYS": "63"})
    assert (s.refit_step_days, s.surface) == (63, "lab")
    s = settings_from_env({"config_path": config, "surface": "prod"}, env={})
    assert s.surface == "prod"
    beside = tmp_path / "root"
    beside.mkdir()
    write(beside / "cbi.toml", '[settings]\ndata_root = "elsewhere"\n')
    with pytest.raises(
        ConfigFileError, match=r"settings\.data_root: cannot be set by the cbi\.toml"
    ):
        settings_from_env({"data_root": str(beside)}, env={})


def test_hyperparameters_and_neural_architecture_layer_over_the_hardware_defaults(tmp_path):
    config = write(
        tmp_path / "c.toml",
        "[hyperparameters.lightgbm]\nlearning_rate = 0.1\n"
        "[hyperparameters.lightgbm.1m]\nnum_leaves = 7\n"
        "[neural]\nnum_layers = 2\nhidden_size = 16\n[neural.gru]\ndropout = 0.2\n",
    )
    s = Settings(config_path=config)
    one = s.model_params("lightgbm", "1m", SYSTEM)
    three = s.model_params("lightgbm", "3m", SYSTEM)
    assert (one["learning_rate"], one["num_leaves"]) == (0.1, 7)
    assert (three["learning_rate"], three["num_leaves"]) == (0.1, 31)
    gru, lstm = s.model_params("gru", "1m", SYSTEM), s.model_params("lstm", "1m", SYSTEM)
    assert (gru["num_layers"], gru["hidden_size"], gru["dropout"]) == (2, 16, 0.2)
    assert (lstm["num_layers"], lstm["dropout"]) == (2, 0.0)
    assert Settings().model_params("lightgbm", "1m", SYSTEM) == get_config_for_model(
        "lightgbm", "1m", SYSTEM
    )


def test_the_file_hyperparameters_reach_training_and_a_disabled_family_is_gone(tmp_path):
    config = write(
        tmp_path / "c.toml",
        'families = ["xgboost"]\n[hyperparameters.xgboost]\nmax_depth = 2\nn_estimators = 30\n',
    )
    settings = tiny_training_settings(tmp_path, max_features=8, max_bin=16)
    root = build_tiny_exports(settings)
    (lgb,) = training.train(root, settings, "1m", "lightgbm", SYSTEM)
    assert root.predictions("1m", "lightgbm").exists()
    configured = dataclasses.replace(settings, config_path=config)
    (xgb,) = training.train(root, configured, "1m", "xgboost", SYSTEM)
    assert xgb.manifest["parameters"]["max_depth"] == 2
    assert xgb.manifest["parameters"]["n_estimators"] == 30
    assert xgb.manifest["project_config"] == config
    assert training.train(root, configured, "1m", "lightgbm", SYSTEM) == []
    assert not root.predictions("1m", "lightgbm").exists()
    assert lgb.manifest["project_config"] is None


def test_the_guides_calls_work_as_written(tmp_path, capsys):
    params = get_config_for_model("lightgbm", horizon="1m")
    assert params["num_threads"] == detect_system().cores and params["horizon_days"] == 21
    settings = tiny_training_settings(tmp_path)
    root = build_tiny_exports(settings)
    export = root.export("zl_training_prod_allhistory_1m.parquet")
    args = ["correlations", "--data-path", str(export), "--cache-max-age", "7"]
    assert main([*args, "--data-root", settings.data_root]) == 0
    out = capsys.readouterr().out
    assert f"correlation features of {export}" in out
    assert "the export stores the same values" in out
    config = write(tmp_path / "c.toml", "")
    assert main(["config", "--config", config, "--json", "--data-root", settings.data_root]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["config_file"] == config and shown["settings"]["config_path"]["value"] == config
    assert set(shown["gates"]) == {"1w", "1m", "3m", "6m", "12m"}
    assert shown["gates"]["1m"] == dataclasses.asdict(GateSpec.for_horizon("1m"))


def test_cbi_train_takes_the_surface_and_the_neural_architecture(tmp_path, capsys):
    settings = tiny_training_settings(tmp_path, surface="lab")
    root = build_tiny_exports(settings)
    config = write(
        tmp_path / "c.toml",
        "[settings]\nvalidation_rows = 63\nmin_train_rows = 126\n"
        "[hyperparameters.lstm]\nmax_epochs = 2\npatience = 1\n",
    )
    base = ["train", "--horizon", "1m", "--data-root", settings.data_root, "--no-mlflow"]
    base += ["--first-test-date", "2009-07-01", "--config", config]
    assert main([*base, "--family", "baselines", "--surface", "lab"]) == 0
    assert main([*base, "--family", "baselines", "--surface", "prod"]) != 0  # no prod export
    assert "zl_training_prod_allhistory_1m.parquet: not found" in capsys.readouterr().err
    neural = ["--num-layers", "2", "--hidden-size", "4", "--dropout", "0.1"]
    assert main([*base, "--family", "lstm", "--surface", "lab", *neural]) == 0
    manifest = json.loads((root.model_dir("1m", "lstm") / "manifest.json").read_text())
    p = manifest["parameters"]
    assert (p["num_layers"], p["hidden_size"], p["dropout"], p["max_epochs"]) == (2, 4, 0.1, 2)
    assert main([*base, "--family", "lightgbm", "--surface", "lab", "--num-layers", "2"]) != 0
    assert "trains no neural family" in capsys.readouterr().err
    assert pl.read_parquet(root.predictions("1m", "lstm"))["y_pred"].is_finite().all()


def test_cbi_correlations_on_an_export_without_its_panel_says_what_it_needs(tmp_path, capsys):
    settings = tiny_training_settings(tmp_path)
    root = build_tiny_exports(settings)
    alone = tmp_path / "alone" / "zl_1m.parquet"
    alone.parent.mkdir()
    alone.write_bytes(root.export("zl_training_prod_allhistory_1m.parquet").read_bytes())
    args = ["correlations", "--data-path", str(alone), "--data-root", settings.data_root]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{alone}: an export holds features, not the closes" in err
    assert str(alone.parent / "market_panel.parquet") in err
    # a panel beside it that is not its own is refused too
    panel = pl.read_parquet(root.market_panel).with_columns(pl.col("ZL_close") * 1.01)
    panel.write_parquet(alone.parent / "market_panel.parquet")
    assert main(args) == 2
    assert "is not the one it was built from" in capsys.readouterr().err
