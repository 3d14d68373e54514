"""Several seeds of one configuration trained as one batched model: one pass, K networks.

For small networks the machine idles between tiny matrix products; K seeds stacked along a
leading dimension run one batched product per layer (``torch.bmm`` for dense layers, a
grouped convolution with ``groups=K`` for 3×3 convolutions) instead of K small ones, and one
optimizer step over the stacked tensors instead of K.

Every seed stays its own run: its own network (its parameters become views of the stacked
tensors while training, and are copied back out at the end), initial weights and mask
scores, batch order, augmentation and mask-sampling generators (the named streams of
:class:`~supermask_pipeline.seeds.RunSeeds` of its seed), its own mask (the strategy's
:class:`~supermask_pipeline.masks.strategies.MaskParts` per seed, so stochastic strategies
draw from that seed's generator), history, validation, early stopping, best state, callback
and checkpoints, through its own :class:`~supermask_pipeline.training.run.TrainingRun`. The
stacked loss is the sum of the seeds' mean losses, so every seed's gradient is its own.

A seed's checkpoint has the format of a separate run's (its slice of the stacked optimizer
state), under an identity that adds ``"engine": "batched_seeds"``: a batched run resumes from
it bit-identically; a separate run of the same seed does not take it (the batched products
round differently, by about 1e-6 relative), and logs that the engine changed.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from supermask_pipeline.models import MaskedNetwork
from supermask_pipeline.models.network import rescale_factor
from supermask_pipeline.models.architectures import POOL
from supermask_pipeline.masks.strategies import MaskedWeight, MaskParts
from supermask_pipeline.training.checkpoint import Checkpointing
from supermask_pipeline.training.config import TrainingConfig
from supermask_pipeline.training.evaluation import TensorDataset
from supermask_pipeline.training.optimization import (
    Augmentation,
    _epoch_figures,
    decayed_groups,
    optimizer_and_schedule,
    optimizer_step,
)
from supermask_pipeline.training.run import EpochCallback, TrainingRun, _determinism

logger = logging.getLogger("supermask_pipeline.training.engine")

#: The identity entry that keeps batched and separate checkpoints of one seed apart.
BATCHED_IDENTITY = {"engine": "batched_seeds"}


class StackedLayer(nn.Module):
    """The K seeds' copies of one masked layer, stacked along a new leading dimension.

    Tensors: ``weight`` (K, *weight_shape), ``mask_scores`` (K, *weight_shape) or None,
    ``scale`` (K,) or None, ``pruned_values`` (K, *weight_shape) or None: the seeds' tensors,
    stacked; the seeds' own layers' parameters are rebound to views of them (:meth:`bind`).
    The effective weight is every seed's own (its strategy's parts, its threshold, its
    generator), formed in one :class:`~supermask_pipeline.masks.strategies.MaskedWeight` step.

    Args:
        layers: the same layer (same spec, strategy type) of each of the K networks.
    """

    def __init__(self, layers: Sequence[nn.Module]) -> None:
        super().__init__()
        self.layers = list(layers)
        first = self.layers[0]
        self.spec = first.spec
        self.weight = nn.Parameter(torch.stack([layer.weight.detach() for layer in layers]),
                                   requires_grad=first.weight.requires_grad)
        self.mask_scores = None
        if first.mask_scores is not None:
            self.mask_scores = nn.Parameter(torch.stack([layer.mask_scores.detach() for layer in layers]),
                                            requires_grad=first.mask_scores.requires_grad)
        self.scale = None
        if first.scale is not None:
            self.scale = nn.Parameter(torch.stack([layer.scale.detach() for layer in layers]))
        self.pruned_values = None
        if first.pruned_values is not None:
            self.pruned_values = torch.stack([layer.pruned_values for layer in layers])
        self.rescale = first.rescale

    def pairs(self) -> list[tuple[nn.Parameter, list[nn.Parameter]]]:
        """(stacked parameter, the seeds' parameters) for every trained tensor of the layer."""
        names = ["weight", "mask_scores", "scale"]
        return [(getattr(self, name), [getattr(layer, name) for layer in self.layers])
                for name in names if getattr(self, name) is not None]

    def bind(self) -> None:
        """Make every seed's parameters views of the stacked tensors (updates show in both)."""
        for stacked, own in self.pairs():
            for k, parameter in enumerate(own):
                parameter.data = stacked.data[k]

    def unbind(self) -> None:
        """Give every seed's parameters their own storage again (a copy of their slice)."""
        for _, own in self.pairs():
            for parameter in own:
                parameter.data = parameter.data.clone()

    def _stacked_parts(self) -> MaskParts:
        """Every seed's mask as one (K, …) :class:`MaskParts`: one call of an elementwise
        strategy on the stacked scores and thresholds, else each seed's parts (its own
        sampling generator, its own top-k) stacked.

        Raises:
            ValueError: a strategy that gives no mask parts.
        """
        first = self.layers[0]
        sampling = first.strategy.stochastic and first.sampler.active(first.training)
        if first.strategy.elementwise and not sampling and first.frozen_mask is None:
            thresholds = torch.stack([layer.mask_threshold for layer in self.layers])
            if bool((thresholds == thresholds[0]).all()):
                thresholds = thresholds[0]
            else:
                thresholds = thresholds.view(-1, *([1] * (self.mask_scores.dim() - 1)))
            return first.strategy.parts(self.mask_scores, thresholds)
        parts = [layer.mask_parts() for layer in self.layers]
        if any(part is None for part in parts):
            raise ValueError(f"Strategy {type(first.strategy).__name__} gives no mask parts; batched seeds need them.")
        surrogates = [part.surrogate for part in parts]
        surrogate = None
        if all(s is not None for s in surrogates):
            def surrogate(grad: torch.Tensor) -> torch.Tensor:
                return torch.stack([s(grad[k]) for k, s in enumerate(surrogates)])
        return MaskParts(torch.stack([part.hard for part in parts]), surrogate)

    def effective_weight(self) -> torch.Tensor:
        """(K, *weight_shape) float32: every seed's ``s · (W ⊙ m · r + P ⊙ (1 − m))`` (the
        formula of :meth:`~supermask_pipeline.models.MaskedLayer.effective_weight`, per seed).

        Raises:
            ValueError: a strategy that gives no mask parts.
        """
        weight = self.weight
        if self.mask_scores is not None:
            parts = self._stacked_parts()
            weight = MaskedWeight.apply(self.weight, self.mask_scores, parts.hard, parts.surrogate)
            if self.rescale:
                factors = torch.stack([rescale_factor(hard) for hard in parts.hard])
                weight = weight * _per_seed_view(factors, weight)
            if self.pruned_values is not None:
                weight = weight + self.pruned_values * (1.0 - parts.hard)
        if self.scale is not None:
            weight = weight * _per_seed_view(self.scale, weight)
        return weight


def _per_seed_view(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(K,) → (K, 1, …, 1), broadcasting one value per seed against ``like`` (K, …)."""
    return values.view(-1, *([1] * (like.dim() - 1)))


class StackedNetwork(nn.Module):
    """K :class:`~supermask_pipeline.models.MaskedNetwork` of one architecture and strategy as one module.

    Input: images (K, B, C, H, W) float32, seed k's batch in row k. Output: logits
    (K, B, classes). Dense layers: ``torch.bmm``; 3×3 convolutions: one convolution with
    ``groups=K`` over the seeds' channels side by side (B, K·C, H, W).

    Raises:
        ValueError: fewer than two networks, or networks of different architectures,
            strategies or activations.
    """

    def __init__(self, networks: Sequence[MaskedNetwork]) -> None:
        super().__init__()
        self.check(networks)
        first = networks[0]
        self.networks = list(networks)
        self.spec = first.spec
        self._activation = first._activation
        self.stacked = nn.ModuleList(
            StackedLayer([getattr(network, name) for network in networks]) for name in first.layer_names
        )

    @staticmethod
    def check(networks: Sequence[MaskedNetwork]) -> None:
        """Raise ValueError unless the networks share architecture, strategy and activation."""
        first = networks[0]
        for other in networks[1:]:
            if (other.spec != first.spec or type(other.strategy) is not type(first.strategy)
                    or vars(other.strategy).keys() != vars(first.strategy).keys()
                    or other.activation_name != first.activation_name):
                raise ValueError("Batched seeds need networks of one architecture, strategy and activation.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        seeds, batch = x.shape[0], x.shape[1]
        layers = iter(self.stacked)
        h = x
        if any(item != POOL for item in self.spec.conv):
            h = x.transpose(0, 1).reshape(batch, seeds * x.shape[2], *x.shape[3:])
            for item in self.spec.conv:
                if item == POOL:
                    h = F.max_pool2d(h, 2)
                else:
                    layer = next(layers)
                    weight = layer.effective_weight()
                    h = self._activation(F.conv2d(h, weight.reshape(-1, *weight.shape[2:]), padding=1, groups=seeds))
            h = h.reshape(batch, seeds, -1).transpose(0, 1)
        else:
            h = x.reshape(seeds, batch, -1)
        for layer in layers:
            h = torch.bmm(h, layer.effective_weight().transpose(1, 2))
            if not layer.spec.is_output:
                h = self._activation(h)
        return h


def train_seeds(
    models: Sequence[MaskedNetwork],
    train_data: TensorDataset,
    val_data: TensorDataset | None,
    configs: Sequence[TrainingConfig],
    on_epoch_end: Sequence[EpochCallback | None] | None = None,
    checkpointing: Sequence[Checkpointing | None] | None = None,
    augment: Augmentation | None = None,
) -> list[pd.DataFrame]:
    """Train K seeds of one configuration as one batched model; every seed's history.

    Each seed is what :func:`~supermask_pipeline.training.train` would make of
    ``(models[k], train_data, val_data, configs[k], on_epoch_end[k], checkpointing[k], augment)``,
    up to the rounding of the batched products (logits within about 1e-6 relative after a
    step): the same seeded streams, the same masks, optimizer, schedule, validation, early
    stopping and checkpoints per seed. Trains in place; ``models`` are MaskedNetworks on the
    data's device.

    Seeds that resume from checkpoints of different epochs cannot share a pass: they are
    then trained one after the other by the ordinary engine (logged).

    Returns:
        One history per seed (:data:`~supermask_pipeline.training.run.HISTORY_COLUMNS`).

    Raises:
        ValueError: fewer than two models, configurations that differ in more than ``seed``,
            networks of different architectures or strategies, or a strategy without mask parts.
        TrainingDivergedError: a seed's loss became non-finite (its error; the other seeds'
            last checkpoints stay on disk).
        CheckpointError: a checkpoint could not be written.
    """
    seeds = len(models)
    if seeds < 2 or len(configs) != seeds:
        raise ValueError(f"Batched seeds need two or more models with one configuration each (got {seeds} and {len(configs)}).")
    base = dataclasses.replace(configs[0], seed=0)
    for config in configs[1:]:
        if dataclasses.replace(config, seed=0) != base:
            raise ValueError("Batched seeds must share every training parameter except `seed`.")
    callbacks = list(on_epoch_end) if on_epoch_end is not None else [None] * seeds
    stores = list(checkpointing) if checkpointing is not None else [None] * seeds
    stores = [None if c is None else Checkpointing(c.store, {**c.identity, **BATCHED_IDENTITY}) for c in stores]
    StackedNetwork.check(models)  # before anything runs or is written
    runs = [TrainingRun(model, train_data, val_data, config, callback, store, augment)
            for model, config, callback, store in zip(models, configs, callbacks, stores)]
    config, device = configs[0], runs[0].device
    with _determinism(config.deterministic, device):
        for run in runs:
            run.start_or_resume()
        if len({len(run.rows) for run in runs}) > 1:
            logger.warning("The seeds resume from different epochs (%s): training them one after the other.",
                           [len(run.rows) for run in runs])
            return [run.run(started=True) for run in runs]
        stacked = StackedNetwork(models)  # of the resumed values
        for layer in stacked.stacked:
            layer.bind()
        try:
            optimizer, scheduler = _stacked_optimizer(stacked, runs, config)
            _train_epochs(stacked, runs, optimizer, scheduler, train_data, config, augment)
        except BaseException:
            for run in runs:  # an error or interrupt: the checkpoints in flight still land
                run.close_writer()
            raise
        finally:
            for layer in stacked.stacked:
                layer.unbind()
        return [run.finish() for run in runs]


def _stacked_optimizer(stacked: StackedNetwork, runs: Sequence[TrainingRun], config: TrainingConfig):
    """The optimizer over the stacked tensors, in the groups of seed 0's optimizer, with the
    seeds' optimizer states (after a resume) stacked and seed 0's schedule position."""
    to_stacked = {id(own[0]): (big, own) for layer in stacked.stacked for big, own in layer.pairs()}
    first = runs[0].optimizer
    groups = []
    for group in first.param_groups:
        groups.append({**{key: value for key, value in group.items() if key != "params"},
                       "params": [to_stacked[id(p)][0] for p in group["params"]]})
    optimizer, scheduler = optimizer_and_schedule(groups, config, runs[0].steps_per_epoch)
    scheduler.load_state_dict(runs[0].scheduler.state_dict())
    for group, own in zip(optimizer.param_groups, first.param_groups):
        group["lr"], group["initial_lr"] = own["lr"], own["initial_lr"]
    for big, own in to_stacked.values():
        states = [run.optimizer.state.get(p) for run, p in zip(runs, own)]
        if states[0]:
            optimizer.state[big] = {
                key: torch.stack([s[key] for s in states]) if _per_seed(value, own[0]) else value
                for key, value in states[0].items()
            }
    return optimizer, scheduler


def _per_seed(value: object, parameter: torch.Tensor) -> bool:
    """Whether an optimizer state entry holds one value per entry of ``parameter`` (momentum,
    Adam's moments), so that it is stacked / sliced per seed; not Adam's shared ``step``."""
    return isinstance(value, torch.Tensor) and value.shape == parameter.shape and value.dim() > 0


def _sync_seed_optimizers(stacked: StackedNetwork, runs: Sequence[TrainingRun], optimizer, scheduler) -> None:
    """Give every seed's own optimizer and schedule the stacked state (its slices, as views),
    so that its checkpoint and history row read what a separate run would hold."""
    for layer in stacked.stacked:
        for big, own in layer.pairs():
            state = optimizer.state.get(big)
            if not state:
                continue
            for k, (run, parameter) in enumerate(zip(runs, own)):
                run.optimizer.state[parameter] = {
                    key: value[k] if _per_seed(value, big) else value for key, value in state.items()
                }
    for run in runs:
        for own_group, group in zip(run.optimizer.param_groups, optimizer.param_groups):
            own_group["lr"] = group["lr"]
        run.scheduler.load_state_dict(scheduler.state_dict())


def _train_epochs(stacked, runs, optimizer, scheduler, data: TensorDataset, config: TrainingConfig, augment) -> None:
    seeds = len(runs)
    stopped: dict[int, dict[str, torch.Tensor]] = {}
    for model in stacked.networks:
        model.train()
    epochs = tqdm(range(len(runs[0].rows) + 1, config.epochs + 1), desc=f"epochs ({seeds} seeds)", unit="epoch",
                  disable=not config.show_progress, initial=len(runs[0].rows), total=config.epochs)
    for epoch in epochs:
        active = [k for k, run in enumerate(runs) if not run.stop]
        if not active:
            break
        start_time = time.perf_counter()
        orders = torch.stack([torch.randperm(len(data), generator=run.batch_order) for run in runs]).to(runs[0].device)
        figures = _stacked_epoch(stacked, runs, data, orders, config, optimizer, scheduler, epoch, augment)
        for k in active:
            if figures[k][2]:
                raise runs[k].diverged(epoch, figures[k][2])
        _sync_seed_optimizers(stacked, runs, optimizer, scheduler)
        rows = {}
        for k in active:  # every seed's row and checkpoint first, then the callbacks: an error in
            rows[k] = runs[k].end_epoch(epoch, figures[k][0], figures[k][1], start_time)  # one leaves all at one epoch
            if runs[k].stop:  # early stopping: this seed's state is frozen here
                stopped[k] = {name: value.detach().clone() for name, value in runs[k].model.state_dict().items()}
        for k, row in rows.items():
            if runs[k].on_epoch_end is not None:
                runs[k].on_epoch_end(epoch, row)
        epochs.set_postfix(loss=f"{figures[active[0]][0]:.4f}")
    for k, state in stopped.items():
        if not (runs[k].config.restore_best and runs[k].best_state is not None):
            runs[k].model.load_state_dict(state, strict=True)


def _stacked_epoch(stacked, runs, data, orders, config, optimizer, scheduler, epoch, augment):
    """One pass of the K seeds: one batched optimizer step per batch. Returns per seed
    (mean loss, accuracy, first non-finite step or 0), as :func:`~supermask_pipeline.training.optimization.train_epoch`."""
    seeds, n = orders.shape
    bf16 = config.precision == "bf16"
    steps = -(-n // config.batch_size)
    losses = torch.empty(seeds, steps, device=orders.device)
    correct = torch.empty(seeds, steps, device=orders.device, dtype=torch.int64)
    decayed = decayed_groups(optimizer, config)
    for step in tqdm(range(steps), desc=f"epoch {epoch}", unit="step", leave=False, disable=not config.show_progress):
        idx = orders[:, step * config.batch_size : (step + 1) * config.batch_size]
        x, y = data.images[idx], data.labels[idx]
        if augment is not None:
            x = torch.stack([augment(x[k], run.augmentation) for k, run in enumerate(runs)])
        with torch.autocast(device_type=orders.device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = stacked(x)
            per_seed = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(seeds, -1).mean(1)
            loss = per_seed.sum()
        optimizer_step(loss, optimizer, scheduler, decayed)
        with torch.no_grad():
            losses[:, step] = per_seed.detach()
            correct[:, step] = (logits.argmax(dim=-1) == y).sum(1)
    return [_epoch_figures(losses[k], correct[k], n, config.batch_size) for k in range(seeds)]


__all__ = ["BATCHED_IDENTITY", "StackedLayer", "StackedNetwork", "train_seeds"]
