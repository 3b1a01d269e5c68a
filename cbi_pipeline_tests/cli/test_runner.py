import dagster as dg
from dagster._core.test_utils import create_run_for_test

from cbi_pipeline.cli.runner import ensure_instance, release_dead_runs
from cbi_pipeline.core.vocabulary import PID_TAG


def test_runs_of_a_killed_cycle_are_failed_and_free_their_pool_slots(tmp_path):
    instance = ensure_instance(tmp_path / "home")
    assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
    dead = create_run_for_test(
        instance, status=dg.DagsterRunStatus.STARTED, tags={PID_TAG: "999999999"}
    )
    alive = create_run_for_test(
        instance, status=dg.DagsterRunStatus.STARTED, tags={PID_TAG: str(__import__("os").getpid())}
    )
    storage = instance.event_log_storage
    storage.initialize_concurrency_limit_to_default("accelerator")
    claim = storage.claim_concurrency_slot("accelerator", dead.run_id, "lstm_model")
    assert claim.is_claimed
    blocked = storage.claim_concurrency_slot("accelerator", "next-run", "gru_model")
    assert not blocked.is_claimed

    assert release_dead_runs(instance) == [dead.run_id]
    assert instance.get_run_by_id(dead.run_id).status == dg.DagsterRunStatus.FAILURE
    assert instance.get_run_by_id(alive.run_id).status == dg.DagsterRunStatus.STARTED
    assert storage.claim_concurrency_slot("accelerator", "next-run", "gru_model").is_claimed
