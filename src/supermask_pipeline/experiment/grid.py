"""The points of an experiment grid, without Kedro: expansion, names, parameters, fingerprints.

A grid is the product architectures × methods × seeds (``conf/base/parameters_grid.yml``).
Every point runs as the Kedro namespace ``grid.<architecture>.<method>.seed_<seed>`` over the
one method template and is one MLflow run named ``<architecture>.<method>.seed_<seed>``.
:func:`plan_grid` expands the merged parameters once per ``kedro run`` (the project hook
``ProjectParameters`` hands them over when the session's context is created, so ``--params``
count); the pipeline registry builds the namespaces and the catalog hook adds every point's
parameters from the same :class:`GridPlan`, so the two cannot disagree.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from supermask_pipeline.experiment.config import merge
from supermask_pipeline.experiment.methods import Method, grid_method
from supermask_pipeline.models.architectures import resolve_dataset


@dataclass(frozen=True)
class GridPoint:
    """One point of a grid.

    Attributes:
        architecture: fcn | conv2 | conv4 | conv6 | conv8.
        method: a method of the registry or ``lottery.<configuration>``.
        seed: the point's seed (every random stream of the run derives from it).
        dataset: the resolved dataset (mnist | cifar10 …).
        row: the registry row the point runs (``lottery`` for ``lottery.<configuration>``).
        recipe: the point's parameter block: the method's block with the point's overrides
            (a lottery point's one configuration).
        fingerprint: SHA-256 (16 hex characters) of everything in the parameters that decides
            the point's result (:func:`point_fingerprint`); a finished point with the same
            fingerprint is skipped.
    """

    architecture: str
    method: str
    seed: int
    dataset: str
    row: Method
    recipe: Mapping[str, Any] = field(default_factory=dict, compare=False)
    fingerprint: str = ""

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

    def own_parameters(self) -> dict[str, Any]:
        """The ``grid.points.<name>`` block: name, architecture, method, seed, dataset, the
        ``model`` its template reads, its ``recipe`` and ``fingerprint``."""
        return {
            "name": self.name,
            "architecture": self.architecture,
            "method": self.method,
            "seed": self.seed,
            "dataset": self.dataset,
            "model": {"architecture": self.architecture},
            "recipe": dict(self.recipe),
            "fingerprint": self.fingerprint,
        }


@dataclass(frozen=True)
class GridPlan:
    """A grid's points and their parameter block.

    Attributes:
        grid_id: ``grid.id``.
        force: ``grid.force`` (run finished points again).
        points: in the order architectures × methods × seeds.
    """

    grid_id: str
    force: bool
    points: tuple[GridPoint, ...]

    def parameters(self) -> dict[str, Any]:
        """``{architecture: {method: {seed_<n>: point.own_parameters()}}}``, the ``grid.points`` block."""
        block: dict[str, Any] = {}
        for point in self.points:
            block.setdefault(point.architecture, {}).setdefault(point.method, {})[f"seed_{point.seed}"] = (
                point.own_parameters()
            )
        return block


def _as_list(value: Any, name: str) -> list:
    if isinstance(value, (str, int)) or not isinstance(value, Iterable):
        raise ValueError(f"grid.{name} must be a list, e.g. {name}: [{value}]; got {value!r}.")
    values = list(value)
    if not values:
        raise ValueError(f"grid.{name} is empty: list at least one.")
    if len(set(map(str, values))) != len(values):
        raise ValueError(f"grid.{name} lists a value twice: {values}.")
    return values


def point_fingerprint(point: Mapping[str, Any], recipe: Mapping[str, Any], shared: Mapping[str, Any]) -> str:
    """SHA-256 (hex, 16 characters) of everything a point's result depends on in the
    parameters: its identity (architecture, method, seed, dataset), its recipe (method block
    merged over ``defaults``) and the shared blocks (defaults, data processing, evaluation_samples)."""
    payload = json.dumps({"point": point, "recipe": recipe, "shared": shared}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def plan_grid(parameters: Mapping[str, Any]) -> GridPlan:
    """The grid of the project's merged parameters (``grid``, the method blocks, ``defaults``,
    ``dataset``, ``data_processing``).

    Raises:
        ValueError: no ``grid`` block or a bad one: an empty or non-list field, a repeated
            value, an unknown method or architecture (the message lists the choices), a
            negative or non-integer seed, a method without a parameter block, a fine-tune
            method whose source is not in the grid, or architectures of different datasets
            (one grid runs on one dataset's splits: run fcn and the conv nets as two grids).
    """
    grid = parameters.get("grid")
    if not isinstance(grid, Mapping) or not {"architectures", "methods", "seeds"} <= set(grid):
        raise ValueError("The parameters need a grid block with id, architectures, methods and seeds (parameters_grid.yml).")
    architectures = [str(a) for a in _as_list(grid["architectures"], "architectures")]
    methods = [str(m) for m in _as_list(grid["methods"], "methods")]
    seeds = _as_list(grid["seeds"], "seeds")
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"grid.seeds must be non-negative integers; got {seed!r}.")
    datasets = {a: resolve_dataset(a, parameters.get("dataset", "auto")) for a in architectures}
    if len(set(datasets.values())) > 1:
        raise ValueError(
            f"grid.architectures use different datasets ({datasets}); a grid shares one dataset's "
            "splits: run fcn (mnist) and the conv nets (cifar10) as two grids."
        )
    rows = {}
    for method in methods:
        row, overrides = grid_method(method)
        block = parameters.get(row.name)
        if not isinstance(block, Mapping):
            raise ValueError(f"grid.methods lists {method!r}, but the parameters have no block {row.name!r}; "
                             f"add conf/base/parameters_{row.name}.yml (or conf/local).")
        if row.source is not None and row.source not in methods:
            raise ValueError(f"grid.methods lists {method!r}, which fine-tunes {row.source!r}'s masks; add "
                             f"{row.source!r} to grid.methods too.")
        rows[method] = (row, merge(block, overrides))
    # evaluation_samples: every point's template reads params:evaluation_samples (the sampled
    # test accuracy of bernoulli and aslp), so it decides results like the shared blocks do.
    shared = {"defaults": parameters.get("defaults", {}), "data_processing": parameters.get("data_processing", {}),
              "evaluation_samples": parameters.get("evaluation_samples", 10)}
    points = []
    for architecture in architectures:
        for method in methods:
            row, recipe = rows[method]
            source_recipe = rows[row.source][1] if row.source else None
            for seed in seeds:
                identity = {"architecture": architecture, "method": method, "seed": int(seed),
                            "dataset": datasets[architecture]}
                recipes = {"recipe": recipe, "source": source_recipe} if source_recipe else recipe
                points.append(GridPoint(architecture, method, int(seed), datasets[architecture], row, recipe,
                                        point_fingerprint(identity, recipes, shared)))
    return GridPlan(str(grid.get("id", "grid")), bool(grid.get("force", False)), tuple(points))


_SESSION: dict[str, Any] = {}


def remember_parameters(parameters: Mapping[str, Any]) -> None:
    """Hold the merged parameters of the session being created (the hook calls this once per
    ``kedro run``), for :func:`session_parameters`."""
    _SESSION.clear()
    _SESSION["parameters"] = parameters


def session_parameters() -> Mapping[str, Any] | None:
    """The merged parameters of the current session (conf/base, conf/local, ``--params``), or None."""
    return _SESSION.get("parameters")


def session_plan(parameters: Mapping[str, Any]) -> GridPlan:
    """:func:`plan_grid` of the session's parameters, kept for the catalog hook, so that a run
    plans its grid (and computes its fingerprints) once.

    Raises:
        ValueError: see :func:`plan_grid`.
    """
    plan = plan_grid(parameters)
    if parameters is _SESSION.get("parameters"):
        _SESSION["plan"] = plan
    return plan


def forget_parameters() -> GridPlan | None:
    """Drop the held parameters (the session's catalog exists: the registry has read them);
    returns the grid the registry planned from them, if it did."""
    plan = _SESSION.get("plan")
    _SESSION.clear()
    return plan
