"""grid: every point a namespace over the one method template, then one report for the grid."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from supermask_pipeline.experiment.grid import GridPlan, GridPoint
from supermask_pipeline.pipelines.grid.nodes import record_point, report_grid
from supermask_pipeline.pipelines.method.pipeline import SHARED_INPUTS, create_template, source_inputs


def _point_pipeline(point: GridPoint) -> Pipeline:
    """The template under ``grid.<architecture>.<method>.seed_<seed>`` reading the point's own
    ``model``, ``seed`` and ``recipe``, then the record node."""
    own = f"params:{point.parameters}"
    record = Node(record_point, ["evaluation_summary", "training_history", "params:point", "params:grid.id"],
                  "point_record", name="record", tags=["grid", "reporting"])
    source = f"grid.{point.architecture}.{point.row.source}.seed_{point.seed}"
    return Pipeline(
        create_template(point.row, tag=point.method) + Pipeline([record]),
        namespace=point.namespace,
        inputs={**{name: name for name in SHARED_INPUTS}, **source_inputs(point.row, source)},
        parameters={
            "params:recipe": f"{own}.recipe",
            "params:model": f"{own}.model",
            "params:seed": f"{own}.seed",
            "params:point": own,
            **{name: name for name in ("params:defaults", "params:dataset", "params:evaluation_samples", "params:grid.id")},
        },
    )


def create_pipeline(plan: GridPlan, skip: set[str] | frozenset[str] = frozenset()) -> Pipeline:
    """Every point of ``plan`` not in ``skip`` (point names), and the report over all points.

    Skipped points' records are read from disk (``grid.<…>.point_record``), so the report
    still waits for, and covers, every point of the grid.
    """
    runs = sum((_point_pipeline(p) for p in plan.points if p.name not in skip), Pipeline([]))
    if not plan.points:
        return runs
    report = Node(
        report_grid,
        ["params:grid.id", *(f"{p.namespace}.point_record" for p in plan.points)],
        ["grid.summary_table", "grid.summary_markdown", "grid.accuracy_plot", "grid.remaining_weights_plot",
         "grid.training_curves_plot"],
        name="grid.report",
        tags=["grid", "reporting", "grid_report"],
    )
    return runs + Pipeline([report])
