"""The optimizer, its per-step schedule and one epoch of optimizer steps.

SGD (momentum, optional Nesterov) or Adam over a model's trainable tensors, in groups
(:func:`parameter_groups`); the schedule (:func:`schedule_factor`) multiplies every
group's learning rate and the decoupled weight decay (SGDW: TensorFlow Addons,
Loshchilov & Hutter 2019) by the same factor after every step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from supermask_pipeline.training.config import TrainingConfig
from supermask_pipeline.training.evaluation import TensorDataset
from supermask_pipeline.training.masked_model import as_masked_model

#: A batched augmentation: (images (B, C, H, W) on the device, generator on that device) → images.
Augmentation = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def parameter_groups(model: nn.Module, config: TrainingConfig) -> list[dict[str, Any]]:
    """Optimizer parameter groups of ``model``'s trainable tensors.

    The first group holds every trained tensor without an override (mask scores or
    weights) with ``config.learning_rate`` and ``config.weight_decay`` (as ``weight_decay``
    in l2 mode, as ``decoupled_weight_decay`` in decoupled mode). Tensors the model names
    in ``learning_rate_overrides()`` (parameter name → learning rate; e.g. ASLP's
    learnable scales, Dupont et al. 2022) form one group per learning rate with weight
    decay 0. Order within a group: ``named_parameters`` order.

    Returns:
        ``torch.optim`` group dicts: ``params``, ``lr``, ``weight_decay``,
        ``decoupled_weight_decay`` (the engine's SGDW coefficient).

    Raises:
        ValueError: an override names no trainable tensor of the model, or a learning rate
            that is not a positive number.
    """
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    overrides = dict(as_masked_model(model).learning_rate_overrides())
    unknown = sorted(set(overrides) - {name for name, _ in named})
    if unknown:
        raise ValueError(
            f"Learning-rate overrides name {unknown}, which are not trainable tensors of the model "
            f"(trainable: {[name for name, _ in named]})."
        )
    for name, rate in overrides.items():
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0:
            raise ValueError(f"The learning rate of {name!r} must be a positive number, got {rate!r}.")
    decoupled = config.weight_decay_mode == "decoupled"
    groups: list[dict[str, Any]] = []
    base = [p for name, p in named if name not in overrides]
    if base:
        groups.append({
            "params": base,
            "lr": config.learning_rate,
            "weight_decay": 0.0 if decoupled else config.weight_decay,
            "decoupled_weight_decay": config.weight_decay if decoupled else 0.0,
        })
    for rate in sorted(set(overrides.values())):
        groups.append({
            "params": [p for name, p in named if overrides.get(name) == rate],
            "lr": float(rate),
            "weight_decay": 0.0,
            "decoupled_weight_decay": 0.0,
        })
    return groups


def schedule_factor(config: TrainingConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """Step t (optimizer steps done) → the factor on every group's learning rate (and the decoupled weight decay).

    ``exponential``: rate^(t / (lr_decay_epochs · steps_per_epoch)) (Koster et al. 2022).
    ``cosine``: ½(1 + cos(π · min(t, T) / T)), T = epochs · steps_per_epoch, from 1 to 0
    over the whole run (Loshchilov & Hutter 2017 without restarts; Ramanujan et al. 2020).
    """
    if config.lr_schedule == "cosine":
        total = config.epochs * steps_per_epoch
        return lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
    decay_steps = config.lr_decay_epochs * steps_per_epoch
    return lambda step: config.lr_decay_rate ** (step / decay_steps)


def optimizer_and_schedule(
    groups: list[dict[str, Any]], config: TrainingConfig, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """The optimizer over the parameter ``groups`` and its per-step schedule.

    The update runs as ``foreach`` (multi-tensor) operations: one call per group and step
    instead of one per tensor, the same arithmetic as the per-tensor loop.
    """
    if config.optimizer == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(
            groups,
            lr=config.learning_rate,
            momentum=config.momentum,
            nesterov=config.nesterov and config.momentum > 0,
            foreach=True,
        )
    else:
        optimizer = torch.optim.Adam(groups, lr=config.learning_rate, foreach=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule_factor(config, steps_per_epoch))
    return optimizer, scheduler


def decayed_groups(optimizer: torch.optim.Optimizer, config: TrainingConfig) -> list[dict[str, Any]]:
    """The optimizer's parameter groups that get decoupled weight decay (none in l2 mode)."""
    if config.weight_decay_mode != "decoupled" or config.weight_decay <= 0:
        return []
    return [group for group in optimizer.param_groups if group["decoupled_weight_decay"] > 0]


def optimizer_step(
    loss: torch.Tensor, optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LambdaLR,
    decayed: list[dict[str, Any]],
) -> None:
    """One optimizer step from ``loss`` (0-d): gradients, decoupled weight decay of the ``decayed``
    groups (SGDW: p ← p·(1 − wd·lr_t/lr_0), following the schedule, not scaled by the learning
    rate; TensorFlow Addons, Loshchilov & Hutter 2019), the update, the schedule's next step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    with torch.no_grad():
        for group in decayed:
            torch._foreach_mul_(group["params"], 1.0 - group["decoupled_weight_decay"] * (group["lr"] / group["initial_lr"]))
    optimizer.step()
    scheduler.step()


def train_epoch(
    model: nn.Module,
    data: TensorDataset,
    order: torch.Tensor,
    config: TrainingConfig,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    epoch: int,
    augment: Augmentation | None = None,
    augment_generator: torch.Generator | None = None,
) -> tuple[float, float, int]:
    """One pass over ``data`` in ``order``: one optimizer step per batch.

    Args:
        model: trains in place; in training mode (stochastic masks sample every step).
        data: the training split on the device.
        order: int64 (N,) permutation of ``data`` on the device; batch k is
            ``order[k·B : (k+1)·B]`` with B = ``config.batch_size`` (the last may be partial).
        config: ``batch_size``, ``precision`` (bf16: forward and loss under
            ``torch.autocast(bfloat16)``), ``weight_decay_mode``/``weight_decay`` (decoupled:
            ``p ← p·(1 − wd·factor_t)`` before each step, SGDW), ``show_progress``.
        optimizer, scheduler: from :func:`optimizer_and_schedule`; stepped once per batch.
        epoch: 1-based, for the progress bar.
        augment, augment_generator: applied to every batch's images, or None.

    Returns:
        (mean training loss in nats, accuracy as a fraction, the first 1-based step whose
        loss was NaN or infinite, 0 if none). Every step's loss and number of correct
        predictions stay on the device in preallocated buffers, so the host synchronises
        once per epoch, not once per step.
    """
    bf16 = config.precision == "bf16"
    steps_per_epoch = -(-len(data) // config.batch_size)
    # Per-step figures go into preallocated device buffers (one copy per step, no host
    # synchronisation); they are reduced once, after the epoch.
    losses = torch.empty(steps_per_epoch, device=order.device)
    correct = torch.empty(steps_per_epoch, device=order.device, dtype=torch.int64)
    decayed = decayed_groups(optimizer, config)
    for step in tqdm(range(steps_per_epoch), desc=f"epoch {epoch}", unit="step", leave=False, disable=not config.show_progress):
        idx = order[step * config.batch_size : (step + 1) * config.batch_size]
        x, y = data.images[idx], data.labels[idx]
        if augment is not None:
            x = augment(x, augment_generator)
        with torch.autocast(device_type=order.device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
            loss = F.cross_entropy(logits, y)
        optimizer_step(loss, optimizer, scheduler, decayed)
        with torch.no_grad():
            losses[step] = loss.detach()
            correct[step] = (logits.argmax(dim=1) == y).sum()
    return _epoch_figures(losses, correct, len(data), config.batch_size)


def _epoch_figures(losses: torch.Tensor, correct: torch.Tensor, n: int, batch_size: int) -> tuple[float, float, int]:
    """(mean loss, accuracy, first 1-based non-finite step or 0) from the per-step buffers.

    The loss is the float32 running sum Σ loss_step · batch_step in step order (a sequential
    accumulate, the same rounding as adding step by step), over ``n``.
    """
    values = losses.cpu().numpy()
    sizes = np.full(values.shape, batch_size, dtype=np.float32)
    sizes[-1] = n - batch_size * (len(values) - 1)
    bad = np.flatnonzero(~np.isfinite(values))
    total = np.add.accumulate(values * sizes, dtype=np.float32)[-1] if len(values) else np.float32(0)
    return float(total) / n, float(correct.sum()) / n, int(bad[0]) + 1 if len(bad) else 0


__all__ = [
    "Augmentation",
    "decayed_groups",
    "optimizer_and_schedule",
    "optimizer_step",
    "parameter_groups",
    "schedule_factor",
    "train_epoch",
]
