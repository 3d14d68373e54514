"""Images per second of K seeds trained as one batched model against K separate runs.

Usage (from the repository root)::

    python benchmarks/batched_seeds.py [--seeds 5] [--images 16384] [--repeats 2] [--device auto]

The FCN signed supermask (the recipe's optimizer: SGD, Nesterov momentum 0.9, decoupled
weight decay 5e-4, τ = 0.01; batch 128) on random MNIST-shaped images: one timed epoch of the
K seeds one after the other with the engine's ``train`` (each seed its own network, batch order
and masks), then one timed epoch of the same K seeds with
:func:`supermask_pipeline.training.batched.train_seeds`, alternating, fastest of ``--repeats``.
Images per second count every seed's images (K × images / wall time). No validation, no
checkpoints, no progress bar; a warm-up call of each first. Prints the machine, the load average
and the ratio batched / separate.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from supermask_pipeline.masks import get_mask_strategy
from supermask_pipeline.models import MaskedNetwork, get_architecture, initialise_tensors
from supermask_pipeline.training import TensorDataset, TrainingConfig, resolve_device, train
from supermask_pipeline.training.batched import train_seeds
from throughput import _cpu_model, _load, _random_data, _sync

SPEC = get_architecture("fcn")


def _network(seed: int, device: torch.device) -> MaskedNetwork:
    weights = initialise_tensors(SPEC, "signed_constant", seed, 6.0)
    scores = initialise_tensors(SPEC, "xavier_uniform", 1000 + seed)
    return MaskedNetwork(SPEC, get_mask_strategy("signed_supermask", threshold=0.01), weights, scores).to(device)


def _config(seed: int, device: str) -> TrainingConfig:
    return TrainingConfig(epochs=1, batch_size=128, learning_rate=0.05, weight_decay=5e-4,
                          weight_decay_mode="decoupled", device=device, show_progress=False,
                          deterministic=False, checkpoint_every=0, seed=seed)


def _separate(seeds: list[int], data: TensorDataset, device: torch.device, name: str) -> float:
    models = [_network(s, device) for s in seeds]
    _sync(device)
    start = time.perf_counter()
    for seed, model in zip(seeds, models):
        train(model, data, None, _config(seed, name))
    _sync(device)
    return time.perf_counter() - start


def _batched(seeds: list[int], data: TensorDataset, device: torch.device, name: str) -> float:
    models = [_network(s, device) for s in seeds]
    _sync(device)
    start = time.perf_counter()
    train_seeds(models, data, None, [_config(s, name) for s in seeds])
    _sync(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--images", type=int, default=16_384)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    if args.seeds < 2 or args.images <= 0 or args.repeats <= 0:
        parser.error("--seeds must be ≥ 2, --images and --repeats positive")
    device = resolve_device(args.device)
    seeds = list(range(args.seeds))
    data = _random_data(SPEC.input_shape, args.images, device, seed=0)
    warmup = _random_data(SPEC.input_shape, 384, device, seed=1)
    gpu = f", GPU {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    print(f"machine: {_cpu_model()}, {torch.get_num_threads()} torch threads of {os.cpu_count()} cores{gpu}")
    print(f"torch {torch.__version__}, device {device}; FCN signed supermask, batch 128, {args.seeds} seeds, "
          f"fastest of {args.repeats} alternating epochs of {args.images} images per seed")
    print(f"load average at start (1/5/15 min): {_load()}")
    _separate(seeds[:2], warmup, device, str(device))
    _batched(seeds[:2], warmup, device, str(device))
    best = {"separate": float("inf"), "batched": float("inf")}
    for _ in range(args.repeats):
        best["separate"] = min(best["separate"], _separate(seeds, data, device, str(device)))
        best["batched"] = min(best["batched"], _batched(seeds, data, device, str(device)))
    images = args.seeds * args.images
    separate, batched = images / best["separate"], images / best["batched"]
    print()
    print("| seeds | separate runs img/s | one batched run img/s | batched / separate |")
    print("| ---: | ---: | ---: | ---: |")
    print(f"| {args.seeds} | {separate:,.0f} | {batched:,.0f} | {batched / separate:.2f} |")
    print()
    print(f"load average at end (1/5/15 min): {_load()}")


if __name__ == "__main__":
    main()
