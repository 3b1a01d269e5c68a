import pytest

from cbi_pipeline.core.hardware import (
    detect_cores,
    detect_system,
    get_config_for_model,
    neural_batch_and_sequence,
)


def test_detected_cores_respect_affinity():
    import os

    assert 1 <= detect_cores() <= len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("ram", "expected"),
    [
        (8, (128, 30)),
        (16, (128, 30)),
        (32, (256, 60)),
        (47.9, (256, 60)),
        (48, (512, 90)),
        (128, (512, 90)),
    ],
)
def test_neural_batch_and_sequence_scale_with_ram(ram, expected):
    assert neural_batch_and_sequence(ram) == expected


def test_family_parameters_follow_the_design():
    system = detect_system(cores=6, ram_gb=32, device="cpu")
    lgb = get_config_for_model("lightgbm", "1m", system)
    assert (lgb["num_leaves"], lgb["max_depth"], lgb["learning_rate"], lgb["n_estimators"]) == (
        31,
        6,
        0.05,
        1500,
    )
    assert lgb["num_threads"] == 6
    xgb = get_config_for_model("xgboost", "3m", system)
    assert (xgb["max_depth"], xgb["learning_rate"], xgb["tree_method"], xgb["n_jobs"]) == (
        8,
        0.03,
        "hist",
        6,
    )
    assert xgb["horizon_days"] == 63
    lstm = get_config_for_model("lstm", "12m", system)
    assert (lstm["batch_size"], lstm["sequence_length"], lstm["mixed_precision"]) == (
        256,
        60,
        False,
    )
    assert get_config_for_model("gru", "1w", detect_system(ram_gb=16, device="cuda"))[
        "mixed_precision"
    ]


def test_bad_requests_fail_loudly():
    system = detect_system(cores=2, ram_gb=8, device="cpu")
    with pytest.raises(ValueError, match="unknown model family 'svm'"):
        get_config_for_model("svm", "1m", system)
    with pytest.raises(ValueError, match="unknown horizon '2m'"):
        get_config_for_model("lightgbm", "2m", system)
    with pytest.raises(ValueError, match="device 'tpu' unknown"):
        detect_system(device="tpu")
