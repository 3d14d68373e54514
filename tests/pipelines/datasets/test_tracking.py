"""log_split_inputs: the splits as MLflow dataset inputs of the active run."""

from __future__ import annotations

import mlflow
import pytest

from supermask_pipeline.pipelines.datasets_tracking import log_split_inputs

from ...conftest import tiny_split


@pytest.fixture
def store(tmp_path):
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("datasets_tracking")
    yield
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(previous)


def test_nothing_without_an_active_run(store):
    assert mlflow.active_run() is None
    assert log_split_inputs(train=tiny_split(5, 0, "train")) == []


def test_the_three_splits_are_the_runs_dataset_inputs(store):
    splits = {"train": tiny_split(8, 0, "train"), "val": tiny_split(3, 1, "val"), "test": tiny_split(4, 2, "test")}
    with mlflow.start_run() as run:
        assert log_split_inputs(train=splits["train"], val=splits["val"]) == ["mine/train", "mine/val"]
        assert log_split_inputs(test=splits["test"]) == ["mine/test"]
    inputs = mlflow.get_run(run.info.run_id).inputs.dataset_inputs
    found = {i.dataset.name: (i.dataset.digest, i.dataset.source, {t.key: t.value for t in i.tags}) for i in inputs}
    contexts = {"train": "train", "val": "validation", "test": "test"}
    for key, split in splits.items():
        digest, source, tags = found[f"mine/{key}"]
        assert digest == split.attrs["content_sha256"][:32]
        assert "/data/01_raw/mine" in source
        assert tags["mlflow.data.context"] == contexts[key]


def _lost_race() -> "MlflowException":
    from mlflow.exceptions import MlflowException

    return MlflowException('(psycopg2.errors.UniqueViolation) duplicate key value violates unique constraint '
                           '"dataset_pk"\n(Background on this error at: https://sqlalche.me/e/21/gkpj)')


def test_a_lost_race_for_the_dataset_row_is_retried_and_logs_once(store, monkeypatch):
    from supermask_pipeline.pipelines import datasets_tracking

    real, calls = mlflow.log_inputs, []

    def flaky(**kwargs):
        calls.append(kwargs)
        if len(calls) == 1:
            raise _lost_race()
        return real(**kwargs)

    monkeypatch.setattr(datasets_tracking.mlflow, "log_inputs", flaky)
    monkeypatch.setattr(datasets_tracking.time, "sleep", lambda seconds: None)
    with mlflow.start_run() as run:
        assert log_split_inputs(train=tiny_split(8, 0, "train"), val=tiny_split(3, 1, "val")) == ["mine/train", "mine/val"]
    assert len(calls) == 2
    names = sorted(i.dataset.name for i in mlflow.get_run(run.info.run_id).inputs.dataset_inputs)
    assert names == ["mine/train", "mine/val"]


def test_other_store_errors_and_the_last_lost_race_are_raised(store, monkeypatch):
    from mlflow.exceptions import MlflowException

    from supermask_pipeline.pipelines import datasets_tracking

    calls = []

    def refuse(**kwargs):
        calls.append(kwargs)
        raise MlflowException("RESOURCE_DOES_NOT_EXIST: run not found")

    monkeypatch.setattr(datasets_tracking.mlflow, "log_inputs", refuse)
    with mlflow.start_run(), pytest.raises(MlflowException, match="run not found"):
        log_split_inputs(train=tiny_split(8, 0, "train"))
    assert len(calls) == 1

    calls.clear()

    def always_lose(**kwargs):
        calls.append(kwargs)
        raise _lost_race()

    monkeypatch.setattr(datasets_tracking.mlflow, "log_inputs", always_lose)
    monkeypatch.setattr(datasets_tracking.time, "sleep", lambda seconds: None)
    with mlflow.start_run(), pytest.raises(MlflowException, match="UniqueViolation"):
        log_split_inputs(train=tiny_split(8, 0, "train"))
    assert len(calls) == datasets_tracking.LOG_INPUT_ATTEMPTS
