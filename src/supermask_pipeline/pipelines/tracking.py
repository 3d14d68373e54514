"""MLflow glue shared by the training pipelines: run tags, live per-epoch metrics, one run per
method and runs whose process died.

kedro-mlflow opens the pipeline's run before the pipeline starts; the project hook
(:class:`~supermask_pipeline.hooks.MethodRuns`) opens a nested run per method
(:func:`open_method_run`) and makes it the active run while the method's nodes run; these
helpers write into the active run while a long node is still running. Without an active run
they do nothing, so the library and the tests work without a tracking store.

Every run the project opens is tagged with its process (:func:`process_tags`: host, pid and
the pid's start time), so that the next ``kedro run`` on the same host can tell a RUNNING run
whose process is gone (SIGKILL, power cut) and mark it KILLED (:func:`mark_stale_runs`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric

logger = logging.getLogger(__name__)

#: Tags naming the process that runs an MLflow run.
HOST_TAG, PID_TAG, PID_START_TAG = "supermask.host", "supermask.pid", "supermask.pid_start"
#: Set on a run found RUNNING after its process died: what happened, and who noticed.
KILLED_TAG = "supermask.killed"
#: On a method run: sha256 of the parameters it was started with (continued only with the same).
DIGEST_TAG = "supermask.parameter_digest"
#: Longest parameter value MLflow takes; longer values become tags (as kedro-mlflow's strategy ``tag``).
MAX_PARAM_LENGTH = 6000

LIVE_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "remaining_weights", "learning_rate")


def set_run_tags(tags: dict[str, object]) -> None:
    """Set tags (architecture, dataset, method, seed …) on the active MLflow run, if any."""
    if mlflow.active_run() is not None:
        mlflow.set_tags({key: str(value) for key, value in tags.items()})


def log_effective_parameters(prefix: str, values: dict[str, object]) -> None:
    """Log the values a run actually used (after presets were applied) as ``<prefix>.<key>``
    parameters of the active MLflow run; nothing without an active run.

    Raises:
        mlflow.exceptions.MlflowException: a key already logged to this run with another value.
    """
    if mlflow.active_run() is not None:
        mlflow.log_params({f"{prefix}.{key}": value for key, value in values.items()})


class LiveMetricLogger:
    """An ``on_epoch_end`` callback ``(step, row)`` that logs ``<prefix>.<name>`` at ``step``
    for every ``name`` in ``names`` that the row holds (per epoch: the engine's history columns).

    Each (metric, step) is logged at most once per run: steps the active run already holds
    (a resumed run re-reports its restored epochs; a user may also continue one MLflow run
    with ``mlflow_run_id``) are skipped, so resumed curves continue without duplicates.
    ``run_id``: log into that run instead of the active one (batched seeds train several runs at once).

    The metrics are written on a background thread of the logger's own (one worker, a
    synchronous ``MlflowClient.log_batch``): the store's write (an SQLite commit, 6 ms an epoch
    here; an HTTP request to a tracking server) overlaps the next epoch. At most one epoch's write
    is in flight: the next call waits for it, and :meth:`wait` (called by the train nodes when
    training ends, also when it fails) for the last, then ends the thread. (MLflow's own
    ``synchronous=False`` logging is not used: its queue thread polls with a 1 s timeout, so the
    run's ``end_run`` waited up to a second for it to stop.)

    Raises:
        mlflow.exceptions.MlflowException: (from a call or :meth:`wait`) the previous write failed.
    """

    def __init__(self, prefix: str, names: tuple[str, ...] = LIVE_METRICS, run_id: str | None = None) -> None:
        self.prefix, self.names, self.run_id = prefix, names, run_id
        self._logged: dict[str, set[int]] = {}
        self._seen_run: str | None = None
        self._pending: Future | None = None  # the write in flight
        self._writer: ThreadPoolExecutor | None = None

    def __call__(self, epoch: int, row: dict[str, float]) -> None:
        self._finish_pending()
        target = self.run_id
        if target is None:
            run = mlflow.active_run()
            if run is None:
                return
            target = run.info.run_id
        client = mlflow.MlflowClient()
        if self._seen_run != target:  # first call in this run: read the steps it already has
            self._seen_run = target
            self._logged = {
                f"{self.prefix}.{name}": {m.step for m in client.get_metric_history(target, f"{self.prefix}.{name}")}
                for name in self.names
            }
        metrics = {
            f"{self.prefix}.{name}": float(row[name])
            for name in self.names
            if name in row and not math.isnan(float(row[name]))
            and int(epoch) not in self._logged[f"{self.prefix}.{name}"]
        }
        if not metrics:
            return
        timestamp = int(time.time() * 1000)
        batch = [Metric(key, value, timestamp, int(epoch)) for key, value in metrics.items()]
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="live-metrics")
        self._pending = self._writer.submit(client.log_batch, target, metrics=batch)
        for key in metrics:
            self._logged[key].add(int(epoch))

    def _finish_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def wait(self) -> None:
        """Wait until the metrics logged so far are in the store, and end the writer thread
        (a later call starts a new one).

        Raises:
            mlflow.exceptions.MlflowException: the write failed.
        """
        try:
            self._finish_pending()
        finally:
            writer, self._writer = self._writer, None
            if writer is not None:
                writer.shutdown(wait=True)


def live_metric_logger(
    prefix: str, names: tuple[str, ...] = LIVE_METRICS, run_id: str | None = None
) -> LiveMetricLogger:
    """A :class:`LiveMetricLogger` of ``<prefix>.<name>`` for ``names`` (into ``run_id``, or the active run)."""
    return LiveMetricLogger(prefix, names, run_id)


@contextlib.contextmanager
def metrics_written(*loggers: LiveMetricLogger | None) -> Iterator[None]:
    """Around a training call: afterwards every metric the ``loggers`` logged is in the store.

    Raises:
        mlflow.exceptions.MlflowException: a write failed (while another error propagates,
            that error is raised and the failed write only logged).
    """
    try:
        yield
    except BaseException:
        for live in loggers:
            try:
                if live is not None:
                    live.wait()
            except Exception as err:  # noqa: BLE001 - the training error is the one to show
                logger.warning("Live metrics of %s were not all written: %s", live.prefix, err)
        raise
    for live in loggers:
        if live is not None:
            live.wait()


def _pid_start(pid: int) -> str:
    """The start time of process ``pid`` (clock ticks since boot, /proc/<pid>/stat field 22), or
    "" where /proc cannot tell: tells a reused pid from the process that tagged a run."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def process_tags() -> dict[str, str]:
    """This process as run tags: host name, pid and the pid's start time."""
    pid = os.getpid()
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(pid), PID_START_TAG: _pid_start(pid)}


def process_alive(tags: Mapping[str, str]) -> bool | None:
    """Whether the process named by a run's :func:`process_tags` still runs: None where this
    host cannot tell (no tags, another host), False where the pid is gone or now belongs to a
    process started later."""
    host, pid = tags.get(HOST_TAG), tags.get(PID_TAG, "")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    if int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but another user's
        pass
    started = tags.get(PID_START_TAG, "")
    return not started or _pid_start(int(pid)) in ("", started)


def mark_stale_runs(experiment_id: str, exclude: set[str] = frozenset()) -> list[str]:
    """Mark KILLED every RUNNING run of the experiment whose process (on this host) is gone, and
    the RUNNING runs nested under those that carry no process tags (grid points, created by their
    grid's process). Runs of other hosts and of live processes are left alone.

    Returns:
        the ids of the runs marked KILLED.
    """
    client = mlflow.MlflowClient()
    running = [run for run in client.search_runs([experiment_id], "attributes.status = 'RUNNING'", max_results=5000)
               if run.info.run_id not in exclude]
    killed = {}
    for run in running:
        if process_alive(run.data.tags) is False:
            killed[run.info.run_id] = (f"process {run.data.tags[PID_TAG]} on {run.data.tags[HOST_TAG]} ended while "
                                       f"the run was RUNNING")
    for run in running:
        parent = run.data.tags.get("mlflow.parentRunId")
        if run.info.run_id not in killed and PID_TAG not in run.data.tags and parent in killed:
            killed[run.info.run_id] = f"its parent run {parent} was killed"
    for run_id, reason in killed.items():
        client.set_tag(run_id, KILLED_TAG, f"{reason}; marked KILLED by the next kedro run")
        client.set_terminated(run_id, "KILLED")
        logger.warning("MLflow run %s was still RUNNING but %s: marked KILLED.", run_id, reason)
    return list(killed)


#: On a method run: the project folder it ran in (its checkpoints are there).
PROJECT_TAG = "supermask.project"


def _quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def interrupted_run(name: str, digest: str, project: str, experiment_id: str):
    """The newest run of method ``name`` with these parameters (``digest``) in this project, if
    it was interrupted: RUNNING with its process gone, or marked KILLED for that reason (by
    :func:`mark_stale_runs`); else None."""
    if not digest:
        return None
    query = (f"tags.method = {_quoted(name)} and tags.`{DIGEST_TAG}` = {_quoted(digest)} "
             f"and tags.`{PROJECT_TAG}` = {_quoted(project)}")
    runs = mlflow.MlflowClient().search_runs([experiment_id], query, order_by=["attributes.start_time DESC"],
                                            max_results=1)
    if not runs:
        return None
    run = runs[0]
    interrupted = (run.info.status == "RUNNING" and process_alive(run.data.tags) is False) or (
        run.info.status == "KILLED" and KILLED_TAG in run.data.tags)
    return run if interrupted else None


def open_method_run(name: str, config: Any, digest: str, project: str = "") -> str:
    """Open the MLflow run of method ``name`` nested under the active (pipeline) run and make it
    active, or continue the run a dead process left for it.

    If the newest run of the method with the same parameters (``digest``) in this project was
    interrupted (its process died while it was RUNNING, :func:`interrupted_run`), it is
    continued: same run id, moved under the new pipeline run, the steps it holds are not logged
    again (:func:`live_metric_logger`), and the training resumes from its checkpoint.
    Otherwise a new run ``name`` starts. Nothing is written but to the tracking store.

    Args:
        name: the method (its namespace).
        config: its :class:`~supermask_pipeline.experiment.config.RunConfig` (tags
            ``architecture``, ``dataset``, ``seed``), or None.
        digest: :func:`~supermask_pipeline.experiment.config.parameter_digest` of its parameters.
        project: the project folder (tag ``supermask.project``).

    Returns:
        the id of the method's run, now the active run.
    """
    parent = mlflow.active_run()
    tags = {"method": name, DIGEST_TAG: digest, PROJECT_TAG: project, **process_tags()}
    if config is not None:
        tags.update(architecture=config.model.architecture, dataset=config.model.dataset, seed=str(config.seed))
    client = mlflow.MlflowClient()
    old = interrupted_run(name, digest, project, parent.info.experiment_id)
    if old is not None:
        old_parent = old.data.tags.get("mlflow.parentRunId")
        run = mlflow.start_run(run_id=old.info.run_id, nested=True)
        if KILLED_TAG in old.data.tags:
            client.delete_tag(old.info.run_id, KILLED_TAG)
        count = int(old.data.tags.get("supermask.continued", "0")) + 1
        mlflow.set_tags({**tags, "mlflow.parentRunId": parent.info.run_id, "supermask.continued": str(count)})
        if old_parent and old_parent != parent.info.run_id:
            client.set_tag(old_parent, f"supermask.continued_by.{name}", parent.info.run_id)
        logger.info("Method %s continues its interrupted MLflow run %s (now under run %s).",
                    name, old.info.run_id, parent.info.run_id)
    else:
        run = mlflow.start_run(run_name=name, nested=True, tags=tags)
        logger.info("Method %s: MLflow run %s, nested under run %s.", name, run.info.run_id, parent.info.run_id)
    return run.info.run_id


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def log_node_parameters(inputs: Mapping[str, Any]) -> None:
    """Log a node's parameter inputs (``params:<name>``, flattened with ".") to the active run, as
    kedro-mlflow logs them to the pipeline's run; values too long for MLflow become tags."""
    if mlflow.active_run() is None:
        return
    params = _flatten({key[len("params:"):]: value for key, value in inputs.items() if key.startswith("params:")})
    long = {key: str(value) for key, value in params.items() if len(str(value)) > MAX_PARAM_LENGTH}
    short = {key: value for key, value in params.items() if key not in long}
    if short:
        mlflow.log_params(short)
    if long:
        mlflow.set_tags(long)
