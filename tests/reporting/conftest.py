"""A synthetic grid written to a temporary sqlite MLflow store exactly as the run contract of
``supermask_pipeline.reporting.runs`` says, with the values the loader must return.

Two grids in experiment ``supermask_pipeline``:

- ``grid-new`` (the latest): parent run plus points fcn × {dense, signed_supermask,
  lottery.large_final.none.mask} × seeds 0–2 and conv2 × {dense, signed_supermask} × seeds 0–1,
  conv2 × lottery.large_final.none.mask × seed 0 (a single seed). Decoys that must not count:
  an older finished run of ``fcn.signed_supermask.seed_1`` (stale values), a FAILED rerun of
  ``fcn.dense.seed_0`` and a still RUNNING rerun of ``conv2.dense.seed_1``, both started after
  everything else; ``fcn.dense.seed_2`` logs epoch 2 twice (a resumed run: the later value counts).
- ``grid-old``: started an hour earlier, points fcn.dense.seed_0 and fcn.edge_popup.seed_0, one of
  them rerun after grid-new started (which must not make grid-old the latest).

Plus a run without grid tags in the same experiment and an experiment ``no_grids`` that holds only
such a run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

EXPERIMENT = "supermask_pipeline"
NEW, OLD = "grid-new", "grid-old"
LOTTERY = "lottery.large_final.none.mask"
CURVE_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "remaining_weights")
# architecture: (dataset, masked layers, epochs)
ARCHITECTURES = {
    "fcn": ("mnist", ("fc1", "fc2", "fc3"), 3),
    "conv2": ("cifar10", ("conv1", "conv2", "fc1", "fc2", "fc3"), 2),
}
NEW_POINTS = (
    [("fcn", method, seed) for method in ("dense", "signed_supermask", LOTTERY) for seed in (0, 1, 2)]
    + [("conv2", method, seed) for method in ("dense", "signed_supermask") for seed in (0, 1)]
    + [("conv2", LOTTERY, 0)]
)
OLD_POINTS = [("fcn", "dense", 0), ("fcn", "edge_popup", 0)]
HOUR_MS = 3_600_000
T0 = 1_700_000_000_000  # ms, start of grid-old


@dataclass
class PointValues:
    """Everything one point run logs."""

    grid_id: str
    architecture: str
    method: str
    seed: int
    final: dict[str, float]  # test_accuracy, test_loss, remaining_weights, epochs, wall_time_s
    layers: dict[str, float]  # layer -> remaining fraction
    curves: dict[str, list[float]]  # metric (no prefix) -> value per epoch 1..E
    repeated_epoch: dict[str, float] = field(default_factory=dict)  # metric -> stale value logged first

    @property
    def grid_point(self) -> str:
        return f"{self.architecture}.{self.method}.seed_{self.seed}"

    @property
    def dataset(self) -> str:
        return ARCHITECTURES[self.architecture][0]


def make_point(rng: np.random.Generator, grid_id: str, architecture: str, method: str, seed: int) -> PointValues:
    _, layers, epochs = ARCHITECTURES[architecture]
    kept = {layer: 1.0 if method == "dense" else float(rng.uniform(0.005, 0.3)) for layer in layers}
    final = {
        "test_accuracy": float(rng.uniform(0.4, 0.99)),
        "test_loss": float(rng.uniform(0.05, 2.0)),
        "remaining_weights": float(np.mean(list(kept.values()))),
        "epochs": float(epochs),
        "wall_time_s": float(rng.uniform(5.0, 500.0)),
    }
    curves = {metric: [float(v) for v in rng.uniform(0.01, 1.0, size=epochs)] for metric in CURVE_METRICS}
    return PointValues(grid_id, architecture, method, seed, final, kept, curves)


@dataclass
class GridData:
    """The values the loader must return (one per kept point), and the decoys."""

    kept: list[PointValues]  # grid-new, the runs that count
    old: list[PointValues]  # grid-old
    stale: PointValues  # older finished run of a grid-new point
    failed: PointValues
    running: PointValues

    def points(self, grid_id: str = NEW) -> pd.DataFrame:
        """Expected ``points`` (without run_id), in no particular order."""
        source = self.kept if grid_id == NEW else self.old
        return pd.DataFrame([
            {"grid_id": p.grid_id, "grid_point": p.grid_point, "architecture": p.architecture, "dataset": p.dataset,
             "method": p.method, "seed": p.seed, **p.final}
            for p in source
        ])

    def per_layer(self) -> pd.DataFrame:
        return pd.DataFrame([
            {"grid_point": p.grid_point, "architecture": p.architecture, "method": p.method, "seed": p.seed,
             "layer": layer, "remaining_weights": value}
            for p in self.kept for layer, value in p.layers.items()
        ])

    def curves(self) -> pd.DataFrame:
        return pd.DataFrame([
            {"grid_point": p.grid_point, "architecture": p.architecture, "method": p.method, "seed": p.seed,
             "metric": metric, "epoch": epoch, "value": value}
            for p in self.kept for metric, values in p.curves.items() for epoch, value in enumerate(values, start=1)
        ])


@pytest.fixture(scope="session")
def grid_data() -> GridData:
    rng = np.random.default_rng(20240607)
    kept = [make_point(rng, NEW, *point) for point in NEW_POINTS]
    resumed = next(p for p in kept if p.grid_point == "fcn.dense.seed_2")
    resumed.repeated_epoch = {metric: float(rng.uniform(2.0, 3.0)) for metric in CURVE_METRICS}
    return GridData(
        kept=kept,
        old=[make_point(rng, OLD, *point) for point in OLD_POINTS],
        stale=make_point(rng, NEW, "fcn", "signed_supermask", 1),
        failed=make_point(rng, NEW, "fcn", "dense", 0),
        running=make_point(rng, NEW, "conv2", "dense", 1),
    )


@dataclass
class GridStore:
    tracking_uri: str
    experiment: str
    grid_id: str
    old_grid_id: str
    data: GridData
    run_ids: dict[str, str]  # grid_point of grid-new -> run id of the run that counts
    ignored_run_ids: set[str]  # stale, failed, running, parents, the run without grid tags


def _log_point(client, experiment_id: str, parent_id: str, point: PointValues, start: int, status: str | None) -> str:
    from mlflow.entities import Metric

    tags = {
        "grid_id": point.grid_id, "grid_point": point.grid_point, "architecture": point.architecture,
        "dataset": point.dataset, "method": point.method, "seed": str(point.seed), "mlflow.parentRunId": parent_id,
    }
    run = client.create_run(experiment_id, start_time=start, tags=tags, run_name=point.grid_point)
    run_id = run.info.run_id
    metrics = [Metric(key, value, start + 1, 0) for key, value in point.final.items()]
    metrics += [Metric(f"remaining_weights.{layer}", value, start + 1, 0) for layer, value in point.layers.items()]
    for metric, values in point.curves.items():
        metrics += [Metric(f"epoch.{metric}", value, start + 10 * epoch, epoch)
                    for epoch, value in enumerate(values, start=1)]
        if metric in point.repeated_epoch:  # the resumed run logged epoch 2 first with another value
            metrics.append(Metric(f"epoch.{metric}", point.repeated_epoch[metric], start + 15, 2))
    client.log_batch(run_id, metrics=metrics)
    if status is not None:
        client.set_terminated(run_id, status, end_time=start + 1000)
    return run_id


@pytest.fixture(scope="session")
def grid_store(tmp_path_factory: pytest.TempPathFactory, grid_data: GridData) -> GridStore:
    from mlflow import MlflowClient

    folder: Path = tmp_path_factory.mktemp("mlflow")
    tracking_uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment_id = client.create_experiment(EXPERIMENT, artifact_location=(folder / "artifacts").as_uri())
    ignored: set[str] = set()

    # grid-old: parent and two points, an hour before grid-new
    old_parent = client.create_run(experiment_id, start_time=T0, tags={"grid_id": OLD}, run_name="grid")
    ignored.add(old_parent.info.run_id)
    for i, point in enumerate(grid_data.old):
        _log_point(client, experiment_id, old_parent.info.run_id, point, T0 + 1000 * (i + 1), "FINISHED")
    client.set_terminated(old_parent.info.run_id, "FINISHED", end_time=T0 + 10_000)

    # grid-new: a stale run first, then every point, then the decoys; the parent stays RUNNING
    start = T0 + HOUR_MS
    parent = client.create_run(experiment_id, start_time=start, tags={"grid_id": NEW}, run_name="grid")
    ignored.add(parent.info.run_id)
    ignored.add(_log_point(client, experiment_id, parent.info.run_id, grid_data.stale, start + 500, "FINISHED"))
    run_ids = {}
    for i, point in enumerate(grid_data.kept):
        run_ids[point.grid_point] = _log_point(
            client, experiment_id, parent.info.run_id, point, start + 1000 * (i + 1), "FINISHED")
    late = start + 100_000
    ignored.add(_log_point(client, experiment_id, parent.info.run_id, grid_data.failed, late, "FAILED"))
    ignored.add(_log_point(client, experiment_id, parent.info.run_id, grid_data.running, late + 1000, None))

    # grid-old's edge_popup point rerun (same values) after grid-new started: grid-old stays the older grid
    rerun = _log_point(client, experiment_id, old_parent.info.run_id, grid_data.old[1], late + 2000, "FINISHED")
    assert rerun

    # runs without grid tags: here and alone in another experiment
    plain = client.create_run(experiment_id, start_time=late + 3000, run_name="plain kedro run")
    client.log_metric(plain.info.run_id, "test_accuracy", 0.5)
    client.set_terminated(plain.info.run_id, "FINISHED")
    ignored.add(plain.info.run_id)
    other = client.create_experiment("no_grids", artifact_location=(folder / "artifacts_other").as_uri())
    lonely = client.create_run(other, run_name="plain kedro run")
    client.set_terminated(lonely.info.run_id, "FINISHED")
    return GridStore(tracking_uri, EXPERIMENT, NEW, OLD, grid_data, run_ids, ignored)
