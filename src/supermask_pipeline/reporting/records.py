"""A grid's points from their records (``point_record.json``), in the frames of
:class:`~supermask_pipeline.reporting.runs.GridRuns` (no Kedro, no MLflow query).

The grid's report is built from the records its points wrote, so it needs no tracking
server and shows exactly the points of this grid's parameters; MLflow stays the place to
browse the same figures (:func:`~supermask_pipeline.reporting.runs.load_grid_runs` reads
them back from there, e.g. in the notebook).

A record (:func:`point_record`) holds ``grid_id``, ``grid_point``, ``status`` (FINISHED, or
FAILED with ``error`` for a point that failed), ``fingerprint``,
``run_id`` (None without MLflow), ``architecture``, ``dataset``, ``method``, ``seed`` (int),
the final figures ``test_accuracy``, ``test_loss``, ``remaining_weights`` (fractions, nats),
``epochs``, ``wall_time_s`` (s), ``per_layer`` (layer → remaining fraction) and ``curves``
(metric → list of per-epoch values, epoch 1 first).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from supermask_pipeline.reporting.runs import (
    CURVE_COLUMNS,
    PER_LAYER_COLUMNS,
    POINT_COLUMNS,
    GridRuns,
    layer_sort_key,
    sort_key,
)

#: History columns kept as per-epoch curves in a record.
CURVES = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "remaining_weights")
FINAL = ("test_accuracy", "test_loss", "remaining_weights", "epochs", "wall_time_s")


def ticket_history(history: pd.DataFrame) -> pd.DataFrame:
    """The epochs of the network a run ends with: all of ``history``, or for a lottery history
    (columns ``configuration`` and ``round``) the last round of its first configuration, the
    ticket the template evaluates."""
    if "round" not in history.columns or history.empty:
        return history
    first = history[history["configuration"] == history["configuration"].iloc[0]]
    return first[first["round"] == first["round"].max()]


def point_record(
    point: Mapping[str, Any], grid_id: str, run_id: str | None, summary: Mapping[str, Any], history: pd.DataFrame
) -> dict[str, Any]:
    """The record of one finished point.

    Args:
        point: the point's own parameters (``name``, ``architecture``, ``dataset``, ``method``,
            ``seed``, ``fingerprint``).
        grid_id: the grid.
        run_id: the point's MLflow run, or None.
        summary: the evaluation summary (``test_accuracy``, ``test_loss``, ``remaining_weights``,
            ``per_layer`` rows with ``layer`` and ``remaining_weights``).
        history: the training history; with a ``round`` column (a lottery ticket) the curves
            are those of the last round and ``epochs``/``wall_time_s`` add up every round.

    Raises:
        ValueError: an empty history.
    """
    if history.empty:
        raise ValueError(f"grid point {point['name']}: the training history is empty; nothing to record.")
    last = ticket_history(history)
    return {
        "grid_id": grid_id,
        "grid_point": point["name"],
        "status": "FINISHED",
        "fingerprint": point["fingerprint"],
        "run_id": run_id,
        **{key: point[key] for key in ("architecture", "dataset", "method", "seed")},
        "test_accuracy": float(summary["test_accuracy"]),
        "test_loss": float(summary["test_loss"]),
        "remaining_weights": float(summary["remaining_weights"]),
        "epochs": int(len(history)),
        "wall_time_s": float(history["epoch_time_s"].sum()),
        "per_layer": {row["layer"]: float(row["remaining_weights"]) for row in summary["per_layer"]
                      if row["layer"] != "total"},
        "curves": {name: [float(v) for v in last[name]] for name in CURVES if name in last},
    }


def failed_points(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """The names of the points whose record says ``status: FAILED`` (the grid runners write one
    for a point that failed after its retries)."""
    return sorted(r["grid_point"] for r in records if r.get("status") == "FAILED")


def grid_runs_from_records(grid_id: str, records: Iterable[Mapping[str, Any]]) -> GridRuns:
    """The points, per-layer figures and curves of ``records`` (one per point); FAILED points'
    records are left out (see :func:`failed_points`).

    Raises:
        ValueError: no record of a finished point.
    """
    records = [r for r in records if r.get("status") != "FAILED"]
    if not records:
        raise ValueError(f"Grid {grid_id!r} has no point records: nothing to report.")
    points, layers, curves = [], [], []
    for record in records:
        ident = {key: record[key] for key in ("grid_point", "architecture", "method")} | {"seed": int(record["seed"])}
        points.append({"grid_id": grid_id, **ident, "run_id": record.get("run_id"), "dataset": record["dataset"],
                       **{key: record[key] for key in FINAL}})
        layers.extend({**ident, "layer": layer, "remaining_weights": value}
                      for layer, value in record["per_layer"].items())
        curves.extend({**ident, "metric": metric, "epoch": epoch, "value": value}
                      for metric, values in record["curves"].items() for epoch, value in enumerate(values, start=1))
    frame = pd.DataFrame(points, columns=list(POINT_COLUMNS))
    per_layer = pd.DataFrame(layers, columns=list(PER_LAYER_COLUMNS))
    curve_frame = pd.DataFrame(curves, columns=list(CURVE_COLUMNS)).astype({"epoch": "int64", "value": "float64"})
    order = ["architecture", "method", "seed"]
    return GridRuns(
        grid_id=grid_id,
        points=frame.sort_values(order, key=sort_key, ignore_index=True),
        per_layer=per_layer.sort_values([*order, "layer"], ignore_index=True,
                                        key=lambda c: layer_sort_key(c) if c.name == "layer" else sort_key(c)),
        curves=curve_frame.sort_values([*order, "metric", "epoch"], key=sort_key, ignore_index=True),
    )
