"""Mask criteria of the lottery-ticket ablations: which weights a pruned layer keeps.

Source: Zhou, Lan, Liu & Yosinski, "Deconstructing Lottery Tickets: Zeros, Signs, and
the Supermask" (NeurIPS 2019), Section 2 and Figure 2 (the criteria), Section 5
(``large_final_same_sign``); reference code uber-research/deconstructing-lottery-tickets
(``get_weight_init.py``). Per-layer prune rates: Frankle & Carbin (ICLR 2019), Figure 2
/ Zhou et al., Table S1.

A criterion scores every weight of a layer from its initial value ``w_i`` and its value
after training ``w_f``; the layer keeps the weights with the highest scores. Pruning is
per layer. Only weight tensors are scored and masked: the networks of this project have
no biases, and a bias would never be masked (Zhou et al. leave biases unpruned).

Adding a criterion is one score function and one row in :data:`CRITERIA`.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping

import torch

from supermask_pipeline.models.architectures import ARCHITECTURES, ArchitectureSpec, LayerSpec, layer_specs
from supermask_pipeline.registry import lookup

ScoreFunction = Callable[[torch.Tensor, torch.Tensor, "torch.Generator | None"], torch.Tensor]


def large_final(w_init: torch.Tensor, w_final: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Score |w_f| (Frankle & Carbin's magnitude pruning)."""
    return w_final.abs()


def small_final(w_init: torch.Tensor, w_final: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Score −|w_f|."""
    return -w_final.abs()


def large_init(w_init: torch.Tensor, w_final: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Score |w_i|."""
    return w_init.abs()


def small_init(w_init: torch.Tensor, w_final: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Score −|w_i|."""
    return -w_init.abs()


def magnitude_increase(
    w_init: torch.Tensor, w_final: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Score |w_f| − |w_i|."""
    return w_final.abs() - w_init.abs()


def movement(w_init: torch.Tensor, w_final: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Score |w_f − w_i|."""
    return (w_final - w_init).abs()


def _descending_rank(values: torch.Tensor) -> torch.Tensor:
    """0 for the largest entry, 1 for the next …; equal values ranked by flat index (int64, flat)."""
    order = torch.argsort(values.reshape(-1), descending=True, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel())
    return rank


def _common_percentile_score(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """−max(rank(first), rank(second)) as float64, in the shape of ``first``.

    The top-k of this score is the set of weights above a common percentile in both
    ``first`` and ``second``: a weight lies in the top q of both rankings exactly when
    max(rank₁, rank₂) < q. It replaces the reference code's bisection on the percentile
    (``bsearch_quadrant_threshold``), which may stop off the target count, by an exact count.
    """
    worst = torch.maximum(_descending_rank(first), _descending_rank(second))
    return (-worst).to(torch.float64).reshape(first.shape)


def large_init_large_final(
    w_init: torch.Tensor, w_final: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Keep where both |w_i| and |w_f| lie above a common per-layer percentile.

    Score −max(rank(|w_i|), rank(|w_f|)), ranks descending from 0 (float64).
    """
    return _common_percentile_score(w_init.abs(), w_final.abs())


def small_init_small_final(
    w_init: torch.Tensor, w_final: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Keep where both |w_i| and |w_f| lie below a common per-layer percentile.

    Score −max(rank(−|w_i|), rank(−|w_f|)), ranks descending from 0 (float64).
    """
    return _common_percentile_score(-w_init.abs(), -w_final.abs())


def random_order(w_init: torch.Tensor, w_final: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random permutation of 0 … n−1 as float64 scores (no ties), drawn from ``generator``.

    Raises:
        ValueError: ``generator`` is None.
    """
    if generator is None:
        raise ValueError("The random criterion needs a torch.Generator (pass seed or generator).")
    return torch.randperm(w_init.numel(), generator=generator).to(torch.float64).reshape(w_init.shape)


#: Criterion name (Zhou et al. 2019, Figure 2) → score function ``(w_i, w_f, generator) -> scores``
#: of the shape of ``w_i``, floating; a layer keeps its highest scores.
CRITERIA: dict[str, ScoreFunction] = {
    "large_final": large_final,
    "small_final": small_final,
    "large_init": large_init,
    "small_init": small_init,
    "large_init_large_final": large_init_large_final,
    "small_init_small_final": small_init_small_final,
    "magnitude_increase": magnitude_increase,
    "movement": movement,
    "random": random_order,
}


def get_criterion(name: str) -> ScoreFunction:
    """Look up a mask criterion by name.

    Raises:
        ValueError: unknown name; the message lists the known criteria.
    """
    return lookup(CRITERIA, name, "criterion", "Set it in a lottery configuration, e.g. {criterion: large_final, mask_1_action: none, mask_0_action: mask}.")


#: Per-round prune rates of Frankle & Carbin (2019), used by Zhou et al. (2019): dense 20 %,
#: output layer 10 %, convolution 10 % (conv6: 15 %, see :data:`CONV_RATE_BY_ARCHITECTURE`).
DEFAULT_PRUNE_RATES: dict[str, float] = {"fc": 0.2, "output": 0.1, "conv": 0.1}
CONV_RATE_BY_ARCHITECTURE: dict[str, float] = {"conv6": 0.15}


def _check_fraction(value: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{what} must be a number in [0, 1], got {value!r}.")
    return float(value)


def layer_prune_rate(layer: LayerSpec, architecture: str, rates: Mapping[str, float] | None = None) -> float:
    """The fraction of a layer's remaining weights pruned per round.

    Defaults (Frankle & Carbin 2019; Zhou et al. 2019, Table S1): the output layer 10 %,
    other dense layers 20 %, convolutions 10 % except conv6's 15 %. The output layer's
    rate takes precedence over the dense rate.

    Args:
        layer: the layer (``layer.is_output`` and ``layer.kind`` decide the key).
        architecture: architecture name (``fcn``, ``conv2`` …); decides the conv default.
        rates: overrides with keys ``"fc"``, ``"output"``, ``"conv"`` (fractions in [0, 1]);
            a key given here replaces the default for every architecture.

    Returns:
        The base rate, a float in [0, 1].

    Raises:
        ValueError: unknown architecture or key in ``rates`` (the message lists the
            choices), or a rate outside [0, 1].
    """
    lookup(ARCHITECTURES, architecture, "architecture")
    merged = dict(DEFAULT_PRUNE_RATES)
    merged["conv"] = CONV_RATE_BY_ARCHITECTURE.get(architecture, merged["conv"])
    for key, value in (rates or {}).items():
        lookup(DEFAULT_PRUNE_RATES, key, "prune-rate key")
        merged[key] = _check_fraction(value, f"Prune rate {key!r}")
    key = "output" if layer.is_output else layer.kind
    return merged[key]


def remaining_fraction(base_rate: float, prune_step: int) -> float:
    """Fraction of a layer's weights kept after ``prune_step`` rounds: (1 − base_rate)^p.

    Zhou et al. sweep one-shot masks at p = 0 … 24 (their ``prune_base ** prune_power``),
    i.e. the compounded rate of ``prune_step`` iterative rounds.

    Raises:
        ValueError: ``base_rate`` outside [0, 1] or ``prune_step`` not an integer ≥ 0.
    """
    rate = _check_fraction(base_rate, "base_rate")
    if isinstance(prune_step, bool) or not isinstance(prune_step, numbers.Integral) or prune_step < 0:
        raise ValueError(f"prune_step must be an integer >= 0, got {prune_step!r}.")
    return (1.0 - rate) ** int(prune_step)


def keep_count(keep_fraction: float, num_weights: int) -> int:
    """Number of weights a layer keeps: ``round(keep_fraction * num_weights)``.

    Python's ``round`` (an exact half rounds to the even integer). Zhou et al.'s code
    prunes ``int(n · (1 − keep))`` weights instead; the two differ by at most one weight.

    Raises:
        ValueError: ``keep_fraction`` outside [0, 1].
    """
    return round(_check_fraction(keep_fraction, "keep_fraction") * num_weights)


def _check_pair(w_init: torch.Tensor, w_final: torch.Tensor) -> None:
    if w_init.shape != w_final.shape:
        raise ValueError(f"w_init and w_final differ in shape: {tuple(w_init.shape)} vs {tuple(w_final.shape)}.")
    for name, tensor in (("w_init", w_init), ("w_final", w_final)):
        if not tensor.is_floating_point():
            raise ValueError(f"{name} must be a floating tensor, got {tensor.dtype}.")
        if bool(torch.isnan(tensor).any()):
            raise ValueError(f"{name} contains NaN; scores would have no order.")


def criterion_mask(
    criterion: str,
    w_init: torch.Tensor,
    w_final: torch.Tensor,
    keep_fraction: float,
    generator: torch.Generator | None = None,
    same_sign: bool = False,
    previous_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The binary mask of one layer under a criterion.

    The candidates are all weights (or those with ``previous_mask == 1``); with
    ``same_sign`` only those with sign(w_f) == sign(w_i) (sign 0 counts as its own sign).
    The criterion scores the candidates only, and the layer keeps the
    ``k = round(keep_fraction · numel)`` candidates with the highest scores; equal
    scores go to the lower flat (row-major) index. ``numel`` is the whole layer, so
    ``keep_fraction`` is always a fraction of the layer, also after earlier rounds.

    ``same_sign`` (Zhou et al. 2019, Section 5, ``large_final_same_sign``): sign-flipped
    weights are removed before ranking, so the layer keeps the k best same-sign weights
    and still exactly k weights, as the reference code does (it sets the flipped weights'
    score to 0, the lowest |w_f|). Masking the flipped weights after ranking instead
    would keep fewer than k and change the pruning rate. Where fewer than k same-sign
    weights exist, all of them are kept and no flipped weight is (the reference code
    would then fill up with flipped weights of score 0).

    Args:
        criterion: a key of :data:`CRITERIA`.
        w_init, w_final: initial and trained weights, same shape, floating dtype.
        keep_fraction: fraction of the layer kept, in [0, 1].
        generator: random source of the ``random`` criterion (ignored by the others).
        same_sign: keep only weights whose sign did not flip in training.
        previous_mask: the mask of the previous round (0/1, any dtype, shape of
            ``w_init``) for iterative pruning; weights it prunes stay pruned.

    Returns:
        int8 tensor of the shape of ``w_init`` with values 0 (pruned) and 1 (kept).
        Inputs are not modified.

    Raises:
        ValueError: unknown criterion (the message lists them); ``keep_fraction`` outside
            [0, 1]; shape mismatch between ``w_init``, ``w_final`` and ``previous_mask``;
            non-floating or NaN weights; ``random`` without a generator; a ``previous_mask``
            that keeps fewer than k weights or holds values other than 0/1.
    """
    score = get_criterion(criterion)
    _check_pair(w_init, w_final)
    num_weights = w_init.numel()
    k = keep_count(keep_fraction, num_weights)
    w_i = w_init.detach().reshape(-1)
    w_f = w_final.detach().reshape(-1)
    candidate = torch.ones(num_weights, dtype=torch.bool)
    if previous_mask is not None:
        if previous_mask.shape != w_init.shape:
            raise ValueError(
                f"previous_mask has shape {tuple(previous_mask.shape)}, the weights {tuple(w_init.shape)}."
            )
        previous = previous_mask.detach().reshape(-1)
        if not bool(((previous == 0) | (previous == 1)).all()):
            raise ValueError("previous_mask must hold only 0 and 1.")
        candidate = previous == 1
        if k > int(candidate.sum()):
            raise ValueError(
                f"keep_fraction {keep_fraction} keeps {k} weights, but previous_mask keeps only "
                f"{int(candidate.sum())}; iterative pruning can only remove weights."
            )
    if same_sign:
        candidate &= torch.sign(w_i) == torch.sign(w_f)
    index = torch.nonzero(candidate).reshape(-1)
    scores = score(w_i[index], w_f[index], generator)
    chosen = index[torch.argsort(scores, descending=True, stable=True)[: min(k, index.numel())]]
    mask = torch.zeros(num_weights, dtype=torch.int8)
    mask[chosen] = 1
    return mask.reshape(w_init.shape)


def criterion_masks(
    criterion: str,
    initial: Mapping[str, torch.Tensor],
    final: Mapping[str, torch.Tensor],
    spec: ArchitectureSpec,
    prune_step: int,
    rates: Mapping[str, float] | None = None,
    seed: int = 0,
    same_sign: bool = False,
) -> dict[str, torch.Tensor]:
    """One-shot masks of every layer of an architecture at prune step p.

    Layer ℓ keeps ``round((1 − r_ℓ)^p · n_ℓ)`` weights, r_ℓ from :func:`layer_prune_rate`
    (Zhou et al. 2019: one-shot masks at p = 0 … 24).

    Args:
        criterion: a key of :data:`CRITERIA`.
        initial, final: layer name (``conv<i>``/``fc<i>``) → weight tensor of the layer's
            ``weight_shape``, floating. Only these weight tensors are read; other keys
            (e.g. biases, which these networks do not have) are ignored and get no mask.
        spec: the architecture.
        prune_step: p ≥ 0.
        rates: prune-rate overrides (keys ``fc``, ``output``, ``conv``).
        seed: seed of the one CPU ``torch.Generator`` that the ``random`` criterion draws
            from, layer after layer in forward order.
        same_sign: see :func:`criterion_mask`.

    Returns:
        layer name → int8 mask (0/1) of the layer's weight shape, in forward order.

    Raises:
        ValueError: a layer missing from ``initial`` or ``final`` or of the wrong shape,
            and everything :func:`criterion_mask` and :func:`layer_prune_rate` raise.
    """
    get_criterion(criterion)
    generator = torch.Generator().manual_seed(int(seed))
    masks: dict[str, torch.Tensor] = {}
    for layer in layer_specs(spec):
        for label, weights in (("initial", initial), ("final", final)):
            if layer.name not in weights:
                raise ValueError(
                    f"{label} weights have no layer {layer.name!r} (architecture {spec.name!r}); "
                    f"got {', '.join(sorted(weights)) or 'none'}."
                )
            if tuple(weights[layer.name].shape) != layer.weight_shape:
                raise ValueError(
                    f"{label} weight {layer.name!r} has shape {tuple(weights[layer.name].shape)}, "
                    f"expected {layer.weight_shape}."
                )
        keep = remaining_fraction(layer_prune_rate(layer, spec.name, rates), prune_step)
        masks[layer.name] = criterion_mask(
            criterion, initial[layer.name], final[layer.name], keep, generator, same_sign
        )
    return masks


__all__ = [
    "CRITERIA",
    "CONV_RATE_BY_ARCHITECTURE",
    "DEFAULT_PRUNE_RATES",
    "criterion_mask",
    "criterion_masks",
    "get_criterion",
    "keep_count",
    "layer_prune_rate",
    "remaining_fraction",
]
