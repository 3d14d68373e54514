"""Project pipelines: each named pipeline a user runs is complete (data → … → MLflow)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from kedro.framework.project import settings
from kedro.pipeline import Pipeline
from kedro.utils import find_kedro_project

from supermask_pipeline.pipelines.data_processing.pipeline import create_pipeline as data_processing
from supermask_pipeline.pipelines.grid.pipeline import create_pipeline as grid
from supermask_pipeline.pipelines.grid.points import (
    GridPoint,
    family_parameters_name,
    grid_points,
    method_parameters,
    point_fingerprint,
)
from supermask_pipeline.pipelines.lottery.pipeline import create_pipeline as lottery
from supermask_pipeline.pipelines.mask_criteria.pipeline import create_pipeline as mask_criteria
from supermask_pipeline.pipelines.supermask.pipeline import create_fine_tune_pipeline as supermask_fine_tune
from supermask_pipeline.pipelines.supermask.pipeline import create_pipeline as supermask
from supermask_pipeline.pipelines.training.pipeline import create_method_pipeline

METHOD_NAMESPACES = ("dense", "signed_supermask")

logger = logging.getLogger(__name__)


def _project_root() -> Path | None:
    """The Kedro project the working directory is in (``kedro run`` works from any subfolder)."""
    root = find_kedro_project(Path.cwd())
    return None if root is None else Path(root)


def _project_parameters(root: Path) -> dict[str, Any] | None:
    """The project's parameters as its files give them (conf/base, then conf/local); None
    without a conf folder."""
    conf = root / settings.CONF_SOURCE
    if not conf.is_dir():
        return None
    loader = settings.CONFIG_LOADER_CLASS(conf_source=str(conf), **settings.CONFIG_LOADER_ARGS)
    return loader["parameters"]


def finished_points(points: list[GridPoint], block: dict[str, Any], parameters: dict[str, Any], root: Path) -> set[str]:
    """Names of the points whose ``point_record.json`` (under ``root``) holds the fingerprint
    of their current parameters: they ran to the end with these parameters."""
    finished = set()
    for point in points:
        path = root / "data/08_reporting" / point.folder / "point_record.json"  # catalog_grid.yml
        if not path.is_file():
            continue
        family = parameters[family_parameters_name(point.method)]
        own = block[point.architecture][point.method][f"seed_{point.seed}"]
        expected = point_fingerprint(own, method_parameters(point.method, family), parameters["data_processing"])
        try:
            recorded = json.loads(path.read_text()).get("fingerprint")
        except (OSError, ValueError):
            continue
        if recorded == expected:
            finished.add(point.name)
    return finished


def grid_pipeline() -> Pipeline:
    """The points of ``grid`` in the parameter files of the project around the working
    directory, without the finished ones (unless ``grid.force``), and the report; empty
    outside a project.

    The registry cannot see ``--params``: the grid's lists belong in the parameter files.
    """
    root = _project_root()
    parameters = None if root is None else _project_parameters(root)
    if parameters is None or "grid" not in parameters:
        logger.warning("No Kedro project with a grid block (parameters_grid.yml) around %s: the grid pipeline is empty.", Path.cwd())
        return Pipeline([])
    points, block = grid_points(parameters)
    skip = set() if parameters["grid"].get("force") else finished_points(points, block, parameters, root)
    if skip:
        logger.info("Grid %s: skipping %d finished point(s): %s.", parameters["grid"]["id"], len(skip), sorted(skip))
    return grid(points, skip)


def register_pipelines() -> dict[str, Pipeline]:
    """``data_processing``, ``init_weights``, one pipeline per method, ``mask_criteria`` (on the
    dense run), ``lottery`` (iterative pruning), ``supermask`` (learned supermask of
    ``supermask.strategy``), ``supermask_fine_tune`` (the same, then fine-tuning under its mask)
    ``grid`` (every point of ``grid`` in parameters_grid.yml, and the comparison report),
    ``reporting`` (that report alone)
    and ``__default__`` (data, dense and signed supermask)."""
    data = data_processing()
    methods = {name: create_method_pipeline(name) for name in METHOD_NAMESPACES}
    pipelines: dict[str, Pipeline] = {"data_processing": data}
    lottery_pipeline = lottery()
    supermask_pipeline = supermask()
    pipelines["init_weights"] = sum(
        (p.only_nodes_with_tags("init_weights") for p in [*methods.values(), lottery_pipeline, supermask_pipeline]),
        Pipeline([]),
    )
    for name, method in methods.items():
        pipelines[name] = data + method
    pipelines["mask_criteria"] = data + methods["dense"] + mask_criteria("dense")
    pipelines["lottery"] = data + lottery_pipeline
    pipelines["supermask"] = data + supermask_pipeline
    pipelines["supermask_fine_tune"] = data + supermask_pipeline + supermask_fine_tune()
    grid_points_pipeline = grid_pipeline()
    pipelines["grid"] = data + grid_points_pipeline
    # The grid's report alone (from MLflow and the points' records on disk), e.g. after a
    # change in the reporting code: the same as --pipeline=grid --nodes=grid.report.
    pipelines["reporting"] = grid_points_pipeline.only_nodes_with_tags("grid_report")
    pipelines["__default__"] = data + sum(methods.values(), Pipeline([]))
    return pipelines
