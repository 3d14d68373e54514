"""One training engine for every method: dense, signed supermask and the masked methods after them.

The method (a :class:`~supermask_pipeline.masks.MaskStrategy` inside the network)
decides which tensors train and how the effective weight is formed; the engine owns
batching, the optimizer and its schedule, evaluation, progress display and the
per-epoch history. The data stay as tensors on the device; a batch is an index
slice of a seeded permutation, so no DataLoader or per-sample Python runs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from supermask_pipeline.training.config import TrainingConfig

EpochCallback = Callable[[int, dict[str, float]], None]

HISTORY_COLUMNS = [
    "epoch",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "remaining_weights",
    "learning_rate",
    "weight_decay",
    "epoch_time_s",
]


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass(frozen=True)
class TensorDataset:
    """Images and labels resident on one device.

    Attributes:
        images: float32 (N, C, H, W), already normalised.
        labels: int64 (N,), class indices.
    """

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.shape[0] != self.labels.shape[0]:
            raise ValueError(
                f"{self.images.shape[0]} images but {self.labels.shape[0]} labels; they must match."
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@torch.no_grad()
def evaluate(model: nn.Module, data: TensorDataset, batch_size: int = 2000) -> dict[str, float]:
    """Mean cross-entropy loss (nats) and accuracy (fraction in [0, 1]) of ``model`` on ``data``.

    Args:
        model: maps float32 images (B, C, H, W) to logits (B, classes), on the data's device.
        data: images and int64 labels (N,) on one device.
        batch_size: images per forward pass (memory bound only; the result does not depend on it).

    Returns:
        ``{"loss": float, "accuracy": float}``. The model is put in eval mode for the pass and
        restored afterwards; no gradient is recorded.
    """
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=data.labels.device)
    correct = torch.zeros((), device=data.labels.device, dtype=torch.int64)
    for start in range(0, len(data), batch_size):
        x = data.images[start : start + batch_size]
        y = data.labels[start : start + batch_size]
        logits = model(x)
        loss_sum += F.cross_entropy(logits, y, reduction="sum")
        correct += (logits.argmax(dim=1) == y).sum()
    model.train(was_training)
    n = max(len(data), 1)
    return {"loss": float(loss_sum) / n, "accuracy": float(correct) / n}


def _remaining_fraction(model: nn.Module) -> float:
    masks = getattr(model, "masks", None)
    if masks is None:
        return 1.0
    kept = total = 0
    for mask in masks().values():
        kept += int(mask.count_nonzero())
        total += mask.numel()
    return kept / total if total else 1.0


def train(
    model: nn.Module,
    train_data: TensorDataset,
    val_data: TensorDataset | None,
    config: TrainingConfig,
    on_epoch_end: EpochCallback | None = None,
) -> pd.DataFrame:
    """Train ``model`` in place and return its per-epoch history.

    Optimizer: SGD (momentum, optional Nesterov) or Adam over the tensors with
    ``requires_grad``. Schedule: ``lr_t = lr · rate^(t / (decay_epochs · steps_per_epoch))``,
    t counted in steps, and the same factor on the weight decay (Koster et al. 2022).
    Decoupled weight decay multiplies every trained tensor by ``(1 − wd_t)`` before
    each step, not scaled by the learning rate (TensorFlow Addons' SGDW, Loshchilov &
    Hutter 2019); ``l2`` mode adds ``wd·p`` to the gradient instead.

    Args:
        model: a module on the same device as the data; a network with ``masks()``
            gets its remaining-weight fraction recorded every epoch.
        train_data: the training split; shuffled every epoch by a generator seeded with
            ``config.seed`` (the last, partial batch is used).
        val_data: evaluated after every epoch, or None.
        config: hyperparameters.
        on_epoch_end: called after every epoch with (epoch, the history row), e.g. to
            log live metrics to MLflow.

    Returns:
        DataFrame with one row per epoch and :data:`HISTORY_COLUMNS` (losses in nats,
        accuracies and remaining weights as fractions, times in seconds).

    Raises:
        TrainingDivergedError: the training loss of an epoch is NaN or infinite.
        ValueError: the model has no trainable tensor.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("The model has no trainable tensor: nothing to train.")
    device = train_data.labels.device
    n = len(train_data)
    steps_per_epoch = -(-n // config.batch_size)
    optimizer, scheduler = _optimizer_and_schedule(params, config, steps_per_epoch)
    generator = torch.Generator().manual_seed(config.seed)
    previous_determinism = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(config.deterministic, warn_only=True)
    try:
        rows: list[dict[str, float]] = []
        model.train()
        epochs = tqdm(range(1, config.epochs + 1), desc="epochs", unit="epoch", disable=not config.show_progress)
        for epoch in epochs:
            start_time = time.perf_counter()
            order = torch.randperm(n, generator=generator).to(device)
            train_loss, train_accuracy = _train_epoch(model, train_data, order, config, optimizer, scheduler, epoch)
            if not math.isfinite(train_loss):
                raise TrainingDivergedError(
                    f"Training loss became {train_loss} in epoch {epoch}; lower training.learning_rate."
                )
            lr_now = scheduler.get_last_lr()[0]
            row = {
                "epoch": epoch,
                "train_loss": train_loss,
                "train_accuracy": train_accuracy,
                "val_loss": float("nan"),
                "val_accuracy": float("nan"),
                "remaining_weights": _remaining_fraction(model),
                "learning_rate": lr_now,
                "weight_decay": config.weight_decay * lr_now / config.learning_rate,
            }
            if val_data is not None:
                metrics = evaluate(model, val_data, config.eval_batch_size)
                row["val_loss"], row["val_accuracy"] = metrics["loss"], metrics["accuracy"]
            row["epoch_time_s"] = time.perf_counter() - start_time
            rows.append(row)
            epochs.set_postfix(
                loss=f"{row['train_loss']:.4f}",
                val_acc=f"{row['val_accuracy']:.4f}",
                remaining=f"{row['remaining_weights']:.4f}",
            )
            if on_epoch_end is not None:
                on_epoch_end(epoch, row)
        return pd.DataFrame(rows, columns=HISTORY_COLUMNS)
    finally:
        torch.use_deterministic_algorithms(previous_determinism)


def _train_epoch(
    model: nn.Module,
    data: TensorDataset,
    order: torch.Tensor,
    config: TrainingConfig,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    epoch: int,
) -> tuple[float, float]:
    """One pass over ``data`` in ``order``; returns (mean loss, accuracy). The running sums stay
    on the device, so the host synchronises once per epoch, not once per step."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    decoupled = config.weight_decay_mode == "decoupled" and config.weight_decay > 0
    loss_sum = torch.zeros((), device=order.device)
    correct = torch.zeros((), device=order.device, dtype=torch.int64)
    steps_per_epoch = -(-len(data) // config.batch_size)
    for step in tqdm(range(steps_per_epoch), desc=f"epoch {epoch}", unit="step", leave=False, disable=not config.show_progress):
        idx = order[step * config.batch_size : (step + 1) * config.batch_size]
        x, y = data.images[idx], data.labels[idx]
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if decoupled:
            # SGDW: p ← p·(1 − wd_t) with wd_t following the learning-rate schedule, not scaled by lr.
            factor = scheduler.get_last_lr()[0] / config.learning_rate
            with torch.no_grad():
                for p in params:
                    p.mul_(1.0 - config.weight_decay * factor)
        optimizer.step()
        scheduler.step()
        with torch.no_grad():
            loss_sum += loss.detach() * y.shape[0]
            correct += (logits.argmax(dim=1) == y).sum()
    return float(loss_sum) / len(data), float(correct) / len(data)


def _optimizer_and_schedule(
    params: list[torch.Tensor], config: TrainingConfig, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """The optimizer over ``params`` and its per-step exponential schedule."""
    coupled_wd = config.weight_decay if config.weight_decay_mode == "l2" else 0.0
    if config.optimizer == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(
            params,
            lr=config.learning_rate,
            momentum=config.momentum,
            nesterov=config.nesterov and config.momentum > 0,
            weight_decay=coupled_wd,
        )
    else:
        optimizer = torch.optim.Adam(params, lr=config.learning_rate, weight_decay=coupled_wd)
    decay_steps = config.lr_decay_epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: config.lr_decay_rate ** (step / decay_steps))
    return optimizer, scheduler

