"""The MLflow UI over a tracking store shaped like the project's: a grid's parent run with
nested point runs, opened in headless Chromium (Debian's ``chromium``, driven by Playwright).

The test starts ``mlflow server`` on a temporary sqlite store, opens the experiment's runs
table, expands the grid run, adds the ``test_accuracy`` column and checks that every point run
is listed with its value. It saves a screenshot to ``data/08_reporting/mlflow_ui.png``.

It is skipped where ``playwright`` is not importable or no ``chromium`` is on PATH; CI
installs both (``.ci/run``). No browser is downloaded: ``playwright install`` is never needed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .conftest import free_port, group_alive, log_tail, start_in_own_group, stop_group

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "data" / "08_reporting" / "mlflow_ui.png"

EXPERIMENT = "supermask_pipeline"
GRID_ID = "test-grid"
SERVER_START_TIMEOUT_S = 120  # a cold `mlflow server` takes ~10 s on one busy core
UI_TIMEOUT_MS = 60_000  # first render of the React app and its REST calls, on a slow CI runner
# (method, seed) -> test_accuracy, remaining_weights
POINTS = {
    ("dense", 0): (0.9765, 1.0),
    ("dense", 1): (0.9748, 1.0),
    ("signed_supermask", 0): (0.9756, 0.0339),
    ("signed_supermask", 1): (0.9761, 0.0352),
}
QUIET_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",  # the Python client and the UI's telemetry (relayed by the server)
    "DO_NOT_TRACK": "true",
    # The server would otherwise start a job runner (huey) for GenAI jobs: extra processes
    # and a temporary folder in /dev/shm that nothing here needs.
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
}


@dataclass
class Store:
    uri: str
    experiment_id: str
    parent_run_id: str
    runs: dict[str, str] = field(default_factory=dict)  # child run name -> run id
    test_accuracy: dict[str, float] = field(default_factory=dict)  # child run name -> value


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    """A sqlite tracking store with experiment ``supermask_pipeline``: a parent run ``grid``
    tagged ``grid_id=test-grid`` and four nested point runs (tags, metrics, a val history)."""
    for key, value in QUIET_ENV.items():
        monkeypatch.setenv(key, value)
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)  # no global tracking URI is changed
    experiment_id = client.create_experiment(EXPERIMENT, artifact_location=(tmp_path / "mlruns").as_uri())
    parent = client.create_run(experiment_id, run_name="grid", tags={"grid_id": GRID_ID})
    result = Store(uri=uri, experiment_id=experiment_id, parent_run_id=parent.info.run_id)
    for (method, seed), (accuracy, remaining) in POINTS.items():
        name = f"fcn.{method}.seed_{seed}"
        tags = {
            "mlflow.parentRunId": parent.info.run_id,
            "grid_id": GRID_ID,
            "grid_point": name,
            "architecture": "fcn",
            "dataset": "mnist",
            "method": method,
            "seed": str(seed),
        }
        run = client.create_run(experiment_id, run_name=name, tags=tags)
        now = int(time.time() * 1000)
        history = [
            Metric("epoch.val_accuracy", accuracy - 0.02 / (epoch + 1), now, epoch) for epoch in range(5)
        ]
        finals = [Metric("test_accuracy", accuracy, now, 0), Metric("remaining_weights", remaining, now, 0)]
        client.log_batch(run.info.run_id, metrics=history + finals)
        client.set_terminated(run.info.run_id)
        result.runs[name] = run.info.run_id
        result.test_accuracy[name] = accuracy
    client.set_terminated(parent.info.run_id)
    return result


def _start_server(store_uri: str, workdir: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """``mlflow server`` on a free port in its own session; returns it once /health answers."""
    artifacts = workdir / "mlartifacts"
    env = {**os.environ, **QUIET_ENV}
    env.pop("MLFLOW_TRACKING_URI", None)
    for attempt in range(3):  # the free port can be taken between the probe and the bind
        port = free_port()
        command = [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", store_uri,
            "--default-artifact-root", str(artifacts),
            "--artifacts-destination", str(artifacts),
            "--host", "127.0.0.1",
            "--port", str(port),
            "--workers", "1",
        ]  # fmt: skip
        proc = start_in_own_group(command, cwd=workdir, env=env, log=log)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        try:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    break
                try:
                    with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
                        if response.status == 200:
                            return proc, base
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    pass
                time.sleep(0.5)
        except BaseException:
            stop_group(proc)
            raise
        exited = proc.poll()
        stop_group(proc)
        output = log_tail(log)
        if exited is not None and "address already in use" in output.lower() and attempt < 2:
            continue
        timeout = f"no answer in {SERVER_START_TIMEOUT_S} s"
        what = f"exited with code {exited}" if exited is not None else timeout
        raise AssertionError(
            f"`mlflow server` never answered {base}/health ({what}): {' '.join(command)}\n"
            f"Its output ({log}):\n{output}"
        )
    raise AssertionError("unreachable")  # pragma: no cover


@pytest.fixture
def server(store: Store, tmp_path: Path):
    """Base URL of an ``mlflow server`` on ``store``; the process group is gone afterwards."""
    workdir = tmp_path / "server"
    workdir.mkdir()
    log = tmp_path / "mlflow_server.log"
    proc, base = _start_server(store.uri, workdir, log)
    try:
        yield base
    finally:
        stop_group(proc)
        assert not group_alive(proc.pid), (
            f"mlflow server processes of group {proc.pid} survived SIGTERM and SIGKILL:\n{log_tail(log)}"
        )


def test_mlflow_ui_lists_grid_runs_with_test_accuracy(chromium: str, store: Store, server: str):
    from playwright.sync_api import expect, sync_playwright

    # The experiment page opens in the "GenAI" workflow (traces overview); the "Model
    # training" toggle top left switches to the runs table by navigating to this same URL.
    url = f"{server}/#/experiments/{store.experiment_id}?workflowType=machine_learning"
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    failure_shot = SCREENSHOT.with_name("mlflow_ui_failure.png")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1920, "height": 720})
            # The "MLflow Assistant" side panel opens by itself on a first visit and would
            # squeeze the table; mark it as already shown and closed (the test works either way).
            context.add_init_script(
                "try { localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');"
                " localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false'); } catch (e) {}"
            )
            page = context.new_page()
            page.set_default_timeout(UI_TIMEOUT_MS)
            try:
                page.goto(url)
                _check_runs_table(page, store, expect)
                _widen_run_name_column(page)
            except Exception:
                try:  # what the browser showed, for the failure report
                    page.screenshot(path=failure_shot)
                except Exception:  # noqa: BLE001 - never hide the original error
                    pass
                raise
            page.screenshot(path=SCREENSHOT)
        finally:
            browser.close()
    failure_shot.unlink(missing_ok=True)
    assert SCREENSHOT.stat().st_size > 10_000


def _run_link(page, run_id: str):
    return page.locator(f"a[href$='/runs/{run_id}']")


def _widen_run_name_column(page, extra_px: int = 110) -> None:
    """Drag the Run Name header's resize handle so the screenshot shows whole run names
    (cosmetic: nothing below depends on it). The handle's right half lies under the next
    header, where a press would sort by "Created": grab its left edge, and only if the
    handle is really the element there."""
    handle = page.locator(".ag-header-cell[col-id*='Run Name'] .ag-header-cell-resize").first
    box = handle.bounding_box() if handle.count() else None
    if box is None:
        return
    x, y = box["x"] + 2, box["y"] + box["height"] / 2
    hit = page.evaluate("([x, y]) => document.elementFromPoint(x, y)?.className ?? ''", [x, y])
    if "ag-header-cell-resize" not in str(hit):
        return
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + extra_px, y, steps=5)
    page.mouse.up()


def _check_runs_table(page, store: Store, expect) -> None:
    # The runs table: the grid's parent run is listed first, its point runs nested under it.
    parent = _run_link(page, store.parent_run_id)
    expect(parent).to_have_text("grid", timeout=UI_TIMEOUT_MS)
    expect(page.get_by_text(f"{1 + len(store.runs)} matching runs")).to_be_visible()

    # Metrics are not columns by default (MLflow 3.17: Dataset, Source, Models): add the two
    # metrics and the `method` tag in "Columns" (a tree: Attributes, Metrics, Tags).
    header = page.locator(".ag-header-cell").filter(has_text="test_accuracy")
    if header.count() == 0:
        page.get_by_role("button", name="Columns", exact=True).click()
        tree = page.get_by_test_id("column-selector-tree")
        for column in ("test_accuracy", "remaining_weights", "method"):
            tree.get_by_text(column, exact=True).click()
        page.keyboard.press("Escape")
    expect(header).to_be_visible()

    # Expand the parent row (the +/- button in its Run Name cell) unless already expanded.
    first_child = _run_link(page, next(iter(store.runs.values())))
    if not first_child.is_visible():
        name_cell = page.locator("[role=gridcell]").filter(has=parent)
        name_cell.get_by_role("button").first.click()

    for name, run_id in store.runs.items():
        link = _run_link(page, run_id)
        expect(link).to_be_visible()
        expect(link).to_have_text(name)
        # The row's cells live in separate pinned/centre containers, joined by row-index.
        row_index = page.locator("[role=row]").filter(has=link).first.get_attribute("row-index")
        value = page.locator(f"[role=row][row-index='{row_index}'] [role=gridcell][col-id*='test_accuracy']")
        expect(value).to_have_count(1)
        expect(value).not_to_have_text("-")
        shown = value.inner_text().strip()
        assert float(shown) == pytest.approx(store.test_accuracy[name], abs=1e-3), (name, shown)
