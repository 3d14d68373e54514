"""One MLflow run per method, nested under the pipeline's run; a SIGKILLed training continues its run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from ..conftest import FAST_TRAINING

METHODS = ("dense", "signed_supermask")


def _runs(project: Path) -> list:
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    return mlflow.search_runs(experiment_names=["supermask_pipeline"], output_format="list")


def _steps(run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in mlflow.MlflowClient().get_metric_history(run_id, key))


@pytest.mark.slow
def test_default_pipeline_gives_each_method_its_own_nested_run(project: Path, run_kedro):
    run_kedro("__default__", {name: {"training": FAST_TRAINING} for name in METHODS})
    runs = _runs(project)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {r.data.tags["method"]: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert sorted(children) == sorted(METHODS) and len(runs) == 3
    assert "method" not in parent.data.tags and parent.data.tags["methods"] == "dense,signed_supermask"
    assert parent.info.status == "FINISHED"
    for name, run in children.items():
        assert run.info.status == "FINISHED" and run.info.run_name == name
        assert (run.data.tags["architecture"], run.data.tags["dataset"], run.data.tags["seed"]) == ("fcn", "mnist", "0")
        assert _steps(run.info.run_id, f"{name}.val_accuracy") == [1, 2]
        assert f"{name}.test_accuracy" in run.data.metrics
        assert not [key for key in run.data.metrics if key.split(".")[0] in set(METHODS) - {name}]  # no other method's
        assert run.data.params[f"{name}.training.epochs"] == "2"
        artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, f"{name}/fcn")}
        assert f"{name}/fcn/training_history.csv" in artifacts
        assert mlflow.MlflowClient().list_artifacts(run.info.run_id, "model")  # log_model: the method's own model
    assert not [key for key in parent.data.metrics if key.split(".")[0] in METHODS]  # all in the method runs


EPOCHS = 12
PARAMS = ",".join([f"signed_supermask.training.epochs={EPOCHS}", "signed_supermask.training.batch_size=4",
                   "signed_supermask.training.show_progress=false", "signed_supermask.training.device=cpu",
                   "data_processing.num_val=6"])


def _kedro(project: Path) -> subprocess.Popen:
    # From the method's first node: the splits are made in-process (the tiny source is registered there).
    command = [sys.executable, "-m", "kedro", "run", "--pipeline=signed_supermask",
               "--from-nodes=signed_supermask.initialise", f"--params={PARAMS}"]
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "PYTHONUNBUFFERED": "1", "COLUMNS": "400"}
    return subprocess.Popen(command, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_sigkilled_training_continues_its_mlflow_run_and_nothing_stays_running(project: Path, run_kedro):
    run_kedro("data_processing")
    checkpoints = project / "data" / "06_models" / "signed_supermask" / "fcn" / "checkpoints"
    victim = _kedro(project)
    deadline = time.monotonic() + 240
    while not list(checkpoints.glob("*/epoch_*.json")):
        assert victim.poll() is None, victim.stdout.read()[-4000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=60)
    (stale,) = [r for r in _runs(project) if r.data.tags.get("method") == "signed_supermask"]
    assert stale.info.status == "RUNNING"  # what a killed process leaves

    output, _ = _kedro(project).communicate(timeout=300)
    assert "continues its interrupted MLflow run" in output, output[-4000:]
    runs = _runs(project)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    (method,) = [r for r in runs if r.data.tags.get("method") == "signed_supermask"]
    assert method.info.run_id == stale.info.run_id and method.info.status == "FINISHED"
    parents = sorted((r for r in runs if "mlflow.parentRunId" not in r.data.tags), key=lambda r: r.info.start_time)
    assert [r.info.status for r in parents][-2:] == ["KILLED", "FINISHED"]  # after data_processing's
    assert "ended while the run was RUNNING" in parents[-2].data.tags["supermask.killed"], [(p.info.status, p.data.tags) for p in parents]
    assert method.data.tags["mlflow.parentRunId"] == parents[-1].info.run_id
    for key in ("signed_supermask.val_accuracy", "signed_supermask.train_loss"):
        assert _steps(method.info.run_id, key) == list(range(1, EPOCHS + 1)), key  # each epoch once
