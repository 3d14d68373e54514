"""Project CLI: Kedro's own ``kedro run`` with the project's :class:`~supermask_pipeline.runners.GridRunner`
as its default runner, so that a grid's points run one by one, each in its own MLflow run, and a
failing point stops nothing else. Every option of ``kedro run`` is unchanged
(``--runner=supermask_pipeline.runners.RayRunner`` for Ray, ``--runner=SequentialRunner`` for Kedro's).
"""

from __future__ import annotations

import copy

import click
from kedro.framework.cli.project import run as kedro_run

DEFAULT_RUNNER = "supermask_pipeline.runners.GridRunner"


@click.group(name="supermask_pipeline")
def cli() -> None:
    """Project commands."""


run = copy.deepcopy(kedro_run)
for _option in run.params:
    if _option.name == "runner":
        _option.default = DEFAULT_RUNNER
        _option.help = f"Runner class (default: {DEFAULT_RUNNER}, a sequential runner that isolates grid points)."
cli.add_command(run, "run")
