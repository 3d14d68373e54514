"""Small networks for the export tests: the FCN's layer table with masks and weights made the
way each method makes them (the project's own initialisers, strategies and masked layer)."""

from __future__ import annotations

import pytest
import torch

from supermask_pipeline.masks import get_mask_strategy
from supermask_pipeline.models import MaskedNetwork, get_architecture, initialise_tensors, layer_specs

SPEC = get_architecture("fcn")
SEED = 1234


def signed_supermask(keep: float = 0.034, seed: int = SEED):
    """A signed supermask over Koster et al.'s signed-constant weights: (network, initial weights).

    Scores are set so that about ``keep`` of every layer lies above τ, with random signs."""
    weights = initialise_tensors(SPEC, "signed_constant", seed)
    generator = torch.Generator().manual_seed(seed + 1)
    scores = {}
    for layer in layer_specs(SPEC):
        kept = torch.rand(layer.weight_shape, generator=generator) < keep
        sign = torch.where(torch.rand(layer.weight_shape, generator=generator) < 0.5, -1.0, 1.0)
        scores[layer.name] = torch.where(kept, 0.02, 0.001) * sign
    network = MaskedNetwork(SPEC, get_mask_strategy("signed_supermask", threshold=0.01), weights, scores)
    return network, weights


@pytest.fixture
def signed_network():
    return signed_supermask()
