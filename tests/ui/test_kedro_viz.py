"""kedro-viz over the project's pipelines, opened in headless Chromium (Debian's ``chromium``,
driven by Playwright): no data is needed, kedro-viz only reads the configuration and the
pipeline registry.

The test copies ``pyproject.toml`` and ``conf/base`` into a temporary project (an empty
``src/``: the package is the installed one, so kedro-viz writes nothing into the repository),
starts ``kedro viz run --no-browser`` there on a free port (no autoreload, no telemetry), checks
that kedro-viz's JSON API lists the ``signed_supermask`` pipeline with the nodes
``signed_supermask.train`` and ``signed_supermask.evaluate``, then picks that pipeline in the
page's pipeline selector (every modular pipeline expanded: ``?expandAllPipelines=true``) and
checks that the flowchart shows exactly the pipeline's nodes, those two with their labels. It
saves a screenshot to ``data/08_reporting/kedro_viz.png``.

It is skipped where ``kedro-viz`` (``pip install -e '.[test]'``), ``playwright`` or a
``chromium`` on PATH is missing; CI installs all three (``.ci/run``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .conftest import free_port, group_alive, log_tail, start_in_own_group, stop_group

if importlib.util.find_spec("kedro_viz") is None:
    pytest.skip("kedro-viz is not installed (pip install -e '.[test]')", allow_module_level=True)
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "data" / "08_reporting" / "kedro_viz.png"

PIPELINE = "signed_supermask"
NODES = ("signed_supermask.train", "signed_supermask.evaluate")  # full node names, <method>.<step>
SERVER_START_TIMEOUT_S = 240  # kedro-viz imports the project (torch, mlflow) and builds the graph: ~15 s here
UI_TIMEOUT_MS = 60_000
QUIET_ENV = {
    "KEDRO_DISABLE_TELEMETRY": "true",  # kedro-telemetry (CLI) and kedro-viz's Heap script in the page
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MPLBACKEND": "Agg",
}
# Printed by the CLI once /api/main answers; kedro-viz moves to the next port when one is taken.
_RUNNING_AT = re.compile(r"Kedro Viz is running at\s+(http://127\.0\.0\.1:\d+)/?")


@pytest.fixture
def viz_project(tmp_path: Path) -> Path:
    """A Kedro project root with the repository's ``pyproject.toml`` and ``conf/base``, an empty
    ``conf/local`` (a user's local overrides and credentials stay out) and an empty ``src/``."""
    project = tmp_path / "project"
    shutil.copytree(REPO / "conf" / "base", project / "conf" / "base")
    (project / "conf" / "local").mkdir()
    (project / "src").mkdir()  # Kedro requires source_dir to exist; the package is imported as installed
    shutil.copy2(REPO / "pyproject.toml", project / "pyproject.toml")
    (project / ".telemetry").write_text("consent: false\n")  # kedro-telemetry's opt-out file
    return project


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def _answers(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/api/main", timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _start_viz(project: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """``kedro viz run`` in ``project`` in its own session; returns it once /api/main answers."""
    env = {**os.environ, **QUIET_ENV}
    port = free_port()
    # No --autoreload: nothing watches the project. --no-browser: nothing is opened.
    command = [
        sys.executable, "-m", "kedro", "viz", "run",
        "--host", "127.0.0.1", "--port", str(port), "--no-browser",
    ]  # fmt: skip
    proc = start_in_own_group(command, cwd=project, env=env, log=log)
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            found = _RUNNING_AT.search(log_tail(log, chars=20_000))
            base = found.group(1) if found else f"http://127.0.0.1:{port}"
            if _answers(base):
                return proc, base
            if proc.poll() is not None:
                break
            time.sleep(0.5)
    except BaseException:
        stop_group(proc)
        raise
    exited = proc.poll()
    stop_group(proc)
    what = f"exited with code {exited}" if exited is not None else f"no answer in {SERVER_START_TIMEOUT_S} s"
    raise AssertionError(
        f"`kedro viz run` never answered ({what}): {' '.join(command)}\nIts output ({log}):\n{log_tail(log)}"
    )


@pytest.fixture
def viz(viz_project: Path, tmp_path: Path):
    """Base URL of a kedro-viz server on ``viz_project``; the process group is gone afterwards."""
    log = tmp_path / "kedro_viz.log"
    proc, base = _start_viz(viz_project, log)
    try:
        yield base
    finally:
        stop_group(proc)
        assert not group_alive(proc.pid), (
            f"kedro-viz processes of group {proc.pid} survived SIGTERM and SIGKILL:\n{log_tail(log)}"
        )


def _pipeline_tasks(base: str) -> dict[str, dict[str, Any]]:
    """Full node name -> task node of ``PIPELINE``, as kedro-viz's JSON API gives them."""
    main = _get_json(f"{base}/api/main")
    assert PIPELINE in [p["id"] for p in main["pipelines"]], main["pipelines"]
    graph = _get_json(f"{base}/api/pipelines/{PIPELINE}")
    tasks = {node["full_name"]: node for node in graph["nodes"] if node["type"] == "task"}
    for name in NODES:
        assert name in tasks, f"{name} is not a node of pipeline {PIPELINE}: {sorted(tasks)}"
        assert PIPELINE in tasks[name]["pipelines"], tasks[name]
        assert tasks[name]["name"], tasks[name]  # the label the flowchart shows
    return tasks


def test_kedro_viz_shows_signed_supermask_pipeline(chromium: str, viz: str):
    from playwright.sync_api import expect, sync_playwright

    tasks = _pipeline_tasks(viz)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    failure_shot = SCREENSHOT.with_name("kedro_viz_failure.png")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1920, "height": 1080})
            # Only the local server: the page's Google Fonts link (and anything else remote)
            # would wait for a network that CI runners may not have.
            context.route(
                "**/*",
                lambda route: route.continue_() if route.request.url.startswith(viz) else route.abort(),
            )
            # Settings kept in localStorage: no feature tour and no minimap over the graph; labels
            # as the API names them (kedro-viz's "Pretty name" would show "Train" for "train").
            context.add_init_script(
                "try { localStorage.setItem('KedroViz', JSON.stringify({showFeatureHints: false,"
                " isPrettyName: false, visible: {miniMap: false}})); } catch (e) {}"
            )
            page = context.new_page()
            page.set_default_timeout(UI_TIMEOUT_MS)
            try:
                page.goto(f"{viz}/?expandAllPipelines=true")
                _select_pipeline(page, expect)
                _check_flowchart(page, tasks, expect)
                _tidy_for_screenshot(page)
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


def _select_pipeline(page, expect) -> None:
    """Pick ``PIPELINE`` in the pipeline selector at the top of the sidebar."""
    dropdown = page.locator(".pipeline-list .dropdown")
    label = dropdown.locator(".dropdown__label")
    expect(label).to_have_text("__default__")
    label.click()
    dropdown.get_by_role("option", name=PIPELINE, exact=True).click()
    expect(label).to_have_text(PIPELINE)
    expect(page).to_have_url(re.compile(rf"[?&]pid={PIPELINE}(&|$)"))


def _check_flowchart(page, tasks: dict[str, dict[str, Any]], expect) -> None:
    """The flowchart shows the pipeline's task nodes and no others (the previous pipeline's
    nodes fade out), ``NODES`` among them with their labels."""
    rendered = page.locator("g.pipeline-node--task")
    expect(rendered).to_have_count(len(tasks))
    shown = set(rendered.evaluate_all("nodes => nodes.map(node => node.dataset.id)"))
    assert shown == {node["id"] for node in tasks.values()}, (shown, sorted(tasks))
    for name in NODES:
        node = page.locator(f"g.pipeline-node--task[data-id='{tasks[name]['id']}']")
        expect(node).to_be_visible()
        text = node.locator(".pipeline-node__text")
        expect(text).to_have_text(tasks[name]["name"])
        expect(text).to_be_visible()


def _tidy_for_screenshot(page) -> None:
    """Cosmetic, nothing is checked: reload (the URL keeps the pipeline; kedro-viz fits the graph
    off-centre after a switch in the selector), close the "Kedro-Viz … is here!" banner (shown
    whenever PyPI could not be asked for the latest version) and zoom out until every node lies
    right of the sidebar and inside the window (the first fit is a little too wide)."""
    page.reload()
    page.locator("g.pipeline-node--task").first.wait_for()
    page.wait_for_timeout(1500)  # the nodes' fade-in and the zoom-to-fit transition
    dismiss = page.locator(".update-reminder-unexpanded").get_by_role("button", name="Dismiss", exact=True)
    if dismiss.count() and dismiss.first.is_visible():
        dismiss.first.click()
    zoom_out = page.get_by_role("button", name="Zoom out", exact=True)
    for _ in range(3):
        overflow = page.evaluate(
            """() => {
                const sidebar = document.querySelector('.pipeline-sidebar');
                const left = sidebar ? sidebar.getBoundingClientRect().right : 0;
                const nodes = [...document.querySelectorAll('g.pipeline-node')];
                return nodes.map(n => n.getBoundingClientRect()).some(
                    b => b.left < left || b.right > window.innerWidth || b.bottom > window.innerHeight
                );
            }"""
        )
        if not overflow or zoom_out.count() == 0 or not zoom_out.first.is_enabled():
            break
        zoom_out.first.click()
        page.wait_for_timeout(800)
    page.mouse.move(0, page.viewport_size["height"] - 1)  # no tooltip in the picture
    page.wait_for_timeout(300)
