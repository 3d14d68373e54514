"""The dense baseline pipeline on a tiny generated MNIST-format set."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from ..conftest import FAST_TRAINING


def test_dense_pipeline_trains_every_weight(project, run_kedro):
    run_kedro("dense", {"dense": {"training": FAST_TRAINING}})
    initial = load_file(next((project / "data/04_feature/dense/fcn/initial_weights.safetensors").glob("*/*")))
    trained = load_file(next((project / "data/06_models/dense/fcn/trained_weights.safetensors").glob("*/*")))
    masks = load_file(next((project / "data/06_models/dense/fcn/masks.safetensors").glob("*/*")))
    for name in ("fc1", "fc2", "fc3"):
        assert not torch.equal(initial[name], trained[name])
        assert bool((masks[name] == 1).all())
    summary = json.loads((project / "data/08_reporting/dense/fcn/evaluation_summary.json").read_text())
    assert summary["remaining_weights"] == 1.0
    assert summary["remaining_weight_count"] == 266_200
