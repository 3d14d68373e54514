"""Project hooks: the session's parameters for the registry, every run's parameters validated
before the first node, each grid point's parameters in the catalog.

``ProjectParameters`` hands the session's merged parameters (conf/base, conf/local and
``--params``) to the pipeline registry when the context is created, so the grid is expanded
once from what the run really uses; adds every grid point's ``params:grid.points.<architecture>.<method>.seed_<seed>``
(and its keys) to the catalog from the same plan; and, before the first node runs, parses the
parameters of every method the pipeline runs (:func:`~supermask_pipeline.experiment.config.run_config`),
so that a bad parameter stops the run before anything is written.

The grid's points run under the project's runners (:mod:`supermask_pipeline.runners`), which
give every point its own nested MLflow run and keep a failing point from stopping the others;
the hook refuses a grid run under another runner.
"""

from __future__ import annotations

import logging
from typing import Any

from kedro.framework.hooks import hook_impl

from supermask_pipeline.experiment.config import run_config
from supermask_pipeline.experiment.grid import forget_parameters, plan_grid, remember_parameters
from supermask_pipeline.experiment.methods import METHODS
from supermask_pipeline.runners import POINT_NAMESPACE, SESSION

logger = logging.getLogger(__name__)


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
        SESSION.clear()
        SESSION.update(project_path=str(context.project_path), env=context.env,
                       runtime_params=dict(context._runtime_params or {}))

    @hook_impl
    def after_catalog_created(self, catalog: Any, parameters: dict[str, Any]) -> None:
        """Add ``params:grid.points.<architecture>.<method>.seed_<seed>`` and each of its keys.

        Raises:
            ValueError: a bad ``grid`` block (see :func:`~supermask_pipeline.experiment.grid.plan_grid`).
        """
        # The registry has read the session's parameters by now (Kedro loads the pipelines
        # between creating the context and the catalog); a later registry load outside a
        # session (kedro-viz, a notebook) reads the files instead of a stale copy.
        plan = forget_parameters()
        params = parameters.get("parameters", {})
        if "grid" not in params:
            return
        for point in (plan or plan_grid(params)).points:
            prefix = f"params:{point.parameters}"
            own = point.own_parameters()
            catalog[prefix] = own
            for key, value in own.items():
                catalog[f"{prefix}.{key}"] = value

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        """Parse the parameters of every method namespace the pipeline runs; refuse grid points
        under a runner that does not isolate them. (A grid point's bad parameter fails that point
        alone, when it runs: its MLflow run and record say so, the other points run.)

        Raises:
            ParameterError: a bad parameter (the message names it); nothing has run yet.
            ValueError: grid points and a runner other than GridRunner or RayRunner.
        """
        runner = str(run_params.get("runner", ""))
        has_points = any(node.namespace and POINT_NAMESPACE.match(node.namespace) for node in pipeline.nodes)
        if has_points and "GridRunner" not in runner and "RayRunner" not in runner:
            raise ValueError(
                f"The grid's points need the project's runner (one MLflow run per point, a failing point stops "
                f"nothing else), not {runner}: run `kedro run --pipeline=grid` (its default) or pass "
                "--runner=supermask_pipeline.runners.GridRunner or --runner=supermask_pipeline.runners.RayRunner."
            )
        params = catalog.load("parameters")
        namespaces = {node.namespace.split(".")[0] for node in pipeline.nodes if node.namespace}
        for name in sorted(namespaces & set(METHODS)):
            run_config(name, params.get(name), params.get("defaults"), params.get("model", {}),
                       params.get("dataset", "auto"), params.get("seed", 0), params.get("evaluation_samples", 10))


PROJECT_HOOKS = (ProjectParameters(),)
