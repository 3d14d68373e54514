"""MLflow glue shared by the training pipelines: run tags and live per-epoch metrics.

kedro-mlflow opens the run before the pipeline starts; these helpers write into it
while a long node is still running. Without an active run they do nothing, so the
library and the tests work without a tracking store.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import mlflow
from mlflow.entities import Metric

LIVE_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "remaining_weights", "learning_rate")


def set_run_tags(tags: dict[str, object]) -> None:
    """Set tags (architecture, dataset, method, seed …) on the active MLflow run, if any."""
    if mlflow.active_run() is not None:
        mlflow.set_tags({key: str(value) for key, value in tags.items()})


def log_effective_parameters(prefix: str, values: dict[str, object]) -> None:
    """Log the values a run actually used (after presets were applied) as ``<prefix>.<key>``
    parameters of the active MLflow run; nothing without an active run.

    Raises:
        mlflow.exceptions.MlflowException: a key already logged to this run with another value.
    """
    if mlflow.active_run() is not None:
        mlflow.log_params({f"{prefix}.{key}": value for key, value in values.items()})


def live_metric_logger(
    prefix: str, names: tuple[str, ...] = LIVE_METRICS, run_id: str | None = None
) -> Callable[[int, dict[str, float]], None]:
    """An ``on_epoch_end`` callback ``(step, row)`` that logs ``<prefix>.<name>`` at ``step``
    for every ``name`` in ``names`` that the row holds (per epoch: the engine's history columns).

    Each (metric, step) is logged at most once per run: steps the active run already holds
    (a resumed run re-reports its restored epochs; a user may also continue one MLflow run
    with ``mlflow_run_id``) are skipped, so resumed curves continue without duplicates.
    ``run_id``: log into that run instead of the active one (batched seeds train several runs at once).
    """
    logged: dict[str, set[int]] = {}
    seen_run: list[str] = []

    def log(epoch: int, row: dict[str, float]) -> None:
        target = run_id
        if target is None:
            run = mlflow.active_run()
            if run is None:
                return
            target = run.info.run_id
        client = mlflow.MlflowClient()
        if seen_run != [target]:  # first call in this run: read the steps it already has
            seen_run[:] = [target]
            logged.clear()
            for name in names:
                key = f"{prefix}.{name}"
                logged[key] = {m.step for m in client.get_metric_history(target, key)}
        metrics = {
            f"{prefix}.{name}": float(row[name])
            for name in names
            if name in row and not math.isnan(float(row[name])) and int(epoch) not in logged[f"{prefix}.{name}"]
        }
        if metrics and run_id is None:
            mlflow.log_metrics(metrics, step=int(epoch))
        elif metrics:  # a given run (batched seeds: one run per seed, none of them active)
            timestamp = int(time.time() * 1000)
            client.log_batch(run_id, metrics=[Metric(key, value, timestamp, int(epoch)) for key, value in metrics.items()])
            for key in metrics:
                logged[key].add(int(epoch))

    return log
