"""Architectures of the lottery-ticket and supermask literature, defined once from a table.

The FCN (LeNet-300-100) and the Conv2/4/6/8 family follow Frankle & Carbin (2019),
Zhou et al. (2019) and Koster et al. (2022, Table 1): 3×3 convolutions with stride 1
and same padding, 2×2 max-pooling after every pair of convolutions, then dense
layers 256-256-10. Every masked layer is named ``conv<i>`` or ``fc<i>`` (1-based);
these names are the keys of every weight, score and mask file of the project.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
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


def get_architecture(name: str, dataset: str | None = None) -> ArchitectureSpec:
    """Look up an architecture by name, fitted to ``dataset``'s images and classes if given.

    Args:
        name: a key of :data:`ARCHITECTURES`.
        dataset: None or ``"auto"`` for the table's row (its own dataset), else a dataset name
            (:data:`~supermask_pipeline.images.specs.RAW_SOURCES`): see :func:`fit_architecture`.

    Raises:
        ValueError: unknown name or dataset (the message lists the known ones), or a dataset
            whose images do not fit (:func:`fit_architecture`).
    """
    spec = lookup(ARCHITECTURES, name, "architecture", "Set it with e.g. --params=model.architecture=fcn.")
    if dataset is None or dataset == "auto" or dataset == spec.dataset:
        return spec
    source = _dataset_source(dataset)
    return fit_architecture(spec, source.image_shape, source.num_classes, dataset)


def _dataset_source(dataset: str):
    from supermask_pipeline.images.specs import RAW_SOURCES  # the image shapes are the sources'

    return lookup(RAW_SOURCES, dataset, "dataset",
                  "Use auto to follow model.architecture, or add an entry to conf/base/datasets.yml.")


def num_pools(spec: ArchitectureSpec) -> int:
    """Number of 2×2 max-pools of an architecture (0 for the FCN)."""
    return sum(1 for item in spec.conv if item == POOL)


def fit_architecture(
    spec: ArchitectureSpec, image_shape: tuple[int, int, int], num_classes: int, dataset: str
) -> ArchitectureSpec:
    """The architecture for a dataset: input (C, H, W) from its images, last dense layer of
    ``num_classes`` units; every other layer as in the table.

    The FCN takes any image size (its first layer has H·W·C inputs); a conv net with p
    max-pools needs H and W divisible by 2^p (conv2: 2, conv4: 4, conv6: 8, conv8: 16), so
    that every pool halves the feature map exactly.

    Args:
        spec: the table's row.
        image_shape: (H, W, C) of the dataset's images.
        num_classes: number of classes (≥ 2).
        dataset: the dataset's name (for messages and ``spec.dataset``).

    Raises:
        ValueError: image sizes a conv net does not take (the message says which fit).
    """
    height, width, channels = image_shape
    divisor = 2 ** num_pools(spec)
    if height % divisor or width % divisor:
        raise ValueError(
            f"dataset {dataset!r} has images of {height}×{width}×{channels}, but architecture {spec.name!r} "
            f"has {num_pools(spec)} 2×2 max-pools and takes images whose height and width are multiples of "
            f"{divisor} (e.g. {divisor * (32 // divisor or 1)}×{divisor * (32 // divisor or 1)}); use fcn or a "
            f"conv net with fewer pools ({_fitting(height, width)})."
        )
    return replace(spec, input_shape=(channels, height, width), dense=(*spec.dense[:-1], num_classes),
                   dataset=dataset)


def _fitting(height: int, width: int) -> str:
    fits = [n for n, s in ARCHITECTURES.items() if not (height % 2 ** num_pools(s) or width % 2 ** num_pools(s))]
    return "these fit: " + ", ".join(fits)


def resolve_dataset(architecture: str, dataset: str = "auto") -> str:
    """The dataset a run uses: ``dataset`` itself, or with ``auto`` the architecture's own
    (fcn → mnist, conv2/4/6/8 → cifar10).

    Used by the catalog (resolver ``dataset_for`` in ``settings.py``) to pick the raw files
    and split paths, and by the training nodes to check the splits they were given.

    Raises:
        ValueError: unknown architecture or dataset (the message lists the configured
            datasets), or a dataset whose image shape the architecture does not take
            (:func:`fit_architecture`).
    """
    spec = get_architecture(architecture)
    if dataset == "auto":
        return spec.dataset
    get_architecture(architecture, dataset)
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
