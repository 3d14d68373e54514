"""Architectures of the lottery-ticket and supermask literature, defined once from a table.

The FCN (LeNet-300-100) and the Conv2/4/6/8 family follow Frankle & Carbin (2019),
Zhou et al. (2019) and Koster et al. (2022, Table 1): 3×3 convolutions with stride 1
and same padding, 2×2 max-pooling after every pair of convolutions, then dense
layers 256-256-10. Every masked layer is named ``conv<i>`` or ``fc<i>`` (1-based);
these names are the keys of every weight, score and mask file of the project.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from supermask_pipeline.registry import lookup

POOL = "pool"


@dataclass(frozen=True)
class ArchitectureSpec:
    """One row of the architecture table.

    Attributes:
        name: registry key (``fcn``, ``conv2`` …).
        input_shape: (channels, height, width) of one input image.
        conv: output channels of each 3×3 convolution, with ``"pool"`` for a 2×2 max-pool.
        dense: output units of each dense layer; the last is the number of classes.
        dataset: the dataset the architecture is trained on by default.
    """

    name: str
    input_shape: tuple[int, int, int]
    conv: tuple[int | str, ...]
    dense: tuple[int, ...]
    dataset: str

    @property
    def num_classes(self) -> int:
        """Number of output units (the last dense layer)."""
        return self.dense[-1]


@dataclass(frozen=True)
class LayerSpec:
    """Shape information of one masked layer.

    Attributes:
        name: ``conv<i>`` or ``fc<i>``.
        kind: ``"conv"`` (weight (out, in, 3, 3)) or ``"fc"`` (weight (out, in)).
        weight_shape: PyTorch layout of the weight tensor.
        fan_in: inputs per output unit (in × k × k for a convolution).
        fan_out: outputs per input unit (out × k × k for a convolution).
        is_output: True for the last layer (no activation after it).
    """

    name: str
    kind: Literal["conv", "fc"]
    weight_shape: tuple[int, ...]
    fan_in: int
    fan_out: int
    is_output: bool

    @property
    def num_weights(self) -> int:
        """Number of weights (the masked parameters) of the layer."""
        n = 1
        for d in self.weight_shape:
            n *= d
        return n


_CONV_HEAD = (256, 256, 10)

ARCHITECTURES: dict[str, ArchitectureSpec] = {
    "fcn": ArchitectureSpec("fcn", (1, 28, 28), (), (300, 100, 10), "mnist"),
    "conv2": ArchitectureSpec("conv2", (3, 32, 32), (64, 64, POOL), _CONV_HEAD, "cifar10"),
    "conv4": ArchitectureSpec(
        "conv4", (3, 32, 32), (64, 64, POOL, 128, 128, POOL), _CONV_HEAD, "cifar10"
    ),
    "conv6": ArchitectureSpec(
        "conv6",
        (3, 32, 32),
        (64, 64, POOL, 128, 128, POOL, 256, 256, POOL),
        _CONV_HEAD,
        "cifar10",
    ),
    "conv8": ArchitectureSpec(
        "conv8",
        (3, 32, 32),
        (64, 64, POOL, 128, 128, POOL, 256, 256, POOL, 512, 512, POOL),
        _CONV_HEAD,
        "cifar10",
    ),
}


def get_architecture(name: str) -> ArchitectureSpec:
    """Look up an architecture by name.

    Raises:
        ValueError: unknown name; the message lists the known architectures.
    """
    return lookup(ARCHITECTURES, name, "architecture", "Set it with e.g. --params=model.architecture=fcn.")


def resolve_dataset(architecture: str, dataset: str = "auto") -> str:
    """The dataset a run uses: ``dataset`` itself, or with ``auto`` the architecture's own
    (fcn → mnist, conv2/4/6/8 → cifar10).

    Used by the catalog (resolver ``dataset_for`` in ``settings.py``) to pick the raw files
    and split paths, and by the training nodes to check the splits they were given.

    Raises:
        ValueError: unknown architecture or dataset (the message lists the choices), or a
            dataset whose image shape does not fit the architecture's input.
    """
    from supermask_pipeline.images.specs import RAW_SOURCES  # the image shapes are the sources'

    spec = get_architecture(architecture)
    if dataset == "auto":
        return spec.dataset
    height, width, channels = lookup(
        RAW_SOURCES, dataset, "dataset", "use auto to follow model.architecture"
    ).image_shape
    if (channels, height, width) != spec.input_shape:
        raise ValueError(
            f"dataset {dataset!r} has images of {height}×{width}×{channels}, but architecture "
            f"{architecture!r} takes {spec.input_shape[1]}×{spec.input_shape[2]}×{spec.input_shape[0]}; "
            f"use dataset: auto ({spec.dataset})."
        )
    return dataset


def layer_specs(spec: ArchitectureSpec) -> list[LayerSpec]:
    """The masked layers of an architecture, in forward order.

    Returns:
        One :class:`LayerSpec` per convolution and dense layer. Biases are not listed
        (they are never masked).
    """
    layers: list[LayerSpec] = []
    channels, height, width = spec.input_shape
    conv_index = 0
    for item in spec.conv:
        if item == POOL:
            height, width = height // 2, width // 2
            continue
        conv_index += 1
        out = int(item)
        layers.append(
            LayerSpec(f"conv{conv_index}", "conv", (out, channels, 3, 3), channels * 9, out * 9, False)
        )
        channels = out
    features = channels * height * width
    for i, units in enumerate(spec.dense, start=1):
        is_output = i == len(spec.dense)
        layers.append(LayerSpec(f"fc{i}", "fc", (units, features), features, units, is_output))
        features = units
    return layers


def count_weights(spec: ArchitectureSpec) -> int:
    """Total number of masked weights of an architecture (biases excluded)."""
    return sum(layer.num_weights for layer in layer_specs(spec))
