"""Grid nodes: record one point in its MLflow run, and report the whole grid."""

from __future__ import annotations

import logging
import math
from typing import Any

import mlflow
import pandas as pd
from matplotlib.figure import Figure

from supermask_pipeline.pipelines.grid.points import method_parameters, point_fingerprint
from supermask_pipeline.reporting.comparison import (
    plot_accuracy_vs_remaining,
    plot_remaining_per_layer,
    plot_training_curves,
)
from supermask_pipeline.reporting.published import published_results
from supermask_pipeline.reporting.runs import load_grid_runs
from supermask_pipeline.reporting.summary import summarise, summary_markdown

logger = logging.getLogger(__name__)

#: History columns logged as per-epoch curves ``epoch.<column>`` (step = epoch).
CURVES = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "remaining_weights")


def record_point(
    evaluation_summary: dict[str, Any],
    training_history: pd.DataFrame,
    point: dict[str, Any],
    family_parameters: dict[str, Any],
    data_processing: dict[str, Any],
    grid_id: str,
) -> dict[str, Any]:
    """Complete the point's MLflow run (the active run while a grid point's node runs, see
    ``supermask_pipeline.hooks``) and return the point's record.

    Logs ``epochs``, ``wall_time_s`` (sum of the epochs' training time, s),
    ``remaining_weights.<layer>`` (fractions) and the curves ``epoch.<name>`` for the names of
    :data:`CURVES` (step = epoch, 1-based); ``test_accuracy``, ``test_loss`` and
    ``remaining_weights`` are logged by the evaluate node. Sets the tag ``point_fingerprint``.

    Returns:
        ``{grid_id, grid_point, fingerprint, run_id, test_accuracy, test_loss,
        remaining_weights, epochs, wall_time_s}`` (fractions; ``run_id`` None without MLflow).
        Saved as ``point_record.json``: the pipeline registry skips a point whose record holds
        the fingerprint of the current parameters (unless ``grid.force``).

    Raises:
        ValueError: an empty training history.
    """
    if training_history.empty:
        raise ValueError(f"grid point {point['name']}: the training history is empty; nothing to record.")
    fingerprint = point_fingerprint(point, method_parameters(point["method"], family_parameters), data_processing)
    epochs = int(training_history["epoch"].max())
    wall_time_s = float(training_history["epoch_time_s"].sum())
    per_layer = {
        f"remaining_weights.{row['layer']}": float(row["remaining_weights"])
        for row in evaluation_summary["per_layer"]
        if row["layer"] != "total"
    }
    run = mlflow.active_run()
    if run is not None:
        mlflow.set_tags({"grid_id": grid_id, "grid_point": point["name"], "point_fingerprint": fingerprint})
        mlflow.log_metrics({"epochs": epochs, "wall_time_s": wall_time_s, **per_layer})
        for row in training_history.itertuples(index=False):
            values = {f"epoch.{name}": float(getattr(row, name)) for name in CURVES}
            mlflow.log_metrics({k: v for k, v in values.items() if not math.isnan(v)}, step=int(row.epoch))
    return {
        "grid_id": grid_id,
        "grid_point": point["name"],
        "fingerprint": fingerprint,
        "run_id": None if run is None else run.info.run_id,
        "test_accuracy": float(evaluation_summary["test_accuracy"]),
        "test_loss": float(evaluation_summary["test_loss"]),
        "remaining_weights": float(evaluation_summary["remaining_weights"]),
        "epochs": epochs,
        "wall_time_s": wall_time_s,
    }


def report_grid(grid_id: str, *records: dict[str, Any]) -> tuple[pd.DataFrame, str, Figure, Figure, Figure]:
    """Summary of the grid ``grid_id`` from MLflow's records of its point runs: mean ± std over
    seeds per (architecture, method), next to the published numbers, and the comparison plots.

    ``records`` (one per point of this grid, from this run or from disk for skipped points)
    only order this node after the points; the figures come from MLflow, so points recorded
    by earlier runs of the same grid id count too (the newest finished run of each point).

    Returns:
        (summary table, the same as GitHub Markdown, accuracy against remaining weights,
        remaining weights per layer, validation accuracy curves).

    Raises:
        ValueError: no active MLflow run (tracking disabled for this pipeline: the report
            reads MLflow) or no finished point runs of ``grid_id``.
    """
    run = mlflow.active_run()
    if run is None:
        raise ValueError(
            "The grid report reads the point runs back from MLflow, but no MLflow run is active; "
            "do not disable tracking for the grid pipeline (conf/base/mlflow.yml)."
        )
    experiment = mlflow.get_experiment(run.info.experiment_id)
    runs = load_grid_runs(mlflow.get_tracking_uri(), experiment.name, grid_id)
    missing = sorted({r["grid_point"] for r in records} - set(runs.points["grid_point"]))
    if missing:
        logger.warning("Grid %s: no finished MLflow run for %s; they are left out of the summary.", grid_id, missing)
    published = published_results()
    summary = summarise(runs.points, published)
    logger.info("Grid %s summary:\n%s", grid_id, summary_markdown(summary))
    return (
        summary,
        summary_markdown(summary),
        plot_accuracy_vs_remaining(runs.points, published),
        plot_remaining_per_layer(runs.per_layer),
        plot_training_curves(runs.curves, metric="val_accuracy"),
    )
