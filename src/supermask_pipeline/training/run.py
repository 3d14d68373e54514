"""One training run as an object: start or resume, train epochs, handle divergence, finish.

:func:`supermask_pipeline.training.train` builds a :class:`TrainingRun` and calls
:meth:`TrainingRun.run`; the steps are methods so that each can be read (and tested)
on its own:

1. construction: checks, the optimizer and its schedule, the seeded generators
   (:class:`~supermask_pipeline.seeds.RunSeeds` of ``config.seed``: ``batch_order``,
   ``augmentation``, ``mask_sampling``);
2. :meth:`~TrainingRun.start_or_resume`: fingerprint the run and continue from its newest
   checkpoint, or explain why it starts over;
3. :meth:`~TrainingRun.train_epoch`: one epoch, its history row, validation, best state and
   checkpoint; a non-finite loss ends the run through :meth:`~TrainingRun.diverged`;
4. :meth:`~TrainingRun.finish`: early-stopping report, the best state restored, the history.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from supermask_pipeline.seeds import RunSeeds
from supermask_pipeline.training.allocator import keep_cpu_memory
from supermask_pipeline.training.checkpoint import (
    CheckpointStore,
    CheckpointWriter,
    Checkpointing,
    TrainingState,
    capture_state,
    code_sha256,
    fingerprint,
    identity_changes,
    restore_state,
    tensors_sha256,
)
from supermask_pipeline.training.config import TrainingConfig
from supermask_pipeline.training.evaluation import TensorDataset, channels_last, validate
from supermask_pipeline.training.masked_model import as_masked_model
from supermask_pipeline.training.optimization import (
    Augmentation,
    optimizer_and_schedule,
    parameter_groups,
    train_epoch,
)

# The engine's messages keep the logger name of the public entry point: users filter on it.
logger = logging.getLogger("supermask_pipeline.training.engine")

#: Packages and modules whose code decides what training computes; a change in them starts runs over.
TRAINING_CODE = (
    "supermask_pipeline.models",
    "supermask_pipeline.masks",
    "supermask_pipeline.training",
    "supermask_pipeline.seeds",
)

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


class TrainingRun:
    """The state of one call of :func:`~supermask_pipeline.training.train` (see its docstring for the contract).

    Args:
        model: trains in place, on the data's device; a
            :class:`~supermask_pipeline.training.masked_model.MaskedModel` (a MaskedNetwork)
            or any ``nn.Module`` (:func:`~supermask_pipeline.training.masked_model.as_masked_model`
            decides once which).
        train_data, val_data: the splits on the device; ``val_data`` may be None.
        config: hyperparameters.
        on_epoch_end: called with (epoch, history row) once per epoch, restored epochs first.
        checkpointing: where to checkpoint, or None (also None when ``config.checkpoint_every`` is 0).
        augment: batch augmentation, or None.

    Attributes:
        rows: the history rows so far (one dict per epoch, :data:`HISTORY_COLUMNS`).
        best_state: the model state of the best epoch (with ``config.restore_best``), or None.
        stop: whether early stopping has ended the run.

    Raises:
        ValueError: the model has no trainable tensor, a learning-rate override names no
            trainable tensor, or early stopping / restore_best without validation data.
    """

    def __init__(
        self,
        model: nn.Module,
        train_data: TensorDataset,
        val_data: TensorDataset | None,
        config: TrainingConfig,
        on_epoch_end: EpochCallback | None = None,
        checkpointing: Checkpointing | None = None,
        augment: Augmentation | None = None,
    ) -> None:
        if not any(p.requires_grad for p in model.parameters()):
            raise ValueError("The model has no trainable tensor: nothing to train.")
        if val_data is None and (config.early_stopping_patience > 0 or config.restore_best):
            raise ValueError(
                "training.early_stopping_patience > 0 and training.restore_best need validation data (val_data); "
                "pass a validation split or set early_stopping_patience: 0 and restore_best: false."
            )
        self.device = train_data.labels.device
        if self.device.type == "cpu":
            keep_cpu_memory()
        if config.channels_last and any(p.dim() == 4 for p in model.parameters()):
            model.to(memory_format=torch.channels_last)
            train_data = channels_last(train_data)
            val_data = channels_last(val_data) if val_data is not None else None
        self.model, self.masked = model, as_masked_model(model)
        self.train_data, self.val_data, self.config = train_data, val_data, config
        self.on_epoch_end, self.augment = on_epoch_end, augment
        self.checkpointing = None if config.checkpoint_every == 0 else checkpointing
        self.steps_per_epoch = -(-len(train_data) // config.batch_size)
        self.optimizer, self.scheduler = optimizer_and_schedule(
            parameter_groups(model, config), config, self.steps_per_epoch
        )
        seeds = RunSeeds(config.seed)
        self.batch_order = torch.Generator().manual_seed(seeds.batch_order)
        self.masked.seed_mask_sampling(seeds.mask_sampling)
        self.augmentation = torch.Generator(device=self.device).manual_seed(seeds.augmentation)
        self.rows: list[dict[str, float]] = []
        self.best_state: dict[str, torch.Tensor] | None = None
        self.stop = False
        self.identity: dict[str, Any] = {}
        self.run_fingerprint = ""
        self.last_state: TrainingState | None = None  # the newest captured state (checkpointing only)
        self.writer: CheckpointWriter | None = None  # writes the checkpoints (checkpointing only)

    def generators(self) -> dict[str, torch.Generator]:
        """Stream name → the run's generator, as checkpointed (``rng.<name>``): ``batch_order``
        (CPU), ``augmentation`` (device) and the network's ``mask_sampling`` where it has one."""
        generators = {"batch_order": self.batch_order, "augmentation": self.augmentation}
        mask_generator = self.masked.mask_generator()
        if mask_generator is not None:
            generators["mask_sampling"] = mask_generator
        return generators

    def run(self, started: bool = False) -> pd.DataFrame:
        """Start or resume (unless ``started``: :meth:`start_or_resume` ran already), train the
        remaining epochs, finish; returns the history.

        The determinism settings of ``config.deterministic`` hold for the run and are put
        back afterwards, also when it raises.

        Raises:
            TrainingDivergedError: from :meth:`diverged`.
            CheckpointError: a checkpoint could not be written.
        """
        with _determinism(self.config.deterministic, self.device):
            if not started:
                self.start_or_resume()
            epochs = tqdm(
                range(len(self.rows) + 1, self.config.epochs + 1),
                desc="epochs", unit="epoch", disable=not self.config.show_progress,
                initial=len(self.rows), total=self.config.epochs,
            )
            try:
                for epoch in epochs:
                    if self.stop:
                        break
                    row = self.train_epoch(epoch)
                    epochs.set_postfix(
                        loss=f"{row['train_loss']:.4f}",
                        val_acc=f"{row['val_accuracy']:.4f}",
                        remaining=f"{row['remaining_weights']:.4f}",
                    )
                    if self.on_epoch_end is not None:
                        self.on_epoch_end(epoch, row)
                return self.finish()
            finally:
                self.close_writer()  # an error or interrupt: the checkpoint in flight still lands

    def start_or_resume(self) -> None:
        """With checkpointing, fingerprint the run and restore its newest checkpoint (with
        ``config.resume``) or capture the initial state; replay restored rows to the callback.

        The identity is the caller's plus the result-relevant hyperparameters, the sha256
        of the model's initial state and of :data:`TRAINING_CODE`.
        """
        checkpointing = self.checkpointing
        if checkpointing is not None:
            self.identity = {
                **{str(k): v for k, v in checkpointing.identity.items()},
                "training": self.config.result_parameters(),
                "initial_state": tensors_sha256(self.model.state_dict()),
                "code": code_sha256(*TRAINING_CODE),
            }
            self.run_fingerprint = fingerprint(self.identity)
            store = checkpointing.store
            self.writer = CheckpointWriter(store, self.run_fingerprint)
            resumed = store.latest(self.run_fingerprint) if self.config.resume else None
            if resumed is not None:
                self.rows, self.best_state = restore_state(
                    resumed, self.model, self.optimizer, self.scheduler, self.generators()
                )
                self.last_state = resumed
                self.writer.saved = (resumed.epoch, store.folder(self.run_fingerprint) / f"epoch_{resumed.epoch:04d}.json")
                logger.info(
                    "Resuming from the checkpoint of epoch %d of %d in %s.",
                    resumed.epoch, self.config.epochs, store.folder(self.run_fingerprint),
                )
            else:
                _explain_fresh_start(store, self.run_fingerprint, self.identity, self.config.resume)
                self.last_state = self._capture(0)
        if self.on_epoch_end is not None:
            for row in self.rows:  # restored epochs: live metrics continue in the same steps
                self.on_epoch_end(int(row["epoch"]), row)
        self.model.train()
        self.stop = early_stop(self.rows, self.config.early_stopping_patience)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """Train epoch ``epoch`` (1-based), validate, keep the best state, checkpoint.

        The batch order is ``torch.randperm`` from the CPU ``batch_order`` generator, moved
        to the device. A checkpoint is written after every ``config.checkpoint_every``
        epochs, after the last and when early stopping ends the run.

        Returns:
            The epoch's history row (:data:`HISTORY_COLUMNS`; losses in nats, accuracies
            and remaining weights as fractions, NaN validation figures without validation
            data, ``epoch_time_s`` in seconds), also appended to :attr:`rows`.

        Raises:
            TrainingDivergedError: a training loss of the epoch was NaN or infinite.
        """
        config = self.config
        start_time = time.perf_counter()
        order = torch.randperm(len(self.train_data), generator=self.batch_order).to(self.device)
        train_loss, train_accuracy, bad_step = train_epoch(
            self.model, self.train_data, order, config, self.optimizer, self.scheduler, epoch,
            self.augment, self.augmentation,
        )
        if bad_step:
            raise self.diverged(epoch, bad_step)
        return self.end_epoch(epoch, train_loss, train_accuracy, start_time)

    def end_epoch(self, epoch: int, train_loss: float, train_accuracy: float, start_time: float) -> dict[str, float]:
        """After the optimizer steps of epoch ``epoch``: the history row, validation, best state,
        early stopping and checkpoint (the second half of :meth:`train_epoch`; the batched engine,
        :mod:`~supermask_pipeline.training.batched`, calls it for every seed).

        Args:
            train_loss, train_accuracy: the epoch's mean loss (nats) and accuracy (fraction).
            start_time: ``time.perf_counter()`` when the epoch started.

        Returns:
            The history row (see :meth:`train_epoch`).

        The checkpoint is written on a background thread (:class:`CheckpointWriter`) while the
        next epoch trains; :meth:`finish` and :meth:`diverged` wait for it.

        Raises:
            CheckpointError: the previous checkpoint could not be written.
        """
        config = self.config
        lr_now = self.scheduler.get_last_lr()[0]
        row = {
            "epoch": epoch,
            "train_loss": train_loss,
            "train_accuracy": train_accuracy,
            "val_loss": float("nan"),
            "val_accuracy": float("nan"),
            "remaining_weights": self.masked.remaining_fraction(),
            "learning_rate": lr_now,
            "weight_decay": config.weight_decay * lr_now / config.learning_rate,
        }
        if self.val_data is not None:
            row["val_loss"], row["val_accuracy"] = validate(self.model, self.masked, self.val_data, config, epoch)
        row["epoch_time_s"] = time.perf_counter() - start_time
        self.rows.append(row)
        if config.restore_best and best_epoch(self.rows) == epoch:
            self.best_state = {name: value.detach().clone() for name, value in self.model.state_dict().items()}
        self.stop = early_stop(self.rows, config.early_stopping_patience)
        if self.checkpointing is not None:
            self.last_state = self._capture(epoch)
            if epoch % config.checkpoint_every == 0 or epoch == config.epochs or self.stop:
                self.writer.submit(self.last_state)  # written while the next epoch trains
        return row

    def diverged(self, epoch: int, step: int) -> TrainingDivergedError:
        """The error for a non-finite loss in ``epoch`` at ``step`` (both 1-based), after writing
        the last finite state (the end of epoch − 1) if it is not on disk yet.

        Raises:
            CheckpointError: that state could not be written.
        """
        record = None
        if self.writer is not None and self.last_state is not None:
            saved = self.writer.wait()
            if saved is None or saved[0] != self.last_state.epoch:
                self.writer.submit(self.last_state)
                saved = self.writer.wait()
            record = saved[1]
        where = (
            f"The last finite state (end of epoch {epoch - 1}) is checkpointed at {record}."
            if record else "Checkpointing is off, so no state was saved."
        )
        return TrainingDivergedError(
            f"Training loss became non-finite (NaN or inf) in epoch {epoch}, step {step} of "
            f"{self.steps_per_epoch}. {where} Lower training.learning_rate or check the inputs.",
            epoch, step, record,
        )

    def finish(self) -> pd.DataFrame:
        """Report early stopping, restore the best state (``config.restore_best``), build the history.

        Returns:
            DataFrame of :attr:`rows` with :data:`HISTORY_COLUMNS`; ``attrs["best_epoch"]``
            (None without validation data) and ``attrs["stopped_early"]``.
        """
        self.close_writer(raise_error=True)
        best = best_epoch(self.rows)
        stopped_early = self.stop and len(self.rows) < self.config.epochs
        if stopped_early:
            logger.info(
                "Early stopping after epoch %d: no better validation accuracy for %d epochs (best: epoch %s).",
                len(self.rows), self.config.early_stopping_patience, best,
            )
        if self.config.restore_best and self.best_state is not None:
            self.model.load_state_dict(self.best_state, strict=True)
            logger.info("Restored the state of epoch %s, the best validation accuracy.", best)
        history = pd.DataFrame(self.rows, columns=HISTORY_COLUMNS)
        history.attrs["best_epoch"] = best
        history.attrs["stopped_early"] = stopped_early
        return history

    def close_writer(self, raise_error: bool = False) -> None:
        """Wait for the checkpoint being written and end its thread (no-op without checkpointing).

        Raises:
            CheckpointError: with ``raise_error``, that write failed; without, it is logged
                (cleanup while another error propagates).
        """
        if self.writer is not None:
            if raise_error:
                self.writer.wait()
            self.writer.close()

    def _capture(self, epoch: int) -> TrainingState:
        return capture_state(
            epoch, self.rows, self.identity, self.model, self.optimizer, self.scheduler, self.generators(),
            self.best_state,
        )


def best_epoch(rows: list[dict[str, float]]) -> int | None:
    """The epoch with the highest validation accuracy (the earliest on ties), or None without one."""
    best, best_accuracy = None, -math.inf
    for row in rows:
        accuracy = row["val_accuracy"]
        if not math.isnan(accuracy) and accuracy > best_accuracy:
            best, best_accuracy = int(row["epoch"]), accuracy
    return best


def early_stop(rows: list[dict[str, float]], patience: int) -> bool:
    """Whether ``patience`` (> 0) epochs have passed since the best validation accuracy."""
    best = best_epoch(rows)
    return patience > 0 and best is not None and int(rows[-1]["epoch"]) - best >= patience


@contextlib.contextmanager
def _determinism(deterministic: bool, device: torch.device) -> Iterator[None]:
    """``torch.use_deterministic_algorithms(deterministic)`` and, on CUDA, cuDNN autotuning
    only when results may vary; the previous settings come back on exit."""
    previous_determinism = torch.are_deterministic_algorithms_enabled()
    previous_benchmark = torch.backends.cudnn.benchmark
    if device.type == "cuda":
        if deterministic:
            # cuBLAS needs a fixed workspace for reproducible matrix products (CUDA docs,
            # "Reproducibility"); it must be set before cuBLAS starts, so only if unset.
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = not deterministic
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous_determinism)
        torch.backends.cudnn.benchmark = previous_benchmark


def _explain_fresh_start(store: CheckpointStore, run_fingerprint: str, identity: Mapping[str, Any], resume: bool) -> None:
    """Log why a run with checkpointing starts from epoch 1 (resume off, no checkpoint yet,
    or the inputs that changed since the newest run of the same ``series``)."""
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


__all__ = [
    "HISTORY_COLUMNS",
    "TRAINING_CODE",
    "EpochCallback",
    "TrainingDivergedError",
    "TrainingRun",
    "best_epoch",
    "early_stop",
]
