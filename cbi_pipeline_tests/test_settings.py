"""Every setting is written once: the Dagster resource, the CBI_* overrides and the CLI help all
derive from ``cbi_pipeline.settings.Settings``."""

import dataclasses
import os
import subprocess
import sys

import pytest

from cbi_pipeline.cli.main import build_parser
from cbi_pipeline.defs.resources import PipelineSettings
from cbi_pipeline.settings import (
    Settings,
    SettingsError,
    describe,
    env_name,
    setting_fields,
    settings_from_env,
)


def test_every_setting_has_a_description():
    missing = [f.name for f in setting_fields() if not f.metadata.get("description", "").strip()]
    assert missing == []


def test_the_resource_config_has_each_setting_with_its_default_and_description():
    config = PipelineSettings.model_fields
    assert list(config) == [f.name for f in setting_fields()]
    for f in setting_fields():
        expected = list(f.default) if isinstance(f.default, tuple) else f.default
        default = config[f.name].get_default(call_default_factory=True)
        assert default == expected, f.name
        assert config[f.name].description == f.metadata["description"], f.name


def test_settings_round_trip_through_the_resource():
    settings = Settings(data_root="x", market_paths=("a.csv", "b.csv"), refit_step_days=63)
    assert PipelineSettings.from_settings(settings).settings() == settings
    assert PipelineSettings().settings() == Settings()


def test_env_overrides_parse_each_kind_and_explicit_values_win():
    env = {
        env_name("market_paths"): f"a.csv,b.csv{os.pathsep}c.csv",
        env_name("refit_step_days"): "63",
        env_name("target_symbol"): "ZS",
        env_name("surface"): "",  # empty means unset
    }
    settings = settings_from_env({"target_symbol": "ZM", "surface": None}, env=env)
    assert settings.market_paths == ("a.csv", "b.csv", "c.csv")
    assert settings.refit_step_days == 63
    assert settings.target_symbol == "ZM"
    assert settings.surface == Settings().surface


def test_a_malformed_integer_override_names_the_variable():
    with pytest.raises(ValueError, match=r"CBI_REFIT_STEP_DAYS='abc': expected an integer"):
        settings_from_env(env={"CBI_REFIT_STEP_DAYS": "abc"})


def _help(command: str) -> str:
    sub = next(
        a for a in build_parser()._actions if isinstance(a.choices, dict) and command in a.choices
    )
    return sub.choices[command].format_help()


@pytest.mark.parametrize(
    ("command", "setting"),
    [
        ("export", "surface"),
        ("cycle", "market_paths"),
        ("train", "first_test_date"),
        ("correlations", "cache_max_age_days"),
    ],
)
def test_cli_help_shows_the_settings_own_description(command, setting):
    text = " ".join(_help(command).split())
    assert " ".join(describe(setting).split()) in text
    assert env_name(setting) in text


def test_cli_flags_override_the_settings_they_name():
    args = build_parser().parse_args(["train", "--refit-step", "21", "--target", "ZS"])
    fields = {f.name for f in dataclasses.fields(Settings)}
    given = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    assert given == {"refit_step_days": 21, "target_symbol": "ZS"}


def test_no_setting_is_read_when_the_code_location_is_imported():
    """A bad CBI_* value does not break ``import cbi_pipeline.definitions``; loading the code
    location (what Dagster does) reports it."""
    code = (
        "import cbi_pipeline.definitions as d\n"
        "try:\n"
        "    d.defs()\n"
        "except ValueError as exc:\n"
        "    print('load failed:', exc)\n"
    )
    env = {**os.environ, "CBI_REFIT_STEP_DAYS": "abc"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "load failed: CBI_REFIT_STEP_DAYS='abc': expected an integer" in done.stdout


@pytest.mark.parametrize(
    ("env", "named"),
    [
        (
            {"CBI_MARKET_STALENESS_DAYS": "-5"},
            "market_staleness_days (CBI_MARKET_STALENESS_DAYS) = -5",
        ),
        ({"CBI_REFIT_STEP_DAYS": "0"}, "refit_step_days (CBI_REFIT_STEP_DAYS) = 0"),
        ({"CBI_EWMA_LAMBDA": "1.5"}, "ewma_lambda (CBI_EWMA_LAMBDA) = 1.5"),
        ({"CBI_SURFACE": "../prod"}, "surface (CBI_SURFACE) = '../prod'"),
        ({"CBI_FIRST_TEST_DATE": "2010/01/04"}, "first_test_date (CBI_FIRST_TEST_DATE)"),
        ({"CBI_ENSEMBLE_SHRINKAGE_PERIODS": "nan"}, "ensemble_shrinkage_periods"),
    ],
)
def test_a_setting_the_pipeline_cannot_run_with_is_refused_by_name(env, named):
    with pytest.raises(SettingsError, match="invalid setting") as info:
        settings_from_env(env=env)
    assert named in str(info.value)


def test_every_default_is_a_valid_setting_and_errors_are_reported_together():
    assert Settings() == settings_from_env(env={})
    with pytest.raises(SettingsError) as info:
        settings_from_env(env={"CBI_MAX_BIN": "1", "CBI_CORRELATION_TOP_K": "0"})
    assert "max_bin" in str(info.value) and "correlation_top_k" in str(info.value)


def test_cbi_refuses_a_bad_setting_before_writing_anything(tmp_path, monkeypatch, capsys):
    from cbi_pipeline.cli.main import main

    monkeypatch.setenv("CBI_SIGNAL_STALENESS_DAYS", "-1")
    assert main(["export", "--data-root", str(tmp_path / "root")]) == 2
    assert "signal_staleness_days (CBI_SIGNAL_STALENESS_DAYS) = -1" in capsys.readouterr().err
    assert not (tmp_path / "root").exists()
