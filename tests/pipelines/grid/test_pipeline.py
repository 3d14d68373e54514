"""The grid pipeline on a tiny generated MNIST-format set: 2 methods × 2 seeds, 1 epoch."""

from __future__ import annotations

import json
import statistics

import mlflow
import pandas as pd
import pytest
import yaml
import torch
from mlflow.tracking import MlflowClient
from safetensors.torch import load_file

from supermask_pipeline.experiment import Method
from supermask_pipeline.experiment.methods import METHODS as METHOD_TABLE
from supermask_pipeline.masks import MASK_STRATEGIES, MaskStrategy, StraightThrough
from supermask_pipeline.runners import GridPointsFailedError

from ..conftest import FAST_TRAINING

METHODS = ["dense", "threshold"]
SEEDS = [0, 1]
ONE_EPOCH = {**FAST_TRAINING, "epochs": 1}
# The grid lives in a parameters file (the registry reads the files, not --params); so do the
# shortened recipes, so that a point's fingerprint is the same for the registry and the run.
LOCAL = {
    "grid": {"id": "tiny", "architectures": ["fcn"], "methods": METHODS, "seeds": SEEDS},
    "data_processing": {"num_val": 6},
    "dense": {"training": ONE_EPOCH},
    "threshold": {"training": ONE_EPOCH},
}


@pytest.fixture
def grid_project(project):
    (project / "conf" / "local" / "parameters_grid.yml").write_text(yaml.safe_dump(LOCAL))
    return project


def _point_runs(project, grid_id="tiny"):
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    runs = mlflow.search_runs(
        experiment_names=["supermask_pipeline"], filter_string=f"tags.grid_id = '{grid_id}'", output_format="list"
    )
    points = [r for r in runs if "grid_point" in r.data.tags]
    parents = [r for r in runs if "grid_point" not in r.data.tags]
    return points, parents


def test_grid_runs_every_point_in_its_own_run_and_summarises_them(grid_project, run_kedro, run_notebook):
    project = grid_project
    run_kedro("grid")

    points, parents = _point_runs(project)
    assert len(parents) == 1
    (parent,) = parents
    names = sorted(r.info.run_name for r in points)
    assert names == sorted(f"fcn.{m}.seed_{s}" for m in METHODS for s in SEEDS)
    for run in points:
        tags = run.data.tags
        assert run.info.status == "FINISHED"
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        architecture, method, seed = run.info.run_name.split(".")
        assert (tags["architecture"], tags["method"], tags["dataset"]) == (architecture, method, "mnist")
        assert f"seed_{tags['seed']}" == seed
        # The point's own results, and nothing of the other points.
        record = json.loads(
            (project / "data/08_reporting/grid/fcn" / method / seed / "point_record.json").read_text()
        )
        assert record["run_id"] == run.info.run_id
        assert run.data.metrics["test_accuracy"] == pytest.approx(record["test_accuracy"])
        assert run.data.metrics["epochs"] == 1
        assert {f"remaining_weights.{layer}" for layer in ("fc1", "fc2", "fc3")} <= set(run.data.metrics)
        history = MlflowClient().get_metric_history(run.info.run_id, "epoch.val_accuracy")
        assert [m.step for m in history] == [1]
    # The dense points keep every weight; the two seeds start from different weights.
    dense = {r.data.tags["seed"]: r for r in points if r.data.tags["method"] == "dense"}
    assert all(r.data.metrics["remaining_weights"] == 1.0 for r in dense.values())
    w0, w1 = (
        (project / f"data/04_feature/grid/fcn/dense/seed_{s}/initial_weights.safetensors").read_bytes() for s in SEEDS
    )
    assert w0 != w1

    # The summary: one row per method, mean and sample std over the seeds' runs.
    summary = pd.read_csv(project / "data/08_reporting/grid/summary.csv")
    assert sorted(summary["method"]) == sorted(METHODS)
    for method in METHODS:
        row = summary[summary["method"] == method].iloc[0]
        accuracies = [r.data.metrics["test_accuracy"] for r in points if r.data.tags["method"] == method]
        remaining = [r.data.metrics["remaining_weights"] for r in points if r.data.tags["method"] == method]
        assert row["seeds"] == 2
        assert row["test_accuracy_mean"] == pytest.approx(statistics.mean(accuracies))
        assert row["test_accuracy_std"] == pytest.approx(statistics.stdev(accuracies), abs=1e-12)
        assert row["remaining_weights_mean"] == pytest.approx(statistics.mean(remaining))
    dense_row = summary[summary["method"] == "dense"].iloc[0]
    assert dense_row["published_test_accuracy"] == pytest.approx(0.9742)  # Koster et al., fcn
    markdown = (project / "data/08_reporting/grid/summary.md").read_text()
    assert "threshold" in markdown and "dense" in markdown
    for plot in ("accuracy_vs_remaining.png", "remaining_weights_per_layer.png", "val_accuracy_curves.png"):
        assert (project / "data/08_reporting/grid" / plot).stat().st_size > 1000
    artifacts = {a.path for a in MlflowClient().list_artifacts(parent.info.run_id, "grid")}
    assert "grid/summary.csv" in artifacts
    # The comparison notebook runs top to bottom on this grid's MLflow records.
    run_notebook(f"sqlite:///{project / 'mlflow.db'}", "supermask_pipeline", "tiny")

    # A rerun skips the finished points: no new point runs, no training, the same summary.
    before = {p: p.stat().st_mtime_ns for p in (project / "data/06_models/grid").rglob("*.safetensors")}
    run_kedro("grid")
    points_again, parents_again = _point_runs(project)
    assert len(points_again) == len(points) and len(parents_again) == 2
    assert {p: p.stat().st_mtime_ns for p in (project / "data/06_models/grid").rglob("*.safetensors")} == before
    pd.testing.assert_frame_equal(pd.read_csv(project / "data/08_reporting/grid/summary.csv"), summary)

    # Changed parameters rerun only the points they touch.
    local = {**LOCAL, "dense": {"training": {**ONE_EPOCH, "learning_rate": 0.02}}}
    (project / "conf" / "local" / "parameters_grid.yml").write_text(yaml.safe_dump(local))
    run_kedro("grid")
    points, _ = _point_runs(project)
    counts = pd.Series([r.info.run_name for r in points]).value_counts()
    assert all(counts[f"fcn.dense.seed_{s}"] == 2 for s in SEEDS)  # rerun with the new learning rate
    assert all(counts[f"fcn.threshold.seed_{s}"] == 1 for s in SEEDS)  # skipped

    # The report alone, from the records on disk.
    (project / "data/08_reporting/grid/summary.csv").unlink()
    run_kedro("reporting")
    again = pd.read_csv(project / "data/08_reporting/grid/summary.csv")
    assert sorted(again["method"]) == sorted(METHODS) and set(again["seeds"]) == {2}


def test_a_grid_of_two_datasets_is_refused():
    from supermask_pipeline.experiment.grid import plan_grid

    def plan(architectures, methods, seeds):
        grid = {"id": "g", "architectures": architectures, "methods": methods, "seeds": seeds}
        return plan_grid({"grid": grid, "dense": {}, "dataset": "auto"})

    with pytest.raises(ValueError, match="two grids"):
        plan(["fcn", "conv2"], ["dense"], [0])
    with pytest.raises(ValueError, match="Unknown method 'supermask'"):
        plan(["fcn"], ["dense", "supermask"], [0])
    with pytest.raises(ValueError, match="non-negative"):
        plan(["fcn"], ["dense"], [-1])


def test_a_bad_parameter_fails_its_points_alone(grid_project, run_kedro):
    project = grid_project
    broken = {**LOCAL, "threshold": {"training": {**ONE_EPOCH, "optimizer": "adagrad"}}}
    (project / "conf" / "local" / "parameters_grid.yml").write_text(yaml.safe_dump(broken))
    with pytest.raises(GridPointsFailedError, match="2 grid point") as info:
        run_kedro("grid")
    assert sorted(info.value.failed) == [f"fcn.threshold.seed_{s}" for s in SEEDS]
    assert all("threshold.training.optimizer must be one of" in e for e in info.value.failed.values())
    points, _ = _point_runs(project)
    status = {r.info.run_name: r for r in points}
    for seed in SEEDS:
        assert status[f"fcn.dense.seed_{seed}"].info.status == "FINISHED"
        failed = status[f"fcn.threshold.seed_{seed}"]
        assert failed.info.status == "FAILED" and "adagrad" in failed.data.tags["error"]
        record = json.loads((project / f"data/08_reporting/grid/fcn/threshold/seed_{seed}/point_record.json").read_text())
        assert (record["status"], record["fingerprint"]) == ("FAILED", None) and "adagrad" in record["error"]
        assert not (project / f"data/04_feature/grid/fcn/threshold/seed_{seed}").exists()  # it wrote nothing
    summary = pd.read_csv(project / "data/08_reporting/grid/summary.csv")
    assert list(summary["method"]) == ["dense"] and list(summary["seeds"]) == [2]
    markdown = (project / "data/08_reporting/grid/summary.md").read_text()
    assert "Missing (failed) points: fcn.threshold.seed_0, fcn.threshold.seed_1." in markdown

    # Mended, the grid reruns the failed points only (the finished ones are skipped).
    (project / "conf" / "local" / "parameters_grid.yml").write_text(yaml.safe_dump(LOCAL))
    run_kedro("grid")
    points, _ = _point_runs(project)
    counts = pd.Series([r.info.run_name for r in points]).value_counts()
    assert all(counts[f"fcn.dense.seed_{s}"] == 1 and counts[f"fcn.threshold.seed_{s}"] == 2 for s in SEEDS)
    summary = pd.read_csv(project / "data/08_reporting/grid/summary.csv")
    assert sorted(summary["method"]) == ["dense", "threshold"]


def test_a_point_that_fails_while_training_stops_nothing_else(grid_project, run_kedro):
    project = grid_project
    # A learning rate that makes the dense points diverge while they train.
    broken = {**LOCAL, "dense": {"training": {**ONE_EPOCH, "learning_rate": 1.0e30}}}
    (project / "conf" / "local" / "parameters_grid.yml").write_text(yaml.safe_dump(broken))
    with pytest.raises(GridPointsFailedError, match="non-finite"):
        run_kedro("grid")
    points, _ = _point_runs(project)
    status = {r.info.run_name: r.info.status for r in points}
    assert status == {**{f"fcn.dense.seed_{s}": "FAILED" for s in SEEDS},
                      **{f"fcn.threshold.seed_{s}": "FINISHED" for s in SEEDS}}


def test_the_grid_refuses_a_runner_that_does_not_isolate_its_points(grid_project, run_kedro):
    from kedro.runner import SequentialRunner

    with pytest.raises(ValueError, match="need the project's runner"):
        run_kedro("grid", runner=SequentialRunner())
    assert not (grid_project / "data/03_primary").exists()


def test_lottery_configurations_are_grid_methods(grid_project, run_kedro):
    project = grid_project
    methods = ["lottery.large_final.none.mask", "lottery.large_final.random_reinit.mask"]
    local = {
        **LOCAL,
        "grid": {"id": "tiny", "architectures": ["fcn"], "methods": methods, "seeds": [3]},
        "lottery": {"training": ONE_EPOCH, "pruning": {"rounds": 1}},
    }
    (project / "conf" / "local" / "parameters_grid.yml").write_text(yaml.safe_dump(local))
    run_kedro("grid")

    points, _ = _point_runs(project)
    assert sorted(r.info.run_name for r in points) == sorted(f"fcn.{m}.seed_3" for m in methods)
    client = MlflowClient()
    # One pruning round of Zhou et al.'s rates: fc 20 %, output layer 10 %, counted per layer.
    kept = {"fc1": round(0.8 * 235200), "fc2": round(0.8 * 30000), "fc3": round(0.9 * 1000)}
    for run in points:
        metrics = run.data.metrics
        assert run.info.status == "FINISHED" and run.data.tags["method"] in methods
        assert metrics["remaining_weights"] == pytest.approx(sum(kept.values()) / 266200)
        for layer, (count, size) in {"fc1": (kept["fc1"], 235200), "fc2": (kept["fc2"], 30000), "fc3": (kept["fc3"], 1000)}.items():
            assert metrics[f"remaining_weights.{layer}"] == pytest.approx(count / size)
        assert metrics["epochs"] == 2  # round 0 (dense) and round 1, one epoch each
        configuration = run.data.tags["method"].removeprefix("lottery.")
        rounds = client.get_metric_history(run.info.run_id, f"lottery.{configuration}.round.remaining_weights")
        assert [(m.step, m.value) for m in sorted(rounds, key=lambda m: m.step)][0] == (0, 1.0)
        table = pd.read_csv(project / "data/08_reporting/grid/fcn" / run.data.tags["method"] / "seed_3" / "rounds_table.csv")
        assert metrics["test_accuracy"] == pytest.approx(table.sort_values("round")["test_accuracy"].iloc[-1])
    summary = pd.read_csv(project / "data/08_reporting/grid/summary.csv")
    assert sorted(summary["method"]) == sorted(methods)
    assert set(summary["seeds"]) == {1}

    # Finished points are left out of the next run's pipeline, unless grid.force.
    from kedro.framework.project import pipelines
    from kedro.framework.startup import bootstrap_project

    def point_nodes():
        bootstrap_project(project)
        return {n.name for n in pipelines["grid"].nodes if n.name.endswith(".train")}

    assert point_nodes() == set()
    (project / "conf" / "local" / "parameters_grid.yml").write_text(
        yaml.safe_dump({**local, "grid": {**local["grid"], "force": True}})
    )
    assert point_nodes() == {f"grid.fcn.{m}.seed_3.train" for m in methods}


def test_grid_points_given_on_the_command_line_are_the_points_that_run(grid_project, run_kedro):
    run_kedro("grid", {"grid": {"methods": ["dense"], "seeds": [5]}})
    points, _ = _point_runs(grid_project)
    assert [r.info.run_name for r in points] == ["fcn.dense.seed_5"]
    assert sorted(p.name for p in (grid_project / "data/06_models/grid/fcn").iterdir()) == ["dense"]


class ToyStrategy(MaskStrategy):
    """Keep the weights whose score is positive (straight-through to the scores)."""

    name = "toy"

    def mask(self, scores, state):
        return StraightThrough.apply((scores > 0).to(scores.dtype), scores)


def test_a_method_is_one_class_one_registry_row_and_one_parameter_block(grid_project, run_kedro, monkeypatch):
    project = grid_project
    monkeypatch.setitem(MASK_STRATEGIES, "toy", ToyStrategy)
    monkeypatch.setitem(METHOD_TABLE, "toy", Method("toy", description="positive scores kept"))
    block = {"toy": {
        "init": {"weight_init": "kaiming_normal", "mask_score_init": "xavier_uniform"},
        "method": {"name": "toy", "activation": "relu"},
        "training": {**ONE_EPOCH, "learning_rate": 0.1},
    }}
    (project / "conf/local/parameters_toy.yml").write_text(yaml.safe_dump(block))
    local = {**LOCAL, "grid": {**LOCAL["grid"], "methods": ["toy"], "seeds": [0]}}
    (project / "conf/local/parameters_grid.yml").write_text(yaml.safe_dump(local))
    run_kedro("grid")

    (point,), _ = _point_runs(project)
    assert (point.info.run_name, point.info.status, point.data.tags["method"]) == ("fcn.toy.seed_0", "FINISHED", "toy")
    masks = load_file(project / "data/06_models/grid/fcn/toy/seed_0/masks.safetensors")
    scores = load_file(project / "data/06_models/grid/fcn/toy/seed_0/trained_mask_scores.safetensors")
    assert all(torch.equal(masks[name], (scores[name] > 0).to(torch.int8)) for name in masks)
    kept = sum(int(m.sum()) for m in masks.values())
    assert point.data.metrics["remaining_weights"] == pytest.approx(kept / 266200)
    assert 0.3 < kept / 266200 < 0.7  # about half the Xavier-uniform scores are positive
    summary = pd.read_csv(project / "data/08_reporting/grid/summary.csv")
    assert list(summary["method"]) == ["toy"]
