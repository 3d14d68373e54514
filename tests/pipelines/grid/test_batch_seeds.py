"""grid.batch_seeds: points that differ only in their seed train as one batched model, each
seed still its own MLflow run, checkpoints and results."""

from __future__ import annotations

import json

import pytest
import yaml
from mlflow.tracking import MlflowClient

from .test_pipeline import LOCAL, METHODS, SEEDS, _point_runs


@pytest.mark.slow
def test_batched_seeds_give_every_point_its_own_run_and_checkpoints(project, run_kedro):
    local = {**LOCAL, "grid": {**LOCAL["grid"], "batch_seeds": True}}
    (project / "conf" / "local" / "parameters_grid.yml").write_text(yaml.safe_dump(local))
    run_kedro("grid")

    points, _ = _point_runs(project)
    assert sorted(r.info.run_name for r in points) == sorted(f"fcn.{m}.seed_{s}" for m in METHODS for s in SEEDS)
    client = MlflowClient()
    accuracies = {}
    for run in points:
        method, seed = run.data.tags["method"], run.data.tags["seed"]
        assert run.info.status == "FINISHED"
        assert run.data.tags["batched_seeds"] == "2"
        assert run.info.run_name == f"fcn.{method}.seed_{seed}"
        # Each seed's live curve in its own run, logged once.
        keys = [k for k in run.data.metrics if k.endswith(".train_loss")]
        assert keys and all([m.step for m in client.get_metric_history(run.info.run_id, k)] == [1] for k in keys)
        record = json.loads((project / f"data/08_reporting/grid/fcn/{method}/seed_{seed}/point_record.json").read_text())
        assert record["run_id"] == run.info.run_id and record["status"] != "FAILED"
        accuracies[(method, seed)] = run.data.metrics["test_accuracy"]
        checkpoints = list((project / "data/06_models/grid/fcn" / method / f"seed_{seed}").rglob("epoch_0001.json"))
        assert len(checkpoints) == 1
        identity = json.loads(checkpoints[0].read_text())["identity"]
        assert identity["engine"] == "batched_seeds" and identity["training"]["seed"] == int(seed)
    for method in METHODS:  # the seeds are different runs: different trained weights
        files = [next((project / f"data/06_models/grid/fcn/{method}/seed_{s}").rglob("trained_weights.safetensors"))
                 for s in SEEDS]
        assert files[0].read_bytes() != files[1].read_bytes()
