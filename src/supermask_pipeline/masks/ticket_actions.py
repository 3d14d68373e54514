"""Mask-1 and mask-0 actions of the lottery-ticket ablations, on one layer.

Source: Zhou, Lan, Liu & Yosinski, "Deconstructing Lottery Tickets: Zeros, Signs, and
the Supermask" (NeurIPS 2019): Section 3 (mask-0 actions, Figure 4), Section 4 (mask-1
actions, Figure 5); reference code uber-research/deconstructing-lottery-tickets
(``train_lottery.py``: ``--exp`` for mask-1, ``--model_type`` for mask-0).

Given a layer's initial weights ``w_i``, its trained weights ``w_f`` and a binary mask
(1 = kept), a *mask-1 action* decides the values the kept weights restart from before
retraining, and a *mask-0 action* decides what the pruned weights become and whether
they train. :func:`ticket_start` combines the two into the start weights of a retraining
run. Every function returns new tensors and leaves its inputs unchanged.

Adding an action is one function and one row in :data:`MASK_1_ACTIONS` or
:data:`MASK_0_ACTIONS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from supermask_pipeline.registry import lookup

Mask1Action = Callable[..., torch.Tensor]


def _check_layer(w_init: torch.Tensor, w_final: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mask as a bool tensor, after checking shapes, dtypes and mask values."""
    if w_init.shape != w_final.shape:
        raise ValueError(f"w_init and w_final differ in shape: {tuple(w_init.shape)} vs {tuple(w_final.shape)}.")
    if mask.shape != w_init.shape:
        raise ValueError(f"mask has shape {tuple(mask.shape)}, the weights {tuple(w_init.shape)}.")
    if not w_init.is_floating_point() or not w_final.is_floating_point():
        raise ValueError(f"Weights must be floating tensors, got {w_init.dtype} and {w_final.dtype}.")
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError("mask must hold only 0 and 1 (1 = kept).")
    return mask.detach() == 1


def _need(generator: torch.Generator | None, action: str) -> torch.Generator:
    if generator is None:
        raise ValueError(f"Mask-1 action {action!r} is random and needs a torch.Generator.")
    return generator


def _layer_draw(w_init: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random permutation of all of the layer's initial values, in the layer's shape.

    The initialiser that produced ``w_i`` is not known here; like the reference code,
    a fresh draw from the initial distribution is a draw from the layer's own initial
    values (without replacement).
    """
    flat = w_init.detach().reshape(-1)
    return flat[torch.randperm(flat.numel(), generator=generator)].reshape(w_init.shape)


def _kept_shuffle(w_init: torch.Tensor, kept: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The kept initial values permuted among the kept positions; 0 elsewhere."""
    out = torch.zeros_like(w_init)
    values = w_init.detach()[kept]
    out[kept] = values[torch.randperm(values.numel(), generator=generator)]
    return out


def _layer_std(w_init: torch.Tensor) -> torch.Tensor:
    """σ_ℓ: the population standard deviation of all of the layer's initial weights (numpy's ``np.std``)."""
    return w_init.detach().std(correction=0)


def rewind(
    w_init: torch.Tensor, w_final: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Rewind: kept weights restart from w_i (Frankle & Carbin's lottery ticket)."""
    kept = _check_layer(w_init, w_final, mask)
    return torch.where(kept, w_init.detach(), torch.zeros_like(w_init))


def random_reinit(
    w_init: torch.Tensor, w_final: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Kept weights drawn anew from the layer's initial values (a random permutation of
    all of w_i, read at the kept positions)."""
    kept = _check_layer(w_init, w_final, mask)
    drawn = _layer_draw(w_init, _need(generator, "random_reinit"))
    return torch.where(kept, drawn, torch.zeros_like(w_init))


def random_reshuffle(
    w_init: torch.Tensor, w_final: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The kept weights' initial values permuted among the kept positions."""
    kept = _check_layer(w_init, w_final, mask)
    return _kept_shuffle(w_init, kept, _need(generator, "random_reshuffle"))


def signed_reinit(
    w_init: torch.Tensor, w_final: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """|random_reinit| · sign(w_i): a fresh magnitude, the original sign."""
    kept = _check_layer(w_init, w_final, mask)
    drawn = _layer_draw(w_init, _need(generator, "signed_reinit")).abs() * torch.sign(w_init.detach())
    return torch.where(kept, drawn, torch.zeros_like(w_init))


def signed_reshuffle(
    w_init: torch.Tensor, w_final: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """|random_reshuffle| · sign(w_i): kept magnitudes permuted among the kept positions,
    each position keeping its own initial sign."""
    kept = _check_layer(w_init, w_final, mask)
    shuffled = _kept_shuffle(w_init, kept, _need(generator, "signed_reshuffle"))
    return shuffled.abs() * torch.sign(w_init.detach())


def signed_constant(
    w_init: torch.Tensor,
    w_final: torch.Tensor,
    mask: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    constant: float | None = None,
) -> torch.Tensor:
    """sign(w_i) · σ_ℓ, σ_ℓ = population std of all of the layer's initial weights.

    σ_ℓ is taken over the whole layer, kept and pruned (the reference code's
    ``np.std(initial_weights[i])``); ``constant`` replaces it (their ``--signed_constant``).
    A weight with w_i = 0 gets 0.
    """
    kept = _check_layer(w_init, w_final, mask)
    sigma = _layer_std(w_init) if constant is None else torch.tensor(float(constant), dtype=w_init.dtype)
    return torch.where(kept, torch.sign(w_init.detach()) * sigma, torch.zeros_like(w_init))


def rand_signed_constant(
    w_init: torch.Tensor,
    w_final: torch.Tensor,
    mask: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    constant: float | None = None,
) -> torch.Tensor:
    """±σ_ℓ with random signs: the layer's initial signs randomly permuted, times σ_ℓ.

    As in the reference code, the signs are a permutation of sign(w_i) over the whole
    layer, so the layer's share of positive signs is kept while each weight's sign is
    random. σ_ℓ and ``constant`` as in :func:`signed_constant`.
    """
    kept = _check_layer(w_init, w_final, mask)
    sigma = _layer_std(w_init) if constant is None else torch.tensor(float(constant), dtype=w_init.dtype)
    signs = torch.sign(_layer_draw(w_init, _need(generator, "rand_signed_constant")))
    return torch.where(kept, signs * sigma, torch.zeros_like(w_init))


#: Mask-1 action (Zhou et al. 2019, Section 4) → ``(w_i, w_f, mask, generator) -> start values``:
#: a tensor of the shape and dtype of w_i holding the kept weights' new values, 0 where pruned.
MASK_1_ACTIONS: dict[str, Mask1Action] = {
    "none": rewind,
    "random_reinit": random_reinit,
    "random_reshuffle": random_reshuffle,
    "signed_reinit": signed_reinit,
    "signed_reshuffle": signed_reshuffle,
    "signed_constant": signed_constant,
    "rand_signed_constant": rand_signed_constant,
}


@dataclass(frozen=True)
class Mask0Result:
    """What a mask-0 action does to a layer.

    Attributes:
        values: tensor of the shape and dtype of w_i: the fixed value of every pruned
            weight (mask 0); 0 at the kept positions.
        trainable_mask: bool tensor of the layer's shape, True where the optimiser may
            update the weight. For all four actions the kept weights train and the pruned
            ones stay at ``values``.
        zero_kept: bool tensor of the layer's shape, True for kept weights whose start
            value is replaced by 0 (only ``freeze_init_zero_all``; they still train).
    """

    values: torch.Tensor
    trainable_mask: torch.Tensor
    zero_kept: torch.Tensor


Mask0Action = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, "torch.Generator | None"], Mask0Result]


def _decreased(w_init: torch.Tensor, w_final: torch.Tensor) -> torch.Tensor:
    """|w_f| < |w_i| (the weight moved towards zero in training; the reference's ``init > final``)."""
    return w_final.detach().abs() < w_init.detach().abs()


def mask_to_zero(
    w_init: torch.Tensor, w_final: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None
) -> Mask0Result:
    """Pruned weights are 0 and do not train (the lottery ticket's mask)."""
    kept = _check_layer(w_init, w_final, mask)
    return Mask0Result(torch.zeros_like(w_init), kept.clone(), torch.zeros_like(kept))


def freeze_init(
    w_init: torch.Tensor, w_final: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None
) -> Mask0Result:
    """Pruned weights frozen at w_i."""
    kept = _check_layer(w_init, w_final, mask)
    values = torch.where(kept, torch.zeros_like(w_init), w_init.detach())
    return Mask0Result(values, kept.clone(), torch.zeros_like(kept))


def freeze_init_zero_mask(
    w_init: torch.Tensor, w_final: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None
) -> Mask0Result:
    """Pruned weights frozen at 0 where |w_f| < |w_i|, else at w_i."""
    kept = _check_layer(w_init, w_final, mask)
    frozen = torch.where(_decreased(w_init, w_final), torch.zeros_like(w_init), w_init.detach())
    return Mask0Result(torch.where(kept, torch.zeros_like(w_init), frozen), kept.clone(), torch.zeros_like(kept))


def freeze_init_zero_all(
    w_init: torch.Tensor, w_final: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None
) -> Mask0Result:
    """The zero-if-decreased rule on all weights: pruned ones as in
    :func:`freeze_init_zero_mask`, and kept ones with |w_f| < |w_i| restart from 0 (and train)."""
    kept = _check_layer(w_init, w_final, mask)
    decreased = _decreased(w_init, w_final)
    frozen = torch.where(decreased, torch.zeros_like(w_init), w_init.detach())
    return Mask0Result(torch.where(kept, torch.zeros_like(w_init), frozen), kept.clone(), kept & decreased)


#: Mask-0 action (Zhou et al. 2019, Section 3) → ``(w_i, w_f, mask, generator) -> Mask0Result``.
MASK_0_ACTIONS: dict[str, Mask0Action] = {
    "mask": mask_to_zero,
    "freeze_init": freeze_init,
    "freeze_init_zero_mask": freeze_init_zero_mask,
    "freeze_init_zero_all": freeze_init_zero_all,
}


def get_mask_1_action(name: str) -> Mask1Action:
    """Look up a mask-1 action by name.

    Raises:
        ValueError: unknown name; the message lists the known actions.
    """
    return lookup(MASK_1_ACTIONS, name, "mask-1 action")


def get_mask_0_action(name: str) -> Mask0Action:
    """Look up a mask-0 action by name.

    Raises:
        ValueError: unknown name; the message lists the known actions.
    """
    return lookup(MASK_0_ACTIONS, name, "mask-0 action")


def ticket_start(
    w_init: torch.Tensor,
    w_final: torch.Tensor,
    mask: torch.Tensor,
    mask_1: str = "none",
    mask_0: str = "mask",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Start weights and trainable mask of one layer for retraining.

    start = mask-1 values at the kept positions, mask-0 values at the pruned ones; then
    kept weights flagged by ``zero_kept`` start at 0. The zero rule is applied after the
    mask-1 action; with ``none`` this is the reference code's ``freeze_init_zero_all``.

    Returns:
        (start weights of the shape and dtype of w_i, bool trainable mask).

    Raises:
        ValueError: unknown action names (the message lists them), shape mismatch
            among ``w_init``, ``w_final`` and ``mask``, a mask value other than 0/1, or a
            random mask-1 action without a generator.
    """
    kept_values = get_mask_1_action(mask_1)(w_init, w_final, mask, generator)
    pruned = get_mask_0_action(mask_0)(w_init, w_final, mask, generator)
    start = torch.where(mask.detach() == 1, kept_values, pruned.values)
    start = torch.where(pruned.zero_kept, torch.zeros_like(start), start)
    return start, pruned.trainable_mask


__all__ = [
    "MASK_0_ACTIONS",
    "MASK_1_ACTIONS",
    "Mask0Result",
    "get_mask_0_action",
    "get_mask_1_action",
    "ticket_start",
]
