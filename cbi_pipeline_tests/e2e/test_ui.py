"""The web UI in a real browser: ``dagster dev`` (webserver + daemon) on 127.0.0.1, headless
Chromium driven by Playwright, a materialization launched from the asset lineage page; then the
UI after a one-horizon sample cycle of the named jobs (runs, failed gates on a green run, the
evaluation chart and plots, column descriptions) and ``mlflow ui``'s registered models. Those
tests write README's tour screenshots to ``docs/screenshots/``.

Setup installs what a fresh CI machine lacks: Debian's ``chromium`` (apt) and the ``playwright``
Python package (pip). No request leaves 127.0.0.1: the browser aborts any other URL and the test
asserts that none was attempted.
"""

import datetime as dt
import re
import shutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from cbi_pipeline_tests.services import (
    BIN,
    CHROMIUM,
    LOOPBACK,
    ensure_chromium,
    ensure_python_package,
    free_port,
    graphql,
    http_get,
    process_group,
    service_env,
    wait_until,
    write_instance_yaml,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--no-proxy-server",
]
SAMPLE = {"CBI_SAMPLE_START": "2016-01-04", "CBI_SAMPLE_END": "2019-12-31"}


@dataclass
class DagsterUI:
    url: str
    home: Path
    data_root: Path
    log: Path
    screenshots: list[Path] = field(default_factory=list)


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Debian's chromium, apt-installed when missing (CI runs as root on Debian). Elsewhere, e.g.
    macOS without /usr/bin/chromium, the test is skipped with the reason."""
    if not CHROMIUM.exists() and shutil.which("apt-get") is None:
        pytest.skip(f"needs Debian's chromium at {CHROMIUM} (no apt-get here to install it)")
    return ensure_chromium()


@pytest.fixture(scope="module")
def playwright_api():
    ensure_python_package("playwright.sync_api", "playwright>=1.45")
    from playwright.sync_api import sync_playwright

    return sync_playwright


def expect(locator):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


@pytest.fixture
def dagster_ui(tmp_path) -> Iterator[DagsterUI]:
    """``dagster dev`` as ``make ui`` runs it, on a free loopback port, with its instance and data
    root in tmp_path; the whole process group is torn down afterwards."""
    home, data_root = tmp_path / "dagster_home", tmp_path / "data"
    write_instance_yaml(home)
    port = free_port()
    env = service_env(DAGSTER_HOME=str(home), CBI_DATA_ROOT=str(data_root), **SAMPLE)
    cmd = [str(BIN / "dagster"), "dev", "-h", LOOPBACK, "-p", str(port), "-w", "workspace.yaml"]
    log = tmp_path / "dagster_dev.log"
    ui = DagsterUI(f"http://{LOOPBACK}:{port}", home, data_root, log)
    with process_group(cmd, env, log) as proc:
        try:
            wait_until(lambda: http_get(f"{ui.url}/server_info"), 120, "webserver up")
            wait_until(lambda: _location_loaded(ui.url), 120, "code location loaded")
            # The first-visit "join the community" dialog (it loads an iframe from dagster.io and
            # covers the page): mark it seen, as dismissing it in the UI would.
            graphql(ui.url, "mutation { setNuxSeen }")
            assert graphql(ui.url, "{ shouldShowNux }") == {"shouldShowNux": False}
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n--- dagster dev log ---\n{_tail(log)}") from None
        yield ui
        assert proc.poll() is None, f"dagster dev exited early:\n{_tail(log)}"


def _tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


def _location_loaded(url: str) -> bool | None:
    data = graphql(
        url,
        "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
        "locationOrLoadError { __typename ... on PythonError { message } } } } } }",
    )
    entries = data["workspaceOrError"]["locationEntries"]
    if not entries or entries[0]["loadStatus"] != "LOADED":
        return None
    located = entries[0]["locationOrLoadError"]
    assert located["__typename"] == "RepositoryLocation", f"code location failed: {located}"
    return True


RUN_QUERY = """
query Run($id: ID!) { runOrError(runId: $id) { __typename ... on Run {
  runId jobName status assetSelection { path } tags { key value } } } }"""

RUNS_QUERY = "{ runsOrError(limit: 20) { ... on Runs { results { runId } } } }"

LINEAGE_QUERY = """
query Lineage($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) { ... on AssetNode {
    dependencyKeys { path } dependedByKeys { path } } }
  assetOrError(assetKey: {path: $path}) { ... on Asset {
    assetMaterializations(limit: 1) { runId } } } }"""

AUTOMATION_QUERY = """
{ repositoriesOrError { ... on RepositoryConnection { nodes {
    schedules { name executionTimezone scheduleState { status }
                futureTicks(limit: 3) { results { timestamp } } }
    sensors { name sensorState { status } } } } }
  instance { daemonHealth { allDaemonStatuses { daemonType healthy required } } } }"""


def _screenshot(page, ui: DagsterUI, name: str) -> None:
    path = ui.home.parent / f"{name}.png"
    page.screenshot(path=str(path))
    ui.screenshots.append(path)


def _dismiss_dialogs(page) -> None:
    skip = page.get_by_role("button", name="Skip")  # the first-visit community dialog
    if skip.count():
        skip.first.click()


def test_ui_launches_a_materialization_and_shows_its_lineage(dagster_ui, chromium, playwright_api):
    ui = dagster_ui
    blocked: list[str] = []

    def route(r) -> None:
        if r.request.url.startswith(f"http://{LOOPBACK}:"):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    lineage = f"{ui.url}/assets/market_panel?view=lineage&lineageScope=upstream"
    with playwright_api() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(60_000)
            page.route("**/*", route)

            # The upstream lineage of market_panel: raw_market and nothing downstream.
            page.goto(lineage, wait_until="domcontentloaded")
            page.get_by_text("raw_market", exact=True).wait_for()
            _dismiss_dialogs(page)
            assert page.get_by_text("market_panel", exact=True).count() >= 1
            assert page.get_by_text("training_export", exact=True).count() == 0
            _screenshot(page, ui, "lineage_before")

            # Launch from the page: "Materialize all" of this view = raw_market + market_panel.
            page.get_by_role("button", name="Materialize all").first.click()
            toast = page.get_by_text(re.compile(r"Launched run [0-9a-f]{8}"))
            toast.wait_for()
            prefix = re.search(r"Launched run ([0-9a-f]{8})", toast.inner_text())
            assert prefix is not None
            run_ids = [r["runId"] for r in graphql(ui.url, RUNS_QUERY)["runsOrError"]["results"]]
            (run_id,) = [r for r in run_ids if r.startswith(prefix.group(1))]

            run = _wait_for_run(ui, run_id)
            assert run["status"] == "SUCCESS", f"run {run_id} ended {run['status']}"
            assert {p["path"][0] for p in run["assetSelection"]} == {"raw_market", "market_panel"}
            assert {"key": "dagster/from_ui", "value": "true"} in run["tags"]

            # The page shows both assets materialized by that run.
            page.goto(lineage, wait_until="domcontentloaded")
            page.get_by_text("raw_market", exact=True).wait_for()
            _dismiss_dialogs(page)
            materialized = page.get_by_text("Materialized", exact=True)
            expect(materialized).to_have_count(2, timeout=60_000)  # both nodes of the view
            assert page.get_by_text("Never materialized").count() == 0
            _screenshot(page, ui, "lineage_after")
            page.goto(f"{ui.url}/runs/{run_id}", wait_until="domcontentloaded")
            page.get_by_text("Success").first.wait_for()
            _screenshot(page, ui, "run")
        finally:
            browser.close()
    assert blocked == [], f"the UI tried to leave 127.0.0.1: {blocked}"
    assert all(p.stat().st_size > 10_000 for p in ui.screenshots)

    # Lineage as the UI's API reports it, and the materialization it recorded.
    node = graphql(ui.url, LINEAGE_QUERY, {"path": ["market_panel"]})
    assert node["assetNodeOrError"]["dependencyKeys"] == [{"path": ["raw_market"]}]
    assert {k["path"][0] for k in node["assetNodeOrError"]["dependedByKeys"]} == {
        "correlation_cache",
        "training_export",
    }
    assert node["assetOrError"]["assetMaterializations"][0]["runId"] == run_id

    # What the run wrote, under the data root the UI was started with.
    panel = pl.read_parquet(ui.data_root / "exports" / "market_panel.parquet")
    assert str(panel["date"].min()) == "2016-01-04" and str(panel["date"].max()) == "2019-12-31"
    assert pl.read_parquet(ui.data_root / "raw" / "market.parquet").height > panel.height

    # The daemon is healthy and runs the nightly schedule and the chain's sensors.
    auto = graphql(ui.url, AUTOMATION_QUERY)
    (repo,) = auto["repositoriesOrError"]["nodes"]
    (schedule,) = repo["schedules"]
    assert schedule["name"] == "nightly_cycle"
    assert schedule["scheduleState"]["status"] == "RUNNING"
    chicago = ZoneInfo("America/Chicago")
    for tick in schedule["futureTicks"]["results"]:
        local = dt.datetime.fromtimestamp(tick["timestamp"], chicago)
        assert (local.hour, local.minute) == (18, 30) and local.weekday() < 5
    running = {s["name"] for s in repo["sensors"] if s["sensorState"]["status"] == "RUNNING"}
    assert {"cycle_chain", "cycle_chain_after_failed_checks"} <= running
    daemons = auto["instance"]["daemonHealth"]["allDaemonStatuses"]
    unhealthy = [d["daemonType"] for d in daemons if d["required"] and not d["healthy"]]
    assert unhealthy == []


def _wait_for_run(ui: DagsterUI, run_id: str) -> dict:
    def finished() -> dict | None:
        run = graphql(ui.url, RUN_QUERY, {"id": run_id})["runOrError"]
        return run if run["status"] in ("SUCCESS", "FAILURE", "CANCELED") else None

    try:
        return wait_until(finished, 180, f"run {run_id} finished", every=1)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n--- dagster dev log ---\n{_tail(ui.log)}") from None


def test_make_ui_serves_a_data_root_with_a_space_and_a_quote(tmp_path):
    """``make ui`` as a user runs it, with a data root whose path has a space and a single quote:
    the webserver comes up on 127.0.0.1, loads the code location, and keeps its instance under
    that data root (nothing is split at the space or broken at the quote)."""
    venv = BIN.parent
    if not (venv / ".installed").exists():
        pytest.skip(f"make ui needs the install stamp {venv / '.installed'} (make install)")
    root = tmp_path / "desk's data root"
    port = free_port()
    env = service_env(**SAMPLE)
    cmd = ["make", "--no-print-directory", "ui", f"VENV={venv}", f"DATA_ROOT={root}"]
    cmd.append(f"UI_PORT={port}")
    log = tmp_path / "make_ui.log"
    url = f"http://{LOOPBACK}:{port}"
    with process_group(cmd, env, log) as proc:
        try:
            wait_until(lambda: http_get(f"{url}/server_info"), 120, "webserver up")
            wait_until(lambda: _location_loaded(url), 120, "code location loaded")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n--- make ui log ---\n{_tail(log)}") from None
        assert proc.poll() is None, f"make ui exited early:\n{_tail(log)}"
        assert (root / "dagster_home" / "dagster.yaml").is_file()
    assert not (tmp_path / "desk's").exists()


# --- The UI after a cycle of the named jobs, and the MLflow UI beside it (README's "Tour") ------

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
TOUR_VIEWPORT = {"width": 1280, "height": 800}
# Tiny networks: the horizon run trains every family, the recurrent ones for one epoch.
SMALL_NETS = {
    "horizon_job": {
        "ops": {
            f: {"config": {"hidden_size": 4, "max_epochs": 1, "patience": 1}}
            for f in ("lstm_model", "gru_model")
        }
    }
}
# The cycle's instance (`make ui`'s), without capturing each step's stdout (seconds a run here).
NO_COMPUTE_LOGS = """
compute_logs:
  module: dagster._core.storage.noop_compute_log_manager
  class: NoOpComputeLogManager
"""
CYCLE_JOBS = {"data_job", "correlations_job", "horizon_job", "promotion_job"}
HEADLINE_FLOATS = (
    "candidate_mape",
    "random_walk_mape",
    "skill",
    "sharpe",
    "psr",
    "coverage_80",
    "coverage_90",
)

CYCLE_RUNS_QUERY = """
{ runsOrError { ... on Runs { results { runId jobName status
    assetCheckSelection { name } } } } }"""

CHECKS_QUERY = """
query Checks($path: [String!]!) { assetNodeOrError(assetKey: {path: $path}) { ... on AssetNode {
  assetChecksOrError { ... on AssetChecks { checks { name blocking
    executionForLatestMaterialization { runId status evaluation { severity success } } } } } } } }"""

METADATA_QUERY = """
query Metadata($path: [String!]!) { assetOrError(assetKey: {path: $path}) { ... on Asset {
  assetMaterializations(limit: 1) { runId metadataEntries { __typename label
    ... on FloatMetadataEntry { floatValue }
    ... on TableSchemaMetadataEntry { schema { columns { name description } } } } } } } }"""


@dataclass
class CycleUI:
    url: str
    mlflow_url: str
    root: Path
    failed_gates: list[str]  # the gate checks the cycle's horizon run reported failed
    logs: list[Path]


@pytest.fixture(scope="module")
def cycle_ui(tmp_path_factory, empty_mlflow_store) -> Iterator[CycleUI]:
    """The sample cycle of one horizon (1w) run as ``make demo`` runs it (the named jobs, in a
    persistent instance under the data root), then the web UI and daemon over that instance and
    ``mlflow ui`` over its store, as ``make ui`` starts them, each on a free loopback port."""
    from cbi_pipeline.cli.runner import INSTANCE_YAML, ensure_instance, run_cycle
    from cbi_pipeline.definitions import build_resources
    from cbi_pipeline.defs.resources import HardwareResource
    from cbi_pipeline.store.tracking import mlflow_ui_args
    from cbi_pipeline_tests.sample_cycle import HORIZON, SAMPLE_ENV, sample_settings

    base = tmp_path_factory.mktemp("cycle-ui")
    root = base / "root"
    home = root / "dagster_home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(INSTANCE_YAML.read_text() + NO_COMPUTE_LOGS)
    (root / "mlflow").mkdir()
    shutil.copyfile(empty_mlflow_store, root / "mlflow" / "mlflow.db")
    settings = sample_settings(root)
    with pytest.MonkeyPatch.context() as env:
        env.delenv("MLFLOW_TRACKING_URI", raising=False)
        env.setenv("DAGSTER_HOME", str(home))
        resources = {
            **build_resources(settings),
            "hardware": HardwareResource(cores=1, device="cpu"),
        }
        report = run_cycle(
            settings,
            ensure_instance(home),
            (HORIZON,),
            job_config=SMALL_NETS,
            resources=resources,
            cycle="tour",
        )
    failed_gates = report.failed_checks.get(f"horizon {HORIZON}", [])

    ui_port, mlflow_port = free_port(), free_port()
    url, mlflow_url = f"http://{LOOPBACK}:{ui_port}", f"http://{LOOPBACK}:{mlflow_port}"
    env_vars = service_env(DAGSTER_HOME=str(home), CBI_DATA_ROOT=str(root), **SAMPLE_ENV)
    dagster = [str(BIN / "dagster"), "dev", "-h", LOOPBACK, "-p", str(ui_port)]
    dagster += ["-w", "workspace.yaml"]
    mlflow = [str(BIN / "mlflow"), "ui", *mlflow_ui_args(root, ui_url=mlflow_url)]
    logs = [base / "dagster_dev.log", base / "mlflow_ui.log"]
    with (
        process_group(mlflow, env_vars, logs[1], stop_signal=signal.SIGTERM) as mlflow_proc,
        process_group(dagster, env_vars, logs[0]) as dagster_proc,
    ):
        try:
            wait_until(lambda: http_get(f"{mlflow_url}/health"), 120, "mlflow ui up")
            wait_until(lambda: http_get(f"{url}/server_info"), 120, "webserver up")
            wait_until(lambda: _location_loaded(url), 120, "code location loaded")
            graphql(url, "mutation { setNuxSeen }")
        except TimeoutError as exc:
            tails = "\n".join(f"--- {p.name} ---\n{_tail(p)}" for p in logs)
            raise AssertionError(f"{exc}\n{tails}") from None
        yield CycleUI(url, mlflow_url, root, failed_gates, logs)
        assert dagster_proc.poll() is None, f"dagster dev exited early:\n{_tail(logs[0])}"
        assert mlflow_proc.poll() is None, f"mlflow ui exited early:\n{_tail(logs[1])}"


@pytest.fixture
def tour_page(cycle_ui, chromium, playwright_api):
    """A headless Chromium page at the tour's viewport that may only reach 127.0.0.1."""
    blocked: list[str] = []

    def route(r) -> None:
        if r.request.url.startswith(f"http://{LOOPBACK}:"):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with playwright_api() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=TOUR_VIEWPORT)
            page.set_default_timeout(60_000)
            page.route("**/*", route)
            yield page
        finally:
            browser.close()
    assert blocked == [], f"the UI tried to leave 127.0.0.1: {blocked}"


def _tour_shot(page, name: str) -> Path:
    """A screenshot for README's tour, at the viewport's size (deterministic name)."""
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000, f"{path} looks blank"
    return path


def _open(page, url: str, ready: str) -> None:
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_text(ready, exact=True).first.wait_for()
    _dismiss_dialogs(page)


def _cycle_runs(ui: CycleUI) -> dict[str, dict]:
    runs = graphql(ui.url, CYCLE_RUNS_QUERY)["runsOrError"]["results"]
    return {r["jobName"]: r for r in runs}


def test_the_runs_page_lists_the_cycle_under_its_named_jobs(cycle_ui, tour_page):
    ui, page = cycle_ui, tour_page
    runs = _cycle_runs(ui)
    assert set(runs) == CYCLE_JOBS
    assert {r["status"] for r in runs.values()} == {"SUCCESS"}

    _open(page, f"{ui.url}/runs", "horizon_job")
    for job in CYCLE_JOBS:
        expect(page.get_by_role("link", name=job, exact=True)).to_have_count(1)
    assert page.get_by_text("__ephemeral_asset_job__").count() == 0
    expect(page.get_by_text("cbi/cycle: tour")).to_have_count(len(CYCLE_JOBS))
    _tour_shot(page, "runs")

    # A run's page: the data run, under its job, green.
    page.locator(f"a[href$='/runs/{runs['data_job']['runId']}']").first.click()
    page.wait_for_url(f"**/runs/{runs['data_job']['runId']}")
    page.get_by_text("RUN_SUCCESS").first.wait_for()
    expect(page.get_by_role("link", name="data_job", exact=True).first).to_be_visible()
    expect(page.get_by_text("Success", exact=True).first).to_be_visible()


def test_the_horizon_run_is_green_although_its_gate_checks_failed(cycle_ui, tour_page):
    ui, page = cycle_ui, tour_page
    from cbi_pipeline.core.vocabulary import GATE_CHECKS

    assert ui.failed_gates, "the sample's gates all passed: nothing failed to show"
    assert set(ui.failed_gates) <= set(GATE_CHECKS.values())
    horizon = _cycle_runs(ui)["horizon_job"]
    assert horizon["status"] == "SUCCESS"
    checks = graphql(ui.url, CHECKS_QUERY, {"path": ["evaluation"]})["assetNodeOrError"]
    by_name = {c["name"]: c for c in checks["assetChecksOrError"]["checks"]}
    for name in ui.failed_gates:
        latest = by_name[name]["executionForLatestMaterialization"]
        assert not by_name[name]["blocking"]
        assert latest["runId"] == horizon["runId"] and latest["status"] == "FAILED"
        assert latest["evaluation"] == {"severity": "WARN", "success": False}

    # The run page: Success, and the log's check evaluations name the failed gates.
    _open(page, f"{ui.url}/runs/{horizon['runId']}", "RUN_SUCCESS")
    expect(page.get_by_text("Success", exact=True).first).to_be_visible()
    page.get_by_placeholder(re.compile("^Filter")).fill(ui.failed_gates[0])
    failed = page.get_by_text(
        f"Check {ui.failed_gates[0]} failed for materialization of evaluation"
    )
    expect(failed.first).to_be_visible()
    _tour_shot(page, "run_horizon")

    # The evaluation asset's Checks tab: the gate failed (a warning), the check is non-blocking.
    checks_url = f"{ui.url}/assets/evaluation?view=checks&checkDetail={ui.failed_gates[0]}"
    _open(page, checks_url, "Latest execution")
    expect(page.get_by_text("non-blocking", exact=True)).to_be_visible()
    detail = page.get_by_text("Evaluation result").locator("..")
    expect(detail.get_by_text("Failed", exact=True)).to_be_visible()
    expect(page.get_by_text("Failed", exact=True)).to_have_count(len(ui.failed_gates) + 1)
    _tour_shot(page, "evaluation_checks")


def test_evaluation_shows_its_chart_and_plots_its_headline_numbers(cycle_ui, tour_page):
    ui, page = cycle_ui, tour_page
    (event,) = graphql(ui.url, METADATA_QUERY, {"path": ["evaluation"]})["assetOrError"][
        "assetMaterializations"
    ]
    floats = {
        e["label"]: e["floatValue"]
        for e in event["metadataEntries"]
        if e["__typename"] == "FloatMetadataEntry"
    }
    assert set(HEADLINE_FLOATS) <= set(floats)

    # The chart: the markdown entry's embedded PNG, rendered in the metadata dialog.
    _open(page, f"{ui.url}/assets/evaluation?view=events", "chart")
    row = page.locator("tr", has=page.get_by_text("chart", exact=True))
    row.get_by_text("[Show Markdown]").click()
    image = page.get_by_role("dialog").locator("img")
    expect(image).to_have_count(1)
    size = image.evaluate("i => [i.complete, i.naturalWidth, i.naturalHeight]")
    assert size[0] and size[1] > 500 and size[2] > 200, f"chart image not rendered: {size}"
    _tour_shot(page, "evaluation_chart")

    # The Overview's metadata as plots: one chart per numeric entry, by partition.
    _open(page, f"{ui.url}/assets/evaluation", "Metadata")
    page.get_by_role("button", name="Plots").click()
    page.get_by_text("When graphing values by partition").wait_for()
    for label in HEADLINE_FLOATS:
        expect(page.get_by_text(label, exact=True)).to_have_count(1)
    expect(page.locator("canvas").first).to_be_visible()
    page.get_by_text("Metadata", exact=True).scroll_into_view_if_needed()
    _tour_shot(page, "evaluation_plots")


def test_forecast_shows_its_fan_chart(cycle_ui, tour_page):
    """Tonight's forecast: its ``chart`` metadata (the fan chart PNG) renders in the dialog."""
    ui, page = cycle_ui, tour_page
    _open(page, f"{ui.url}/assets/forecast?view=events", "chart")
    row = page.locator("tr", has=page.get_by_text("chart", exact=True))
    row.get_by_text("[Show Markdown]").click()
    image = page.get_by_role("dialog").locator("img")
    expect(image).to_have_count(1)
    size = image.evaluate("i => [i.complete, i.naturalWidth, i.naturalHeight]")
    assert size[0] and size[1] > 400 and size[2] > 200, f"fan chart not rendered: {size}"
    _tour_shot(page, "forecast_chart")


def test_training_export_shows_the_feature_catalog_descriptions_of_its_columns(cycle_ui, tour_page):
    import json

    from cbi_pipeline.store.root import DataRoot

    ui, page = cycle_ui, tour_page
    catalog = json.loads(DataRoot(str(ui.root)).feature_catalog.read_text())
    feature = catalog[0]
    expected = f"{feature['definition']} ({feature['block']} block)"
    (event,) = graphql(ui.url, METADATA_QUERY, {"path": ["training_export"]})["assetOrError"][
        "assetMaterializations"
    ]
    (schema,) = [e for e in event["metadataEntries"] if e["label"] == "dagster/column_schema"]
    columns = {c["name"]: c["description"] for c in schema["schema"]["columns"]}
    assert columns[feature["name"]] == expected
    assert all(columns.values())

    _open(page, f"{ui.url}/assets/training_export", "Columns")
    table = page.get_by_text("Column name", exact=True).locator("xpath=ancestor::table")
    row = table.locator("tr", has=page.get_by_text(feature["name"], exact=True))
    expect(row.get_by_text(expected, exact=True)).to_be_visible()
    page.get_by_text("Columns", exact=True).first.scroll_into_view_if_needed()
    _tour_shot(page, "export_columns")


def test_mlflow_lists_the_registered_model_with_its_candidate_alias(cycle_ui, tour_page):
    ui, page = cycle_ui, tour_page
    page.goto(f"{ui.mlflow_url}/#/models", wait_until="domcontentloaded")
    page.get_by_role("link", name="zl_1w", exact=True).wait_for()
    # MLflow 3's first-visit dialog (the new registry UI) and its assistant panel cover the list.
    page.get_by_role("dialog").get_by_role("button", name="Close").click()
    expect(page.get_by_role("dialog")).to_have_count(0)
    assistant = page.get_by_role("button", name="Close")
    if assistant.count():
        assistant.first.click()
    row = page.get_by_role("row", name=re.compile(r"^zl_1w "))
    expect(row.get_by_role("status", name="candidate")).to_be_visible()  # "@ candidate"
    expect(row.get_by_role("link", name="candidate : Version 1")).to_be_visible()
    _tour_shot(page, "mlflow_models")
