"""Grid points that start at once on one server log the same splits: every run gets its dataset
inputs, and the experiment keeps one dataset row per split (the CI failure of a 4-point Ray grid:
two workers inserted the same dataset row, and one point failed with PostgreSQL's UniqueViolation)."""

from __future__ import annotations

import threading

import mlflow
import pytest

from supermask_pipeline.pipelines import datasets_tracking
from supermask_pipeline.pipelines.datasets_tracking import log_split_inputs

from ..conftest import tiny_split
from .conftest import TrackingStore, psycopg2_dsn

pytestmark = pytest.mark.slow

POINTS = 8


def _log_at_once(store: TrackingStore) -> tuple[list[str], list[BaseException]]:
    """POINTS threads, each with a run of its own, log the same two splits after one barrier."""
    train, val = tiny_split(16, 0, "train", "raced"), tiny_split(4, 1, "val", "raced")
    mlflow.set_tracking_uri(store.tracking_uri)
    barrier, run_ids, errors = threading.Barrier(POINTS), [], []

    def point() -> None:
        try:
            with mlflow.start_run(experiment_id=store.experiment_id) as run:
                run_ids.append(run.info.run_id)
                barrier.wait(timeout=60)
                log_split_inputs(train=train, val=val)
        except BaseException as error:  # noqa: BLE001 - reported by the test
            errors.append(error)

    threads = [threading.Thread(target=point) for _ in range(POINTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return run_ids, errors


def test_points_logging_the_same_splits_at_once_all_get_them(tracking_store: TrackingStore):
    import psycopg2

    run_ids, errors = _log_at_once(tracking_store)
    assert errors == []
    assert len(run_ids) == POINTS
    client = mlflow.MlflowClient(tracking_uri=tracking_store.tracking_uri)
    for run_id in run_ids:
        assert sorted(i.dataset.name for i in client.get_run(run_id).inputs.dataset_inputs) == ["raced/train", "raced/val"]
    with psycopg2.connect(psycopg2_dsn(tracking_store.backend_store_uri)) as connection, connection.cursor() as cur:
        cur.execute("SELECT name, count(*) FROM datasets WHERE experiment_id = %s GROUP BY name ORDER BY name",
                    (int(tracking_store.experiment_id),))
        assert cur.fetchall() == [("raced/train", 1), ("raced/val", 1)]


def test_without_the_retry_the_race_is_lost(tracking_store: TrackingStore, monkeypatch: pytest.MonkeyPatch):
    """The race is real on this server: with one attempt, some of the points fail on the unique key
    (which is why the retry exists; should the server ever serialise these inserts, this fails and
    the retry can go)."""
    monkeypatch.setattr(datasets_tracking, "LOG_INPUT_ATTEMPTS", 1)
    lost = 0
    for _ in range(10):  # the losing interleaving needs two inserts within one transaction's time
        store = TrackingStore(**{**tracking_store.__dict__,
                                 "experiment_id": mlflow.MlflowClient(tracking_store.tracking_uri).create_experiment(
                                     f"{tracking_store.experiment_name}-{_}")})
        _, errors = _log_at_once(store)
        assert all("unique" in str(error).lower() or "duplicate" in str(error).lower() for error in errors)
        lost += len(errors)
        if lost:
            break
    assert lost > 0
