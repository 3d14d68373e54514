"""Architectures, the masked network and initialisers (no Kedro)."""

from supermask_pipeline.models.architectures import (
    ARCHITECTURES,
    ArchitectureSpec,
    LayerSpec,
    count_weights,
    get_architecture,
    layer_specs,
)
from supermask_pipeline.models.initializers import INITIALIZERS, get_initializer, initialise_tensors
from supermask_pipeline.models.network import LayerTensors, MaskedLayer, MaskedNetwork, check_layer_tensors

__all__ = [
    "ARCHITECTURES",
    "INITIALIZERS",
    "ArchitectureSpec",
    "LayerSpec",
    "LayerTensors",
    "MaskedLayer",
    "MaskedNetwork",
    "check_layer_tensors",
    "count_weights",
    "get_architecture",
    "get_initializer",
    "initialise_tensors",
    "layer_specs",
]
