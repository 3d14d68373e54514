"""Grid nodes: record one point (its MLflow run and ``point_record.json``), report the grid."""

from __future__ import annotations

import logging
import math
from typing import Any

import mlflow
import pandas as pd
from matplotlib.figure import Figure

from supermask_pipeline.reporting.comparison import (
    plot_accuracy_vs_remaining,
    plot_remaining_per_layer,
    plot_training_curves,
)
from supermask_pipeline.reporting.published import published_results
from supermask_pipeline.reporting.records import failed_points, grid_runs_from_records, point_record
from supermask_pipeline.reporting.summary import summarise, summary_markdown

logger = logging.getLogger(__name__)


def record_point(
    evaluation_summary: dict[str, Any], training_history: pd.DataFrame, point: dict[str, Any], grid_id: str
) -> dict[str, Any]:
    """Complete the point's MLflow run (the active run while its nodes run, see
    ``supermask_pipeline.hooks``) and return its record (:func:`~supermask_pipeline.reporting.records.point_record`).

    Logs ``test_accuracy``, ``test_loss``, ``remaining_weights`` where the evaluate node did
    not, ``epochs``, ``wall_time_s`` (s), ``remaining_weights.<layer>`` (fractions), the curves
    ``epoch.<name>`` (step = epoch, 1-based) and the tags ``grid_id``, ``grid_point``,
    ``method`` and ``point_fingerprint``. The registry skips a point whose record holds the
    fingerprint of the current parameters (unless ``grid.force``).

    Raises:
        ValueError: an empty training history.
    """
    run = mlflow.active_run()
    record = point_record(point, grid_id, None if run is None else run.info.run_id, evaluation_summary,
                          training_history)
    if run is not None:
        mlflow.set_tags({"grid_id": grid_id, "grid_point": point["name"], "method": point["method"],
                         "point_fingerprint": point["fingerprint"]})
        logged = set(mlflow.MlflowClient().get_run(run.info.run_id).data.metrics)
        finals = {key: float(record[key]) for key in ("test_accuracy", "test_loss", "remaining_weights",
                                                       "epochs", "wall_time_s")}
        finals.update({f"remaining_weights.{layer}": value for layer, value in record["per_layer"].items()})
        mlflow.log_metrics({key: value for key, value in finals.items() if key not in logged})
        for name, values in record["curves"].items():
            for epoch, value in enumerate(values, start=1):
                if not math.isnan(value):
                    mlflow.log_metric(f"epoch.{name}", value, step=epoch)
    return record


def report_grid(grid_id: str, *records: dict[str, Any]) -> tuple[pd.DataFrame, str, Figure, Figure, Figure]:
    """Summary of the grid from its points' records: mean ± std over seeds per (architecture,
    method), next to the published numbers, and the comparison plots.

    Records of FAILED points (written by the grid runners) are left out of the figures and
    listed as missing at the end of the Markdown.

    Returns:
        (summary table, the same as GitHub Markdown, accuracy against remaining weights,
        remaining weights per layer, validation accuracy curves).

    Raises:
        ValueError: no record of a finished point.
    """
    runs = grid_runs_from_records(grid_id, records)
    published = published_results()
    summary = summarise(runs.points, published)
    markdown = summary_markdown(summary)
    missing = failed_points(records)
    if missing:
        markdown += f"\n\nMissing (failed) points: {', '.join(missing)}.\n"
        logger.warning("Grid %s: %d point(s) failed and are missing from the summary: %s.", grid_id,
                       len(missing), missing)
    logger.info("Grid %s summary:\n%s", grid_id, markdown)
    return (
        summary,
        markdown,
        plot_accuracy_vs_remaining(runs.points, published),
        plot_remaining_per_layer(runs.per_layer),
        plot_training_curves(runs.curves, metric="val_accuracy"),
    )
