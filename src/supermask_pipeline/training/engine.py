"""One training engine for every method: dense, signed supermask and the masked methods after them.

The method (a :class:`~supermask_pipeline.masks.MaskStrategy` inside the network)
decides which tensors train and how the effective weight is formed; the engine owns
batching, the optimizer and its schedule, evaluation, progress display and the
per-epoch history, early stopping. The data stay as tensors on the device; a batch
is an index slice of a seeded permutation, so no DataLoader or per-sample Python runs.
"""

from __future__ import annotations

import logging
import math
import os
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from supermask_pipeline.training.checkpoint import (
    CheckpointStore,
    TrainingState,
    capture_rng,
    code_sha256,
    fingerprint,
    identity_changes,
    json_float,
    restore_rng,
    tensors_sha256,
)
from supermask_pipeline.training.config import TrainingConfig

logger = logging.getLogger(__name__)

#: Packages whose code decides what training computes; a change in them starts runs over.
TRAINING_CODE = ("supermask_pipeline.models", "supermask_pipeline.masks", "supermask_pipeline.training")

EpochCallback = Callable[[int, dict[str, float]], None]
#: A batched augmentation: (images (B, C, H, W) on the device, generator on that device) → images.
Augmentation = Callable[[torch.Tensor, torch.Generator], torch.Tensor]

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
    """The training loss became NaN or infinite.

    Attributes:
        epoch: the epoch (1-based) in which it happened.
        step: the first optimizer step of that epoch (1-based) with a non-finite loss.
        checkpoint: JSON record of the checkpoint of the last finite state (end of the
            previous epoch), or None when checkpointing is off.
    """

    def __init__(self, message: str, epoch: int, step: int, checkpoint: Path | None) -> None:
        super().__init__(message)
        self.epoch, self.step, self.checkpoint = epoch, step, checkpoint


@dataclass(frozen=True)
class Checkpointing:
    """Where and under which identity a run checkpoints (see :mod:`supermask_pipeline.training.checkpoint`).

    Attributes:
        store: the checkpoint folder.
        identity: JSON-serialisable description of the run's inputs that the engine cannot
            see itself: the method and its options, the data (e.g. split checksums), the
            architecture. The engine adds the result-relevant training hyperparameters,
            a checksum of the model's initial state and of the training code. An optional
            ``"series"`` entry names a family of runs (e.g. ``"lottery round 3"``): when a
            run starts over, the changed inputs are explained against the newest run of
            the same series only.
    """

    store: CheckpointStore
    identity: Mapping[str, Any] = field(default_factory=dict)


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


@torch.no_grad()
def _validate(model: nn.Module, data: TensorDataset, config: TrainingConfig, epoch: int) -> tuple[float, float]:
    """Validation loss and accuracy after ``epoch`` with the mask of ``config.validation_masks``:
    the final mask, or one mask sampled from a generator seeded by (seed, epoch), so that the
    figure does not depend on the training's sampling stream (and a resumed run repeats it)."""
    if config.validation_masks == "sampled" and hasattr(model, "frozen_sample"):
        seed = int(np.random.SeedSequence([config.seed, epoch]).generate_state(1)[0])
        result = evaluate_sampled(model, data, 1, config.eval_batch_size, seed)
        return result["loss_mean"], result["accuracy_mean"]
    result = evaluate(model, data, config.eval_batch_size)
    return result["loss"], result["accuracy"]


def evaluate_sampled(
    model: nn.Module, data: TensorDataset, samples: int = 10, batch_size: int = 2000, seed: int = 0
) -> dict[str, float]:
    """Loss and accuracy over ``samples`` masks drawn from a stochastic strategy (Bernoulli, ASLP).

    Each mask is drawn once per layer and held fixed for the whole of ``data``
    (:meth:`~supermask_pipeline.models.MaskedNetwork.frozen_sample`); Zhou et al. (NeurIPS
    2019, Section 5) report the mean test accuracy over 10 such masks. The masks come from
    a generator of its own seeded with ``seed`` on the model's device, so the result does
    not depend on how far training advanced the network's own sampling stream. For a
    deterministic strategy every sample is the deterministic mask (std 0). The accuracy of
    the deterministic final mask is :func:`evaluate`.

    Args:
        model: a :class:`~supermask_pipeline.models.MaskedNetwork` on the data's device.
        data: images float32 (N, C, H, W) and labels int64 (N,) on one device.
        samples: number of masks drawn (≥ 1).
        batch_size: images per forward pass (memory only).
        seed: seed of the sampling generator (integer ≥ 0).

    Returns:
        ``{"accuracy_mean", "accuracy_std", "loss_mean", "loss_std"}``: accuracies as
        fractions, losses as mean cross-entropy in nats; std is the sample standard
        deviation over the masks (ddof 1; 0 for one sample).

    Raises:
        ValueError: a model without ``frozen_sample`` (not a masked network), or
            ``samples``/``seed`` not integers ≥ 1 / ≥ 0.
    """
    if not hasattr(model, "frozen_sample"):
        raise ValueError(
            f"evaluate_sampled needs a MaskedNetwork (a model with frozen_sample()), got {type(model).__name__}; "
            "use evaluate() for other models."
        )
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be an integer ≥ 1 (masks drawn), got {samples!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer ≥ 0, got {seed!r}.")
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    accuracies, losses = [], []
    for _ in range(samples):
        with model.frozen_sample(generator):
            result = evaluate(model, data, batch_size)
        accuracies.append(result["accuracy"])
        losses.append(result["loss"])

    def spread(values: list[float]) -> float:
        return statistics.stdev(values) if len(values) > 1 else 0.0

    return {
        "accuracy_mean": statistics.fmean(accuracies),
        "accuracy_std": spread(accuracies),
        "loss_mean": statistics.fmean(losses),
        "loss_std": spread(losses),
    }


def _remaining_fraction(model: nn.Module) -> float:
    fraction = getattr(model, "remaining_fraction", None)
    return 1.0 if fraction is None else fraction()


def train(
    model: nn.Module,
    train_data: TensorDataset,
    val_data: TensorDataset | None,
    config: TrainingConfig,
    on_epoch_end: EpochCallback | None = None,
    checkpointing: Checkpointing | None = None,
    augment: Augmentation | None = None,
) -> pd.DataFrame:
    """Train ``model`` in place and return its per-epoch history.

    Optimizer: SGD (momentum, optional Nesterov) or Adam over the tensors with
    ``requires_grad``. Tensors the model names in ``learning_rate_overrides()`` (e.g.
    ASLP's learnable scales) form groups with their own learning rate and weight decay 0;
    every other trained tensor (mask scores or weights) gets ``config.weight_decay``.
    Schedule (``config.lr_schedule``), t counted in steps: exponential
    ``lr_t = lr · rate^(t / (decay_epochs · steps_per_epoch))`` (Koster et al. 2022) or
    cosine ``lr_t = lr · ½(1 + cos(π t / (epochs · steps_per_epoch)))`` (Ramanujan et al.
    2020); every group follows the same factor, and so does the decoupled weight decay.
    Decoupled weight decay multiplies every such tensor by ``(1 − wd_t)`` before
    each step, not scaled by the learning rate (TensorFlow Addons' SGDW, Loshchilov &
    Hutter 2019); ``l2`` mode adds ``wd·p`` to the gradient instead.

    Stochastic masks: a model with ``seed_mask_sampling`` (a MaskedNetwork) has its
    mask-sampling generator seeded with ``config.seed + 2`` at a fresh start; training
    mode samples a new mask every step, validation uses the deterministic mask.

    Early stopping (``config.early_stopping_patience`` > 0): training ends after that many
    epochs in a row without a validation accuracy above the best so far. With
    ``config.restore_best`` the model ends in the state of the best epoch (the earliest on
    ties). The history keeps every epoch trained; ``history.attrs`` holds ``best_epoch``
    (None without validation data) and ``stopped_early`` (True when fewer than
    ``config.epochs`` epochs ran).

    Checkpoints (with ``checkpointing``): after every ``config.checkpoint_every`` epochs
    and after the last, the full state (model, optimizer, scheduler, generators, history)
    is written atomically. With ``config.resume`` a call whose fingerprint (identity,
    result-relevant hyperparameters, initial model state, training code) matches a stored
    checkpoint continues after its epoch and ends bit-identical to an uninterrupted run on
    the same machine; a call whose fingerprint differs starts over and logs which inputs
    changed.

    Args:
        model: a module on the same device as the data; a network with ``masks()``
            gets its remaining-weight fraction recorded every epoch.
        train_data: the training split; shuffled every epoch by a generator seeded with
            ``config.seed`` (the last, partial batch is used).
        val_data: evaluated after every epoch, or None.
        config: hyperparameters.
        on_epoch_end: called with (epoch, the history row) once per epoch in order, e.g.
            to log live metrics; after a resume first for every restored epoch.
        checkpointing: where to checkpoint, or None for no checkpoints.
        augment: applied to every training batch with a generator on the data's device
            seeded from ``config.seed`` (its state is checkpointed), e.g.
            :func:`supermask_pipeline.images.augmentation.random_crop_flip`; None: no augmentation.

    Checkpoints also hold the mask-sampling generator and, with ``restore_best``, the best
    state so far, so a resumed run stops at the same epoch and restores the same state.

    Device and speed: the data and model stay on the device; the host synchronises once
    per epoch (loss, accuracy, divergence flag). ``config.precision == "bf16"`` runs the
    training forward pass and loss under ``torch.autocast(bfloat16)`` (evaluation stays
    fp32); ``config.channels_last`` puts conv weights and images in channels_last format.

    Returns:
        DataFrame with one row per epoch and :data:`HISTORY_COLUMNS` (losses in nats,
        accuracies and remaining weights as fractions, times in seconds).

    Raises:
        TrainingDivergedError: a training loss became NaN or infinite; the message gives the
            epoch and step and the checkpoint of the last finite state (end of the previous epoch).
        CheckpointError: a checkpoint could not be written.
        ValueError: the model has no trainable tensor, a learning-rate override names no
            trainable tensor, or early stopping / restore_best without validation data.
    """
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("The model has no trainable tensor: nothing to train.")
    if val_data is None and (config.early_stopping_patience > 0 or config.restore_best):
        raise ValueError(
            "training.early_stopping_patience > 0 and training.restore_best need validation data (val_data); "
            "pass a validation split or set early_stopping_patience: 0 and restore_best: false."
        )
    if config.checkpoint_every == 0:
        checkpointing = None
    device = train_data.labels.device
    if config.channels_last and any(p.dim() == 4 for p in model.parameters()):
        model.to(memory_format=torch.channels_last)
        train_data = _channels_last(train_data)
        val_data = _channels_last(val_data) if val_data is not None else None
    n = len(train_data)
    steps_per_epoch = -(-n // config.batch_size)
    optimizer, scheduler = _optimizer_and_schedule(parameter_groups(model, config), config, steps_per_epoch)
    generator = torch.Generator().manual_seed(config.seed)
    if hasattr(model, "seed_mask_sampling"):
        model.seed_mask_sampling(config.seed + 2)
    augment_generator = torch.Generator(device=device).manual_seed(config.seed + 1)
    previous_determinism = torch.are_deterministic_algorithms_enabled()
    previous_benchmark = torch.backends.cudnn.benchmark
    if device.type == "cuda":
        if config.deterministic:
            # cuBLAS needs a fixed workspace for reproducible matrix products (CUDA docs,
            # "Reproducibility"); it must be set before cuBLAS starts, so only if unset.
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = not config.deterministic  # autotune only when results may vary
    torch.use_deterministic_algorithms(config.deterministic, warn_only=True)
    try:
        rows: list[dict[str, float]] = []
        run_fingerprint = ""
        last_state: TrainingState | None = None
        saved: tuple[int, Path] | None = None  # (epoch, JSON record) of the newest checkpoint on disk
        best_state: dict[str, torch.Tensor] | None = None  # model state of the best epoch (restore_best)
        if checkpointing is not None:
            identity = {
                **{str(k): v for k, v in checkpointing.identity.items()},
                "training": config.result_parameters(),
                "initial_state": tensors_sha256(model.state_dict()),
                "code": code_sha256(*TRAINING_CODE),
            }
            run_fingerprint = fingerprint(identity)
            resumed = checkpointing.store.latest(run_fingerprint) if config.resume else None
            if resumed is not None:
                rows, best_state = _restore(resumed, model, optimizer, scheduler, generator, augment_generator)
                last_state = resumed
                saved = (resumed.epoch, checkpointing.store.folder(run_fingerprint) / f"epoch_{resumed.epoch:04d}.json")
                logger.info(
                    "Resuming from the checkpoint of epoch %d of %d in %s.",
                    resumed.epoch, config.epochs, checkpointing.store.folder(run_fingerprint),
                )
            else:
                _explain_fresh_start(checkpointing.store, run_fingerprint, identity, config.resume)
                last_state = _capture(
                    0, rows, identity, model, optimizer, scheduler, generator, augment_generator, best_state
                )
        if on_epoch_end is not None:
            for row in rows:  # restored epochs: live metrics continue in the same steps
                on_epoch_end(int(row["epoch"]), row)
        model.train()
        stop = _early_stop(rows, config.early_stopping_patience)
        epochs = tqdm(
            range(len(rows) + 1, config.epochs + 1),
            desc="epochs", unit="epoch", disable=not config.show_progress,
            initial=len(rows), total=config.epochs,
        )
        for epoch in epochs:
            if stop:
                break
            start_time = time.perf_counter()
            order = torch.randperm(n, generator=generator).to(device)
            train_loss, train_accuracy, bad_step = _train_epoch(
                model, train_data, order, config, optimizer, scheduler, epoch, augment, augment_generator
            )
            if bad_step:
                record = None
                if checkpointing is not None and last_state is not None:
                    if saved is None or saved[0] != last_state.epoch:
                        saved = (last_state.epoch, checkpointing.store.save(run_fingerprint, last_state))
                    record = saved[1]
                where = (
                    f"The last finite state (end of epoch {epoch - 1}) is checkpointed at {record}."
                    if record else "Checkpointing is off, so no state was saved."
                )
                raise TrainingDivergedError(
                    f"Training loss became non-finite (NaN or inf) in epoch {epoch}, step {bad_step} of "
                    f"{steps_per_epoch}. {where} Lower training.learning_rate or check the inputs.",
                    epoch, bad_step, record,
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
                row["val_loss"], row["val_accuracy"] = _validate(model, val_data, config, epoch)
            row["epoch_time_s"] = time.perf_counter() - start_time
            rows.append(row)
            if config.restore_best and _best_epoch(rows) == epoch:
                best_state = {name: value.detach().clone() for name, value in model.state_dict().items()}
            stop = _early_stop(rows, config.early_stopping_patience)
            if checkpointing is not None:
                last_state = _capture(
                    epoch, rows, identity, model, optimizer, scheduler, generator, augment_generator, best_state
                )
                if epoch % config.checkpoint_every == 0 or epoch == config.epochs or stop:
                    saved = (epoch, checkpointing.store.save(run_fingerprint, last_state))
            epochs.set_postfix(
                loss=f"{row['train_loss']:.4f}",
                val_acc=f"{row['val_accuracy']:.4f}",
                remaining=f"{row['remaining_weights']:.4f}",
            )
            if on_epoch_end is not None:
                on_epoch_end(epoch, row)
        best_epoch = _best_epoch(rows)
        stopped_early = stop and len(rows) < config.epochs
        if stopped_early:
            logger.info(
                "Early stopping after epoch %d: no better validation accuracy for %d epochs (best: epoch %s).",
                len(rows), config.early_stopping_patience, best_epoch,
            )
        if config.restore_best and best_state is not None:
            model.load_state_dict(best_state, strict=True)
            logger.info("Restored the state of epoch %s, the best validation accuracy.", best_epoch)
        history = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
        history.attrs["best_epoch"] = best_epoch
        history.attrs["stopped_early"] = stopped_early
        return history
    finally:
        torch.use_deterministic_algorithms(previous_determinism)
        torch.backends.cudnn.benchmark = previous_benchmark


def _capture(
    epoch: int,
    rows: list[dict[str, float]],
    identity: Mapping[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    generator: torch.Generator,
    augment_generator: torch.Generator,
    best_state: Mapping[str, torch.Tensor] | None = None,
) -> TrainingState:
    """The complete training state after ``epoch`` (tensors cloned, so later steps do not change it).

    Besides the model, optimizer, scheduler and generators: the model's mask-sampling
    generator (``rng.mask_sampling``) and the best state so far (``best.model.<name>``).
    """
    tensors = {f"model.{name}": value.detach().clone() for name, value in model.state_dict().items()}
    optimizer_state = optimizer.state_dict()
    other_state: dict[str, dict[str, Any]] = {}
    for index, entries in optimizer_state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{key}"] = value.detach().clone()
            else:
                other_state.setdefault(str(index), {})[key] = value
    tensors["rng.batch_order"] = generator.get_state()
    tensors["rng.augmentation"] = augment_generator.get_state()
    if hasattr(model, "mask_generator"):
        tensors["rng.mask_sampling"] = model.mask_generator().get_state()
    if best_state is not None:
        tensors.update({f"best.model.{name}": value for name, value in best_state.items()})
    rng_tensors, rng_meta = capture_rng()
    tensors.update(rng_tensors)
    meta = {
        "identity": dict(identity),
        "history": [dict(row) for row in rows],
        "optimizer": {"param_groups": optimizer_state["param_groups"], "other_state": other_state},
        "scheduler": scheduler.state_dict(),
        **rng_meta,
    }
    return TrainingState(epoch=epoch, tensors=tensors, meta=meta)


def _restore(
    state: TrainingState,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    generator: torch.Generator,
    augment_generator: torch.Generator,
) -> tuple[list[dict[str, float]], dict[str, torch.Tensor] | None]:
    """Load ``state`` into the live objects; returns the restored history rows and best state (or None)."""
    tensors, meta = state.tensors, state.meta
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    optimizer_state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            optimizer_state.setdefault(int(index), {})[name] = value
    for index, entries in meta["optimizer"]["other_state"].items():
        optimizer_state.setdefault(int(index), {}).update(entries)
    optimizer.load_state_dict({"state": optimizer_state, "param_groups": meta["optimizer"]["param_groups"]})
    scheduler.load_state_dict(meta["scheduler"])
    generator.set_state(tensors["rng.batch_order"])
    augment_generator.set_state(tensors["rng.augmentation"])
    if "rng.mask_sampling" in tensors and hasattr(model, "mask_generator"):
        model.mask_generator().set_state(tensors["rng.mask_sampling"])
    restore_rng(tensors, meta)
    best = {k[len("best.model."):]: v for k, v in tensors.items() if k.startswith("best.model.")}
    rows = [{k: json_float(v) for k, v in row.items()} for row in meta["history"]]
    return rows, best or None


def _best_epoch(rows: list[dict[str, float]]) -> int | None:
    """The epoch with the highest validation accuracy (the earliest on ties), or None without one."""
    best, best_accuracy = None, -math.inf
    for row in rows:
        accuracy = row["val_accuracy"]
        if not math.isnan(accuracy) and accuracy > best_accuracy:
            best, best_accuracy = int(row["epoch"]), accuracy
    return best


def _early_stop(rows: list[dict[str, float]], patience: int) -> bool:
    """Whether ``patience`` (> 0) epochs have passed since the best validation accuracy."""
    best = _best_epoch(rows)
    return patience > 0 and best is not None and int(rows[-1]["epoch"]) - best >= patience


def _explain_fresh_start(store: CheckpointStore, run_fingerprint: str, identity: Mapping[str, Any], resume: bool) -> None:
    if not resume:
        logger.info("training.resume is false: starting over; checkpoints go to %s.", store.folder(run_fingerprint))
        return
    # Compare with the newest run of the same series only (e.g. the same lottery round):
    # runs of another series differ by design, not because an input changed.
    series = identity.get("series")
    others = [other for other in store.other_runs(run_fingerprint) if other.get("identity", {}).get("series") == series]
    if not others:
        logger.info("No checkpoint of this run yet; checkpoints go to %s.", store.folder(run_fingerprint))
        return
    changes = identity_changes(others[0].get("identity", {}), identity)
    logger.warning(
        "Inputs changed since the newest checkpoint %s (%s): starting over; checkpoints go to %s.",
        others[0]["_path"], "; ".join(changes) or "fingerprint differs", store.folder(run_fingerprint),
    )


def _train_epoch(
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
    """One pass over ``data`` in ``order``; returns (mean loss, accuracy, first step with a
    non-finite loss or 0). The running sums and the divergence flag stay on the device, so
    the host synchronises once per epoch, not once per step."""
    decoupled = config.weight_decay_mode == "decoupled" and config.weight_decay > 0
    bf16 = config.precision == "bf16"
    loss_sum = torch.zeros((), device=order.device)
    correct = torch.zeros((), device=order.device, dtype=torch.int64)
    first_bad_step = torch.zeros((), device=order.device, dtype=torch.int64)
    steps_per_epoch = -(-len(data) // config.batch_size)
    for step in tqdm(range(steps_per_epoch), desc=f"epoch {epoch}", unit="step", leave=False, disable=not config.show_progress):
        idx = order[step * config.batch_size : (step + 1) * config.batch_size]
        x, y = data.images[idx], data.labels[idx]
        if augment is not None:
            x = augment(x, augment_generator)
        with torch.autocast(device_type=order.device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
            loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if decoupled:
            # SGDW: p ← p·(1 − wd_t) with wd_t following the learning-rate schedule, not scaled by lr.
            with torch.no_grad():
                for group in optimizer.param_groups:
                    if group["decoupled_weight_decay"] > 0:
                        factor = group["lr"] / group["initial_lr"]
                        for p in group["params"]:
                            p.mul_(1.0 - group["decoupled_weight_decay"] * factor)
        optimizer.step()
        scheduler.step()
        with torch.no_grad():
            loss_sum += loss.detach().float() * y.shape[0]
            correct += (logits.argmax(dim=1) == y).sum()
            bad = (first_bad_step == 0) & ~torch.isfinite(loss.detach())
            first_bad_step = torch.where(bad, step + 1, first_bad_step)
    return float(loss_sum) / len(data), float(correct) / len(data), int(first_bad_step)


def _channels_last(data: TensorDataset) -> TensorDataset:
    if data.images.dim() != 4:
        return data
    return TensorDataset(data.images.contiguous(memory_format=torch.channels_last), data.labels)


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
    overrides = dict(getattr(model, "learning_rate_overrides", dict)())
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


def _optimizer_and_schedule(
    groups: list[dict[str, Any]], config: TrainingConfig, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """The optimizer over the parameter ``groups`` and its per-step schedule."""
    if config.optimizer == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(
            groups,
            lr=config.learning_rate,
            momentum=config.momentum,
            nesterov=config.nesterov and config.momentum > 0,
        )
    else:
        optimizer = torch.optim.Adam(groups, lr=config.learning_rate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule_factor(config, steps_per_epoch))
    return optimizer, scheduler
