"""Kedro runners of the experiment grid: every grid point on its own, a failing point stops nothing else.

``GridRunner`` (the project CLI's default, ``kedro run``) runs any pipeline as Kedro's
``SequentialRunner`` does, except the points of a grid (the namespaces
``grid.<architecture>.<method>.seed_<seed>``): it runs the shared nodes first (data
processing), then every point as one unit in its own MLflow run, nested under the grid's run,
then the nodes after the points (the report). ``RayRunner`` does the same with one Ray task per
point (``kedro run --pipeline=grid --runner=supermask_pipeline.runners.RayRunner``), on the
cluster of ``grid.ray.address`` or ``RAY_ADDRESS``, or on a local cluster bound to 127.0.0.1
when neither is set.

A point that fails (after the retries of ``grid.retries``; under Ray also after its worker
died ``grid.ray.max_retries`` times) ends as a FAILED MLflow run with the error as its tag
``error`` and in ``point_record.json`` (``status: FAILED``); every other point finishes, the
report runs and lists the point as missing, and the run ends with :class:`GridPointsFailedError`
naming the failed points (``kedro run`` exits non-zero). A retried point resumes from its
checkpoints: the training engine continues from the newest one of the same inputs.

Grid parameters read here (``parameters_grid.yml``):

- ``resources.num_cpus`` (torch threads of a point, and its Ray CPUs; null: this process's
  threads under ``GridRunner``, 1 under Ray), ``resources.num_gpus`` (Ray GPUs of a point,
  fractional allowed, e.g. 0.25 for four FCN points on one GPU; the point trains on the GPU Ray
  assigns it with ``training.device: auto``);
- ``retries`` (a point's exceptions are retried this many times, both runners);
- ``ray.address`` (null: ``RAY_ADDRESS``, else a local cluster), ``ray.max_retries`` (worker
  deaths retried by Ray).
"""

from __future__ import annotations

import logging
import os
import re
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from kedro.pipeline import Pipeline
from kedro.pipeline.node import Node
from kedro.runner import SequentialRunner
from mlflow.entities import RunStatus

logger = logging.getLogger(__name__)

#: A grid point's namespace: ``grid.<architecture>.<method>.seed_<seed>``.
POINT_NAMESPACE = re.compile(r"^grid\.(?P<architecture>[^.]+)\.(?P<method>.+)\.seed_(?P<seed>\d+)$")
#: Set by the project hook when a session's context is created: what a Ray worker needs to
#: open the same session (project path, Kedro environment, runtime parameters).
SESSION: dict[str, Any] = {}


class GridPointsFailedError(RuntimeError):
    """Grid points failed after their retries; every other point finished and the report ran.

    Attributes:
        failed: point name (``fcn.dense.seed_0``) → the error of its last attempt.
    """

    def __init__(self, failed: Mapping[str, str]) -> None:
        self.failed = dict(failed)
        lines = "\n".join(f"  {name}: {error_summary(error)}" for name, error in self.failed.items())
        super().__init__(
            f"{len(self.failed)} grid point(s) failed; the other points finished and the report marks these "
            f"missing (their MLflow runs are FAILED with the error):\n{lines}"
        )


@dataclass(frozen=True)
class GridSettings:
    """How the points run (``grid.resources``, ``grid.retries``, ``grid.ray``).

    Raises:
        ValueError: a negative or non-numeric value (names the parameter).
    """

    num_cpus: float | None = None
    num_gpus: float = 0.0
    retries: int = 0
    ray_address: str | None = None
    ray_max_retries: int = 3
    batch_seeds: bool = False

    @classmethod
    def from_params(cls, grid: Mapping[str, Any]) -> GridSettings:
        """From the ``grid`` parameter block."""
        resources = grid.get("resources") or {}
        ray_block = grid.get("ray") or {}

        def number(value: Any, name: str, integer: bool = False, optional: bool = False) -> Any:
            kind = int if integer else (int, float)
            if value is None and optional:
                return None
            if isinstance(value, bool) or not isinstance(value, kind) or value < 0:
                raise ValueError(f"{name} must be a {'whole ' if integer else ''}number ≥ 0, got {value!r}.")
            return value

        return cls(
            num_cpus=number(resources.get("num_cpus"), "grid.resources.num_cpus", optional=True),
            num_gpus=float(number(resources.get("num_gpus", 0), "grid.resources.num_gpus")),
            retries=number(grid.get("retries", 0), "grid.retries", integer=True),
            ray_address=ray_block.get("address"),
            ray_max_retries=number(ray_block.get("max_retries", 3), "grid.ray.max_retries", integer=True),
            batch_seeds=_flag(grid.get("batch_seeds", False), "grid.batch_seeds"),
        )


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}.")
    return value


def seed_groups(points: Mapping[str, list[Node]]) -> list[list[str]]:
    """Point namespaces that differ only in their seed, for ``grid.batch_seeds``: groups of two or
    more points of a ``training`` method (one engine run each; not lottery or fine-tune points),
    in grid order."""
    from supermask_pipeline.experiment.methods import METHODS

    groups: dict[tuple[str, str], list[str]] = {}
    for namespace in points:
        match = POINT_NAMESPACE.match(namespace)
        method = METHODS.get(match["method"]) if match else None
        if method is not None and method.kind == "training":
            groups.setdefault((match["architecture"], match["method"]), []).append(namespace)
    return [group for group in groups.values() if len(group) > 1]


def execute_seed_group(
    points: Mapping[str, list[Node]], catalog: Any, runs: Mapping[str, str], num_threads: float | None = None
) -> dict[str, str]:
    """Run points that differ only in their seed with one batched training (``grid.batch_seeds``).

    Each point's nodes before ``train`` run in its MLflow run; the train nodes run together
    (:func:`~supermask_pipeline.pipelines.method.nodes.train_batched`: one batched engine run,
    each seed's metrics in its own run); each point's outputs are saved, and its nodes after
    ``train`` run, in its own run.

    Returns:
        Point namespace → error, for points whose nodes after training failed.

    Raises:
        Exception: the nodes before training or the batched training failed (the caller then
            runs the points one by one).
    """
    import torch

    from supermask_pipeline.pipelines.datasets_tracking import log_split_inputs
    from supermask_pipeline.pipelines.method.nodes import train_batched

    threads = torch.get_num_threads()
    if num_threads:
        torch.set_num_threads(max(1, int(num_threads)))
    try:
        train_nodes = {ns: next(n for n in nodes if n.name == f"{ns}.train") for ns, nodes in points.items()}
        later = {}
        for namespace, nodes in points.items():
            before = Pipeline(nodes).to_nodes(train_nodes[namespace].name).nodes
            execute_point([n for n in before if n is not train_nodes[namespace]], catalog, runs.get(namespace))
            later[namespace] = [n for n in nodes if n not in before]
        calls = [([catalog.load(name) for name in node.inputs], dict(node.func.keywords))
                 for node in train_nodes.values()]
        results = train_batched(calls, [runs.get(ns) for ns in points])
        for (namespace, node), outputs in zip(train_nodes.items(), results):
            run_id = runs.get(namespace)
            if run_id is not None:
                mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None)
            try:
                log_split_inputs(train=calls[0][0][2], val=calls[0][0][3])  # the run's Dataset column
                for name, data in zip(node.outputs, outputs):
                    catalog.save(name, data)
            finally:
                if run_id is not None:
                    mlflow.end_run()
    finally:
        torch.set_num_threads(threads)
    failed = {}
    for namespace, nodes in later.items():
        nodes = [n for n in nodes if n is not train_nodes[namespace]]
        try:
            execute_point(nodes, catalog, runs.get(namespace), num_threads)
        except Exception:  # noqa: BLE001 - recorded like any point's failure
            failed[namespace] = traceback.format_exc()
    return failed


def split_grid(pipeline: Pipeline) -> tuple[Pipeline, dict[str, list[Node]], Pipeline]:
    """(the nodes before the points, point namespace → its nodes, the nodes after the points)."""
    points: dict[str, list[Node]] = {}
    for node in pipeline.nodes:
        if node.namespace and POINT_NAMESPACE.match(node.namespace):
            points.setdefault(node.namespace, []).append(node)
    point_nodes = {node for nodes in points.values() for node in nodes}
    if not point_nodes:
        return pipeline, {}, Pipeline([])
    downstream = {node for node in pipeline.from_nodes(*(n.name for n in point_nodes)).nodes} - point_nodes
    before = Pipeline([n for n in pipeline.nodes if n not in point_nodes and n not in downstream])
    return before, points, Pipeline(sorted(downstream, key=lambda n: n.name))


def _point_name(namespace: str) -> str:
    return namespace.removeprefix("grid.")


#: An exception's own line in a formatted traceback: ``package.module.SomeError: message``.
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Failure|Warning)\b.*")


def error_summary(error: str) -> str:
    """One line of a point's error for the report, the point record and GridPointsFailedError.

    The last exception line of the formatted traceback (``RestException: INTERNAL_ERROR: …``)
    with its first message line, not the text's last line: a multi-line message (SQLAlchemy's
    ends with ``(Background on this error at: …)``) would else hide what went wrong.
    """
    lines = [line.rstrip() for line in error.strip().splitlines() if line.strip()]
    if not lines:
        return error
    for line in reversed(lines):
        if _EXCEPTION_LINE.match(line):
            return line
    return lines[-1]


def execute_point(nodes: list[Node], catalog: Any, run_id: str | None, num_threads: float | None = None) -> None:
    """Run one point's nodes in dependency order inside its MLflow run (``run_id``; resumed,
    nested under the active run if there is one), loading and saving through ``catalog``.

    Args:
        nodes: the point's nodes (any order).
        catalog: the session's catalog (the point's datasets and parameters).
        run_id: the point's MLflow run, or None without tracking.
        num_threads: torch threads while the point runs (None: unchanged); restored after.

    Raises:
        Exception: whatever a node raises; the run then ends FAILED.
    """
    import torch

    threads = torch.get_num_threads()
    if num_threads:
        torch.set_num_threads(max(1, int(num_threads)))
    if run_id is not None:
        mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None)
    status = RunStatus.FAILED
    try:
        for node in Pipeline(nodes).nodes:
            outputs = node.run({name: catalog.load(name) for name in node.inputs})
            for name, data in outputs.items():
                catalog.save(name, data)
        status = RunStatus.FINISHED
    finally:
        if run_id is not None:
            mlflow.end_run(RunStatus.to_string(status))
        torch.set_num_threads(threads)


#: A worker's Kedro context, catalog and grid nodes per driver session: Ray reuses worker
#: processes, so a worker opens the session once and runs its later points in it.
_WORKER_SESSIONS: dict[str, tuple[Any, dict[str, Node]]] = {}


def _worker_session(session: Mapping[str, Any]) -> tuple[Any, dict[str, Node]]:
    """(catalog, grid node name → node) of the driver's session, opened once in this process."""
    import json

    from kedro.framework.project import pipelines
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    key = json.dumps(dict(session), sort_keys=True, default=str)  # includes the driver's Kedro run id
    if key not in _WORKER_SESSIONS:
        project_path = Path(session["project_path"])
        os.chdir(project_path)
        bootstrap_project(project_path)
        with KedroSession.create(project_path=project_path, env=session.get("env"),
                                 runtime_params=session.get("runtime_params")) as kedro_session:
            context = kedro_session.load_context()
            nodes = {node.name: node for node in pipelines["grid"].nodes}  # before the catalog: see hooks
            _WORKER_SESSIONS.clear()
            _WORKER_SESSIONS[key] = (context._get_catalog(), nodes)
    return _WORKER_SESSIONS[key]


def execute_point_in_session(
    session: Mapping[str, Any], namespace: str, node_names: list[str], run_id: str | None, tracking_uri: str,
    num_threads: float | None,
) -> str:
    """A Ray task: open the driver's Kedro session in this worker (same project, environment and
    runtime parameters; once per worker process), then :func:`execute_point`. Returns the point's name.

    Raises:
        RuntimeError: this worker's grid lacks the point's nodes (it sees another project or conf).
        Exception: whatever the point's nodes raise.
    """
    catalog, grid_nodes = _worker_session(session)
    missing = sorted(set(node_names) - set(grid_nodes))
    if missing:
        raise RuntimeError(f"Grid point {namespace}: this worker's grid has no nodes {missing}; "
                           "it must see the driver's project, conf and parameters.")
    os.chdir(session["project_path"])
    mlflow.set_tracking_uri(tracking_uri)
    execute_point([grid_nodes[name] for name in node_names], catalog, run_id, num_threads)
    return _point_name(namespace)


class GridRunner(SequentialRunner):
    """``SequentialRunner`` that runs every grid point on its own (see the module docstring).

    Raises (from ``run``):
        GridPointsFailedError: points failed after their retries (every other point finished,
            the report ran).
        ValueError: a bad ``grid.resources`` / ``retries`` / ``ray`` value.
    """

    #: Kedro's id of the run in progress: a Ray worker opens the driver's session once per run.
    _kedro_run_id: str | None = None

    def _run(self, pipeline: Pipeline, catalog: Any, hook_manager: Any = None, run_id: str | None = None) -> None:
        self._kedro_run_id = run_id
        before, points, after = split_grid(pipeline)
        if any(node.name.startswith("grid.") for node in pipeline.nodes) and mlflow.active_run() is not None:
            mlflow.set_tag("grid_id", str(catalog.load("params:grid.id")))  # also when every point is skipped
        if not points:
            super()._run(pipeline, catalog, hook_manager, run_id)
            return
        if before.nodes:
            super()._run(before, catalog, hook_manager, run_id)
        grid = catalog.load("params:grid")
        settings = GridSettings.from_params(grid)
        runs = self._create_point_runs(points, catalog, str(grid.get("id", "grid")))
        try:
            failed = self._run_points(points, catalog, runs, settings)
        except BaseException:  # Ctrl+C, a lost cluster: no point run may stay RUNNING
            client = mlflow.MlflowClient()
            for run_id in runs.values():
                if client.get_run(run_id).info.status == "RUNNING":
                    client.set_terminated(run_id, RunStatus.to_string(RunStatus.KILLED))
            raise
        for namespace, error in failed.items():
            self._record_failure(namespace, error, catalog, runs.get(namespace), str(grid.get("id", "grid")))
        if after.nodes:
            super()._run(after, catalog, hook_manager, run_id)
        if failed:
            raise GridPointsFailedError({_point_name(ns): error for ns, error in failed.items()})

    def _create_point_runs(self, points: Mapping[str, list[Node]], catalog: Any, grid_id: str) -> dict[str, str]:
        """One MLflow run per point, nested under the active (grid) run and tagged, created here
        before any point starts; {} without an active run (tracking off)."""
        parent = mlflow.active_run()
        if parent is None:
            return {}
        client = mlflow.MlflowClient()
        runs = {}
        for namespace in points:
            name = _point_name(namespace)
            own = catalog.load(f"params:grid.points.{name}")
            tags = {
                "mlflow.parentRunId": parent.info.run_id, "mlflow.runName": name, "grid_id": grid_id,
                "grid_point": name, "architecture": own["architecture"], "method": own["method"],
                "seed": str(own["seed"]), "dataset": own["dataset"],
            }
            run = client.create_run(parent.info.experiment_id, tags=tags, run_name=name)
            runs[namespace] = run.info.run_id
            logger.info("Grid point %s: MLflow run %s.", name, run.info.run_id)
        return runs

    def _run_points(
        self, points: Mapping[str, list[Node]], catalog: Any, runs: Mapping[str, str], settings: GridSettings
    ) -> dict[str, str]:
        """Run every point here, one after the other; point namespace → error of the failed ones.
        With ``grid.batch_seeds``, points that differ only in their seed train together first
        (:func:`execute_seed_group`); a group whose batched training fails runs point by point."""
        failed: dict[str, str] = {}
        done: set[str] = set()
        if settings.batch_seeds:
            for group in seed_groups(points):
                logger.info("Grid points %s: one batched training of %d seeds.",
                            ", ".join(_point_name(ns) for ns in group), len(group))
                try:
                    failed.update(execute_seed_group({ns: points[ns] for ns in group}, catalog, runs, settings.num_cpus))
                    done.update(group)
                except Exception:  # noqa: BLE001 - the points then run one by one
                    logger.error("Batched training of %s failed; running its points one by one:\n%s",
                                 ", ".join(_point_name(ns) for ns in group), traceback.format_exc())
        for index, (namespace, nodes) in enumerate(points.items(), start=1):
            if namespace in done:
                continue
            logger.info("Grid point %d of %d: %s.", index, len(points), _point_name(namespace))
            for attempt in range(settings.retries + 1):
                try:
                    execute_point(nodes, catalog, runs.get(namespace), settings.num_cpus)
                    failed.pop(namespace, None)
                    break
                except Exception:  # noqa: BLE001 - a point's failure is recorded, the grid goes on
                    failed[namespace] = traceback.format_exc()
                    logger.error("Grid point %s failed (attempt %d of %d):\n%s", _point_name(namespace),
                                 attempt + 1, settings.retries + 1, failed[namespace])
        return failed

    @staticmethod
    def _record_failure(namespace: str, error: str, catalog: Any, run_id: str | None, grid_id: str) -> None:
        """Mark the point's run FAILED with its error and save a FAILED ``point_record``."""
        name = _point_name(namespace)
        if run_id is not None:
            client = mlflow.MlflowClient()
            client.set_tag(run_id, "error", error[-4900:])
            client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
        own = catalog.load(f"params:grid.points.{name}")
        catalog.save(f"{namespace}.point_record", {
            "grid_id": grid_id, "grid_point": name, "status": "FAILED", "fingerprint": None, "run_id": run_id,
            **{key: own[key] for key in ("architecture", "dataset", "method", "seed")},
            "error": error_summary(error),
        })


class RayRunner(GridRunner):
    """:class:`GridRunner` with one Ray task per grid point (``ray`` is the ``distributed`` extra)."""

    def _run_points(
        self, points: Mapping[str, list[Node]], catalog: Any, runs: Mapping[str, str], settings: GridSettings
    ) -> dict[str, str]:
        if settings.batch_seeds:
            logger.warning("grid.batch_seeds applies to the sequential GridRunner; under Ray every point is its own task.")
        address = settings.ray_address or os.environ.get("RAY_ADDRESS") or None
        if address is None or address.split(":")[0] in ("127.0.0.1", "localhost"):
            # One machine: Ray's own switch for single-machine clusters makes it bind to and
            # connect over the loopback address (it otherwise resolves 127.0.0.1 to the host's
            # address, and its GCS listens on every interface). Read when ray is first imported.
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        try:
            import ray
        except ImportError as err:
            raise ImportError('RayRunner needs Ray: pip install -e ".[distributed]"') from err
        if not SESSION:
            raise RuntimeError("RayRunner runs inside a Kedro session of this project (kedro run …).")
        started = not ray.is_initialized()
        if started:
            env_vars = {"KEDRO_DISABLE_TELEMETRY": os.environ.get("KEDRO_DISABLE_TELEMETRY", "true"),
                        "MPLBACKEND": "Agg"}
            if address:
                ray.init(address=address, runtime_env={"env_vars": env_vars}, log_to_driver=True)
            else:  # a local cluster, on this machine only
                ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, runtime_env={"env_vars": env_vars})
        try:
            return self._submit(ray, points, runs, settings, {**SESSION, "run": self._kedro_run_id})
        finally:
            if started:
                ray.shutdown()  # ours: a local cluster ends with the run, a remote one is only disconnected

    @staticmethod
    def _submit(
        ray: Any, points: Mapping[str, list[Node]], runs: Mapping[str, str], settings: GridSettings,
        session: Mapping[str, Any],
    ) -> dict[str, str]:
        """One task per point, then wait for all; point namespace → error of the failed ones."""
        cpus = settings.num_cpus or 1
        task = ray.remote(execute_point_in_session)
        options = {"num_cpus": cpus, "num_gpus": settings.num_gpus, "max_retries": settings.ray_max_retries,
                   "retry_exceptions": settings.retries > 0}
        tracking_uri = mlflow.get_tracking_uri()
        refs = {}
        for namespace, nodes in points.items():
            names = [node.name for node in nodes]
            refs[namespace] = task.options(name=f"grid point {_point_name(namespace)}", **options).remote(
                dict(session), namespace, names, runs.get(namespace), tracking_uri, cpus)
        failed = {}
        for namespace, ref in refs.items():
            try:
                ray.get(ref)
                logger.info("Grid point %s finished.", _point_name(namespace))
            except Exception as err:  # noqa: BLE001 - RayTaskError, WorkerCrashedError …: recorded
                cause = getattr(err, "cause", None) or err
                failed[namespace] = "".join(traceback.format_exception_only(type(cause), cause))
                logger.error("Grid point %s failed: %s", _point_name(namespace), failed[namespace])
        return failed
