"""Cost of checkpointing as a fraction of epoch time: FCN signed supermask on MNIST.

Usage (from the repository root)::

    python benchmarks/checkpoint_cost.py [--epochs 3] [--device auto]

Reads the MNIST training split from ``data/03_primary/mnist/train.h5`` when present
(run ``kedro run --pipeline=data_processing`` first) and falls back to random images of
the same shape. After a one-epoch warm-up, two runs of the same training with the default recipe (batch 128):
one with a checkpoint after every epoch, one without. Prints

- the direct cost: time inside the engine's state capture and the checkpoint write
  (safetensors + JSON, fsync, rename), per epoch and as a fraction of the epoch time; the
  write runs on a background thread (``CheckpointWriter``) while the next epoch trains, so
  the training thread pays the capture and the handover (which waits only when the previous
  write has not ended), printed as its own row;
- the end-to-end ratio: wall time per epoch with / without checkpoints (noisier: it
  also contains the machine's run-to-run variation).

Issue 3's target: the direct cost stays under 2 % of the epoch time.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from supermask_pipeline.images import ImageSplit, split_to_tensors
from supermask_pipeline.masks import SignedSupermaskStrategy
from supermask_pipeline.models import MaskedNetwork, get_architecture, initialise_tensors
from supermask_pipeline.training import CheckpointStore, Checkpointing, TensorDataset, TrainingConfig, train
from supermask_pipeline.training import run as training_run
from supermask_pipeline.training.checkpoint import CheckpointWriter

SPLIT = Path("data/03_primary/mnist/train.h5")


def _train_split() -> tuple[ImageSplit, str]:
    if SPLIT.is_file():
        from supermask_pipeline.datasets import HDF5SplitDataset

        return HDF5SplitDataset(str(SPLIT)).load(), f"MNIST train split ({SPLIT})"
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(55_000, 28, 28, 1), dtype=np.uint8)
    labels = rng.integers(0, 10, size=55_000).astype(np.int64)
    return ImageSplit(images=images, labels=labels, attrs={"num_classes": 10}), "random images, MNIST-sized"


class _TimedStore(CheckpointStore):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.seconds: list[float] = []

    def save(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return super().save(*args, **kwargs)
        finally:
            self.seconds.append(time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    split, what = _train_split()
    config = TrainingConfig(epochs=args.epochs, device=args.device, show_progress=False)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    images, labels = split_to_tensors(split, "per_image_standardisation", device)
    data = TensorDataset(images, labels)
    spec = get_architecture("fcn")

    def network() -> MaskedNetwork:
        return MaskedNetwork(
            spec, SignedSupermaskStrategy(threshold=0.01),
            initialise_tensors(spec, "signed_constant", 0, 6.0), initialise_tensors(spec, "xavier_uniform", 1),
        ).to(device)

    train(network(), data, None, TrainingConfig(epochs=1, device=args.device, show_progress=False))  # warm-up
    start = time.perf_counter()
    without = train(network(), data, None, config)
    wall_without = (time.perf_counter() - start) / args.epochs

    capture_seconds: list[float] = []
    original_capture = training_run.capture_state  # looked up by name in TrainingRun._capture

    def timed_capture(*a, **k):
        start = time.perf_counter()
        try:
            return original_capture(*a, **k)
        finally:
            capture_seconds.append(time.perf_counter() - start)

    handover_seconds: list[float] = []
    original_submit = CheckpointWriter.submit

    def timed_submit(self, state):
        start = time.perf_counter()
        try:
            return original_submit(self, state)
        finally:
            handover_seconds.append(time.perf_counter() - start)

    training_run.capture_state = timed_capture
    CheckpointWriter.submit = timed_submit
    with tempfile.TemporaryDirectory(dir=".") as folder:
        store = _TimedStore(Path(folder))
        start = time.perf_counter()
        with_ckpt = train(network(), data, None, config, checkpointing=Checkpointing(store, {"benchmark": True}))
        wall_with = (time.perf_counter() - start) / args.epochs
        size = sum(p.stat().st_size for p in Path(folder).rglob("epoch_*"))
    training_run.capture_state = original_capture
    CheckpointWriter.submit = original_submit

    epoch_s = statistics.mean(without["epoch_time_s"])
    capture_s = statistics.mean(capture_seconds[1:])  # [0] is the initial state, once per run
    save_s = statistics.mean(store.seconds)
    handover_s = statistics.mean(handover_seconds)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"device {device}; data: {what}; {args.epochs} epochs, batch {config.batch_size}")
    print(f"checkpoint size on disk: {size / 1e6:.2f} MB (safetensors + JSON)")
    print("| quantity | seconds per epoch | fraction of epoch time |")
    print("| --- | --- | --- |")
    print(f"| epoch (train, no checkpoint) | {epoch_s:.3f} | 100 % |")
    print(f"| state capture (clones) | {capture_s:.4f} | {100 * capture_s / epoch_s:.2f} % |")
    print(f"| checkpoint write (background thread: safetensors, sha256, fsync, rename) | {save_s:.4f} | "
          f"{100 * save_s / epoch_s:.2f} % |")
    print(f"| **direct checkpoint cost** | {capture_s + save_s:.4f} | **{100 * (capture_s + save_s) / epoch_s:.2f} %** |")
    print(f"| of it on the training thread: capture + handover (waits for the previous write) | "
          f"{capture_s + handover_s:.4f} | {100 * (capture_s + handover_s) / epoch_s:.2f} % |")
    print(f"end-to-end wall time per epoch: {wall_with:.3f} s with / {wall_without:.3f} s without checkpoints "
          f"= ratio {wall_with / wall_without:.3f}")
    same = all(with_ckpt[c].equals(without[c]) for c in ("train_loss", "train_accuracy", "remaining_weights"))
    print(f"identical histories with and without checkpoints: {same}")


if __name__ == "__main__":
    main()
