"""MLflow glue shared by the training pipelines: run tags and live per-epoch metrics.

kedro-mlflow opens the run before the pipeline starts; these helpers write into it
while a long node is still running. Without an active run they do nothing, so the
library and the tests work without a tracking store.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import mlflow

LIVE_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "remaining_weights", "learning_rate")


def set_run_tags(tags: dict[str, object]) -> None:
    """Set tags (architecture, dataset, method, seed …) on the active MLflow run, if any."""
    if mlflow.active_run() is not None:
        mlflow.set_tags({key: str(value) for key, value in tags.items()})


def live_metric_logger(prefix: str) -> Callable[[int, dict[str, float]], None]:
    """An ``on_epoch_end`` callback that logs ``<prefix>.<metric>`` at ``step=epoch``."""

    def log(epoch: int, row: dict[str, float]) -> None:
        if mlflow.active_run() is None:
            return
        metrics = {
            f"{prefix}.{name}": float(row[name])
            for name in LIVE_METRICS
            if name in row and not math.isnan(float(row[name]))
        }
        mlflow.log_metrics(metrics, step=int(epoch))

    return log
