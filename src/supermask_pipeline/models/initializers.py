"""Seeded initialisers for weights and mask scores, looked up by name.

Every initialiser has the signature ``init(layer, generator, scale) -> Tensor`` and
returns a float32 tensor of shape ``layer.weight_shape``; ``scale`` is the constant
under the square root where the scheme has one, or the value itself for ``constant``
(documented per function).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from supermask_pipeline.registry import lookup
from supermask_pipeline.models.architectures import ArchitectureSpec, LayerSpec, layer_specs

Initializer = Callable[[LayerSpec, torch.Generator, float | None], torch.Tensor]


def _uniform(shape: tuple[int, ...], bound: float, generator: torch.Generator) -> torch.Tensor:
    return (torch.rand(shape, generator=generator, dtype=torch.float32) * 2.0 - 1.0) * bound


def signed_constant(layer: LayerSpec, generator: torch.Generator, scale: float | None) -> torch.Tensor:
    """±c with a random sign per weight, c = sqrt(scale / fan_in) (default scale 6).

    Source: Koster et al. (2022), "ELUS" initialisation; their code has scale 6 and 3
    (which the paper used is unconfirmed; 6 gave the better accuracy here). Not Zhou et
    al.'s "signed constant" (sign(W) · std of the layer's W) nor Ramanujan et al.'s signed
    Kaiming constant: those are weight transforms of the network
    (``MaskedNetwork(..., weight_transform=...)``).
    """
    c = math.sqrt((6.0 if scale is None else scale) / layer.fan_in)
    signs = torch.randint(0, 2, layer.weight_shape, generator=generator).to(torch.float32) * 2 - 1
    return signs * c


def elu_uniform(layer: LayerSpec, generator: torch.Generator, scale: float | None) -> torch.Tensor:
    """U(−b, b), b = sqrt(scale / fan_in) (default scale 4.5: the dense ELU baseline of Koster et al.)."""
    return _uniform(layer.weight_shape, math.sqrt((4.5 if scale is None else scale) / layer.fan_in), generator)


def xavier_uniform(layer: LayerSpec, generator: torch.Generator, scale: float | None) -> torch.Tensor:
    """U(−b, b), b = sqrt(scale / (fan_in + fan_out)) (default 6: Glorot & Bengio 2010; Koster et al.'s mask scores)."""
    bound = math.sqrt((6.0 if scale is None else scale) / (layer.fan_in + layer.fan_out))
    return _uniform(layer.weight_shape, bound, generator)


def xavier_normal(layer: LayerSpec, generator: torch.Generator, scale: float | None) -> torch.Tensor:
    """N(0, scale / (fan_in + fan_out)) (default 2: Glorot & Bengio 2010, "Gaussian Glorot" of
    Frankle & Carbin 2019 and Zhou et al. 2019)."""
    std = math.sqrt((2.0 if scale is None else scale) / (layer.fan_in + layer.fan_out))
    return torch.randn(layer.weight_shape, generator=generator, dtype=torch.float32) * std


def kaiming_normal(layer: LayerSpec, generator: torch.Generator, scale: float | None) -> torch.Tensor:
    """N(0, scale / fan_in) (default 2: He et al. 2015, ReLU gain)."""
    std = math.sqrt((2.0 if scale is None else scale) / layer.fan_in)
    return torch.randn(layer.weight_shape, generator=generator, dtype=torch.float32) * std


def kaiming_uniform(layer: LayerSpec, generator: torch.Generator, scale: float | None) -> torch.Tensor:
    """U(−b, b), b = sqrt(scale / fan_in) (default 6: He et al. 2015 uniform variant)."""
    return _uniform(layer.weight_shape, math.sqrt((6.0 if scale is None else scale) / layer.fan_in), generator)


def constant(layer: LayerSpec, generator: torch.Generator, scale: float | None) -> torch.Tensor:
    """Every entry equal to ``scale`` (default 0; any finite value, negative included).

    For mask logits: 0 for the Bernoulli supermask (Zhou et al. 2019) and ASLP (Dupont et
    al. 2022), 1 for the threshold supermask (Shlis). The generator is not used.
    """
    return torch.full(layer.weight_shape, 0.0 if scale is None else float(scale), dtype=torch.float32)


INITIALIZERS: dict[str, Initializer] = {
    "signed_constant": signed_constant,
    "elu_uniform": elu_uniform,
    "xavier_uniform": xavier_uniform,
    "xavier_normal": xavier_normal,
    "kaiming_normal": kaiming_normal,
    "kaiming_uniform": kaiming_uniform,
    "constant": constant,
}

#: Initialisers whose ``scale`` is a value, not a variance: any finite number is accepted.
_VALUE_SCALES = frozenset({"constant"})


def get_initializer(name: str) -> Initializer:
    """Look up an initialiser by name.

    Raises:
        ValueError: unknown name; the message lists the known initialisers.
    """
    return lookup(INITIALIZERS, name, "initialiser")


def initialise_tensors(
    spec: ArchitectureSpec,
    scheme: str,
    seed: int,
    scale: float | None = None,
) -> dict[str, torch.Tensor]:
    """Draw one tensor per masked layer with a seeded CPU generator.

    Args:
        spec: the architecture.
        scheme: initialiser name (see :data:`INITIALIZERS`).
        seed: seed of the ``torch.Generator``; the same seed gives bit-identical tensors.
        scale: the scheme's constant (None: its default); positive, except for ``constant``,
            where it is the value itself (any finite number).

    Returns:
        layer name → float32 tensor of the layer's weight shape, contiguous, on the CPU.

    Raises:
        ValueError: unknown scheme, a non-positive scale, or a non-finite ``constant`` value.
    """
    init = get_initializer(scheme)
    if scale is not None and scheme in _VALUE_SCALES:
        if not math.isfinite(float(scale)):
            raise ValueError(f"The constant initialiser's scale is its value and must be finite, got {scale!r}.")
    elif scale is not None and not float(scale) > 0:
        raise ValueError(f"Initialiser scale must be positive, got {scale!r}.")
    generator = torch.Generator().manual_seed(int(seed))
    return {layer.name: init(layer, generator, scale).contiguous() for layer in layer_specs(spec)}
