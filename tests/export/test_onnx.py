"""ONNX of the effective network, run in onnxruntime: the same logits (1e-5) and the same classes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from supermask_pipeline import export
from supermask_pipeline.masks import get_mask_strategy
from supermask_pipeline.models import MaskedNetwork, get_architecture, initialise_tensors, layer_specs

from .conftest import SEED, SPEC

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in the export extra (pip install -e '.[export]')")


def _session(model: bytes):
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"])


def _teacher_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (n, 1, 28, 28): one fixed random prototype per class plus noise of the same scale, halved (pixels of about unit scale, as standardised MNIST)."""
    prototypes = torch.randn(10, 1, 28, 28, generator=torch.Generator().manual_seed(99))
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=generator)
    return 0.5 * (prototypes[labels] + torch.randn(n, 1, 28, 28, generator=generator)), labels


@pytest.fixture(scope="module")
def trained():
    """A signed supermask FCN trained for 60 SGD steps on prototype images (it learns: > 50 %)."""
    torch.manual_seed(0)
    weights = initialise_tensors(SPEC, "signed_constant", SEED)
    scores = initialise_tensors(SPEC, "xavier_uniform", SEED + 1)
    network = MaskedNetwork(SPEC, get_mask_strategy("signed_supermask", threshold=0.01), weights, scores)
    optimizer = torch.optim.SGD([p for p in network.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    images, labels = _teacher_data(2000, 1)
    for step in range(60):
        batch = slice(step * 32 % 2000, step * 32 % 2000 + 32)
        optimizer.zero_grad()
        F.cross_entropy(network(images[batch]), labels[batch]).backward()
        optimizer.step()
    network.eval()
    data = export.encode(network.effective_weights(), network.masks(), "fcn", "elu",
                         initial=export.InitialWeights("signed_constant", None, SEED))
    return network, export.decode(data)


def test_onnx_predicts_the_torch_classes_on_a_whole_test_split(trained):
    network, compact = trained
    images, labels = _teacher_data(3000, 2)  # the "test split"
    with torch.no_grad():
        torch_logits = compact.module()(images).numpy()
        assert np.array_equal(torch_logits, network(images).numpy())
    assert (torch_logits.argmax(1) == labels.numpy()).mean() > 0.5  # trained: chance is 0.1
    (onnx_logits,) = _session(export.to_onnx(compact)).run(["logits"], {"images": images.numpy()})
    # Another summation order in the matmuls: float32 rounding of sums that reach ±40 before they
    # cancel, so the tolerance is relative to the logits' scale (1.1e-5 at most here; 7.6e-6 on
    # the real MNIST signed supermask, tests/export/test_real_run.py, which checks 1e-5 absolute).
    scale = float(np.abs(torch_logits).max())
    np.testing.assert_allclose(onnx_logits, torch_logits, rtol=0, atol=1e-6 * scale)
    assert np.array_equal(onnx_logits.argmax(1), torch_logits.argmax(1))


@pytest.mark.parametrize("activation", ["elu", "relu"])
def test_conv_layers_pooling_and_flatten_follow_torch(activation):
    """Conv2 (two 3×3 convolutions, a 2×2 max-pool, then 256-256-10) with a random 10 % mask."""
    spec = get_architecture("conv2")
    generator = torch.Generator().manual_seed(5)
    weights = initialise_tensors(spec, "kaiming_normal", 3)
    effective = {name: w * (torch.rand(w.shape, generator=generator) < 0.1) for name, w in weights.items()}
    compact = export.CompactNetwork(spec, activation, export.InputSpec(), effective,
                                    {n: (w != 0).to(torch.int8) for n, w in effective.items()}, {}, 0)
    images = torch.randn(16, 3, 32, 32, generator=generator)
    with torch.no_grad():
        expected = compact.module()(images).numpy()
    (logits,) = _session(export.to_onnx(compact)).run(["logits"], {"images": images.numpy()})
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-5)
    assert [layer.name for layer in layer_specs(spec)] == ["conv1", "conv2", "fc1", "fc2", "fc3"]


def test_the_batch_size_is_free(trained):
    _, compact = trained
    session = _session(export.to_onnx(compact))
    for n in (1, 7):
        (logits,) = session.run(["logits"], {"images": np.zeros((n, 1, 28, 28), np.float32)})
        assert logits.shape == (n, 10)
