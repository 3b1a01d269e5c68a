"""The web UI in a real browser: ``dagster dev`` (webserver + daemon) on 127.0.0.1, headless
Chromium driven by Playwright, a materialization launched from the asset lineage page.

Setup installs what a fresh CI machine lacks: Debian's ``chromium`` (apt) and the ``playwright``
Python package (pip). No request leaves 127.0.0.1: the browser aborts any other URL and the test
asserts that none was attempted.
"""

import datetime as dt
import re
import shutil
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
