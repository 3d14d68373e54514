"""Project hooks: the session's parameters for the registry, every run's parameters validated
before the first node, each grid point's parameters in the catalog, one MLflow run per method.

``ProjectParameters`` hands the session's merged parameters (conf/base, conf/local and
``--params``) to the pipeline registry when the context is created, so the grid is expanded
once from what the run really uses; adds every grid point's ``params:grid.points.<architecture>.<method>.seed_<seed>``
(and its keys) to the catalog from the same plan; and, before the first node runs, parses the
parameters of every method the pipeline runs (:func:`~supermask_pipeline.experiment.config.validate_run`)
and checks that the raw files are there (or fetches them first), so that a bad parameter or a
missing file stops the run before anything is written.

``MethodRuns`` gives every method a ``kedro run`` trains (its namespace: ``dense``,
``signed_supermask`` …) its own MLflow run, nested under the pipeline's run that kedro-mlflow
opens: the method's nodes log their tags, parameters, metrics, artifacts and model there. A
method run whose process died (SIGKILL, power cut) is continued by the rerun with the same
parameters (:mod:`supermask_pipeline.pipelines.tracking`), and every RUNNING run left by a
dead process on this host is marked KILLED when the next ``kedro run`` starts.

The grid's points run under the project's runners (:mod:`supermask_pipeline.runners`), which
give every point its own nested MLflow run and keep a failing point from stopping the others;
the hook refuses a grid run under another runner, and ``MethodRuns`` leaves grid points alone.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
from kedro import KedroDeprecationWarning
from kedro.framework.hooks import hook_impl

#: Library notices every `kedro run` printed before the project's own lines: OmegaConf's rename
#: of register_new_resolver (called by Kedro and kedro-mlflow), Kedro's advice against dots in
#: dataset names (the project's namespaces are dotted by design) and Kedro's deprecation of
#: --pipeline (the spelling this project documents; --pipelines works too). (MLflow's advice on
#: type hints for kedro-mlflow's pyfunc model is shown once per process whatever the filters:
#: MLflow forces "once" around it; conf/logging.yml prints it on one line.)
QUIET_WARNINGS = (
    (r"register_new_resolver\(\) is deprecated", UserWarning),
    (r"One or more dataset names contain '\.'", UserWarning),
    (r"Option '--pipeline' is deprecated", KedroDeprecationWarning),
)


def quiet_library_warnings() -> None:
    """Ignore :data:`QUIET_WARNINGS` (called on import of this module and of the project CLI:
    Kedro may import the settings, and so this module, inside a ``catch_warnings`` block)."""
    for message, category in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)


quiet_library_warnings()  # before the project's imports below, which import Kedro's and MLflow's modules

from supermask_pipeline.experiment.config import ParameterError, RunConfig, parameter_digest, validate_run  # noqa: E402
from supermask_pipeline.experiment.grid import forget_parameters, plan_grid, remember_parameters  # noqa: E402
from supermask_pipeline.experiment.methods import METHODS  # noqa: E402
from supermask_pipeline.pipelines import tracking  # noqa: E402
from supermask_pipeline.runners import POINT_NAMESPACE, SESSION  # noqa: E402

logger = logging.getLogger(__name__)


class RunnerError(ValueError):
    """A pipeline that needs the project's runner was started with another one."""


def method_namespaces(nodes: Iterable[Any]) -> set[str]:
    """The methods (:data:`~supermask_pipeline.experiment.methods.METHODS`) whose namespace has
    nodes among ``nodes``; grid points (``grid.…``) are not methods."""
    return {node.namespace for node in nodes if node.namespace in METHODS}


def check_raw_files(catalog: Any) -> None:
    """Stop before the first node if the raw files of ``raw_images`` are missing and cannot be
    downloaded; download them now if they are missing and can be, so that a failed download
    leaves nothing behind (not the initial weights of a node that ran before it, not an empty
    raw folder).

    Delegates the presence check to
    :func:`~supermask_pipeline.images.sources.check_raw_available` (presence only, nothing
    read or written); a ``raw_images`` entry of another type is not checked.

    Raises:
        RawDataNotFoundError: files missing and not downloadable, or the download failed (the
            message lists the files, the folder and the fix), wrapped by Kedro in a DatasetError
            when the download itself failed.
    """
    from supermask_pipeline.datasets import RawImageDataset
    from supermask_pipeline.images.sources import check_raw_available, missing_raw_files

    dataset = catalog.get("raw_images")
    if not isinstance(dataset, RawImageDataset):
        return
    described = dataset._describe()  # root, source, download: the dataset's own arguments
    root, source, download = Path(described["root"]), described["source"], described["download"]
    check_raw_available(source, root, download)
    if not missing_raw_files(source, root):
        return
    created = [folder for folder in (root, *root.parents) if not folder.exists()]
    try:
        catalog.load("raw_images")  # the download, with its checksums, before any node writes
    except Exception:
        for folder in created:  # the folders the failed attempt made, if it left them empty
            if folder.is_dir() and not any(folder.iterdir()):
                shutil.rmtree(folder, ignore_errors=True)
        raise


class ProjectParameters:
    """The session's parameters: handed to the registry, validated, grid points added to the catalog."""

    def __init__(self) -> None:
        #: method name → its parsed configuration, of the pipeline that runs now.
        self.configs: dict[str, RunConfig] = {}
        #: method name → :func:`~supermask_pipeline.experiment.config.parameter_digest`.
        self.digests: dict[str, str] = {}

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
        """Before anything runs (and before kedro-mlflow opens its run): refuse grid points under
        a runner that does not isolate them, parse the parameters of every method namespace the
        pipeline runs, and, if it processes the raw files, check (or fetch) them. (A grid point's
        bad parameter fails that point alone, when it runs: its MLflow run and record say so, the
        other points run.)

        Raises:
            ParameterError: a bad parameter (the message names it); nothing has run yet.
            RunnerError: grid points and a runner other than GridRunner or RayRunner.
            RawDataNotFoundError: see :func:`check_raw_files`.
        """
        runner = str(run_params.get("runner", ""))
        has_points = any(node.namespace and POINT_NAMESPACE.match(node.namespace) for node in pipeline.nodes)
        if has_points and "GridRunner" not in runner and "RayRunner" not in runner:
            raise RunnerError(
                f"The grid's points need the project's runner (one MLflow run per point, a failing point stops "
                f"nothing else), not {runner}: run `kedro run --pipeline=grid` (its default) or pass "
                "--runner=supermask_pipeline.runners.GridRunner or --runner=supermask_pipeline.runners.RayRunner."
            )
        params = catalog.load("parameters")
        names = {node.namespace.split(".")[0] for node in pipeline.nodes if node.namespace} & set(METHODS)
        self.configs = validate_run(params, names)
        self.digests = {name: parameter_digest(params, name) for name in self.configs}
        if any("raw_images" in node.inputs for node in pipeline.nodes):
            check_raw_files(catalog)


@dataclass
class _MethodRun:
    """A method's MLflow run in this session: its id and the nodes of it still to run."""

    run_id: str
    remaining: set[str]
    outputs_left: int = 0


@dataclass(eq=False)  # hashable: pluggy keeps plugins in a set
class MethodRuns:
    """One MLflow run per method namespace, nested under kedro-mlflow's pipeline run.

    A method's run is opened (or an interrupted one continued) before its first node and made
    the active run while each of its nodes runs and its outputs are saved (kedro-mlflow's
    artifact and metric datasets log to the active run); it ends FINISHED after the method's
    last node of this pipeline, FAILED if a node of it raises. Between its nodes it stays
    RUNNING without being active, so the nodes of another method (the default pipeline runs
    dense and signed supermask) log to their own run.
    """

    parameters: ProjectParameters
    runs: dict[str, _MethodRun] = field(default_factory=dict)
    pending: dict[str, set[str]] = field(default_factory=dict)
    parent_id: str | None = None
    active: str | None = None

    @hook_impl(trylast=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        """After kedro-mlflow opened the pipeline's run: tag it with this process (so a later run
        can tell it died), mark the runs of dead processes KILLED, note each method's nodes."""
        self.runs, self.active = {}, None
        self.pending = {}
        for name in method_namespaces(pipeline.nodes):
            self.pending[name] = {node.name for node in pipeline.nodes if node.namespace == name}
        parent = mlflow.active_run()
        self.parent_id = None if parent is None else parent.info.run_id
        if parent is None:
            return
        configs = self.parameters.configs
        shared = {}
        if configs:
            shared = {"methods": ",".join(sorted(configs))}
            for key, values in (("architecture", {c.model.architecture for c in configs.values()}),
                                ("dataset", {c.model.dataset for c in configs.values()}),
                                ("seed", {str(c.seed) for c in configs.values()})):
                if len(values) == 1:
                    shared[key] = values.pop()
        mlflow.set_tags({**tracking.process_tags(), **shared})
        tracking.mark_stale_runs(parent.info.experiment_id, exclude={parent.info.run_id})
        _OPEN.append(self)

    @hook_impl(tryfirst=True)
    def before_node_run(self, node: Any, catalog: Any, inputs: dict[str, Any]) -> None:
        """Leave the run of a node whose outputs were not all saved (defensive; see after_dataset_saved)."""
        if self.active is not None:
            self._pause(self.active)

    def open_for_node(self, node: Any, catalog: Any, inputs: dict[str, Any]) -> None:
        """Make the node's method run active (opening or continuing it first) and log the node's
        parameters to it, as kedro-mlflow logs them to the pipeline's run."""
        name = node.namespace
        if name not in self.pending or self.parent_id is None or mlflow.active_run() is None:
            return
        if name not in self.runs:
            run_id = tracking.open_method_run(name, self.parameters.configs.get(name),
                                              self.parameters.digests.get(name, ""), SESSION.get("project_path", ""))
            self.runs[name] = _MethodRun(run_id, set(self.pending[name]))
        else:
            mlflow.start_run(run_id=self.runs[name].run_id, nested=True)
        self.active = name
        self.runs[name].outputs_left = len(node.outputs)
        tracking.log_node_parameters(inputs)
        self.runs[name].remaining.discard(node.name)
        if not node.outputs:
            self._pause(name)

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node: Any) -> None:
        """After the last output of a method's node is saved (artifacts and metrics went to its
        run), leave its run: FINISHED after the method's last node, else still RUNNING."""
        if self.active is None or node.namespace != self.active:
            return
        run = self.runs[self.active]
        run.outputs_left -= 1
        if run.outputs_left <= 0:
            self._pause(self.active)

    @hook_impl
    def on_node_error(self, error: Exception, node: Any) -> None:
        """A method's node raised: its run ends FAILED with the error as its tag ``error``."""
        name = node.namespace
        if name in self.runs:
            self._end(name, "FAILED", f"{type(error).__name__}: {error}")

    @hook_impl(tryfirst=True)
    def on_pipeline_error(self, error: Exception) -> None:
        """The run stopped: every method run still open ends FAILED (before kedro-mlflow ends the pipeline's)."""
        for name in list(self.runs):
            self._end(name, "FAILED", f"the kedro run stopped: {type(error).__name__}: {error}")
        self._done()

    @hook_impl(tryfirst=True)
    def after_pipeline_run(self) -> None:
        """Every method run ended (a method whose nodes all ran is FINISHED already)."""
        for name in list(self.runs):
            self._end(name, "FINISHED")
        self._done()

    def _pause(self, name: str) -> None:
        run = self.runs[name]
        active = mlflow.active_run()
        if active is not None and active.info.run_id == run.run_id:
            mlflow.end_run("FINISHED" if not run.remaining else "RUNNING")
        self.active = None
        if not run.remaining:
            del self.runs[name]

    def _end(self, name: str, status: str, error: str | None = None) -> None:
        run = self.runs.pop(name)
        client = mlflow.MlflowClient()
        if error is not None:
            client.set_tag(run.run_id, "error", error[-4900:])
        active = mlflow.active_run()
        if active is not None and active.info.run_id == run.run_id:
            mlflow.end_run(status)
        else:
            client.set_terminated(run.run_id, status)
        if self.active == name:
            self.active = None

    def _done(self) -> None:
        if self in _OPEN:
            _OPEN.remove(self)

    def abort(self) -> None:
        """The interpreter exits inside a pipeline run (Ctrl+C): every run of it ends KILLED,
        not FINISHED as MLflow's own exit handler would end the active one."""
        for name in list(self.runs):
            self._end(name, "KILLED", "the process stopped (KeyboardInterrupt or exit) while the run was RUNNING")
        while mlflow.active_run() is not None:
            mlflow.end_run("KILLED")
        self._done()


#: Method-run hooks inside a pipeline run (at most one per process): ended KILLED at exit.
_OPEN: list[MethodRuns] = []


@atexit.register  # registered after MLflow's (imported above), so it runs before MLflow's own
def _abort_open_runs() -> None:
    for hooks in list(_OPEN):
        try:
            hooks.abort()
        except Exception:  # noqa: BLE001 - the store may be gone at exit; the next run's sweep marks them
            pass


class _MethodRunsNodeHook:
    """``before_node_run`` of :class:`MethodRuns` after every other hook (kedro-mlflow reopens
    the pipeline's run in its own), so the method's run is pushed on top of it."""

    def __init__(self, method_runs: MethodRuns) -> None:
        self.method_runs = method_runs

    @hook_impl(trylast=True)
    def before_node_run(self, node: Any, catalog: Any, inputs: dict[str, Any]) -> None:
        self.method_runs.open_for_node(node, catalog, inputs)


_PARAMETERS = ProjectParameters()
_METHOD_RUNS = MethodRuns(_PARAMETERS)
PROJECT_HOOKS = (_PARAMETERS, _METHOD_RUNS, _MethodRunsNodeHook(_METHOD_RUNS))
__all__ = ["PROJECT_HOOKS", "MethodRuns", "ParameterError", "ProjectParameters", "RunnerError",
           "check_raw_files", "method_namespaces"]
