"""Mask strategies: how trainable mask scores become the mask a layer multiplies its weights by.

One masked-layer mechanism serves every method (hidden-networks style, Ramanujan et
al. 2020): a layer holds frozen or trainable weights ``W`` and, for mask methods,
trainable ``mask_scores`` ``M`` of the same shape. A strategy maps ``M`` to a mask
through a small autograd function, and the layer computes with ``W ⊙ mask``.
Strategies differ only in that mapping and in how the gradient flows back.

Adding a strategy is one class and one row in :data:`MASK_STRATEGIES`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from supermask_pipeline.registry import lookup


class SignedThresholdMask(torch.autograd.Function):
    """S = sign(M) · 1[|M| > τ], with the straight-through (identity) gradient.

    Source: Koster, Grothe & Rettinger (ICLR 2022), Section 3: the effective mask
    S ∈ {−1, 0, +1}; gradients pass to M unchanged and unclipped, dL/dM = dL/dS.

    Inputs: ``scores`` float tensor of any shape, ``threshold`` 0-d float tensor τ ≥ 0.
    Output: a tensor of the dtype and shape of ``scores`` holding −1, 0 or +1.
    """

    @staticmethod
    def forward(ctx, scores: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return torch.where(scores.abs() > threshold, torch.sign(scores), torch.zeros_like(scores))

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):  # noqa: D102
        return grad_output, None


class MaskStrategy(ABC):
    """How mask scores become a mask, and which tensors train.

    Attributes:
        name: registry key, as written in parameter files and MLflow.
        trains_weights: whether the weights ``W`` receive gradients (dense training).
        uses_scores: whether the layer holds ``mask_scores``.
        trains_scores: whether those scores receive gradients (False: a fixed mask).
        binary: whether every mask is in {0, 1} (False for the signed supermask's {−1, 0, +1}).
    """

    name: str = ""
    trains_weights: bool = False
    uses_scores: bool = True
    trains_scores: bool = True
    binary: bool = True

    def setup(self, initial_scores: torch.Tensor) -> torch.Tensor:
        """Per-layer constant(s) derived from the initial scores, stored as a buffer.

        Returns:
            A 0-d float tensor (e.g. the threshold τ). Default: 0.
        """
        return torch.zeros((), dtype=initial_scores.dtype)

    @abstractmethod
    def mask(self, scores: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """The mask used in the forward pass (differentiable with respect to scores)."""

    def final_mask(self, scores: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """The deterministic mask saved at the end of training (default: the forward mask)."""
        with torch.no_grad():
            return self.mask(scores, state)


class DenseStrategy(MaskStrategy):
    """No mask: every weight kept and trained (the dense baseline)."""

    name = "dense"
    trains_weights = True
    uses_scores = False

    def mask(self, scores: torch.Tensor, state: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return torch.ones_like(scores)


class SignedSupermaskStrategy(MaskStrategy):
    """Signed supermask of Koster et al. (ICLR 2022).

    S = sign(M) where |M| > τ, else 0, with a straight-through gradient. τ is fixed per
    layer after initialisation: τ = ``threshold_factor`` · max|M₀| (the paper's 0.4), or,
    when ``threshold`` is given, the same absolute τ for every layer (the reference
    code's constructor default of 0.01, which its FCN runs may have used: see README).

    Raises:
        ValueError: ``threshold_factor`` not in the open interval (0, 1), or a
            ``threshold`` that is not positive.
    """

    name = "signed_supermask"
    binary = False

    def __init__(self, threshold_factor: float = 0.4, threshold: float | None = None) -> None:
        if not 0.0 < float(threshold_factor) < 1.0:
            raise ValueError(
                f"threshold_factor must lie in (0, 1), got {threshold_factor!r} "
                "(Koster et al. use 0.4: τ = 0.4·max|M₀|)."
            )
        if threshold is not None and not float(threshold) > 0.0:
            raise ValueError(f"threshold must be positive (or null for threshold_factor·max|M₀|), got {threshold!r}.")
        self.threshold_factor = float(threshold_factor)
        self.threshold = None if threshold is None else float(threshold)

    def setup(self, initial_scores: torch.Tensor) -> torch.Tensor:
        """τ = threshold_factor · max|M₀|, or the absolute ``threshold`` (0-d tensor, dtype of the scores)."""
        if self.threshold is not None:
            return torch.tensor(self.threshold, dtype=initial_scores.dtype)
        return self.threshold_factor * initial_scores.detach().abs().max()

    def mask(self, scores: torch.Tensor, state: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return SignedThresholdMask.apply(scores, state)


class FixedMaskStrategy(MaskStrategy):
    """A fixed binary mask under which the kept weights train.

    The layer's ``mask_scores`` hold the mask itself (1 = kept, 0 = pruned) and do not
    train; the forward mask is those scores. Pruned weights contribute nothing, or, when
    the network is given ``pruned_values``, a frozen value (Zhou et al.'s mask-0 action
    ``freeze_init``). The gradient of a pruned weight is exactly 0.

    Used for lottery-ticket retraining (Frankle & Carbin, ICLR 2019; Zhou et al.,
    NeurIPS 2019) and for fine-tuning the weights under a learned supermask.
    """

    name = "fixed_mask"
    trains_weights = True
    trains_scores = False

    def setup(self, initial_scores: torch.Tensor) -> torch.Tensor:
        """Check that the scores are a 0/1 mask; returns 0 (no per-layer constant).

        Raises:
            ValueError: a value other than 0 and 1.
        """
        if not bool(((initial_scores == 0) | (initial_scores == 1)).all()):
            raise ValueError("A fixed mask must hold only 0 (pruned) and 1 (kept).")
        return torch.zeros((), dtype=initial_scores.dtype)

    def mask(self, scores: torch.Tensor, state: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return scores


MASK_STRATEGIES: dict[str, type[MaskStrategy]] = {
    DenseStrategy.name: DenseStrategy,
    FixedMaskStrategy.name: FixedMaskStrategy,
    SignedSupermaskStrategy.name: SignedSupermaskStrategy,
}


def get_mask_strategy(name: str, **options) -> MaskStrategy:
    """Build a strategy by name with its options.

    Raises:
        ValueError: unknown name (the message lists the known strategies), or an
            option the strategy does not take.
    """
    cls = lookup(MASK_STRATEGIES, name, "method")
    try:
        return cls(**options)
    except TypeError as err:
        raise ValueError(f"Bad options for method {name!r}: {options!r} ({err}).") from None
