"""Live per-epoch metrics: written asynchronously, all in the store when training ends, failures raised."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from mlflow.exceptions import MlflowException

from supermask_pipeline.pipelines import tracking


@pytest.fixture
def store(tmp_path: Path):
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("live")
    yield mlflow.MlflowClient()
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(previous)


def _history(client, run_id, key):
    return [(m.step, m.value) for m in client.get_metric_history(run_id, key)]


def test_every_epoch_is_in_the_store_when_the_training_call_ends(store):
    with mlflow.start_run() as run:
        live = tracking.live_metric_logger("dense")
        with tracking.metrics_written(live):
            for epoch in range(1, 6):
                live(epoch, {"train_loss": 1.0 / epoch, "val_accuracy": float("nan"), "epoch_time_s": 3.0})
        assert _history(store, run.info.run_id, "dense.train_loss") == [(e, 1.0 / e) for e in range(1, 6)]
        assert _history(store, run.info.run_id, "dense.val_accuracy") == []  # NaN: not logged
        assert _history(store, run.info.run_id, "dense.epoch_time_s") == []  # not a live metric


def test_metrics_into_a_given_run_are_written_there(store):
    target = store.create_run(mlflow.get_experiment_by_name("live").experiment_id).info.run_id
    live = tracking.live_metric_logger("dense", run_id=target)
    with tracking.metrics_written(live):
        live(1, {"val_accuracy": 0.5})
        live(2, {"val_accuracy": 0.7})
    assert _history(store, target, "dense.val_accuracy") == [(1, 0.5), (2, 0.7)]


def test_a_failed_write_is_raised_after_training(store):
    live = tracking.live_metric_logger("dense", run_id="0" * 32)  # no such run
    with pytest.raises(MlflowException):
        with tracking.metrics_written(live):
            live(1, {"val_accuracy": 0.5})


def test_a_training_error_is_the_one_raised_and_the_metrics_before_it_are_written(store):
    with mlflow.start_run() as run:
        live = tracking.live_metric_logger("dense")
        with pytest.raises(RuntimeError, match="diverged"):
            with tracking.metrics_written(live):
                live(1, {"train_loss": 0.5})
                raise RuntimeError("diverged")
        assert _history(store, run.info.run_id, "dense.train_loss") == [(1, 0.5)]


def test_writes_run_on_the_loggers_own_thread_which_wait_ends(store, monkeypatch):
    """The write leaves the training thread; MLflow's asynchronous queue (whose thread polls
    for a second before it stops, delaying ``end_run``) is not used; ``wait`` ends the thread."""
    import threading

    writers: list[str] = []
    log_batch = mlflow.MlflowClient.log_batch

    def recording(self, *args, **kwargs):
        writers.append(threading.current_thread().name)
        return log_batch(self, *args, **kwargs)

    monkeypatch.setattr(mlflow.MlflowClient, "log_batch", recording)
    before = {t.ident for t in threading.enumerate() if t.name.startswith("MLflowAsyncLogging")}
    with mlflow.start_run() as run:
        live = tracking.live_metric_logger("dense")
        with tracking.metrics_written(live):
            live(1, {"train_loss": 0.5})
            live(2, {"train_loss": 0.25})
        assert _history(store, run.info.run_id, "dense.train_loss") == [(1, 0.5), (2, 0.25)]
        assert len(writers) == 2 and all(name.startswith("live-metrics") for name in writers)
        assert not [t for t in threading.enumerate() if t.name.startswith("live-metrics")]
        live(3, {"train_loss": 0.125})  # a new writer after wait
        live.wait()
        assert _history(store, run.info.run_id, "dense.train_loss")[-1] == (3, 0.125)
    after = {t.ident for t in threading.enumerate() if t.name.startswith("MLflowAsyncLogging")}
    assert after <= before
