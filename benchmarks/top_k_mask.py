"""Edge-popup's per-step top-k mask: the selection of ``top_k_mask`` against a stable sort.

Usage (from the repository root)::

    python benchmarks/top_k_mask.py [--device cpu|cuda] [--repeats 50]

For every layer shape of the FCN and Conv6 it times
``supermask_pipeline.masks.top_k_mask`` (``torch.kthvalue`` + the earliest ties, no host
synchronisation) and the stable descending ``argsort`` it replaced (keep fraction 0.5), checks
that both give the same mask, and prints the milliseconds per call and their ratio, measured
in the same run.
"""

from __future__ import annotations

import argparse
import time

import torch

from supermask_pipeline.masks import top_k_mask
from supermask_pipeline.models import get_architecture
from supermask_pipeline.models.architectures import layer_specs


def sorted_top_k(values: torch.Tensor, keep_fraction: float) -> torch.Tensor:
    """The previous implementation: a stable descending sort of all entries."""
    flat = values.reshape(-1)
    mask = torch.zeros_like(flat)
    mask[torch.argsort(flat, descending=True, stable=True)[: round(keep_fraction * flat.numel())]] = 1.0
    return mask.reshape(values.shape)


def _time(function, values: torch.Tensor, repeats: int) -> float:
    function(values, 0.5)  # warm-up
    if values.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        function(values, 0.5)
    if values.is_cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    device = torch.device(args.device)
    generator = torch.Generator(device=device).manual_seed(0)
    print(f"device {device}, torch threads {torch.get_num_threads()}, keep fraction 0.5")
    print(f"{'layer':>12} {'weights':>9} {'sort (ms)':>10} {'select (ms)':>12} {'speed-up':>9}")
    for architecture in ("fcn", "conv6"):
        for spec in layer_specs(get_architecture(architecture)):
            values = torch.rand(spec.weight_shape, generator=generator, device=device)
            assert torch.equal(top_k_mask(values, 0.5), sorted_top_k(values, 0.5))
            old, new = _time(sorted_top_k, values, args.repeats), _time(top_k_mask, values, args.repeats)
            print(f"{architecture + '.' + spec.name:>12} {values.numel():>9} {old:>10.2f} {new:>12.2f} {old / new:>8.1f}×")


if __name__ == "__main__":
    main()
