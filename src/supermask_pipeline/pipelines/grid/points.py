"""The points of an experiment grid, without Kedro: expansion, names and fingerprints.

A grid is the product architectures × methods × seeds (``conf/base/parameters_grid.yml``).
Every point runs as the Kedro namespace ``grid.<architecture>.<method>.seed_<seed>`` over the
template pipeline of its method family, and is one MLflow run named
``<architecture>.<method>.seed_<seed>``. The same expansion feeds the parameters (the hook
``GridParameters`` adds every point's own ``params:grid.points.…`` to the catalog) and the
pipeline registry (which namespaces to build), so the two cannot disagree.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from supermask_pipeline.models.architectures import resolve_dataset
from supermask_pipeline.training.iterative_pruning import LotteryConfiguration

#: Methods of the training template (parameters ``<method>.*``, pipeline ``training``).
TRAINING_METHODS = ("dense", "signed_supermask")
#: Learned-supermask strategies (parameters ``supermask.recipes.<method>``, pipeline ``supermask``).
SUPERMASK_METHODS = ("bernoulli", "threshold", "edge_popup", "aslp")
GRID_METHODS = TRAINING_METHODS + SUPERMASK_METHODS
#: Lottery-ticket configurations are methods ``lottery.<configuration name>``, e.g.
#: ``lottery.large_final.none.mask`` (parameters ``lottery.*``, pipeline ``lottery``).
LOTTERY_PREFIX = "lottery."


@dataclass(frozen=True)
class GridPoint:
    """One point of a grid.

    Attributes:
        architecture: fcn | conv2 | conv4 | conv6 | conv8.
        method: one of :data:`GRID_METHODS`.
        seed: the point's seed (initial weights, mask scores, batch order).
        dataset: the resolved dataset (mnist | cifar10).
    """

    architecture: str
    method: str
    seed: int
    dataset: str

    @property
    def name(self) -> str:
        """``<architecture>.<method>.seed_<seed>``: the MLflow run name and ``grid_point`` tag."""
        return f"{self.architecture}.{self.method}.seed_{self.seed}"

    @property
    def namespace(self) -> str:
        """``grid.<name>``: the Kedro namespace of the point's nodes and datasets."""
        return f"grid.{self.name}"

    @property
    def parameters(self) -> str:
        """``grid.points.<name>``: where the point's own parameters live."""
        return f"grid.points.{self.name}"

    @property
    def folder(self) -> str:
        """``grid/<architecture>/<method>/seed_<seed>``: the point's folder in every data layer
        (the paths of ``catalog_grid.yml``)."""
        return f"grid/{self.architecture}/{self.method}/seed_{self.seed}"

    @property
    def family(self) -> str:
        """``training`` (dense, signed_supermask), ``supermask`` (the four strategies) or
        ``lottery`` (``lottery.<configuration>``)."""
        if self.method in TRAINING_METHODS:
            return "training"
        return "lottery" if self.method.startswith(LOTTERY_PREFIX) else "supermask"


def _as_list(value: Any, name: str) -> list:
    if isinstance(value, (str, int)) or not isinstance(value, Iterable):
        raise ValueError(f"grid.{name} must be a list, e.g. {name}: [{value}]; got {value!r}.")
    values = list(value)
    if not values:
        raise ValueError(f"grid.{name} is empty: list at least one.")
    if len(set(map(str, values))) != len(values):
        raise ValueError(f"grid.{name} lists a value twice: {values}.")
    return values


def expand_grid(architectures: Iterable[str], methods: Iterable[str], seeds: Iterable[int], dataset: str = "auto") -> list[GridPoint]:
    """All points of architectures × methods × seeds, in that nesting order.

    Args:
        architectures: names of :func:`~supermask_pipeline.models.architectures.get_architecture`.
        methods: names of :data:`GRID_METHODS`, or ``lottery.<configuration>`` (a
            :attr:`~supermask_pipeline.training.iterative_pruning.LotteryConfiguration.name`).
        seeds: non-negative integers.
        dataset: ``auto`` (each architecture's own dataset) or a dataset name.

    Raises:
        ValueError: an empty or non-list field, a repeated value, an unknown architecture or
            method (the message lists the choices), a negative or non-integer seed, or
            architectures of different datasets (one grid runs on one dataset's splits: run
            fcn and the conv nets as two grids).
    """
    architectures = [str(a) for a in _as_list(architectures, "architectures")]
    methods = [str(m) for m in _as_list(methods, "methods")]
    seeds = _as_list(seeds, "seeds")
    unknown = [m for m in methods if m not in GRID_METHODS and not m.startswith(LOTTERY_PREFIX)]
    if unknown:
        raise ValueError(
            f"grid.methods: unknown {unknown}; choose from {list(GRID_METHODS)} or "
            "lottery.<criterion>[_same_sign].<mask-1 action>.<mask-0 action> (e.g. lottery.large_final.none.mask)."
        )
    for method in methods:
        if method.startswith(LOTTERY_PREFIX):
            LotteryConfiguration.from_name(method.removeprefix(LOTTERY_PREFIX))
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"grid.seeds must be non-negative integers; got {seed!r}.")
    datasets = {a: resolve_dataset(a, dataset) for a in architectures}
    if len(set(datasets.values())) > 1:
        raise ValueError(
            f"grid.architectures use different datasets ({datasets}); a grid shares one dataset's "
            "splits: run fcn (mnist) and the conv nets (cifar10) as two grids."
        )
    return [GridPoint(a, m, int(s), datasets[a]) for a in architectures for m in methods for s in seeds]


def grid_parameters(
    points: Iterable[GridPoint], activation: str, lottery_pruning: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The ``grid.points`` parameter block: ``{architecture: {method: {seed_<n>: {...}}}}``,
    each point holding ``name``, ``architecture``, ``method``, ``seed``, ``dataset`` and the
    ``model`` block its template reads (``{architecture, activation}``); a lottery point also
    ``pruning``: ``lottery_pruning`` (``lottery.pruning``) with its one configuration."""
    block: dict[str, Any] = {}
    for point in points:
        own: dict[str, Any] = {
            "name": point.name,
            "architecture": point.architecture,
            "method": point.method,
            "seed": point.seed,
            "dataset": point.dataset,
            "model": {"architecture": point.architecture, "activation": activation},
        }
        if point.family == "lottery":
            configuration = LotteryConfiguration.from_name(point.method.removeprefix(LOTTERY_PREFIX))
            own["pruning"] = {**(lottery_pruning or {}), "configurations": [configuration.as_params()]}
        block.setdefault(point.architecture, {}).setdefault(point.method, {})[f"seed_{point.seed}"] = own
    return block


def grid_points(parameters: Mapping[str, Any]) -> tuple[list[GridPoint], dict[str, Any]]:
    """The points of the project's parameters (``grid``, ``model.activation``, ``dataset``)
    and their ``grid.points`` block (:func:`grid_parameters`).

    Raises:
        ValueError: no ``grid`` block, or a bad one (see :func:`expand_grid`).
    """
    grid = parameters.get("grid")
    if not isinstance(grid, Mapping) or not {"architectures", "methods", "seeds"} <= set(grid):
        raise ValueError("The parameters need a grid block with architectures, methods and seeds (parameters_grid.yml).")
    points = expand_grid(grid["architectures"], grid["methods"], grid["seeds"], parameters.get("dataset", "auto"))
    activation = parameters.get("model", {}).get("activation", "elu")
    return points, grid_parameters(points, activation, parameters.get("lottery", {}).get("pruning"))


def point_fingerprint(point: Mapping[str, Any], method_parameters: Mapping[str, Any], data_processing: Mapping[str, Any]) -> str:
    """SHA-256 (hex, 16 characters) of everything a point's result depends on in the
    parameters: its own block, its method's block (``<method>`` or ``supermask``) and the
    data processing; a finished point with the same fingerprint is skipped."""
    payload = json.dumps(
        {"point": point, "method": method_parameters, "data_processing": data_processing},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def family_parameters_name(method: str) -> str:
    """The parameter block a point of ``method`` reads: ``<method>``, ``supermask`` or ``lottery``."""
    if method in TRAINING_METHODS:
        return method
    return "lottery" if method.startswith(LOTTERY_PREFIX) else "supermask"


def method_parameters(method: str, family_parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The part of the parameters a point of ``method`` reads: the whole ``<method>`` block for
    dense and signed_supermask; for a strategy, its recipe and ``evaluation_samples`` out of
    the ``supermask`` block (the other strategies' recipes do not change its result); for a
    lottery configuration the ``lottery`` block without the configuration list (the point's
    own ``pruning`` holds its configuration).

    Raises:
        KeyError: a strategy without a recipe in ``supermask.recipes``.
    """
    if method in TRAINING_METHODS:
        return dict(family_parameters)
    if method.startswith(LOTTERY_PREFIX):
        pruning = {k: v for k, v in family_parameters.get("pruning", {}).items() if k != "configurations"}
        return {**family_parameters, "pruning": pruning}
    return {
        "recipe": family_parameters["recipes"][method],
        "evaluation_samples": family_parameters["evaluation_samples"],
    }
