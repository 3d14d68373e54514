"""Project hooks: the session's parameters for the registry, every run's parameters validated
before the first node, each grid point's parameters and its own (nested) MLflow run.

``ProjectParameters`` hands the session's merged parameters (conf/base, conf/local and
``--params``) to the pipeline registry when the context is created, so the grid is expanded
once from what the run really uses; adds every grid point's ``params:grid.points.<architecture>.<method>.seed_<seed>``
(and its keys) to the catalog from the same plan; and, before the first node runs, parses the
parameters of every method the pipeline runs (:func:`~supermask_pipeline.experiment.config.run_config`),
so that a bad parameter stops the run before anything is written.

kedro-mlflow opens one run per ``kedro run`` (the grid's parent run) and re-activates it before
every node. For a node of ``grid.<architecture>.<method>.seed_<seed>`` the opener (called
after kedro-mlflow's hook) activates the point's child run, creating it the first time with
the tags ``grid_id``, ``grid_point``, ``architecture``, ``dataset``, ``method`` and ``seed``;
the node's live metrics, tags, parameters and its outputs' metrics and artifacts (saved
after the node) land there. The closer (called before kedro-mlflow's hook) ends it before the
next node, with the status RUNNING until the point's ``record`` node ran (then FINISHED). A
point whose ``record`` node did not run (a failure) is marked FAILED, so reports, which read
FINISHED runs only, never take a half-run point for a result.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import mlflow
from kedro.framework.hooks import hook_impl
from mlflow.entities import RunStatus

from supermask_pipeline.experiment.config import run_config
from supermask_pipeline.experiment.grid import forget_parameters, plan_grid, remember_parameters
from supermask_pipeline.experiment.methods import METHODS

logger = logging.getLogger(__name__)

_POINT = re.compile(r"^grid\.(?P<architecture>[^.]+)\.(?P<method>.+)\.seed_(?P<seed>\d+)$")


class ProjectParameters:
    """The session's parameters: handed to the registry, validated, grid points added to the catalog."""

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        """Hand the merged parameters to the pipeline registry (read before the catalog exists).

        From the config loader (which merges ``--params``), not ``context.params``: that
        property validates the parameters against the registered pipelines, so it would load
        the registry before it has the parameters.
        """
        remember_parameters(context.config_loader["parameters"])

    @hook_impl
    def after_catalog_created(self, catalog: Any, parameters: dict[str, Any]) -> None:
        """Add ``params:grid.points.<architecture>.<method>.seed_<seed>`` and each of its keys.

        Raises:
            ValueError: a bad ``grid`` block (see :func:`~supermask_pipeline.experiment.grid.plan_grid`).
        """
        # The registry has read the session's parameters by now (Kedro loads the pipelines
        # between creating the context and the catalog); a later registry load outside a
        # session (kedro-viz, a notebook) reads the files instead of a stale copy.
        forget_parameters()
        params = parameters.get("parameters", {})
        if "grid" not in params:
            return
        for point in plan_grid(params).points:
            prefix = f"params:{point.parameters}"
            own = point.own_parameters()
            catalog[prefix] = own
            for key, value in own.items():
                catalog[f"{prefix}.{key}"] = value

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        """Parse the parameters of every method namespace and grid point the pipeline runs.

        Raises:
            ParameterError: a bad parameter (the message names it); nothing has run yet.
        """
        params = catalog.load("parameters")
        namespaces = {node.namespace.split(".")[0] for node in pipeline.nodes if node.namespace}
        shared = (params.get("defaults"), params.get("model", {}), params.get("dataset", "auto"), params.get("seed", 0),
                  params.get("evaluation_samples", 10))
        for name in sorted(namespaces & set(METHODS)):
            defaults, model, dataset, seed, samples = shared
            run_config(name, params.get(name), defaults, model, dataset, seed, samples)
        if "grid" in namespaces and "grid" in params:
            for point in plan_grid(params).points:
                run_config(point.row.name, point.recipe, shared[0], {"architecture": point.architecture},
                           params.get("dataset", "auto"), point.seed, shared[4])


class _GridRuns:
    """State shared by the opener and the closer within one ``kedro run``."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget the previous run's point runs (a new ``kedro run`` in the same process)."""
        self.grid_id: str | None = None
        self.runs: dict[str, str] = {}  # point name → run id
        self.recorded: set[str] = set()  # points whose record node ran
        self.open: str | None = None  # the point whose run this hook activated

    def close(self, failed: bool = False) -> None:
        """End the activated point run: FINISHED once its record node ran, FAILED on an error,
        else RUNNING (it has nodes to come: a report reading MLflow meanwhile must not take
        it for a result)."""
        active = mlflow.active_run()
        if self.open is not None and active is not None and active.info.run_id == self.runs[self.open]:
            status = RunStatus.FAILED if failed else RunStatus.FINISHED if self.open in self.recorded else RunStatus.RUNNING
            mlflow.end_run(RunStatus.to_string(status))
        self.open = None


class GridRunOpener:
    """Activates a grid point's MLflow run for its nodes (runs after kedro-mlflow's hooks)."""

    def __init__(self, state: _GridRuns) -> None:
        self.state = state

    @hook_impl(trylast=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        """Reset the state; for a pipeline with grid nodes read ``grid.id`` and tag the grid's run."""
        self.state.reset()
        if not any(node.name.startswith("grid.") for node in pipeline.nodes):
            return
        self.state.grid_id = str(catalog.load("params:grid.id"))
        if mlflow.active_run() is not None:
            mlflow.set_tag("grid_id", self.state.grid_id)

    @hook_impl(trylast=True)
    def before_node_run(self, node: Any, catalog: Any, inputs: dict[str, Any], is_async: bool) -> None:
        """For a node of a grid point: activate the point's run, creating it (with its tags) the first time."""
        match = _POINT.match(node.namespace or "")
        if match is None or mlflow.active_run() is None or self.state.grid_id is None:
            return
        name = f"{match['architecture']}.{match['method']}.seed_{match['seed']}"
        if name in self.state.runs:
            run = mlflow.start_run(run_id=self.state.runs[name], nested=True)
        else:
            tags = {
                "grid_id": self.state.grid_id,
                "grid_point": name,
                "architecture": match["architecture"],
                "method": match["method"],
                "seed": match["seed"],
                "dataset": str(catalog.load(f"params:grid.points.{name}.dataset")),
            }
            run = mlflow.start_run(run_name=name, nested=True, tags=tags)
            self.state.runs[name] = run.info.run_id
            logger.info("Grid point %s: MLflow run %s.", name, run.info.run_id)
        self.state.open = name
        if node.name.endswith(".record"):
            self.state.recorded.add(name)


class GridRunCloser:
    """Ends the point run before the next node and at the end (runs before kedro-mlflow's hooks)."""

    def __init__(self, state: _GridRuns) -> None:
        self.state = state

    @hook_impl(tryfirst=True)
    def before_node_run(self, node: Any, catalog: Any, inputs: dict[str, Any], is_async: bool) -> None:
        """End the point run the previous node used, before kedro-mlflow re-activates the grid's run."""
        self.state.close()

    @hook_impl(tryfirst=True)
    def after_pipeline_run(self, run_params: dict[str, Any], run_result: Any, pipeline: Any, catalog: Any) -> None:
        """End the last point run; mark points that never reached their record node FAILED."""
        self.state.close()
        self._fail_unrecorded()

    @hook_impl(tryfirst=True)
    def on_pipeline_error(self, error: Exception, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        """End the running point's run as FAILED, and every point not yet recorded too."""
        self.state.close(failed=True)
        self._fail_unrecorded()

    def _fail_unrecorded(self) -> None:
        client = mlflow.MlflowClient()
        for name, run_id in self.state.runs.items():
            if name not in self.state.recorded:  # interrupted before its record node
                client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))


_state = _GridRuns()
PROJECT_HOOKS = (ProjectParameters(), GridRunOpener(_state), GridRunCloser(_state))
