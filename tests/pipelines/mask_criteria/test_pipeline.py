"""mask_criteria on a tiny generated MNIST-format set: one row per mask, exact remaining weights."""

from __future__ import annotations

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

OPTIONS = {"criteria": ["large_final", "random"], "same_sign": [False, True], "prune_steps": 3, "rates": None}


def test_mask_criteria_table_and_plot(project, run_kedro):
    run_kedro("mask_criteria", {"dense": {"training": FAST_TRAINING}, "mask_criteria": OPTIONS})
    reporting = project / "data" / "08_reporting" / "mask_criteria" / "fcn"
    table = pd.read_csv(reporting / "accuracy_table.csv")
    assert len(table) == 2 * 2 * 3
    assert (reporting / "accuracy_vs_remaining.png").stat().st_size > 1000
    # Remaining weights: fc1, fc2 keep round(n·0.8^p), fc3 round(1000·0.9^p) (same sign can keep fewer).
    for step in range(3):
        kept = round(235_200 * 0.8**step) + round(30_000 * 0.8**step) + round(1_000 * 0.9**step)
        plain = table[(table.prune_step == step) & ~table.same_sign]
        assert plain["remaining_weights"].tolist() == pytest.approx([kept / 266_200] * 2)
        assert (table[(table.prune_step == step) & table.same_sign]["remaining_weights"] <= kept / 266_200 + 1e-12).all()
    # Step 0 without the sign filter keeps every weight: the accuracy of the dense initial network.
    initial = load_file(sorted((project / "data/04_feature/dense/fcn/initial_weights.safetensors").glob("*/*"))[-1])
    test = HDF5SplitDataset(str(project / "data/03_primary/mnist/test.h5")).load()
    train = HDF5SplitDataset(str(project / "data/03_primary/mnist/train.h5")).load()
    images, labels = split_to_tensors(test, "per_image_standardisation", reference=train)
    network = MaskedNetwork(get_architecture("fcn"), DenseStrategy(), initial)
    expected = evaluate(network, TensorDataset(images, labels))["accuracy"]
    step0 = table[(table.prune_step == 0) & ~table.same_sign]["test_accuracy"]
    assert step0.tolist() == pytest.approx([expected, expected])


def test_unknown_criterion_lists_the_choices(project, run_kedro):
    with pytest.raises(Exception, match=r"largest_final.*large_final"):
        run_kedro("mask_criteria", {"dense": {"training": FAST_TRAINING},
                                    "mask_criteria": {**OPTIONS, "criteria": ["largest_final"]}})
