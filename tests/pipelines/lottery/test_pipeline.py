"""lottery on a tiny generated MNIST-format set: 2 pruning rounds of 1 epoch per configuration."""

from __future__ import annotations

import logging

import mlflow
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from supermask_pipeline.images.normalisation import split_to_tensors
from supermask_pipeline.datasets import HDF5SplitDataset
from supermask_pipeline.masks import DenseStrategy
from supermask_pipeline.models import MaskedNetwork, get_architecture
from supermask_pipeline.training import TensorDataset, evaluate

from ..conftest import FAST_TRAINING

TRAINING = {**FAST_TRAINING, "epochs": 1}
CONFIGURATIONS = [
    {"criterion": "large_final", "mask_1_action": "none", "mask_0_action": "mask"},
    {"criterion": "large_final", "mask_1_action": "random_reinit", "mask_0_action": "freeze_init"},
]
PARAMS = {"lottery": {"training": TRAINING, "pruning": {"rounds": 2, "rates": None, "configurations": CONFIGURATIONS}}}
# fc1, fc2 keep round(n·0.8^r), fc3 (output) round(1000·0.9^r).
KEPT = {r: {"fc1": round(235_200 * 0.8**r), "fc2": round(30_000 * 0.8**r), "fc3": round(1_000 * 0.9**r)} for r in range(3)}


def _latest(folder):
    return load_file(sorted(folder.glob("*/*"))[-1]) if folder.is_dir() else load_file(folder)


def test_lottery_rounds_outputs_table_and_mlflow(project, run_kedro, caplog):
    run_kedro("lottery", PARAMS)
    models = project / "data" / "06_models" / "lottery" / "fcn"
    table = pd.read_csv(project / "data" / "08_reporting" / "lottery" / "fcn" / "rounds_table.csv")
    assert len(table) == 2 * 3
    assert (project / "data/08_reporting/lottery/fcn/accuracy_vs_remaining.png").stat().st_size > 1000
    initial = _latest(project / "data/04_feature/lottery/fcn/initial_weights.safetensors")
    test = HDF5SplitDataset(str(project / "data/03_primary/mnist/test.h5")).load()
    train = HDF5SplitDataset(str(project / "data/03_primary/mnist/train.h5")).load()
    images, labels = split_to_tensors(test, "scale_01", reference=train)
    spec = get_architecture("fcn")
    for configuration in ("large_final.none.mask", "large_final.random_reinit.freeze_init"):
        rows = table[table.configuration == configuration].sort_values("round")
        assert rows["round"].tolist() == [0, 1, 2]
        previous = None
        for r in range(3):
            mask = load_file(models / "masks" / configuration / f"round_{r:02d}.safetensors")
            weights = load_file(models / "trained_weights" / configuration / f"round_{r:02d}.safetensors")
            assert {name: int(m.sum()) for name, m in mask.items()} == KEPT[r]
            assert all(m.dtype == torch.int8 for m in mask.values())
            kept = sum(KEPT[r].values())
            assert rows["remaining_weight_count"].iloc[r] == kept
            assert rows["remaining_weights"].iloc[r] == pytest.approx(kept / 266_200)
            if previous is not None:  # iterative: a pruned weight stays pruned
                assert all(bool((mask[n] <= previous[n]).all()) for n in mask)
            pruned = {n: mask[n] == 0 for n in mask}
            if configuration.endswith(".mask"):  # pruned weights are exactly 0 after retraining
                assert all(bool((weights[n][pruned[n]] == 0).all()) for n in mask)
            else:  # freeze_init: pruned weights still hold their initial values after retraining
                assert all(torch.equal(weights[n][pruned[n]], initial[n][pruned[n]]) for n in mask)
            # The table's test accuracy is that of the saved weights.
            network = MaskedNetwork(spec, DenseStrategy(), weights, activation="relu")
            accuracy = evaluate(network, TensorDataset(images, labels))["accuracy"]
            assert rows["test_accuracy"].iloc[r] == pytest.approx(accuracy)
            previous = mask
    # Round 0 (dense from w_i) is the same training in both chains: trained once, reused.
    dense = [load_file(models / "trained_weights" / c / "round_00.safetensors") for c in
             ("large_final.none.mask", "large_final.random_reinit.freeze_init")]
    assert all(torch.equal(dense[0][n], dense[1][n]) for n in dense[0])
    # MLflow: one step per round for each configuration's round metrics.
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("supermask_pipeline").experiment_id],
                                "tags.method = 'lottery'")
    history = client.get_metric_history(run.info.run_id, "lottery.large_final.none.mask.round.test_accuracy")
    assert sorted(m.step for m in history) == [0, 1, 2]
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(
        table[table.configuration == "large_final.none.mask"].sort_values("round")["test_accuracy"].tolist()
    )
    assert run.data.tags["method"] == "lottery"
    # The template evaluates the ticket: the last round of the first configuration.
    summary = pd.read_json(project / "data/08_reporting/lottery/fcn/evaluation_summary.json", typ="series")
    first = table[table.configuration == "large_final.none.mask"].sort_values("round").iloc[-1]
    assert summary["test_accuracy"] == pytest.approx(first["test_accuracy"])
    assert summary["remaining_weight_count"] == first["remaining_weight_count"]
    assert run.data.metrics["lottery.test_accuracy"] == pytest.approx(first["test_accuracy"])
