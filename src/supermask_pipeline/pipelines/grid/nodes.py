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
#: Lottery rounds-table columns logged as ``round.<column>`` (step = round).
ROUND_CURVES = ("test_accuracy", "remaining_weights", "val_accuracy")


def _log_point(
    point: dict[str, Any],
    fingerprint: str,
    grid_id: str,
    metrics: dict[str, float],
    curves: pd.DataFrame,
    rounds: pd.DataFrame | None = None,
) -> str | None:
    """Log the point's figures into the active MLflow run (the point's own while a grid
    point's node runs, see ``supermask_pipeline.hooks``); its run id, None without a run."""
    run = mlflow.active_run()
    if run is None:
        return None
    # method: a lottery node tags its runs "lottery"; the grid compares configurations.
    mlflow.set_tags({"grid_id": grid_id, "grid_point": point["name"], "method": point["method"], "point_fingerprint": fingerprint})
    logged = set(mlflow.MlflowClient().get_run(run.info.run_id).data.metrics)  # e.g. the evaluate node's
    mlflow.log_metrics({key: value for key, value in metrics.items() if key not in logged})
    for row in curves.itertuples(index=False):
        values = {f"epoch.{name}": float(getattr(row, name)) for name in CURVES}
        mlflow.log_metrics({k: v for k, v in values.items() if not math.isnan(v)}, step=int(row.epoch))
    for row in (rounds if rounds is not None else pd.DataFrame()).itertuples(index=False):
        values = {f"round.{name}": float(getattr(row, name)) for name in ROUND_CURVES}
        mlflow.log_metrics({k: v for k, v in values.items() if not math.isnan(v)}, step=int(row.round))
    return run.info.run_id


def _record(point: dict[str, Any], fingerprint: str, grid_id: str, run_id: str | None, metrics: dict[str, float]) -> dict[str, Any]:
    keys = ("test_accuracy", "test_loss", "remaining_weights", "epochs", "wall_time_s")
    return {
        "grid_id": grid_id,
        "grid_point": point["name"],
        "fingerprint": fingerprint,
        "run_id": run_id,
        **{key: float(metrics[key]) for key in keys},
    }


def record_point(
    evaluation_summary: dict[str, Any],
    training_history: pd.DataFrame,
    point: dict[str, Any],
    family_parameters: dict[str, Any],
    data_processing: dict[str, Any],
    grid_id: str,
) -> dict[str, Any]:
    """Complete the MLflow run of a dense, signed-supermask or learned-supermask point and
    return the point's record.

    Logs ``epochs``, ``wall_time_s`` (sum of the epochs' training time, s),
    ``remaining_weights.<layer>`` (fractions) and the curves ``epoch.<name>`` for the names of
    :data:`CURVES` (step = epoch, 1-based); ``test_accuracy``, ``test_loss`` and
    ``remaining_weights`` were logged by the point's evaluate node. Sets the tag
    ``point_fingerprint``.

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
    metrics = {
        "test_accuracy": float(evaluation_summary["test_accuracy"]),
        "test_loss": float(evaluation_summary["test_loss"]),
        "remaining_weights": float(evaluation_summary["remaining_weights"]),
        "epochs": int(training_history["epoch"].max()),
        "wall_time_s": float(training_history["epoch_time_s"].sum()),
        **{
            f"remaining_weights.{row['layer']}": float(row["remaining_weights"])
            for row in evaluation_summary["per_layer"]
            if row["layer"] != "total"
        },
    }
    run_id = _log_point(point, fingerprint, grid_id, metrics, training_history)
    return _record(point, fingerprint, grid_id, run_id, metrics)


def record_lottery_point(
    rounds_table: pd.DataFrame,
    round_masks: dict[str, Any],
    training_history: pd.DataFrame,
    point: dict[str, Any],
    family_parameters: dict[str, Any],
    data_processing: dict[str, Any],
    grid_id: str,
) -> dict[str, Any]:
    """Complete the MLflow run of a lottery-ticket point (one configuration) and return its record.

    The point's result is its last round: ``test_accuracy``, ``test_loss``,
    ``remaining_weights`` and ``remaining_weights.<layer>`` (from that round's masks); ``epochs``
    and ``wall_time_s`` add up every round (the cost of the ticket). Curves: ``round.<name>``
    for :data:`ROUND_CURVES` (step = round, 0 = the dense network) and ``epoch.<name>`` of the
    last round.

    Args:
        round_masks: partition ``<configuration>/round_NN`` → layer name → int8 mask (or a
            function loading it, as a PartitionedDataset gives).

    Raises:
        ValueError: an empty rounds table, or no masks of its last round.
    """
    if rounds_table.empty:
        raise ValueError(f"grid point {point['name']}: the lottery rounds table is empty; nothing to record.")
    fingerprint = point_fingerprint(point, method_parameters(point["method"], family_parameters), data_processing)
    last = rounds_table.sort_values("round").iloc[-1]
    key = f"{last['configuration']}/round_{int(last['round']):02d}"
    if key not in round_masks:
        raise ValueError(f"grid point {point['name']}: no masks {key!r} among the round masks {sorted(round_masks)[:4]}….")
    masks = round_masks[key]() if callable(round_masks[key]) else round_masks[key]
    metrics = {
        "test_accuracy": float(last["test_accuracy"]),
        "test_loss": float(last["test_loss"]),
        "remaining_weights": float(last["remaining_weights"]),
        "epochs": int(rounds_table["epochs"].sum()),
        "wall_time_s": float(rounds_table["wall_time_s"].sum()),
        **{f"remaining_weights.{name}": float(mask.count_nonzero()) / mask.numel() for name, mask in masks.items()},
    }
    curves = training_history[training_history["round"] == last["round"]]
    run_id = _log_point(point, fingerprint, grid_id, metrics, curves, rounds_table)
    return _record(point, fingerprint, grid_id, run_id, metrics)


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
