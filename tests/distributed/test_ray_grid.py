"""The grid through Ray on a local cluster (127.0.0.1, 2 CPUs), logging to a real ``mlflow server``
on PostgreSQL: every point finished with the sequential grid's metrics, a failing point alone,
and a worker SIGKILLed mid-training retried and resumed to the uninterrupted result."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import mlflow
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

from supermask_pipeline.runners import GridPointsFailedError, GridRunner, RayRunner
from tests.pipelines.conftest import project, run_kedro  # noqa: F401 - the throw-away project fixtures

pytestmark = pytest.mark.slow

TRAINING = {"epochs": 2, "batch_size": 8, "show_progress": False, "device": "cpu"}
METHODS = ["dense", "signed_supermask"]
SEEDS = [0, 1]


def _configure(project: Path, tracking_uri: str, grid: dict, **blocks) -> str:
    """Point the project at ``tracking_uri`` under a fresh experiment; write the grid and the
    methods' shortened blocks into conf/local; returns the experiment name."""
    experiment = f"grid-{uuid.uuid4().hex[:8]}"
    mlflow_yml = {"server": {"mlflow_tracking_uri": tracking_uri}, "tracking": {"experiment": {"name": experiment}}}
    (project / "conf/local/mlflow.yml").write_text(yaml.safe_dump(mlflow_yml))
    local = {"grid": {"id": "tiny", "architectures": ["fcn"], "resources": {"num_cpus": 1}, **grid},
             "data_processing": {"num_val": 6},
             **{method: {"training": TRAINING} for method in METHODS}, **blocks}
    (project / "conf/local/parameters_grid.yml").write_text(yaml.safe_dump(local))
    return experiment


def _points(tracking_uri: str, experiment: str) -> dict[str, mlflow.entities.Run]:
    client = MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return {r.info.run_name: r for r in runs if "grid_point" in r.data.tags}


def _copy_project(source: Path, target: Path) -> Path:
    """A second throw-away project with the same conf and raw files (and no results)."""
    shutil.copytree(source / "conf", target / "conf")
    shutil.copytree(source / "data/01_raw", target / "data/01_raw")
    shutil.copy(source / "pyproject.toml", target / "pyproject.toml")
    (target / "src").mkdir()
    return target


def _run_sequentially(folder: Path, back: Path) -> None:
    """``kedro run --pipeline=grid`` in ``folder`` with the default GridRunner, then back to ``back``."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    os.chdir(folder)
    try:
        bootstrap_project(folder)
        with KedroSession.create(project_path=folder, runtime_params={"data_processing": {"num_val": 6}}) as session:
            session.run(pipeline_names=["grid"], runner=GridRunner())
    finally:
        os.chdir(back)
        bootstrap_project(back)
        while mlflow.active_run() is not None:
            mlflow.end_run()


def _final_metrics(run) -> dict[str, float]:
    keys = ("test_accuracy", "test_loss", "remaining_weights", "epochs")
    return {key: run.data.metrics[key] for key in keys} | {
        k: v for k, v in run.data.metrics.items() if k.startswith("remaining_weights.")}


def test_ray_grid_matches_the_sequential_grid(project, run_kedro, tmp_path_factory, mlflow_server, ray_cluster):
    grid = {"methods": METHODS, "seeds": SEEDS}
    experiment = _configure(project, mlflow_server, grid)
    run_kedro("grid", runner=RayRunner())
    points = _points(mlflow_server, experiment)
    assert sorted(points) == sorted(f"fcn.{m}.seed_{s}" for m in METHODS for s in SEEDS)
    assert {r.info.status for r in points.values()} == {"FINISHED"}
    parents = {r.data.tags["mlflow.parentRunId"] for r in points.values()}
    assert len(parents) == 1
    assert (project / "data/08_reporting/grid/summary.csv").is_file()

    # The same grid sequentially, in another project at the same torch thread count: the same figures.
    sequential = _copy_project(project, tmp_path_factory.mktemp("sequential") / "project")
    other = _configure(sequential, mlflow_server, grid)
    _run_sequentially(sequential, project)
    reference = _points(mlflow_server, other)
    for name, run in points.items():
        assert _final_metrics(run) == _final_metrics(reference[name]), name


def test_a_failing_point_fails_alone(project, run_kedro, mlflow_server, ray_cluster):
    methods = ["dense", "signed_supermask", "threshold", "edge_popup"]
    experiment = _configure(project, mlflow_server, {"methods": methods, "seeds": [0]},
                            threshold={"training": TRAINING}, edge_popup={"training": TRAINING, "method": {"keep_fraction": 2.0}})
    with pytest.raises(GridPointsFailedError) as info:
        run_kedro("grid", runner=RayRunner())
    assert list(info.value.failed) == ["fcn.edge_popup.seed_0"] and "keep_fraction" in str(info.value)
    points = _points(mlflow_server, experiment)
    assert points["fcn.edge_popup.seed_0"].info.status == "FAILED"
    assert "keep_fraction" in points["fcn.edge_popup.seed_0"].data.tags["error"]
    assert {points[f"fcn.{m}.seed_0"].info.status for m in methods[:3]} == {"FINISHED"}
    assert "Missing (failed) points: fcn.edge_popup.seed_0." in (project / "data/08_reporting/grid/summary.md").read_text()


def _kill_when_checkpointed(folder: Path, epoch: int, killed: list[int], timeout: float = 120) -> None:
    """SIGKILL the Ray worker of the point once its checkpoint of ``epoch`` is on disk."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(folder.glob(f"*/epoch_{epoch:04d}.json")):
            ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
            pids = [int(line.split()[0]) for line in ps.splitlines() if "ray::grid point fcn.dense.seed_0" in line]
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            killed.extend(pids)
            return
        time.sleep(0.01)


def test_a_killed_worker_is_retried_and_resumes_from_its_checkpoint(project, run_kedro, tmp_path_factory,
                                                                    mlflow_server, ray_cluster):
    long = {**TRAINING, "epochs": 40}
    experiment = _configure(project, mlflow_server, {"methods": ["dense"], "seeds": [0]}, dense={"training": long})
    killed: list[int] = []
    checkpoints = project / "data/06_models/grid/fcn/dense/seed_0/checkpoints"
    watcher = threading.Thread(target=_kill_when_checkpointed, args=(checkpoints, 5, killed), daemon=True)
    watcher.start()
    run_kedro("grid", runner=RayRunner())
    watcher.join()
    assert killed, "the worker was not found to kill"
    (run,) = _points(mlflow_server, experiment).values()
    assert run.info.status == "FINISHED"
    history = MlflowClient(mlflow_server).get_metric_history(run.info.run_id, "dense.val_accuracy")
    assert sorted(m.step for m in history) == list(range(1, 41))  # every epoch once, none twice
    resumed = load_file(project / "data/06_models/grid/fcn/dense/seed_0/trained_weights.safetensors")

    # The same point uninterrupted, sequentially at the same thread count: bit-identical weights.
    reference = _copy_project(project, tmp_path_factory.mktemp("uninterrupted") / "project")
    _configure(reference, mlflow_server, {"methods": ["dense"], "seeds": [0]}, dense={"training": long})
    _run_sequentially(reference, project)
    uninterrupted = load_file(reference / "data/06_models/grid/fcn/dense/seed_0/trained_weights.safetensors")
    assert all(torch.equal(resumed[name], uninterrupted[name]) for name in resumed)
