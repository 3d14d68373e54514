"""Read the point runs of a grid back from MLflow into pandas (no Kedro).

The ``grid`` pipeline runs many (architecture, method, seed) points, each as one
nested MLflow run under the parent run of the Kedro session. This module reads
them back; :mod:`~supermask_pipeline.reporting.summary` and
:mod:`~supermask_pipeline.reporting.comparison` turn them into tables and figures.

Contract of a point run (what this module relies on):

- experiment: any (the project's is ``supermask_pipeline``; the tracking URI
  defaults to ``sqlite:///mlflow.db`` in the project root).
- run name ``<architecture>.<method>.seed_<seed>``, e.g. ``fcn.signed_supermask.seed_0``.
- tags: ``grid_id`` (string, the same on the parent and all its child runs),
  ``grid_point`` (= run name), ``architecture`` (fcn | conv2 | conv4 | conv6 |
  conv8), ``dataset`` (mnist | cifar10), ``method`` (dense | signed_supermask |
  bernoulli | threshold | edge_popup | aslp | ``lottery.<configuration>``, e.g.
  ``lottery.large_final.none.mask``), ``seed`` (an integer as a string), and
  MLflow's own ``mlflow.parentRunId``.
- final metrics (one value each): ``test_accuracy`` (fraction in [0, 1]),
  ``test_loss`` (cross-entropy, nats), ``remaining_weights`` (fraction of the
  masked weights kept; 1.0 for dense), ``remaining_weights.<layer>`` for every
  masked layer (``fc1``, ``conv1`` …; fraction), ``epochs`` (epochs trained) and
  ``wall_time_s`` (seconds of training).
- per-epoch curves, step = epoch (1-based): ``epoch.train_loss``,
  ``epoch.train_accuracy``, ``epoch.val_loss``, ``epoch.val_accuracy``,
  ``epoch.remaining_weights``.
- lottery points also log ``round.test_accuracy`` and ``round.remaining_weights``
  with step = round (0 = dense); their final ``test_accuracy`` and
  ``remaining_weights`` are those of the last round. (Not read here.)
- the parent run has the ``grid_id`` tag but no ``grid_point`` tag: only runs
  WITH a ``grid_point`` tag are points. A point run more than once appears more
  than once; the most recent FINISHED run (latest start time) per
  (grid_id, grid_point) counts, FAILED, KILLED and RUNNING runs are ignored.

Run ``kedro mlflow ui`` (or ``mlflow ui --backend-store-uri sqlite:///mlflow.db``)
in the project root to browse the same runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Run, ViewType

from supermask_pipeline.experiment.methods import METHODS

#: Architectures in the order of METHODS.md (panels and tables follow it).
ARCHITECTURE_ORDER = ("fcn", "conv2", "conv4", "conv6", "conv8")


def method_order() -> tuple[str, ...]:
    """The methods of the registry (:data:`~supermask_pipeline.experiment.methods.METHODS`) in its
    order; ``lottery.*`` configurations follow alphabetically, then unknown ones."""
    return tuple(name for name, row in METHODS.items() if row.kind != "lottery")

POINT_COLUMNS = (
    "grid_id", "grid_point", "run_id", "architecture", "dataset", "method", "seed",
    "test_accuracy", "test_loss", "remaining_weights", "epochs", "wall_time_s",
)
PER_LAYER_COLUMNS = ("grid_point", "architecture", "method", "seed", "layer", "remaining_weights")
CURVE_COLUMNS = ("grid_point", "architecture", "method", "seed", "metric", "epoch", "value")

_REQUIRED_TAGS = ("architecture", "dataset", "method", "seed")
_FINAL_METRICS = ("test_accuracy", "test_loss", "remaining_weights", "epochs", "wall_time_s")
_LAYER_PREFIX = "remaining_weights."
_CURVE_PREFIX = "epoch."
_PAGE = 1000


@dataclass(frozen=True)
class GridRuns:
    """The finished points of one grid, read from MLflow.

    Attributes:
        grid_id: the grid these runs belong to.
        points: one row per point (the latest FINISHED run of each ``grid_point``), columns
            ``grid_id, grid_point, run_id, architecture, dataset, method, seed`` (int),
            ``test_accuracy`` (fraction), ``test_loss`` (nats), ``remaining_weights`` (fraction),
            ``epochs``, ``wall_time_s`` (s); a metric a run did not log is NaN.
            Sorted by architecture, method, seed (:func:`sort_key`).
        per_layer: long format, one row per (point, masked layer): ``grid_point, architecture,
            method, seed, layer, remaining_weights`` (fraction).
        curves: long format, one row per (point, metric, epoch): ``grid_point, architecture,
            method, seed, metric`` (``train_loss`` … without the ``epoch.`` prefix),
            ``epoch`` (int, 1-based), ``value`` (accuracy and remaining weights as fractions,
            loss in nats).
    """

    grid_id: str
    points: pd.DataFrame
    per_layer: pd.DataFrame
    curves: pd.DataFrame


def sort_key(column: pd.Series) -> pd.Series:
    """Key for ``DataFrame.sort_values(key=...)``: architectures and methods in the order of
    :data:`ARCHITECTURE_ORDER` / :func:`method_order` (``lottery.*`` next, alphabetically,
    then unknown names alphabetically); every other column sorts as it is."""
    if column.name == "architecture":
        order = ARCHITECTURE_ORDER
    elif column.name == "method":
        order = method_order()
    else:
        return column
    return column.map(
        lambda name: (order.index(name), "") if name in order
        else (len(order), str(name)) if str(name).startswith("lottery.")
        else (len(order) + 1, str(name))
    )


def layer_sort_key(column: pd.Series) -> pd.Series:
    """Key that orders layer names as in the network: ``conv*`` before ``fc*``, numbers
    numerically (``fc2`` before ``fc10``), anything else last, alphabetically."""
    def key(name: str) -> tuple:
        match = re.fullmatch(r"([A-Za-z_]*?)(\d+)", name)
        stem, number = (match.group(1), int(match.group(2))) if match else (name, -1)
        rank = 0 if stem.startswith("conv") else 1 if stem.startswith("fc") else 2
        return rank, stem, number

    return column.map(key)


def _client(tracking_uri: str) -> MlflowClient:
    """A client of ``tracking_uri``; refuses a sqlite file that does not exist, since MLflow
    would otherwise create an empty store there."""
    parsed = urlparse(tracking_uri)
    if parsed.scheme == "sqlite":
        path = unquote(tracking_uri[len("sqlite:///"):].split("?")[0]) if tracking_uri.startswith("sqlite:///") else ""
        if path and path != ":memory:" and not Path(path).is_file():
            raise ValueError(
                f"No MLflow store at {path!r} (tracking URI {tracking_uri!r}). Run the grid first "
                "(`kedro run --pipeline grid`) or point SUPERMASK_TRACKING_URI / tracking_uri at the "
                "store that holds it."
            )
    return MlflowClient(tracking_uri=tracking_uri)


def _experiment_id(client: MlflowClient, experiment_name: str) -> str:
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        known = sorted(e.name for e in client.search_experiments(view_type=ViewType.ALL))
        raise ValueError(
            f"MLflow experiment {experiment_name!r} not found; the store holds {known}. "
            "Pass one of those (SUPERMASK_EXPERIMENT in the notebook) or run the grid into it first."
        )
    return experiment.experiment_id


def _search(client: MlflowClient, experiment_id: str, filter_string: str) -> list[Run]:
    """Every active run matching ``filter_string`` (all pages)."""
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string, ViewType.ACTIVE_ONLY, max_results=_PAGE, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _grid_table(client: MlflowClient, experiment_id: str) -> pd.DataFrame:
    """One row per run with a ``grid_id`` tag: grid_id, is_point, finished, start_time."""
    runs = _search(client, experiment_id, "tags.grid_id LIKE '%'")
    return pd.DataFrame(
        {
            "grid_id": [r.data.tags["grid_id"] for r in runs],
            "is_point": ["grid_point" in r.data.tags for r in runs],
            "finished": [r.info.status == "FINISHED" for r in runs],
            "start_time": [r.info.start_time or 0 for r in runs],
        },
        columns=["grid_id", "is_point", "finished", "start_time"],
    )


def _latest(table: pd.DataFrame, experiment_name: str) -> str:
    with_points = table[table["is_point"] & table["finished"]]["grid_id"].unique()
    if len(with_points) == 0:
        raise ValueError(
            f"Experiment {experiment_name!r} holds no finished grid points (runs with a 'grid_point' "
            "tag and status FINISHED). Run the grid first (`kedro run --pipeline grid`) or choose "
            "another experiment."
        )
    started = table[table["grid_id"].isin(with_points)].groupby("grid_id")["start_time"].min()
    return str(started.idxmax())


def latest_grid_id(tracking_uri: str, experiment_name: str) -> str:
    """The grid most recently started in an experiment that has at least one finished point.

    A grid starts with its earliest run (the parent, or its first point); re-running points
    of an older grid later does not make it the latest.

    Args:
        tracking_uri: MLflow tracking URI, e.g. ``sqlite:///mlflow.db``.
        experiment_name: the experiment, e.g. ``supermask_pipeline``.

    Returns:
        The ``grid_id`` tag of that grid.

    Raises:
        ValueError: no store at a sqlite URI, the experiment does not exist, or it holds no
            finished grid point.
    """
    client = _client(tracking_uri)
    experiment_id = _experiment_id(client, experiment_name)
    return _latest(_grid_table(client, experiment_id), experiment_name)


def _metric_history(client: MlflowClient, run_id: str, key: str) -> pd.DataFrame:
    """Step → value of one metric; a step logged twice keeps its latest value."""
    history = client.get_metric_history(run_id, key)
    frame = pd.DataFrame(
        {"epoch": [m.step for m in history], "value": [m.value for m in history],
         "timestamp": [m.timestamp for m in history]},
        columns=["epoch", "value", "timestamp"],
    )
    frame = frame.sort_values(["epoch", "timestamp"], kind="stable").drop_duplicates("epoch", keep="last")
    return frame[["epoch", "value"]]


def load_grid_runs(tracking_uri: str, experiment_name: str, grid_id: str | None = None) -> GridRuns:
    """Load the finished points of one grid (see the module docstring for the run contract).

    Args:
        tracking_uri: MLflow tracking URI, e.g. ``sqlite:///<project root>/mlflow.db``.
        experiment_name: the experiment, e.g. ``supermask_pipeline``.
        grid_id: the grid to load; None loads the latest (:func:`latest_grid_id`).

    Returns:
        :class:`GridRuns` with ``points``, ``per_layer`` and ``curves`` (fractions, not %).
        Of a point run several times only the latest FINISHED run counts; FAILED, KILLED and
        still RUNNING runs are ignored.

    Raises:
        ValueError: no store at a sqlite URI; the experiment does not exist; it holds no
            finished grid point; ``grid_id`` is unknown (the message lists the known ones);
            a point run lacks one of the tags architecture, dataset, method, seed, or its seed
            is not an integer.
    """
    client = _client(tracking_uri)
    experiment_id = _experiment_id(client, experiment_name)
    table = _grid_table(client, experiment_id)
    if grid_id is None:
        grid_id = _latest(table, experiment_name)
    elif grid_id not in set(table["grid_id"]):
        order = table.groupby("grid_id")["start_time"].min().sort_values(ascending=False)
        raise ValueError(
            f"Unknown grid_id {grid_id!r} in experiment {experiment_name!r}; known grids, newest "
            f"first: {list(order.index)}. Pass one of those, or None for the latest."
        )
    quote = '"' if "'" in grid_id else "'"
    runs = _search(
        client, experiment_id,
        f"tags.grid_id = {quote}{grid_id}{quote} AND tags.grid_point LIKE '%' AND attributes.status = 'FINISHED'",
    )
    if not runs:
        raise ValueError(
            f"Grid {grid_id!r} in experiment {experiment_name!r} has no finished point runs yet "
            "(runs with a 'grid_point' tag and status FINISHED). Wait for the grid, or pass another grid_id."
        )
    runs = _latest_per_point(runs)

    bad = {r.info.run_id: [t for t in _REQUIRED_TAGS if t not in r.data.tags] for r in runs}
    bad = {run_id: missing for run_id, missing in bad.items() if missing}
    if bad:
        raise ValueError(f"Point runs without the contract's tags (run id: missing tags): {bad}.")

    point_rows, layer_rows, curve_frames = [], [], []
    for run in runs:
        tags, metrics = run.data.tags, run.data.metrics
        try:
            seed = int(tags["seed"])
        except ValueError:
            raise ValueError(f"Run {run.info.run_id}: tag seed={tags['seed']!r} is not an integer.") from None
        ident = {"grid_point": tags["grid_point"], "architecture": tags["architecture"],
                 "method": tags["method"], "seed": seed}
        point_rows.append({"grid_id": grid_id, **ident, "run_id": run.info.run_id, "dataset": tags["dataset"],
                           **{name: metrics.get(name, float("nan")) for name in _FINAL_METRICS}})
        layer_rows.extend({**ident, "layer": key[len(_LAYER_PREFIX):], "remaining_weights": value}
                          for key, value in metrics.items() if key.startswith(_LAYER_PREFIX))
        for key in sorted(k for k in metrics if k.startswith(_CURVE_PREFIX)):
            history = _metric_history(client, run.info.run_id, key)
            curve_frames.append(history.assign(**ident, metric=key[len(_CURVE_PREFIX):]))

    points = pd.DataFrame(point_rows, columns=list(POINT_COLUMNS))
    per_layer = pd.DataFrame(layer_rows, columns=list(PER_LAYER_COLUMNS))
    curves = (pd.concat(curve_frames, ignore_index=True)[list(CURVE_COLUMNS)] if curve_frames
              else pd.DataFrame(columns=list(CURVE_COLUMNS)))
    curves = curves.astype({"epoch": "int64", "value": "float64"})
    points = points.sort_values(["architecture", "method", "seed"], key=sort_key, ignore_index=True)
    per_layer = per_layer.sort_values(["architecture", "method", "seed", "layer"], key=_layer_or_order_key,
                                      ignore_index=True)
    curves = curves.sort_values(["architecture", "method", "seed", "metric", "epoch"], key=sort_key,
                                ignore_index=True)
    return GridRuns(grid_id=grid_id, points=points, per_layer=per_layer, curves=curves)


def _layer_or_order_key(column: pd.Series) -> pd.Series:
    return layer_sort_key(column) if column.name == "layer" else sort_key(column)


def _latest_per_point(runs: list[Run]) -> list[Run]:
    """The most recently started run of each grid_point (ties: the one that ended last)."""
    frame = pd.DataFrame(
        {
            "index": range(len(runs)),
            "grid_point": [r.data.tags["grid_point"] for r in runs],
            "start_time": [r.info.start_time or 0 for r in runs],
            "end_time": [r.info.end_time or 0 for r in runs],
        }
    )
    latest = frame.sort_values(["start_time", "end_time"], kind="stable").drop_duplicates("grid_point", keep="last")
    return [runs[i] for i in sorted(latest["index"])]
