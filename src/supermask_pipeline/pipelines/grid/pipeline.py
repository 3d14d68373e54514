"""grid: each point a namespace over its method's template, then one report for the grid."""

from __future__ import annotations

from collections.abc import Iterable

from kedro.pipeline import Node, Pipeline

from supermask_pipeline.pipelines.grid.nodes import record_lottery_point, record_point, report_grid
from supermask_pipeline.pipelines.grid.points import GridPoint, family_parameters_name
from supermask_pipeline.pipelines.lottery.pipeline import create_template as lottery_template
from supermask_pipeline.pipelines.supermask.pipeline import create_template as supermask_template
from supermask_pipeline.pipelines.training.pipeline import create_pipeline as training_template

SHARED_INPUTS = {"train_split", "val_split", "test_split"}


def _point_pipeline(point: GridPoint) -> Pipeline:
    """The point's template under ``grid.<architecture>.<method>.seed_<seed>``, reading its own
    ``model`` and ``seed`` and its method's shared parameters, then the record node."""
    own = {
        "params:model": f"params:{point.parameters}.model",
        "params:seed": f"params:{point.parameters}.seed",
        "params:dataset": "params:dataset",
    }
    family = f"params:{family_parameters_name(point.method)}"
    if point.family == "training":
        keys = ("init", "method", "data", "training", "presets")
        parameters = {**own, **{f"params:{key}": f"{family}.{key}" for key in keys}}
        template, results = training_template(), ["evaluation_summary", "training_history"]
    elif point.family == "lottery":
        keys = ("init", "activation", "data", "training", "presets")
        parameters = {
            **own,
            "params:pruning": f"params:{point.parameters}.pruning",
            **{f"params:{key}": f"{family}.{key}" for key in keys},
        }
        template, results = lottery_template(), ["rounds_table", "round_masks", "training_history"]
    else:
        parameters = {
            **own,
            "params:strategy": f"params:{point.parameters}.method",
            "params:recipes": "params:supermask.recipes",
            "params:evaluation_samples": "params:supermask.evaluation_samples",
        }
        template, results = supermask_template(), ["evaluation_summary", "training_history"]
    record = Node(
        func=record_lottery_point if point.family == "lottery" else record_point,
        inputs=[*results, f"params:{point.parameters}", family, "params:data_processing", "params:grid.id"],
        outputs="point_record",
        name="record",
        tags=["grid", "reporting"],
    )
    # The record node joins the template before namespacing, so its datasets are the point's.
    free = {name for name in record.inputs if name.startswith("params:")}
    return Pipeline(
        template + Pipeline([record]),
        namespace=point.namespace,
        inputs=SHARED_INPUTS,
        parameters={**parameters, **{name: name for name in free}},
    )


def create_pipeline(points: Iterable[GridPoint], skip: Iterable[str] = ()) -> Pipeline:
    """Every point not in ``skip`` (point names), and the report over all points.

    Skipped points' records are read from disk (``grid.<…>.point_record``), so the report
    still waits for, and covers, every point of the grid.
    """
    points = list(points)
    skip = set(skip)
    runs = sum((_point_pipeline(p) for p in points if p.name not in skip), Pipeline([]))
    if not points:
        return runs
    report = Node(
        func=report_grid,
        inputs=["params:grid.id", *(f"{p.namespace}.point_record" for p in points)],
        outputs=[
            "grid.summary_table",
            "grid.summary_markdown",
            "grid.accuracy_plot",
            "grid.remaining_weights_plot",
            "grid.training_curves_plot",
        ],
        name="grid.report",
        tags=["grid", "reporting", "grid_report"],
    )
    return runs + Pipeline([report])
