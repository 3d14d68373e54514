"""Iterative pruning with mask-1 and mask-0 actions: the lottery-ticket experiments.

Source: Frankle & Carbin, "The Lottery Ticket Hypothesis" (ICLR 2019), Section 2
(iterative magnitude pruning with rewinding to the initial weights); Zhou, Lan, Liu &
Yosinski, "Deconstructing Lottery Tickets" (NeurIPS 2019), Sections 3 and 4 (mask-0 and
mask-1 actions) and ``train_lottery.py`` of their reference code.

One *configuration* (criterion, mask-1 action, mask-0 action, same-sign filter) runs a
chain of rounds:

- round 0 trains the dense network from the initial weights ``w_i`` (the baseline);
- round r ≥ 1 prunes the weights still kept after round r − 1 by the criterion, scored
  on ``w_i`` and the round's trained weights ``w_f``, so that layer ℓ keeps
  ``round((1 − r_ℓ)^r · n_ℓ)`` weights (per-layer rates of
  :func:`~supermask_pipeline.masks.layer_prune_rate`); the mask-1 action sets the kept
  weights' start values, the mask-0 action the pruned weights' frozen values
  (:func:`~supermask_pipeline.masks.ticket_start`); the network retrains with the same
  recipe under that fixed mask (:class:`~supermask_pipeline.masks.FixedMaskStrategy`:
  pruned weights get no gradient and stay at their frozen value).

``w_i`` is always the original initialisation, for the criterion and for both actions
(rewinding to θ₀ as Frankle & Carbin; a mask-0 rule applied to a weight pruned in an
earlier round leaves it where it is, since its ``w_f`` is its frozen value).

Every round is one call of the training engine, so every round checkpoints and resumes
like any training run. A round's checkpoint fingerprint is its start state (weights,
mask, frozen values), recipe and data; a rerun of a chain that was interrupted in round
k therefore returns rounds 0 … k − 1 from their final checkpoints without training and
continues round k from its newest checkpoint. Rounds with the same start (round 0 of
every configuration) are trained once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from supermask_pipeline.masks.criteria import criterion_mask, get_criterion, layer_prune_rate, remaining_fraction
from supermask_pipeline.masks.ticket_actions import get_mask_0_action, get_mask_1_action, ticket_start
from supermask_pipeline.masks.strategies import FixedMaskStrategy
from supermask_pipeline.models.architectures import ArchitectureSpec, layer_specs
from supermask_pipeline.models.network import MaskedNetwork, check_layer_tensors
from supermask_pipeline.seeds import RunSeeds
from supermask_pipeline.training.checkpoint import Checkpointing, CheckpointStore
from supermask_pipeline.training.config import TrainingConfig
from supermask_pipeline.training.engine import train
from supermask_pipeline.training.evaluation import TensorDataset, evaluate
from supermask_pipeline.training.optimization import Augmentation

Tensors = dict[str, torch.Tensor]


@dataclass(frozen=True)
class LotteryConfiguration:
    """What one chain of rounds does (Zhou et al. 2019).

    Attributes:
        criterion: a key of :data:`~supermask_pipeline.masks.CRITERIA` (``large_final`` is
            Frankle & Carbin's magnitude pruning).
        mask_1_action: a key of :data:`~supermask_pipeline.masks.MASK_1_ACTIONS` (``none``:
            the kept weights rewind to ``w_i``).
        mask_0_action: a key of :data:`~supermask_pipeline.masks.MASK_0_ACTIONS` (``mask``:
            pruned weights are 0).
        same_sign: keep only weights whose trained sign equals their initial sign.

    Raises:
        ValueError: an unknown criterion or action (the message lists the choices), or a
            ``same_sign`` that is not a boolean.
    """

    criterion: str = "large_final"
    mask_1_action: str = "none"
    mask_0_action: str = "mask"
    same_sign: bool = False

    def __post_init__(self) -> None:
        get_criterion(self.criterion)
        get_mask_1_action(self.mask_1_action)
        get_mask_0_action(self.mask_0_action)
        if not isinstance(self.same_sign, bool):
            raise ValueError(f"same_sign must be true or false, got {self.same_sign!r}.")

    @property
    def name(self) -> str:
        """``<criterion>[_same_sign].<mask-1 action>.<mask-0 action>``, e.g. ``large_final.none.mask``:
        the configuration's label in tables, file names and MLflow metric keys."""
        criterion = f"{self.criterion}_same_sign" if self.same_sign else self.criterion
        return f"{criterion}.{self.mask_1_action}.{self.mask_0_action}"

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> LotteryConfiguration:
        """Build from a parameter mapping; missing keys take the defaults.

        Raises:
            ValueError: a key that is not a field (the message lists the fields), or a bad value.
        """
        if not isinstance(params, Mapping):
            raise ValueError(
                f"A lottery configuration must be a mapping like {{criterion: large_final, "
                f"mask_1_action: none, mask_0_action: mask}}, got {params!r}."
            )
        known = {"criterion", "mask_1_action", "mask_0_action", "same_sign"}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"Unknown keys {unknown} in lottery configuration {dict(params)!r}; known: {sorted(known)}.")
        return cls(**dict(params))

    @classmethod
    def from_name(cls, name: str) -> LotteryConfiguration:
        """Inverse of :attr:`name`: ``large_final_same_sign.none.mask`` → the configuration.

        Raises:
            ValueError: a name not of the form ``<criterion>[_same_sign].<mask-1 action>.<mask-0 action>``,
                or an unknown criterion or action.
        """
        parts = name.split(".") if isinstance(name, str) else []
        if len(parts) != 3:
            raise ValueError(
                f"A lottery configuration name is <criterion>[_same_sign].<mask-1 action>.<mask-0 action>, "
                f"e.g. large_final.none.mask; got {name!r}."
            )
        criterion, mask_1_action, mask_0_action = parts
        same_sign = criterion.endswith("_same_sign")
        return cls(criterion.removesuffix("_same_sign"), mask_1_action, mask_0_action, same_sign)

    def as_params(self) -> dict[str, Any]:
        """The parameter mapping of :meth:`from_params`."""
        return {
            "criterion": self.criterion,
            "mask_1_action": self.mask_1_action,
            "mask_0_action": self.mask_0_action,
            "same_sign": self.same_sign,
        }


@dataclass
class RoundResult:
    """One round of a chain.

    Attributes:
        configuration: the chain.
        round: 0 for the dense training, r ≥ 1 after r prunings.
        masks: layer name → int8 mask (1 kept, 0 pruned), CPU, the layer's weight shape.
        trained_weights: layer name → float32 CPU weights after training, ``W ⊙ m`` plus
            the frozen values of pruned weights (what a dense network of these weights computes).
        history: the engine's per-epoch history of the round.
        remaining_weight_count: kept weights over all layers; ``remaining_weights`` the fraction.
        val_accuracy: validation accuracy after the last epoch (fraction).
        test_accuracy, test_loss: on the test data, when given (else NaN).
        wall_time_s: seconds the round took in this call (near 0 for a finished round
            returned from its checkpoint).
    """

    configuration: LotteryConfiguration
    round: int
    masks: Tensors
    trained_weights: Tensors
    history: pd.DataFrame
    remaining_weight_count: int
    remaining_weights: float
    val_accuracy: float
    test_accuracy: float = float("nan")
    test_loss: float = float("nan")
    wall_time_s: float = 0.0


def round_seed(seed: int, round_index: int) -> int:
    """The seed of a round's random choices (random criterion, random mask-1 actions): the
    ``lottery_round`` stream of the run seed, ``RunSeeds(seed).lottery_round(round_index)``
    (:mod:`supermask_pipeline.seeds`), so a resumed chain draws the same values. An integer
    in [0, 2⁶³).

    Raises:
        ValueError: a negative or non-integer seed or round.
    """
    for name, value in (("seed", seed), ("round", round_index)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an integer ≥ 0, got {value!r}.")
    return RunSeeds(seed).lottery_round(round_index)


def prune_round(
    spec: ArchitectureSpec,
    configuration: LotteryConfiguration,
    initial_weights: Mapping[str, torch.Tensor],
    trained_weights: Mapping[str, torch.Tensor],
    previous_masks: Mapping[str, torch.Tensor],
    round_index: int,
    rates: Mapping[str, float] | None = None,
    seed: int = 0,
) -> tuple[Tensors, Tensors, Tensors]:
    """The mask, start weights and frozen pruned values of round ``round_index`` ≥ 1.

    Args:
        spec: the architecture.
        configuration: criterion and actions.
        initial_weights: ``w_i``, layer name → float tensor of the layer's weight shape.
        trained_weights: ``w_f``, the previous round's trained weights (same shapes).
        previous_masks: the previous round's 0/1 masks (same shapes); weights they prune stay pruned.
        round_index: r ≥ 1; layer ℓ keeps ``round((1 − r_ℓ)^r · n_ℓ)`` weights.
        rates: per-layer base rate overrides (``fc``, ``output``, ``conv``).
        seed: run seed; the round's random draws use :func:`round_seed`.

    Returns:
        (masks: int8 0/1, start weights: float32, pruned values: float32 with 0 at kept
        positions), each layer name → CPU tensor of the layer's weight shape.

    Raises:
        ValueError: ``round_index`` < 1, tensors that do not fit the architecture, and what
            :func:`~supermask_pipeline.masks.criterion_mask` and
            :func:`~supermask_pipeline.masks.ticket_start` raise.
    """
    if isinstance(round_index, bool) or not isinstance(round_index, int) or round_index < 1:
        raise ValueError(f"A pruning round index must be an integer ≥ 1, got {round_index!r}.")
    generator = torch.Generator().manual_seed(round_seed(seed, round_index))
    masks: Tensors = {}
    starts: Tensors = {}
    frozen: Tensors = {}
    for layer in layer_specs(spec):
        w_i = initial_weights[layer.name].detach().cpu().float()
        w_f = trained_weights[layer.name].detach().cpu().float()
        keep = remaining_fraction(layer_prune_rate(layer, spec.name, rates), round_index)
        mask = criterion_mask(
            configuration.criterion, w_i, w_f, keep, generator, configuration.same_sign,
            previous_mask=previous_masks[layer.name].detach().cpu(),
        )
        start, trainable = ticket_start(
            w_i, w_f, mask, configuration.mask_1_action, configuration.mask_0_action, generator
        )
        masks[layer.name] = mask
        starts[layer.name] = start.contiguous()
        frozen[layer.name] = torch.where(trainable, torch.zeros_like(start), start).contiguous()
    return masks, starts, frozen


def iterative_pruning(
    spec: ArchitectureSpec,
    initial_weights: Mapping[str, torch.Tensor],
    train_data: TensorDataset,
    val_data: TensorDataset | None,
    config: TrainingConfig,
    configuration: LotteryConfiguration,
    rounds: int,
    *,
    rates: Mapping[str, float] | None = None,
    activation: str = "relu",
    seed: int | None = None,
    test_data: TensorDataset | None = None,
    store: CheckpointStore | None = None,
    identity: Mapping[str, Any] | None = None,
    augment: Augmentation | None = None,
    on_epoch_end: Callable[[int, int, dict[str, float]], None] | None = None,
    on_round_end: Callable[[RoundResult], None] | None = None,
) -> list[RoundResult]:
    """Train, prune, reset and retrain for ``rounds`` pruning rounds (``rounds + 1`` trainings).

    Args:
        spec: the architecture.
        initial_weights: ``w_i``, layer name → float32 tensor of the layer's weight shape.
        train_data, val_data, test_data: tensors on the training device (images float32
            (N, C, H, W), labels int64 (N,)); ``test_data`` may be None.
        config: the training recipe of every round (Zhou et al.: Adam, batch 60).
        configuration: criterion, mask-1 and mask-0 action, same-sign filter.
        rounds: number of pruning rounds ≥ 0 after the dense round 0.
        rates: per-layer prune-rate overrides (``fc``, ``output``, ``conv``); default 20 %,
            10 % for the output layer, 10 % for convolutions (conv6: 15 %).
        activation: ``relu`` (Zhou et al., Frankle & Carbin) or ``elu``.
        seed: run seed of the rounds' random choices (:func:`round_seed`); None: ``config.seed``,
            the seed of the engine's streams (batch order, augmentation, mask sampling).
        store, identity: checkpoint folder and the run's identity (data checksums …) for
            the engine; None: no checkpoints and no resume.
        augment: batch augmentation passed to the engine.
        on_epoch_end: called with (round, epoch, history row) after every epoch (also for
            epochs restored from a checkpoint).
        on_round_end: called with each :class:`RoundResult` as soon as the round is done.

    Returns:
        The :class:`RoundResult` of rounds 0 … ``rounds``, in order.

    Raises:
        ValueError: ``rounds`` not an integer ≥ 0, initial weights that do not fit the
            architecture, or bad rates (see :func:`prune_round`).
        TrainingDivergedError: a round's loss became NaN or infinite.
    """
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
        raise ValueError(f"rounds must be an integer ≥ 0 (pruning rounds after the dense round 0), got {rounds!r}.")
    check_layer_tensors(spec, initial_weights, "initial weights")
    seed = config.seed if seed is None else seed
    device = train_data.labels.device
    w_i = {name: tensor.detach().cpu().float() for name, tensor in initial_weights.items()}
    masks: Tensors = {layer.name: torch.ones(layer.weight_shape, dtype=torch.int8) for layer in layer_specs(spec)}
    starts: Tensors = dict(w_i)
    frozen: Tensors | None = None
    results: list[RoundResult] = []
    for round_index in range(rounds + 1):
        began = time.perf_counter()
        if round_index > 0:
            masks, starts, frozen = prune_round(
                spec, configuration, w_i, results[-1].trained_weights, masks, round_index, rates, seed
            )
            if not any(bool(values.any()) for values in frozen.values()):
                frozen = None  # pruned weights are all 0: no frozen-value buffers needed
        network = MaskedNetwork(
            spec, FixedMaskStrategy(), starts, {name: mask.float() for name, mask in masks.items()},
            activation=activation, pruned_values=frozen,
        ).to(device)
        checkpointing = None
        if store is not None:
            # "series": a round is compared only with earlier runs of the same round when the
            # engine explains why it starts over (the start state itself is in the fingerprint).
            checkpointing = Checkpointing(store, {**dict(identity or {}), "series": f"lottery round {round_index}"})
        history = train(
            network, train_data, val_data, config,
            on_epoch_end=None if on_epoch_end is None else (lambda epoch, row, r=round_index: on_epoch_end(r, epoch, row)),
            checkpointing=checkpointing,
            augment=augment,
        )
        kept = sum(int(mask.sum()) for mask in masks.values())
        total = sum(mask.numel() for mask in masks.values())
        result = RoundResult(
            configuration=configuration,
            round=round_index,
            masks={name: mask.clone() for name, mask in masks.items()},
            trained_weights=network.effective_weights(),
            history=history,
            remaining_weight_count=kept,
            remaining_weights=kept / total,
            val_accuracy=float(history["val_accuracy"].iloc[-1]) if len(history) else float("nan"),
        )
        if test_data is not None:
            metrics = evaluate(network, test_data, config.eval_batch_size)
            result.test_accuracy, result.test_loss = metrics["accuracy"], metrics["loss"]
        result.wall_time_s = time.perf_counter() - began
        results.append(result)
        if on_round_end is not None:
            on_round_end(result)
        del network
    return results


__all__ = ["LotteryConfiguration", "RoundResult", "iterative_pruning", "prune_round", "round_seed"]
