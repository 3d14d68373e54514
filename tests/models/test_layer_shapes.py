"""Output shape of every masked layer of every architecture, against shapes written out by hand.

The expected shapes come from the architecture table of METHODS.md (Koster et al. 2022,
Table 1): 3×3 convolutions with stride 1 and same padding keep height and width, each
2×2 max-pool halves them, the last pool is flattened into fc1, then 256-256-10 (fcn:
784 → 300-100-10). They are deliberately not computed from ``layer_specs``, the code
under test. The published weight counts are asserted in ``test_architectures.py``.
"""

import pytest
import torch

from supermask_pipeline.masks import DenseStrategy
from supermask_pipeline.models import MaskedNetwork, get_architecture, initialise_tensors
from supermask_pipeline.models.network import MaskedLayer

BATCH = 2

# Layer name → output shape for a batch of 2, in forward order (by hand from METHODS.md).
_HEAD = {"fc1": (BATCH, 256), "fc2": (BATCH, 256), "fc3": (BATCH, 10)}
EXPECTED_OUTPUT_SHAPES = {
    # 1×28×28 flattened to 784.
    "fcn": {"fc1": (BATCH, 300), "fc2": (BATCH, 100), "fc3": (BATCH, 10)},
    # 32×32 → pool → 16×16; fc1 sees 64·16·16 = 16,384 features.
    "conv2": {
        "conv1": (BATCH, 64, 32, 32),
        "conv2": (BATCH, 64, 32, 32),
        **_HEAD,
    },
    # … → pool → 8×8; fc1 sees 128·8·8 = 8,192.
    "conv4": {
        "conv1": (BATCH, 64, 32, 32),
        "conv2": (BATCH, 64, 32, 32),
        "conv3": (BATCH, 128, 16, 16),
        "conv4": (BATCH, 128, 16, 16),
        **_HEAD,
    },
    # … → pool → 4×4; fc1 sees 256·4·4 = 4,096.
    "conv6": {
        "conv1": (BATCH, 64, 32, 32),
        "conv2": (BATCH, 64, 32, 32),
        "conv3": (BATCH, 128, 16, 16),
        "conv4": (BATCH, 128, 16, 16),
        "conv5": (BATCH, 256, 8, 8),
        "conv6": (BATCH, 256, 8, 8),
        **_HEAD,
    },
    # … → pool → 2×2; fc1 sees 512·2·2 = 2,048.
    "conv8": {
        "conv1": (BATCH, 64, 32, 32),
        "conv2": (BATCH, 64, 32, 32),
        "conv3": (BATCH, 128, 16, 16),
        "conv4": (BATCH, 128, 16, 16),
        "conv5": (BATCH, 256, 8, 8),
        "conv6": (BATCH, 256, 8, 8),
        "conv7": (BATCH, 512, 4, 4),
        "conv8": (BATCH, 512, 4, 4),
        **_HEAD,
    },
}

# Input of fc1 (after the last pool and the flatten; fcn: the flattened 28×28 image).
EXPECTED_FC1_INPUT = {
    "fcn": (BATCH, 784),
    "conv2": (BATCH, 16_384),
    "conv4": (BATCH, 8_192),
    "conv6": (BATCH, 4_096),
    "conv8": (BATCH, 2_048),
}

# Input image (channels, height, width) per architecture: MNIST for fcn, CIFAR-10 for the rest.
INPUT_SHAPES = {"fcn": (1, 28, 28), "conv2": (3, 32, 32), "conv4": (3, 32, 32), "conv6": (3, 32, 32), "conv8": (3, 32, 32)}


@pytest.mark.parametrize("name", sorted(EXPECTED_OUTPUT_SHAPES))
def test_every_masked_layer_has_the_published_output_shape(name):
    spec = get_architecture(name)
    assert spec.input_shape == INPUT_SHAPES[name]
    network = MaskedNetwork(spec, DenseStrategy(), initialise_tensors(spec, "elu_uniform", 0))
    outputs: list[tuple[str, tuple[int, ...]]] = []
    inputs: dict[str, tuple[int, ...]] = {}

    def record(layer_name):
        def hook(module, args, output):
            inputs[layer_name] = tuple(args[0].shape)
            outputs.append((layer_name, tuple(output.shape)))

        return hook

    masked = [(n, m) for n, m in network.named_modules() if isinstance(m, MaskedLayer)]
    handles = [module.register_forward_hook(record(layer_name)) for layer_name, module in masked]
    try:
        with torch.no_grad():
            logits = network(torch.randn(BATCH, *INPUT_SHAPES[name], generator=torch.Generator().manual_seed(0)))
    finally:
        for handle in handles:
            handle.remove()

    # Every layer ran exactly once, in forward order, with the hand-derived shape.
    assert outputs == list(EXPECTED_OUTPUT_SHAPES[name].items())
    assert inputs["fc1"] == EXPECTED_FC1_INPUT[name]
    assert tuple(logits.shape) == (BATCH, 10)
    assert torch.isfinite(logits).all()
