"""One training engine for every method: dense, signed supermask and the masked methods after them.

The method (a :class:`~supermask_pipeline.masks.MaskStrategy` inside the network)
decides which tensors train and how the effective weight is formed; the engine owns
batching, the optimizer and its schedule, evaluation, progress display and the
per-epoch history, early stopping. The data stay as tensors on the device; a batch
is an index slice of a seeded permutation, so no DataLoader or per-sample Python runs.

This module is the entry point, :func:`train`; the run itself is
:class:`~supermask_pipeline.training.run.TrainingRun`, the optimizer and the steps of an
epoch are in :mod:`~supermask_pipeline.training.optimization`, evaluation in
:mod:`~supermask_pipeline.training.evaluation`, checkpoints in
:mod:`~supermask_pipeline.training.checkpoint`, and what the engine asks of a masked
network in :mod:`~supermask_pipeline.training.masked_model`. The names below are
re-exported from those modules.
"""

from __future__ import annotations

import pandas as pd
from torch import nn

from supermask_pipeline.training.checkpoint import Checkpointing
from supermask_pipeline.training.config import TrainingConfig
from supermask_pipeline.training.evaluation import TensorDataset, evaluate, evaluate_sampled
from supermask_pipeline.training.optimization import Augmentation, parameter_groups, schedule_factor
from supermask_pipeline.training.run import (
    HISTORY_COLUMNS,
    TRAINING_CODE,
    EpochCallback,
    TrainingDivergedError,
    TrainingRun,
)


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

    Seeds: every generator of the run is a named stream of
    :class:`~supermask_pipeline.seeds.RunSeeds` of ``config.seed``: the batch order
    (``batch_order``, a CPU generator), the augmentation (``augmentation``, on the data's
    device), the mask sampling of a masked network (``mask_sampling``, reseeded at every
    call and overwritten by a checkpoint's state on resume) and the sampled validation mask
    after epoch e (``validation(e)``).

    Stochastic masks: a :class:`~supermask_pipeline.training.masked_model.MaskedModel` (a
    MaskedNetwork) samples a new mask every step in training mode; validation uses the
    deterministic mask, or with ``config.validation_masks == "sampled"`` one mask drawn
    from the ``validation(e)`` stream. Any other ``nn.Module`` trains as a dense network
    (remaining weights 1.0); it may still name learning-rate overrides.

    Early stopping (``config.early_stopping_patience`` > 0): training ends after that many
    epochs in a row without a validation accuracy above the best so far. With
    ``config.restore_best`` the model ends in the state of the best epoch (the earliest on
    ties). The history keeps every epoch trained; ``history.attrs`` holds ``best_epoch``
    (None without validation data) and ``stopped_early`` (True when fewer than
    ``config.epochs`` epochs ran).

    Checkpoints (with ``checkpointing``): after every ``config.checkpoint_every`` epochs
    and after the last, the full state (model, optimizer, scheduler, generators, history)
    is captured and written atomically on a background thread while the next epoch trains
    (:class:`~supermask_pipeline.training.checkpoint.CheckpointWriter`); every checkpoint is on
    disk when the call returns or raises. With ``config.resume`` a call whose fingerprint (identity,
    result-relevant hyperparameters, initial model state, training code) matches a stored
    checkpoint continues after its epoch and ends bit-identical to an uninterrupted run on
    the same machine; a call whose fingerprint differs starts over and logs which inputs
    changed.

    Args:
        model: a module on the same device as the data; a masked network gets its
            remaining-weight fraction recorded every epoch.
        train_data: the training split; shuffled every epoch by the ``batch_order``
            generator (the last, partial batch is used).
        val_data: evaluated after every epoch, or None.
        config: hyperparameters.
        on_epoch_end: called with (epoch, the history row) once per epoch in order, e.g.
            to log live metrics; after a resume first for every restored epoch.
        checkpointing: where to checkpoint, or None for no checkpoints.
        augment: applied to every training batch with the ``augmentation`` generator on
            the data's device (its state is checkpointed), e.g.
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
        CheckpointError: a checkpoint could not be written, or the checkpoint to resume
            from lacks the state of one of the run's generators.
        ValueError: the model has no trainable tensor, a learning-rate override names no
            trainable tensor, or early stopping / restore_best without validation data.
    """
    return TrainingRun(model, train_data, val_data, config, on_epoch_end, checkpointing, augment).run()


__all__ = [
    "HISTORY_COLUMNS",
    "TRAINING_CODE",
    "Augmentation",
    "Checkpointing",
    "EpochCallback",
    "TensorDataset",
    "TrainingDivergedError",
    "evaluate",
    "evaluate_sampled",
    "parameter_groups",
    "schedule_factor",
    "train",
]
