"""The default signed supermask FCN trained on the real MNIST files (this checkout's data/, when a
`kedro run --pipeline=signed_supermask` has produced it; skipped elsewhere): at most 9,000 bytes,
bit-identical weights, the same test accuracy to the last image, ONNX within 1e-5."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from supermask_pipeline import export
from supermask_pipeline.datasets import HDF5SplitDataset
from supermask_pipeline.experiment.config import run_config
from supermask_pipeline.export.runs import export_run
from supermask_pipeline.images import split_to_tensors

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "data/06_models/signed_supermask/fcn"
SPLITS = REPO / "data/03_primary/mnist"
SUMMARY = REPO / "data/08_reporting/signed_supermask/fcn/evaluation_summary.json"


def _latest(name: str) -> Path:
    files = sorted((MODELS / name).glob("*/*.safetensors"))
    if not files or not (SPLITS / "test.h5").is_file() or not SUMMARY.is_file():
        pytest.skip("no signed_supermask run on the real MNIST files in data/ (kedro run --pipeline=signed_supermask)")
    return files[-1]


def test_the_real_signed_supermask_exports_to_at_most_9000_bytes():
    weights, masks = load_file(_latest("trained_weights.safetensors")), load_file(_latest("masks.safetensors"))
    parameters = yaml.safe_load((REPO / "conf/base/parameters.yml").read_text())
    block = yaml.safe_load((REPO / "conf/base/parameters_signed_supermask.yml").read_text())["signed_supermask"]
    run = run_config("signed_supermask", block, parameters["defaults"], {"architecture": "fcn"}, "auto", 0)
    train, test = (HDF5SplitDataset(str(SPLITS / f"{name}.h5")).load() for name in ("train", "test"))
    result = export_run(run, weights, masks, train, test)
    summary = json.loads(SUMMARY.read_text())
    if summary["remaining_weight_count"] != sum(int(m.count_nonzero()) for m in masks.values()):
        pytest.skip("the evaluation summary is of another signed_supermask run than the newest weights")

    assert len(result.compact) <= 9000, result.summary
    network = export.decode(result.compact)
    for name, weight in weights.items():  # every float bit, the pruned −0.0 included
        assert torch.equal(network.weights[name].view(torch.int32), weight.contiguous().view(torch.int32)), name
    assert result.summary["weights_identical"] == "bits"
    assert result.summary["test_accuracy"] == summary["test_accuracy"]  # the same count of correct images

    ort = pytest.importorskip("onnxruntime")
    images, labels = split_to_tensors(test, run.data.normalisation, reference=train)
    with torch.no_grad():
        logits = network.module()(images).numpy()
    assert (logits.argmax(1) == labels.numpy()).mean() == summary["test_accuracy"]
    session = ort.InferenceSession(result.onnx, providers=["CPUExecutionProvider"])
    (onnx_logits,) = session.run(["logits"], {"images": images.numpy()})
    np.testing.assert_allclose(onnx_logits, logits, rtol=0, atol=1e-5)
    assert np.array_equal(onnx_logits.argmax(1), logits.argmax(1))  # every one of the 10,000 test images
