"""Training throughput (images per second) of dense and signed-supermask training, per architecture.

Usage (from the repository root)::

    python benchmarks/throughput.py [--device auto|cpu|cuda] [--precision fp32|bf16]
        [--channels-last] [--architectures fcn,conv2,conv4,conv6,conv8]
        [--images N] [--batch-size 128] [--repeats 1]

For every architecture (fcn on MNIST-shaped images 1×28×28, conv2/4/6/8 on
CIFAR-shaped images 3×32×32; random images and labels of 10 classes, generated on the
device) and for both methods (dense baseline of Koster et al. 2022, and their signed
supermask), the project's engine :func:`supermask_pipeline.training.train` runs

1. a warm-up call per method (two full batches plus a batch of the timed run's last,
   partial size, so every batch shape is seen once: allocator, oneDNN primitives, cuDNN
   autotuning), then
2. a timed call of one epoch over ``--images`` images on a fresh network,
   ``val_data=None`` (the engine's ``epoch_time_s`` would otherwise include
   validation), no checkpoints, no progress bar. With ``--repeats`` k > 1, k such calls per
   method, alternating dense and signed supermask, and the fastest counts (useful on a
   shared machine, where other processes' load comes in bursts).

Images per second = images / wall time of the timed ``train()`` call, with
``torch.cuda.synchronize()`` before the clock stops on CUDA. The call includes the
engine's once-per-epoch work (batch permutation, remaining-weight count), which is
negligible next to an epoch.

Choices:

- Batch 128 for both methods: the signed-supermask recipe's batch, used for the dense
  baseline too so that the masked/dense ratio compares the same batches (the dense
  recipe's own batch is also 128 in this project's parameters).
- The recipes' optimizer (SGD, Nesterov momentum 0.9, decoupled weight decay 5e-4,
  exponential schedule) and initialisers (dense: ELU-uniform scale 4.5; signed
  supermask: signed constant scale 6, Xavier-uniform scores, τ = 0.01), but one
  learning rate of 1e-3 for both: the cost of a step does not depend on it, and on
  random labels the recipes' rates can diverge (the dense conv6 at 0.01 did), which
  stops the engine. No augmentation (``augment=None``).
- ``deterministic=False``: ``torch.use_deterministic_algorithms(True)`` would restrict
  cuDNN to its deterministic algorithms; with it off and ``cudnn.benchmark`` on (set
  here), cuDNN autotunes each convolution shape and may pick faster nondeterministic
  kernels — what a throughput-bound run would use. No effect on the CPU.
- ``--images`` defaults to 1024 on the CPU (the five architectures, both methods,
  stay under ~5 minutes on 2 cores) and 50,000 (one CIFAR-10 epoch) on CUDA.

``precision`` and ``channels_last`` are passed through to :class:`TrainingConfig`; the
header says whether the engine's source acts on them (``autocast`` / ``channels_last``).
"""

from __future__ import annotations

import argparse
import inspect
import os
import platform
import time

import torch

import torch.nn.functional as F

from supermask_pipeline.masks import DenseStrategy, get_mask_strategy
from supermask_pipeline.models import MaskedNetwork, count_weights, get_architecture, initialise_tensors
from supermask_pipeline.training import TensorDataset, TrainingConfig, resolve_device, train
from supermask_pipeline.training import engine, optimization, run

ALL_ARCHITECTURES = ("fcn", "conv2", "conv4", "conv6", "conv8")
CPU_IMAGES = 1024
CUDA_IMAGES = 50_000
NUM_CLASSES = 10
METHODS = ("dense", "signed_supermask")

#: The cost of a step does not depend on the learning rate; on random labels the recipes'
#: rates can diverge (the dense conv6 at 0.01 did here), so one small rate keeps every loss
#: finite and the engine from stopping with TrainingDivergedError.
LEARNING_RATE = 1e-3
WEIGHT_DECAY = 5e-4


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


#: Every strategy of the engine, with the options of its recipe that change what a step does.
STRATEGY_OPTIONS = {
    "signed_supermask": {"threshold": 0.01},
    "fixed_mask": {},
    "threshold": {},
    "bernoulli": {},
    "edge_popup": {"keep_fraction": 0.5},
    "aslp": {},
}


def _network(name: str, method: str, device: torch.device) -> MaskedNetwork:
    spec = get_architecture(name)
    if method == "dense":
        weights = initialise_tensors(spec, "elu_uniform", 0, 4.5)
        return MaskedNetwork(spec, DenseStrategy(), weights).to(device)
    weights = initialise_tensors(spec, "signed_constant", 0, 6.0)
    scores = initialise_tensors(spec, "xavier_uniform", 1)
    if method == "fixed_mask":  # a lottery ticket's retraining: a fixed random half of the weights
        generator = torch.Generator().manual_seed(2)
        scores = {k: (torch.rand(v.shape, generator=generator) < 0.5).float() for k, v in scores.items()}
    return MaskedNetwork(spec, get_mask_strategy(method, **STRATEGY_OPTIONS[method]), weights, scores).to(device)


def _plain_loop(name: str, data: TensorDataset, args: argparse.Namespace) -> float:
    """Seconds of one epoch of the dense recipe as a plain PyTorch loop: raw weight tensors,
    ``F.conv2d``/``F.linear``, ELU, SGD with Nesterov momentum and decoupled weight decay. The
    floor the engine's dense step is measured against (not part of the package)."""
    spec = get_architecture(name)
    weights = [w.to(data.images.device).requires_grad_() for w in initialise_tensors(spec, "elu_uniform", 0, 4.5).values()]
    optimizer = torch.optim.SGD(weights, lr=LEARNING_RATE, momentum=0.9, nesterov=True)
    order = torch.randperm(len(data)).to(data.images.device)
    _sync(data.images.device)
    start = time.perf_counter()
    for first in range(0, len(data), args.batch_size):
        idx = order[first:first + args.batch_size]
        x, y = data.images[idx], data.labels[idx]
        layers = iter(weights)
        for item in spec.conv:
            x = F.max_pool2d(x, 2) if item == "pool" else F.elu(F.conv2d(x, next(layers), padding=1))
        x = torch.flatten(x, 1)
        for i, w in enumerate(layers):
            x = F.linear(x, w)
            x = F.elu(x) if i < len(spec.dense) - 1 else x
        loss = F.cross_entropy(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            torch._foreach_mul_(weights, 1.0 - WEIGHT_DECAY)
        optimizer.step()
    _sync(data.images.device)
    return time.perf_counter() - start


def _config(args: argparse.Namespace) -> TrainingConfig:
    return TrainingConfig(
        epochs=1,
        batch_size=args.batch_size,
        learning_rate=LEARNING_RATE,
        weight_decay=WEIGHT_DECAY,
        device=args.device,
        show_progress=False,
        deterministic=False,
        precision=args.precision,
        channels_last=args.channels_last,
        checkpoint_every=0,
    )


def _random_data(shape: tuple[int, ...], n: int, device: torch.device, seed: int,
                 channels_last: bool = False) -> TensorDataset:
    """Random images (N, *shape) and labels on ``device``; with ``channels_last`` the images
    are stored in that format already, so the engine's conversion inside the timed call is free."""
    generator = torch.Generator(device=device).manual_seed(seed)
    images = torch.randn((n, *shape), generator=generator, device=device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, NUM_CLASSES, (n,), generator=generator, device=device)
    return TensorDataset(images, labels)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _images_per_second(name: str, data: TensorDataset, warmup: TensorDataset, methods: list[str],
                       args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    """Method (and ``plain``) → images per second of the fastest timed epoch; repeats alternate
    the methods, so a burst of load from other processes does not fall on one method only."""
    config = _config(args)
    for method in methods:
        train(_network(name, method, device), warmup, None, config)
    _plain_loop(name, warmup, args)
    best = dict.fromkeys(["plain", *methods], float("inf"))
    for _ in range(args.repeats):
        best["plain"] = min(best["plain"], _plain_loop(name, data, args))
        for method in methods:
            model = _network(name, method, device)
            _sync(device)
            start = time.perf_counter()
            train(model, data, None, config)
            _sync(device)
            best[method] = min(best[method], time.perf_counter() - start)
            del model
    return {method: len(data) / seconds for method, seconds in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--architectures", default=",".join(ALL_ARCHITECTURES),
                        help="comma-separated subset of " + ",".join(ALL_ARCHITECTURES))
    parser.add_argument("--images", type=int, default=None,
                        help=f"images in the timed epoch (default {CPU_IMAGES} on CPU, {CUDA_IMAGES} on CUDA)")
    parser.add_argument("--batch-size", type=int, default=128,
                        help="batch of both methods (default 128, the signed-supermask recipe)")
    parser.add_argument("--methods", default="dense,signed_supermask",
                        help="comma-separated engine methods (dense and the strategies: " + ",".join(STRATEGY_OPTIONS)
                             + ") or 'all'; dense is always timed, as the reference")
    parser.add_argument("--repeats", type=int, default=2,
                        help="timed epochs per cell, each a fresh train() call; the fastest is reported "
                             "(more than 1 on a shared machine)")
    args = parser.parse_args()

    wall = time.perf_counter()
    names = [n.strip() for n in args.architectures.split(",") if n.strip()]
    methods = list(STRATEGY_OPTIONS) if args.methods == "all" else [m.strip() for m in args.methods.split(",") if m.strip()]
    methods = ["dense", *[m for m in methods if m != "dense"]]
    unknown = sorted(set(methods) - {"dense", *STRATEGY_OPTIONS})
    if unknown:
        parser.error(f"--methods: unknown {unknown}; known: dense, {', '.join(STRATEGY_OPTIONS)}")
    for name in names:
        try:
            get_architecture(name)
        except ValueError as err:
            parser.error(f"--architectures: {err}")
    try:
        device = resolve_device(args.device)
    except ValueError as err:
        parser.error(f"--device: {err}")
    torch.backends.cudnn.benchmark = True
    n = args.images if args.images is not None else (CUDA_IMAGES if device.type == "cuda" else CPU_IMAGES)
    if n <= 0 or args.batch_size <= 0 or args.repeats <= 0:
        parser.error("--images, --batch-size and --repeats must be positive")
    # Warm-up: two full batches and one of the timed run's last (partial) batch size.
    n_warmup = min(n, 2 * args.batch_size + n % args.batch_size)

    source = "".join(inspect.getsource(module) for module in (engine, run, optimization))
    acts = {"precision": "autocast" in source, "channels_last": "channels_last" in source}
    gpu = f", GPU {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    print(f"machine: {_cpu_model()}, {torch.get_num_threads()} torch threads of {os.cpu_count()} cores{gpu}")
    print(f"torch {torch.__version__}, device {device}, precision {args.precision}"
          f"{'' if acts['precision'] else ' (not yet applied by the engine)'}, "
          f"channels_last {args.channels_last}{'' if acts['channels_last'] else ' (not yet applied by the engine)'}")
    timed = "one timed epoch" if args.repeats == 1 else f"fastest of {args.repeats} timed epochs"
    print(f"{timed} of {n} random images per cell after a {n_warmup}-image warm-up; "
          f"batch {args.batch_size} for both methods; deterministic=False, cudnn.benchmark=True")
    print(f"load average at start (1/5/15 min): {_load()}")
    print()
    header = " | ".join(f"{m} img/s (÷ dense)" for m in methods if m != "dense")
    print(f"| architecture | weights | plain loop img/s | engine dense img/s (÷ plain) | {header} |")
    print("| --- | --- | ---: | ---: |" + " ---: |" * (len(methods) - 1))
    for i, name in enumerate(names):
        spec = get_architecture(name)
        data = _random_data(spec.input_shape, n, device, seed=i, channels_last=args.channels_last)
        warmup = _random_data(spec.input_shape, n_warmup, device, seed=100 + i, channels_last=args.channels_last)
        rates = _images_per_second(name, data, warmup, methods, args, device)
        dense, plain = rates["dense"], rates["plain"]
        cells = " | ".join(f"{rates[m]:,.0f} ({rates[m] / dense:.2f})" for m in methods if m != "dense")
        print(f"| {name} | {count_weights(spec):,} | {plain:,.0f} | {dense:,.0f} ({dense / plain:.2f}) | {cells} |", flush=True)
        del data, warmup
    print()
    print(f"load average at end (1/5/15 min): {_load()}; wall time {time.perf_counter() - wall:.0f} s")


def _load() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


if __name__ == "__main__":
    main()
