"""Project pipelines: each named pipeline a user runs is complete (data → … → MLflow).

One pipeline per row of :data:`~supermask_pipeline.experiment.methods.METHODS` (its
namespace over the one method template, after the data processing and, for a fine-tuning
method, its source), plus ``data_processing``, ``init_weights``, ``mask_criteria`` (on the
dense run), ``grid``, ``reporting`` (the grid's report alone) and ``__default__`` (the
methods marked ``default``: dense and signed supermask).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kedro.framework.project import settings
from kedro.pipeline import Pipeline
from kedro.utils import find_kedro_project

from supermask_pipeline.experiment.grid import GridPlan, session_parameters, session_plan
from supermask_pipeline.experiment.methods import METHODS, Method
from supermask_pipeline.pipelines.data_processing.pipeline import create_pipeline as data_processing
from supermask_pipeline.pipelines.grid.pipeline import create_pipeline as grid
from supermask_pipeline.pipelines.mask_criteria.pipeline import create_pipeline as mask_criteria
from supermask_pipeline.pipelines.method.pipeline import create_pipeline as method_pipeline

logger = logging.getLogger(__name__)


def _project_root() -> Path | None:
    """The Kedro project the working directory is in (``kedro run`` works from any subfolder)."""
    root = find_kedro_project(Path.cwd())
    return None if root is None else Path(root)


def _parameters(root: Path | None) -> Mapping[str, Any] | None:
    """The session's merged parameters (with ``--params``), handed over by the project hook when
    the context is created; outside a session (``kedro registry``, kedro-viz before its
    session) the project's files (conf/base, then conf/local); None without a project."""
    parameters = session_parameters()
    if parameters is not None:
        return parameters
    conf = None if root is None else root / settings.CONF_SOURCE
    if conf is None or not conf.is_dir():
        return None
    loader = settings.CONFIG_LOADER_CLASS(conf_source=str(conf), **settings.CONFIG_LOADER_ARGS)
    return loader["parameters"]


def finished_points(plan: GridPlan, root: Path) -> set[str]:
    """Names of the points whose ``point_record.json`` (under ``root``) holds the fingerprint of
    their current parameters: they ran to the end with these parameters."""
    finished = set()
    for point in plan.points:
        path = root / "data/08_reporting" / point.folder / "point_record.json"  # catalog_grid.yml
        try:
            recorded = json.loads(path.read_text()).get("fingerprint") if path.is_file() else None
        except (OSError, ValueError):
            continue
        if recorded == point.fingerprint:
            finished.add(point.name)
    return finished


def grid_pipeline() -> Pipeline:
    """The points of the session's ``grid`` block without the finished ones (unless
    ``grid.force``), and the report; empty outside a project or without a grid block."""
    root = _project_root()
    parameters = _parameters(root)
    if parameters is None or "grid" not in parameters:
        logger.warning("No Kedro project with a grid block (parameters_grid.yml) around %s: the grid pipeline is empty.", Path.cwd())
        return Pipeline([])
    plan = session_plan(parameters)
    skip = set() if plan.force or root is None else finished_points(plan, root)
    if skip:
        logger.info("Grid %s: skipping %d finished point(s): %s.", plan.grid_id, len(skip), sorted(skip))
    return grid(plan, skip)


def _with_sources(method: Method) -> Pipeline:
    """The method's namespace after its source's (a fine-tuning method), recursively."""
    own = method_pipeline(method)
    return own if method.source is None else _with_sources(METHODS[method.source]) + own


def register_pipelines() -> dict[str, Pipeline]:
    """Every method's pipeline (data processing included), ``data_processing``, ``init_weights``,
    ``mask_criteria``, ``grid``, ``reporting`` and ``__default__``."""
    data = data_processing()
    methods = {name: _with_sources(row) for name, row in METHODS.items()}
    pipelines: dict[str, Pipeline] = {"data_processing": data}
    pipelines["init_weights"] = sum(
        (method_pipeline(row).only_nodes_with_tags("init_weights") for row in METHODS.values() if row.kind != "fine_tune"),
        Pipeline([]),
    )
    pipelines.update({name: data + pipeline for name, pipeline in methods.items()})
    pipelines["mask_criteria"] = data + methods["dense"] + mask_criteria("dense")
    grid_points = grid_pipeline()
    pipelines["grid"] = data + grid_points
    # The grid's report alone (from the points' records on disk), e.g. after a change in the
    # reporting code: the same as --pipeline=grid --nodes=grid.report.
    pipelines["reporting"] = grid_points.only_nodes_with_tags("grid_report")
    pipelines["__default__"] = data + sum(
        (methods[name] for name, row in METHODS.items() if row.default), Pipeline([])
    )
    return pipelines
