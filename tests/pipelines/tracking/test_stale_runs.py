"""Runs of dead processes: told apart by their process tags, marked KILLED, continued by a rerun."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from supermask_pipeline.pipelines import tracking


@pytest.fixture
def store(tmp_path: Path):
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = mlflow.set_experiment("stale")
    yield experiment.experiment_id
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(previous)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _tags(pid: int, start: str = "") -> dict[str, str]:
    return {**tracking.process_tags(), tracking.PID_TAG: str(pid), tracking.PID_START_TAG: start}


def test_process_alive_tells_this_host_s_live_dead_and_reused_pids():
    assert tracking.process_alive(tracking.process_tags()) is True
    assert tracking.process_alive(_tags(_dead_pid())) is False
    assert tracking.process_alive(_tags(os.getppid(), start="1")) is False  # the pid now is a process started later
    assert tracking.process_alive({**tracking.process_tags(), tracking.HOST_TAG: "elsewhere"}) is None
    assert tracking.process_alive({}) is None


def test_mark_stale_runs_kills_dead_processes_runs_and_their_untagged_children(store):
    client = mlflow.MlflowClient()
    dead = client.create_run(store, tags=_tags(_dead_pid()))
    point = client.create_run(store, tags={"mlflow.parentRunId": dead.info.run_id})  # a grid point: no process tags
    alive = client.create_run(store, tags=tracking.process_tags())
    other_host = client.create_run(store, tags={**_tags(_dead_pid()), tracking.HOST_TAG: "elsewhere"})
    killed = tracking.mark_stale_runs(store)
    assert sorted(killed) == sorted([dead.info.run_id, point.info.run_id])
    status = {run_id: client.get_run(run_id).info.status for run_id in
              (dead.info.run_id, point.info.run_id, alive.info.run_id, other_host.info.run_id)}
    assert list(status.values()) == ["KILLED", "KILLED", "RUNNING", "RUNNING"]
    assert "ended while the run was RUNNING" in client.get_run(dead.info.run_id).data.tags[tracking.KILLED_TAG]


def test_an_interrupted_method_run_with_the_same_parameters_is_continued(store):
    with mlflow.start_run() as first_parent:
        first = tracking.open_method_run("dense", None, "d1", "/p")
        mlflow.log_metric("dense.val_accuracy", 0.5, step=1)
        mlflow.end_run()  # the method's run (the parent ends with the block)
    client = mlflow.MlflowClient()
    for run_id in (first, first_parent.info.run_id):  # what a SIGKILL leaves: RUNNING, a dead pid
        client.set_terminated(run_id, "RUNNING")
        for key, value in _tags(_dead_pid()).items():
            client.set_tag(run_id, key, value)
    assert sorted(tracking.mark_stale_runs(store)) == sorted([first, first_parent.info.run_id])

    with mlflow.start_run() as second_parent:
        assert tracking.open_method_run("dense", None, "d1", "/p") == first
        tracking.live_metric_logger("dense")(1, {"val_accuracy": 0.9})  # a replayed step: not logged again
        live = tracking.live_metric_logger("dense")
        live(2, {"val_accuracy": 0.6})
        live.wait()
        mlflow.end_run()
    run = client.get_run(first)
    assert run.info.status == "FINISHED" and tracking.KILLED_TAG not in run.data.tags
    assert run.data.tags["mlflow.parentRunId"] == second_parent.info.run_id
    assert [(m.step, m.value) for m in client.get_metric_history(first, "dense.val_accuracy")] == [(1, 0.5), (2, 0.6)]
    assert client.get_run(first_parent.info.run_id).data.tags["supermask.continued_by.dense"] == second_parent.info.run_id

    for digest, project in (("d1", "/p"), ("d2", "/p"), ("d1", "/q")):  # finished; other parameters; other project
        with mlflow.start_run():
            assert tracking.open_method_run("dense", None, digest, project) != first
            mlflow.end_run()
