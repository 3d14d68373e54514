"""Uniform random numbers for the stochastic masks: ``torch.rand``'s values, drawn faster on the CPU.

PyTorch's CPU generator (mt19937) fills a float32 tensor one element at a time, one 32-bit
draw d per element, u = (d mod 2²⁴) · 2⁻²⁴ (24 random bits, float32's mantissa). Most of
that kernel's cost is per element, not per bit: a 64-bit draw, which the generator forms
from two consecutive 32-bit draws as d₂ⱼ · 2³² + d₂ⱼ₊₁, costs about the same as one float.
:func:`uniform_like` therefore draws n/2 64-bit integers and splits each into its two
words, in the stream's order: the same uniforms as ``torch.rand`` of the same generator,
bit for bit, and the generator ends in the same state (an odd element count takes its last
uniform from one 32-bit draw), at about three quarters of the cost (measured on the project's 2-core
CPU, FCN first layer, 235,200 uniforms: 580 → 450 µs, of which 350 µs are the draws; ``benchmarks/README.md``).

Elsewhere (fewer than :data:`SMALL` elements, CUDA's Philox generator, float64 or
half-precision scores, a big-endian host) it calls ``torch.rand``.
"""

from __future__ import annotations

import sys

import torch

#: float32 uniforms carry 24 random bits: u = (d mod 2**24) * 2**-24.
_BITS = 24
_LOW_BITS = (1 << _BITS) - 1
_SCALE = 2.0 ** -_BITS
#: Below this many elements ``torch.rand`` itself is faster: the split's fixed cost of a few
#: small kernels exceeds what the 64-bit draws save (medians on the project's 2-core CPU,
#: ``torch.rand`` against the split: 1,000 uniforms 8 against 30 µs, 30,000 88 against 101 µs,
#: 65,536 about even, 235,200 1,076 against 549 µs).
SMALL = 1 << 16


def uniform_like(values: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """U[0, 1) numbers in the shape, dtype and device of ``values``, equal to
    ``torch.rand(values.shape, generator=generator, dtype=values.dtype, device=values.device)``.

    Args:
        values: any tensor (only its shape, dtype and device are read).
        generator: the generator to draw from, on the device of ``values``; it advances
            exactly as ``torch.rand`` would advance it.

    Returns:
        float tensor of the shape, dtype and device of ``values`` (contiguous).

    Raises:
        RuntimeError: from PyTorch, where ``generator`` is on another device than ``values``.

    Source: PyTorch's ``CPUGeneratorImpl`` (``random64`` joins two 32-bit draws, high word
    first) and ``uniform_real_distribution`` (24 low bits · 2⁻²⁴ for float32).
    """
    if values.device.type != "cpu" or values.dtype != torch.float32 or generator.device.type != "cpu" \
            or sys.byteorder != "little" or values.numel() < SMALL:
        return torch.rand(values.shape, generator=generator, device=values.device, dtype=values.dtype)
    count = values.numel()
    pairs = count // 2
    # int64 random_() keeps 63 bits: d₂ⱼ · 2³² + d₂ⱼ₊₁ with the top bit of d₂ⱼ cleared (unused
    # below); on a little-endian host its int32 words are (d₂ⱼ₊₁, d₂ⱼ).
    words = torch.empty(pairs, dtype=torch.int64).random_(generator=generator).view(torch.int32)
    words.bitwise_and_(_LOW_BITS)
    uniforms = torch.empty(count, dtype=torch.float32)
    in_order, words = uniforms[: 2 * pairs].view(pairs, 2), words.view(pairs, 2)
    in_order[:, 0].copy_(words[:, 1])
    in_order[:, 1].copy_(words[:, 0])
    if count % 2:
        uniforms[-1:].copy_(torch.empty(1, dtype=torch.int32).random_(0, 1 << _BITS, generator=generator))
    return uniforms.mul_(_SCALE).view(values.shape)


__all__ = ["uniform_like"]
