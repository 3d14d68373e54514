"""Mask strategies: how trainable mask scores become the mask a layer multiplies its weights by.

One masked-layer mechanism serves every method (hidden-networks style, Ramanujan et
al. 2020): a layer holds frozen or trainable weights ``W`` and, for mask methods,
trainable ``mask_scores`` ``M`` of the same shape. A strategy maps ``M`` to a mask
through a small autograd function, and the layer computes with ``W ⊙ mask``.
Strategies differ only in that mapping and in how the gradient flows back.

Learned binary supermasks (Bernoulli of Zhou et al. 2019, the threshold mask of
Shlis, edge-popup of Ramanujan et al. 2020, ASLP of Dupont et al. 2022) are four
more such mappings. The stochastic ones (``stochastic = True``) draw a new mask in
:meth:`MaskStrategy.sample` from a generator the network owns; when sampling is
off the layer uses the deterministic :meth:`MaskStrategy.mask`.

Adding a strategy is one class and one row in :data:`MASK_STRATEGIES`.
"""

from __future__ import annotations

import math
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


class StraightThrough(torch.autograd.Function):
    """The value of ``hard`` with the gradient of ``soft`` (the straight-through estimator).

    Forward: returns ``hard`` exactly (a copy), so a mask stays exactly 0/1 rather than
    ``soft + (hard − soft)``, which rounding can move off 0/1. Backward: dL/dsoft = dL/dout,
    nothing to ``hard``. Used by every learned binary mask below with a strategy-specific
    ``soft`` surrogate (σ(M) for Bernoulli and threshold, |s| for edge-popup, the soft
    Gumbel-softmax sample for ASLP). Source: Bengio, Léonard & Courville (2013).

    Inputs: ``hard`` and ``soft``, float tensors of one shape and dtype.
    Output: a tensor equal to ``hard``, of its shape and dtype.
    """

    @staticmethod
    def forward(ctx, hard: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return hard.detach().clone()

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):  # noqa: D102
        return None, grad_output


class MaskStrategy(ABC):
    """How mask scores become a mask, and which tensors train.

    Tensors: ``scores`` float (float32 in the network) of the layer's weight shape;
    ``state`` the 0-d tensor of :meth:`setup`; every mask has the shape, dtype and device
    of ``scores`` and holds 0/1 (−1/0/+1 for the signed supermask).

    Attributes:
        name: registry key, as written in parameter files and MLflow.
        trains_weights: whether the weights ``W`` receive gradients (dense training).
        uses_scores: whether the layer holds ``mask_scores``.
        trains_scores: whether those scores receive gradients (False: a fixed mask).
        binary: whether every mask is in {0, 1} (False for the signed supermask's {−1, 0, +1}).
        stochastic: whether :meth:`sample` draws a random mask (Bernoulli, ASLP); the layer
            samples only while sampling is on (training mode, or
            :meth:`~supermask_pipeline.models.MaskedNetwork.sampling`), else uses :meth:`mask`.
        learn_scale: whether every layer gets a learnable scalar ``scale`` (start 1) that
            multiplies its effective weight (ASLP's rescaling, Dupont et al. 2022).
        scale_learning_rate: the learning rate of those scales (their own optimizer group,
            weight decay 0); None when ``learn_scale`` is False.
    """

    name: str = ""
    trains_weights: bool = False
    uses_scores: bool = True
    trains_scores: bool = True
    binary: bool = True
    stochastic: bool = False
    learn_scale: bool = False
    scale_learning_rate: float | None = None

    def setup(self, initial_scores: torch.Tensor) -> torch.Tensor:
        """Per-layer constant(s) derived from the initial scores, stored as a buffer.

        Returns:
            A 0-d float tensor (e.g. the threshold τ). Default: 0.
        """
        return torch.zeros((), dtype=initial_scores.dtype)

    @abstractmethod
    def mask(self, scores: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """The deterministic forward-pass mask (differentiable with respect to scores), shape of ``scores``."""

    def sample(self, scores: torch.Tensor, state: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A random forward-pass mask drawn with ``generator`` (on the device of ``scores``).

        Default, for deterministic strategies: :meth:`mask` (``generator`` unused).
        """
        return self.mask(scores, state)

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


def _check_number(value: object, name: str, method: str, low: float, high: float | None, hint: str) -> float:
    """``value`` as a float in (low, high] (``high`` None: (low, ∞)), else a ValueError naming option and fix."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and value > low and (high is None or value <= high):
        return float(value)
    where = f"({low:g}, {high:g}]" if high is not None else f"({low:g}, ∞)"
    raise ValueError(f"{method}.{name} must be a number in {where}, got {value!r}. {hint}")


def _sigmoid_threshold(scores: torch.Tensor) -> torch.Tensor:
    """1[σ(M) > 0.5] with the gradient of σ(M).

    The hard part is computed as ``M > 0``, which equals σ(M) > 0.5 exactly: in float32
    σ(M) rounds to 0.5 for |M| < 3e-8, so a test on σ(M) would prune some M > 0. At the
    boundary M = 0 (σ(M) = 0.5 exactly) the weight is pruned (strict inequality).
    """
    soft = torch.sigmoid(scores)
    return StraightThrough.apply((scores.detach() > 0).to(scores.dtype), soft)


class BernoulliStrategy(MaskStrategy):
    """Learned Bernoulli supermask of Zhou, Lan, Liu & Yosinski (NeurIPS 2019), Section 5.

    Training (sampling on): m ~ Bernoulli(σ(M)), a new mask every forward pass, shared by
    the whole batch, drawn as ``1[u < σ(M)]`` with u ~ U[0, 1) from the network's generator.
    Gradient: straight through the sampling to σ(M), dL/dM = dL/dm · σ(M)(1 − σ(M)).
    Deterministic mask (sampling off, and the saved final mask): 1[σ(M) > 0.5], i.e.
    ``M > 0``; σ(M) = 0.5 exactly (M = 0) is pruned. Logits start at 0 (``constant``
    initialiser), so every weight starts with keep probability 0.5. Test accuracy in the
    paper is the mean over 10 sampled masks
    (:func:`~supermask_pipeline.training.evaluate_sampled`).
    """

    name = "bernoulli"
    stochastic = True

    def mask(self, scores: torch.Tensor, state: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return _sigmoid_threshold(scores)

    def sample(self, scores: torch.Tensor, state: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """m = 1[u < σ(M)], u ~ U[0, 1) from ``generator``: 0/1 in the dtype of ``scores``, gradient through σ(M)."""
        soft = torch.sigmoid(scores)
        uniform = torch.rand(scores.shape, generator=generator, device=scores.device, dtype=scores.dtype)
        return StraightThrough.apply((uniform < soft.detach()).to(scores.dtype), soft)


class ThresholdStrategy(MaskStrategy):
    """Deterministic threshold supermask (Shlis, "supermasks" blog post; see METHODS.md).

    m = σ(M) + stopgrad(1[σ(M) > 0.5] − σ(M)): the forward value is the hard mask
    1[σ(M) > 0.5], the gradient is that of σ(M), dL/dM = dL/dm · σ(M)(1 − σ(M)).
    σ(M) = 0.5 exactly (M = 0) is pruned; the test is computed as ``M > 0`` so that
    float32 rounding of σ near 0.5 cannot flip it. Logits start at 1 (``constant``
    initialiser with scale 1): every weight starts kept.
    """

    name = "threshold"

    def mask(self, scores: torch.Tensor, state: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return _sigmoid_threshold(scores)


def top_k_mask(values: torch.Tensor, keep_fraction: float) -> torch.Tensor:
    """1 for the ``round(keep_fraction · numel)`` largest entries of ``values``, else 0.

    Exactly that many ones, however many ties: equal values are ranked by their
    position in row-major (flattened) order, the earlier one kept (a stable sort), so
    the result is deterministic on every device. ``round`` is Python's (an exact half
    goes to the even integer), the rule of :func:`supermask_pipeline.masks.keep_count`.

    Args:
        values: float tensor of any shape, no NaN.
        keep_fraction: fraction of the entries kept, in [0, 1].

    Returns:
        A tensor of the shape, dtype and device of ``values`` holding 0 and 1 (no gradient).
    """
    flat = values.detach().reshape(-1)
    n = flat.numel()
    k = round(float(keep_fraction) * n)
    if k == 0:
        return torch.zeros_like(values).detach()
    # Selection, not a sort (5× faster for the FCN's first layer): the k-th largest value,
    # everything above it, then the earliest of its ties up to k; no host synchronisation.
    threshold = torch.kthvalue(flat, n - k + 1).values
    above = flat > threshold
    tie = flat == threshold
    keep = above | (tie & (torch.cumsum(tie, 0) <= k - above.sum()))
    return keep.to(values.dtype).reshape(values.shape)


class EdgePopupStrategy(MaskStrategy):
    """Edge-popup of Ramanujan, Wortsman, Kembhavi, Farhadi & Rastegari (CVPR 2020), Section 3.

    Per layer the ``round(keep_fraction · numel)`` weights with the largest |s| are kept
    (ties: the earlier position in row-major order, see :func:`top_k_mask`). The gradient
    passes straight through the top-k selection to |s| (identity, Algorithm 1), and so
    reaches the score as dL/ds = sign(s) · dL/dm, as in the authors' code, which ranks
    ``scores.abs()``; the sign factor keeps the update direction right for negative scores.
    Scores start kaiming-uniform; weights kaiming-normal or the signed Kaiming constant
    (network option ``weight_transform: signed_kaiming_constant``).

    Args:
        keep_fraction: fraction of every layer's weights KEPT (their code's "prune rate" k
            is used both ways; here it is unambiguously the kept fraction; best near 0.5).

    Raises:
        ValueError: ``keep_fraction`` not a number in (0, 1].
    """

    name = "edge_popup"

    def __init__(self, keep_fraction: float = 0.5) -> None:
        self.keep_fraction = _check_number(
            keep_fraction, "keep_fraction", self.name, 0.0, 1.0,
            "It is the fraction of each layer's weights kept (0.5 keeps half; 1 keeps all).",
        )

    def mask(self, scores: torch.Tensor, state: torch.Tensor) -> torch.Tensor:  # noqa: D102
        magnitude = scores.abs()
        return StraightThrough.apply(top_k_mask(magnitude, self.keep_fraction), magnitude)


def gumbel_softmax_keep(logits: torch.Tensor, gumbels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hard Gumbel-softmax sample over the two logits [m, 0] (keep, prune), straight-through.

    With Gumbel noise g_keep, g_prune: the soft sample is
    softmax([m + g_keep, g_prune] / T)[keep] = σ((m + g_keep − g_prune) / T), the hard sample
    is 1[m + g_keep ≥ g_prune] (its keep probability is σ(m) for every T > 0), and the
    result has the hard value with the soft sample's gradient,
    dL/dm = dL/dmask · σ'((m + g_keep − g_prune) / T) / T (Jang et al. 2017, straight-through
    Gumbel-softmax; Dupont et al. 2022).

    Args:
        logits: float tensor m of any shape.
        gumbels: float tensor (2, *m.shape): ``gumbels[0]`` the keep noise, ``gumbels[1]`` the prune noise.
        temperature: T > 0.

    Returns:
        0/1 tensor of the shape and dtype of ``logits``.
    """
    difference = logits + gumbels[0] - gumbels[1]
    soft = torch.sigmoid(difference / temperature)
    return StraightThrough.apply((difference.detach() >= 0).to(logits.dtype), soft)


class ASLPStrategy(MaskStrategy):
    """ASLP of Dupont, Alaoui, Sahbi & Lebois (2022, arXiv 2202.12986), method section.

    A logit m per weight (start 0); the two-class logits are [m, 0] (keep, prune). Every
    forward pass in training draws one hard Gumbel-softmax sample per weight, shared by
    the batch, with the straight-through estimator of the soft sample at ``temperature``
    (:func:`gumbel_softmax_keep`); P(keep) = σ(m). Deterministic mask (sampling off, and
    the saved final mask): keep where m ≥ 0 (m = 0 is kept), with the gradient of σ(m/T).

    Args:
        temperature: T of the soft sample (> 0; 1 in the paper).
        learn_scale: give every layer a learnable scalar s (start 1) multiplying its
            effective weight (the paper's rescaling), trained with ``scale_learning_rate``
            in a group of its own with weight decay 0.
        scale_learning_rate: learning rate of the scales (> 0; 1e-3 in the paper, SGD).

    Raises:
        ValueError: a non-positive temperature or scale learning rate, or ``learn_scale``
            not a boolean.
    """

    name = "aslp"
    stochastic = True

    def __init__(self, temperature: float = 1.0, learn_scale: bool = False, scale_learning_rate: float = 1e-3) -> None:
        self.temperature = _check_number(temperature, "temperature", self.name, 0.0, None, "The paper uses 1.")
        if not isinstance(learn_scale, bool):
            raise ValueError(f"aslp.learn_scale must be true or false, got {learn_scale!r}.")
        rate = _check_number(scale_learning_rate, "scale_learning_rate", self.name, 0.0, None, "The paper uses 1e-3.")
        self.learn_scale = learn_scale
        self.scale_learning_rate = rate if learn_scale else None

    def mask(self, scores: torch.Tensor, state: torch.Tensor) -> torch.Tensor:  # noqa: D102
        soft = torch.sigmoid(scores / self.temperature)
        return StraightThrough.apply((scores.detach() >= 0).to(scores.dtype), soft)

    def sample(self, scores: torch.Tensor, state: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One hard Gumbel-softmax sample per weight (Gumbel noise −log(−log u), u ~ U[0, 1) from ``generator``)."""
        uniform = torch.rand((2, *scores.shape), generator=generator, device=scores.device, dtype=scores.dtype)
        gumbels = -torch.log(-torch.log(uniform.clamp_min(torch.finfo(scores.dtype).tiny)))
        return gumbel_softmax_keep(scores, gumbels, self.temperature)


MASK_STRATEGIES: dict[str, type[MaskStrategy]] = {
    DenseStrategy.name: DenseStrategy,
    FixedMaskStrategy.name: FixedMaskStrategy,
    SignedSupermaskStrategy.name: SignedSupermaskStrategy,
    BernoulliStrategy.name: BernoulliStrategy,
    ThresholdStrategy.name: ThresholdStrategy,
    EdgePopupStrategy.name: EdgePopupStrategy,
    ASLPStrategy.name: ASLPStrategy,
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
