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
from abc import ABC
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from supermask_pipeline.masks.uniforms import uniform_like
from supermask_pipeline.registry import lookup


#: dL/dmask → dL/dscores: the surrogate gradient of a strategy's hard mask (one per forward pass).
SurrogateGradient = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class MaskParts:
    """A strategy's forward mask in two parts: the hard values and the surrogate gradient.

    Attributes:
        hard: the mask's forward values, detached, shape and dtype of the scores (0/1, or
            −1/0/+1 for the signed supermask).
        surrogate: maps dL/dmask (shape of the scores) to dL/dscores, the strategy's
            straight-through estimator (identity for the signed supermask, σ'(M) for the
            sigmoid masks, sign(s) for edge-popup); None where the scores do not train.
    """

    hard: torch.Tensor
    surrogate: SurrogateGradient | None


class SurrogateMask(torch.autograd.Function):
    """The value of ``hard`` with the gradient ``surrogate(dL/dmask)`` to ``scores``.

    The straight-through estimator (Bengio, Léonard & Courville 2013) in its general form:
    the forward value is exactly the hard mask (a copy), the backward pass calls the
    strategy's surrogate. Inputs: ``scores`` (any shape), ``hard`` (same shape, no
    gradient), ``surrogate`` (:data:`SurrogateGradient` or None: no gradient to the scores).
    """

    @staticmethod
    def forward(ctx, scores: torch.Tensor, hard: torch.Tensor, surrogate: SurrogateGradient | None) -> torch.Tensor:  # noqa: D102
        ctx.surrogate = surrogate
        return hard.detach().clone()

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):  # noqa: D102
        if ctx.surrogate is None or not ctx.needs_input_grad[0]:
            return None, None, None
        return ctx.surrogate(grad_output), None, None


class MaskedWeight(torch.autograd.Function):
    """The effective weight ``W ⊙ hard`` and both gradients in one autograd step per layer.

    Forward: one elementwise product, no mask tensor kept beyond ``hard``. Backward:
    dL/dW = dL/dŴ ⊙ hard (when W trains) and dL/dscores = surrogate(dL/dŴ ⊙ W) (when the
    scores train): the same products, in the same order, as autograd's ``W * mask`` through
    :class:`SurrogateMask`, so the results are bit-identical, with one graph node instead of
    three or four and no intermediate masks held for the backward pass.

    Inputs: ``weight`` W and ``scores``, float tensors of one shape; ``hard`` the mask values
    (same shape, no gradient); ``surrogate`` of :class:`MaskParts`.
    Output: float tensor of the weight's shape.
    """

    @staticmethod
    def forward(ctx, weight: torch.Tensor, scores: torch.Tensor, hard: torch.Tensor,  # noqa: D102
                surrogate: SurrogateGradient | None) -> torch.Tensor:
        ctx.save_for_backward(weight, hard)
        ctx.surrogate = surrogate
        return weight * hard

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):  # noqa: D102
        weight, hard = ctx.saved_tensors
        grad_weight = grad_output * hard if ctx.needs_input_grad[0] else None
        grad_scores = None
        if ctx.surrogate is not None and ctx.needs_input_grad[1]:
            grad_scores = ctx.surrogate(grad_output * weight)
        return grad_weight, grad_scores, None, None


def _identity(grad: torch.Tensor) -> torch.Tensor:
    return grad


def signed_threshold_mask(scores: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """S = sign(M) · 1[|M| > τ] (no gradient): −1, 0 or +1 in the dtype and shape of ``scores``.

    Source: Koster, Grothe & Rettinger (ICLR 2022), Section 3. ``threshold``: 0-d τ ≥ 0, or
    one τ per leading index broadcast against ``scores`` (batched seeds: (K, 1, …));
    |M| = τ exactly is pruned (strict inequality).
    """
    scores = scores.detach()
    if scores.device.type == "cpu":  # float-only kernels: comparisons to bool are 5–10× slower on the CPU
        if threshold.numel() == 1:
            return F.hardshrink(scores, float(threshold)).sign_()  # in place: one tensor less to write
        return torch.sign(scores) * indicator(scores.abs() - threshold)  # one τ per seed (batched seeds)
    return torch.where(scores.abs() > threshold, torch.sign(scores), 0.0)


def indicator(values: torch.Tensor, *, keep_zero: bool = False) -> torch.Tensor:
    """1[values > 0] (``keep_zero``: 1[values ≥ 0]) as 0/1 in the dtype of ``values``, no gradient.

    One comparison written straight into a tensor of the values' dtype: on the CPU a
    comparison's bool result converted with ``.float()`` costs 5–10× as much (the conversion
    from bool is not vectorised), and this is also one pass instead of the two of
    sign(relu(x)). NaN gives 0.
    """
    values = values.detach()
    compare = torch.ge if keep_zero else torch.gt
    return compare(values, 0, out=torch.empty_like(values))


def below(uniform: torch.Tensor, probability: torch.Tensor) -> torch.Tensor:
    """1[uniform < probability] as 0/1 in the dtype of ``probability`` (one comparison, as
    :func:`indicator`), no gradient: the Bernoulli(probability) sample of the uniforms.
    Both float tensors of one shape."""
    probability = probability.detach()
    return torch.lt(uniform, probability, out=torch.empty_like(probability))


class StraightThrough(torch.autograd.Function):
    """The value of ``hard`` with the gradient of ``soft`` (the straight-through estimator).

    Forward: returns ``hard`` exactly (a copy), so a mask stays exactly 0/1 rather than
    ``soft + (hard − soft)``, which rounding can move off 0/1. Backward: dL/dsoft = dL/dout,
    nothing to ``hard``. For strategies written as :meth:`MaskStrategy.mask` (a mask with a
    ``soft`` surrogate); the built-in strategies give :class:`MaskParts` instead. Source:
    Bengio, Léonard & Courville (2013).

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
        elementwise: whether the deterministic :meth:`parts` act entry by entry, with a state
            that broadcasts (so K seeds' stacked scores (K, …) with their states (K, 1, …) give
            every seed's parts in one call: batched seeds).
    """

    name: str = ""
    trains_weights: bool = False
    uses_scores: bool = True
    trains_scores: bool = True
    binary: bool = True
    stochastic: bool = False
    learn_scale: bool = False
    scale_learning_rate: float | None = None
    elementwise: bool = False

    def setup(self, initial_scores: torch.Tensor) -> torch.Tensor:
        """Per-layer constant(s) derived from the initial scores, stored as a buffer.

        Returns:
            A 0-d float tensor (e.g. the threshold τ). Default: 0.
        """
        return torch.zeros((), dtype=initial_scores.dtype)

    def parts(
        self, scores: torch.Tensor, state: torch.Tensor, generator: torch.Generator | None = None
    ) -> MaskParts | None:
        """The forward mask as :class:`MaskParts`: its hard values and its surrogate gradient.

        Args:
            scores: the layer's mask scores; state: the 0-d tensor of :meth:`setup`.
            generator: draw a random mask with it (stochastic strategies; on the device of
                ``scores``); None: the deterministic mask. Deterministic strategies ignore it.

        Returns:
            The parts, from which the layer forms ``W ⊙ mask`` and its gradients in one step
            (:class:`MaskedWeight`); None for a strategy that defines only :meth:`mask` (and
            :meth:`sample`), whose layers multiply by that mask instead (the default). Every
            built-in strategy gives its parts; a new strategy implements this or :meth:`mask`.
        """
        return None

    def mask(self, scores: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """The deterministic forward-pass mask (differentiable with respect to scores), shape of ``scores``.

        Default: the hard values of :meth:`parts` with its surrogate gradient (:class:`SurrogateMask`).

        Raises:
            NotImplementedError: the strategy defines neither :meth:`parts` nor this method.
        """
        return _as_mask(scores, self.parts(scores, state), self)

    def sample(self, scores: torch.Tensor, state: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A random forward-pass mask drawn with ``generator`` (on the device of ``scores``).

        Default: :meth:`parts` with the generator; for a strategy without parts, :meth:`mask`
        (``generator`` unused).
        """
        parts = self.parts(scores, state, generator)
        return self.mask(scores, state) if parts is None else _as_mask(scores, parts, self)

    def final_mask(self, scores: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """The deterministic mask saved at the end of training (default: the forward mask)."""
        with torch.no_grad():
            parts = self.parts(scores, state)
            return self.mask(scores, state) if parts is None else parts.hard


def _as_mask(scores: torch.Tensor, parts: MaskParts | None, strategy: MaskStrategy) -> torch.Tensor:
    if parts is None:
        raise NotImplementedError(
            f"Mask strategy {type(strategy).__name__} defines neither parts() nor mask(): implement one of them."
        )
    return SurrogateMask.apply(scores, parts.hard, parts.surrogate)


def _held(scores: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``scores`` detached and its version, for a surrogate that reads them in the backward pass."""
    return scores.detach(), scores._version


def _unchanged(held: torch.Tensor, version: int) -> torch.Tensor:
    if held._version != version:
        raise RuntimeError(
            "The mask scores were modified in place between the forward and the backward pass; "
            "call backward() before changing them (e.g. before optimizer.step())."
        )
    return held


class DenseStrategy(MaskStrategy):
    """No mask: every weight kept and trained (the dense baseline)."""

    name = "dense"
    elementwise = True
    trains_weights = True
    uses_scores = False

    def parts(self, scores, state, generator=None) -> MaskParts:  # noqa: D102
        return MaskParts(torch.ones_like(scores).detach(), None)


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
    elementwise = True
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

    def parts(self, scores, state, generator=None) -> MaskParts:
        """S = sign(M) · 1[|M| > τ] (:func:`signed_threshold_mask`), gradient straight through: dL/dM = dL/dS."""
        return MaskParts(signed_threshold_mask(scores, state), _identity)


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
    elementwise = True
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

    def parts(self, scores, state, generator=None) -> MaskParts:  # noqa: D102
        return MaskParts(scores.detach(), None)


def _check_number(value: object, name: str, method: str, low: float, high: float | None, hint: str) -> float:
    """``value`` as a float in (low, high] (``high`` None: (low, ∞)), else a ValueError naming option and fix."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and value > low and (high is None or value <= high):
        return float(value)
    where = f"({low:g}, {high:g}]" if high is not None else f"({low:g}, ∞)"
    raise ValueError(f"{method}.{name} must be a number in {where}, got {value!r}. {hint}")


def _sigmoid_threshold(scores: torch.Tensor) -> MaskParts:
    """1[σ(M) > 0.5] with the gradient of σ(M): dL/dM = dL/dm · σ(M)(1 − σ(M)).

    The hard part is computed as ``M > 0``, which equals σ(M) > 0.5 exactly: in float32
    σ(M) rounds to 0.5 for |M| < 3e-8, so a test on σ(M) would prune some M > 0. At the
    boundary M = 0 (σ(M) = 0.5 exactly) the weight is pruned (strict inequality). σ(M) is
    computed in the backward pass, from the scores it was given.
    """
    held, version = _held(scores)

    def surrogate(grad: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten.sigmoid_backward(grad, torch.sigmoid(_unchanged(held, version)))

    return MaskParts(indicator(held), surrogate)


def _sigmoid_sample(scores: torch.Tensor, uniform: torch.Tensor) -> MaskParts:
    """m = 1[u < σ(M)] with the gradient of σ(M) (the Bernoulli sample, straight through)."""
    soft = torch.sigmoid(scores.detach())
    return MaskParts(below(uniform, soft), lambda grad: torch.ops.aten.sigmoid_backward(grad, soft))


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
    elementwise = True
    stochastic = True

    def parts(self, scores, state, generator=None) -> MaskParts:
        """With ``generator``: m = 1[u < σ(M)], u ~ U[0, 1) drawn from it; without: 1[M > 0].
        0/1 in the dtype of ``scores``, gradient through σ(M)."""
        if generator is None:
            return _sigmoid_threshold(scores)
        return _sigmoid_sample(scores, uniform_like(scores, generator))


class ThresholdStrategy(MaskStrategy):
    """Deterministic threshold supermask (Shlis, "supermasks" blog post; see METHODS.md).

    m = σ(M) + stopgrad(1[σ(M) > 0.5] − σ(M)): the forward value is the hard mask
    1[σ(M) > 0.5], the gradient is that of σ(M), dL/dM = dL/dm · σ(M)(1 − σ(M)).
    σ(M) = 0.5 exactly (M = 0) is pruned; the test is computed as ``M > 0`` so that
    float32 rounding of σ near 0.5 cannot flip it. Logits start at 1 (``constant``
    initialiser with scale 1): every weight starts kept.
    """

    name = "threshold"
    elementwise = True

    def parts(self, scores, state, generator=None) -> MaskParts:  # noqa: D102
        return _sigmoid_threshold(scores)


#: Layers with at least this many weights select their top-k in a band around the last
#: threshold on the CPU (:class:`ThresholdHint`); smaller ones select over all entries.
BAND_SELECTION_MIN = 16_384


#: Before a full selection, the band is tried this many more times, each ``BAND_GROWTH`` times wider.
BAND_RETRIES = 2
BAND_GROWTH = 16.0


class ThresholdHint:
    """Where the k-th largest value of a layer's scores was at the last step: a band to search first.

    Scores move little between two optimizer steps, so the new k-th largest value lies
    near the last one. :func:`top_k_mask` counts the entries above and below the band
    [t − w, t + w]; when the k-th largest is proven to lie inside it, it selects among the
    band's entries only (a few hundred instead of all), which gives exactly the value a
    full selection gives. When not, it tries the band :data:`BAND_RETRIES` more times, each
    :data:`BAND_GROWTH` times wider (a count and a gather, about a tenth of a full
    selection each), then selects over all entries; the next band is then wider.
    Correctness never depends on the hint, only the speed.

    Attributes:
        threshold: the last k-th largest value t (a float), or None before the first step.
        width: the band's half-width w (≥ 0).
        hits: steps whose first band held the k-th value; misses: steps whose did not.
        full_selections: misses whose wider bands did not hold it either (a full selection ran).
        candidates: int64 positions of the entries of a 16× wider band at the last full
            gather, searched first for the band's entries (None before the first).
    """

    def __init__(self) -> None:
        self.threshold: float | None = None
        self.width = 0.0
        self.hits = self.misses = self.full_selections = 0
        self.candidates: torch.Tensor | None = None  # int64 positions near the threshold (see _kth_largest)
        self.candidates_of = 0  # the numel of the tensor the candidates index

    def update(self, threshold: float, hit: bool) -> None:
        """Record the new threshold; the next band is twice the last move wide (at least a
        millionth of |t|), shrinking by a tenth after a hit, four times wider after a miss."""
        moved = 0.0 if self.threshold is None else abs(threshold - self.threshold)
        floor = 1e-6 * abs(threshold) + 1e-12
        self.width = max(2.0 * moved, 0.9 * self.width if hit else 4.0 * self.width, floor)
        self.threshold = threshold
        if hit:
            self.hits += 1
        else:
            self.misses += 1


def _count_above(flat: torch.Tensor, value: float) -> int:
    """How many entries of ``flat`` exceed ``value``: on the CPU the comparison written as 0/1
    float32 and summed (one pass, exact below 2^24 entries; bool reductions are slow there)."""
    if flat.device.type == "cpu" and flat.numel() < 1 << 24:
        return int(torch.gt(flat, value, out=torch.empty(flat.shape, dtype=torch.float32)).sum())
    return int((flat > value).sum())


def _exact_count(indicator: torch.Tensor) -> int:
    """The number of ones in a 0/1 float tensor, summed in a float type that holds it exactly."""
    return int(indicator.sum(dtype=torch.float32 if indicator.numel() < 1 << 24 else torch.float64))


def _count_at_least(values: torch.Tensor, value: torch.Tensor) -> int:
    """How many entries of ``values`` are ≥ ``value`` (0-d)."""
    return _exact_count(torch.ge(values, value, out=torch.empty_like(values)))


def _kth_largest(flat: torch.Tensor, k: int, hint: ThresholdHint | None) -> tuple[torch.Tensor, int | None]:
    """The k-th largest entry t of ``flat`` (0-d), searched in ``hint``'s band first (CPU, large
    layers), and the number of entries ≥ t where the band search tells it (else None).

    The band is (t − w, t + w]: the k-th largest lies in it exactly when
    above(t + w) < k ≤ above(t − w), with above(x) the number of entries > x. Its entries are
    gathered from the hint's candidates (the positions of a 16× wider band at the last full
    gather) when those hold all of them, i.e. as many as above(t − w) − above(t + w), which
    saves a pass over every entry for the positions; else from all entries. Every entry ≥ the
    k-th value is then either above t + w or in the band, so their count is above(t + w) plus
    the band's entries ≥ it.
    """
    n = flat.numel()
    use_band = hint is not None and flat.device.type == "cpu" and n >= BAND_SELECTION_MIN
    if use_band and hint.threshold is not None:
        t, width = hint.threshold, hint.width
        for attempt in range(BAND_RETRIES + 1):
            above = _count_above(flat, t + width)
            if above < k:
                inside = _count_above(flat, t - width) - above
                if above + inside >= k:  # the k-th largest is inside (t − w, t + w]
                    band = _band_entries(flat, t, width, inside, hint)
                    value = torch.kthvalue(band, band.numel() - (k - above) + 1).values
                    hint.update(float(value), hit=attempt == 0)
                    return value, above + _count_at_least(band, value)
            width *= BAND_GROWTH
    value = torch.kthvalue(flat, n - k + 1).values
    if use_band:
        hint.update(float(value), hit=False)
        hint.full_selections += 1
    return value, None


def _in_band(values: torch.Tensor, t: float, width: float) -> torch.Tensor:
    """Bool mask of t − w < v ≤ t + w."""
    return (values > t - width) & (values <= t + width)


def _band_entries(flat: torch.Tensor, t: float, width: float, inside: int, hint: ThresholdHint) -> torch.Tensor:
    """The ``inside`` entries of ``flat`` in (t − w, t + w] (in no particular order): from the
    hint's candidate positions when they hold all of them, else from all entries (and the
    candidates become the positions of the 16× wider band)."""
    if hint.candidates is not None and hint.candidates_of == flat.numel():
        near = flat.index_select(0, hint.candidates)
        band = near[_in_band(near, t, width)]
        if band.numel() == inside:  # the candidates are distinct positions: they hold every band entry
            return band
    hint.candidates = torch.nonzero(_in_band(flat, t, BAND_GROWTH * width)).reshape(-1)
    hint.candidates_of = flat.numel()
    near = flat.index_select(0, hint.candidates)
    return near[_in_band(near, t, width)]


def top_k_mask(values: torch.Tensor, keep_fraction: float, hint: ThresholdHint | None = None) -> torch.Tensor:
    """1 for the ``round(keep_fraction · numel)`` largest entries of ``values``, else 0.

    Exactly that many ones, however many ties: equal values are ranked by their
    position in row-major (flattened) order, the earlier one kept (a stable sort), so
    the result is deterministic on every device. ``round`` is Python's (an exact half
    goes to the even integer), the rule of :func:`supermask_pipeline.masks.keep_count`.

    Args:
        values: float tensor of any shape, no NaN.
        keep_fraction: fraction of the entries kept, in [0, 1].
        hint: the layer's :class:`ThresholdHint` (updated here): on the CPU, layers of at
            least :data:`BAND_SELECTION_MIN` entries select in the band around the last
            threshold (the same mask, about 15× faster for the FCN's first layer). On other
            devices the selection runs over all entries with no host synchronisation.

    Returns:
        A tensor of the shape, dtype and device of ``values`` holding 0 and 1 (no gradient).
    """
    flat = values.detach().reshape(-1)
    n = flat.numel()
    k = round(float(keep_fraction) * n)
    if k == 0:
        return torch.zeros_like(values).detach()
    # Selection, not a sort: the k-th largest value, everything above it, then the earliest
    # of its ties up to k.
    threshold, at_least_count = _kth_largest(flat, k, hint)
    if flat.device.type == "cpu":
        # 1[v ≥ t] in one comparison written as floats (a bool mask converts slowly on the CPU);
        # where the band search counted the entries ≥ t, no pass to count them.
        at_least = torch.ge(flat, threshold, out=torch.empty_like(flat))
        if at_least_count is None:
            at_least_count = _exact_count(at_least)
        if at_least_count == k:  # no tie beyond the k-th: no running count needed
            return at_least.reshape(values.shape)
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

        self._hints: dict[int, ThresholdHint] = {}

    def parts(self, scores, state, generator=None) -> MaskParts:
        """The top-k of |s| (:func:`top_k_mask`, band-searched around the layer's last threshold),
        gradient straight through to |s|: dL/ds = sign(s) · dL/dm."""
        held, version = _held(scores)
        if len(self._hints) > 256:  # hints of networks long gone: only a speed-up is lost
            self._hints.clear()
        hint = self._hints.setdefault(id(scores), ThresholdHint())

        def surrogate(grad: torch.Tensor) -> torch.Tensor:
            return grad * _unchanged(held, version).sgn()

        return MaskParts(top_k_mask(held.abs(), self.keep_fraction, hint), surrogate)


def gumbel_softmax_keep(logits: torch.Tensor, noise: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hard Gumbel-softmax sample over the two logits [m, 0] (keep, prune), straight-through.

    With Gumbel noise g_keep, g_prune the soft sample is
    softmax([m + g_keep, g_prune] / T)[keep] = σ((m + g_keep − g_prune) / T) and the hard
    sample is 1[m + g_keep ≥ g_prune]: both depend on the noise only through the difference
    ``noise`` = g_keep − g_prune, which is Logistic(0, 1) distributed (the difference of two
    independent Gumbel(0, 1) variables), so one logistic draw log(u / (1 − u)), u ~ U(0, 1),
    gives the same joint distribution of hard and soft sample as two Gumbel draws. The keep
    probability is σ(m) for every T > 0. The result has the hard value with the soft sample's
    gradient, dL/dm = dL/dmask · σ'((m + noise) / T) / T (Jang et al. 2017, straight-through
    Gumbel-softmax; Dupont et al. 2022).

    Args:
        logits: float tensor m of any shape.
        noise: float tensor of the shape of ``logits``: g_keep − g_prune (logistic noise).
        temperature: T > 0.

    Returns:
        0/1 tensor of the shape and dtype of ``logits``.
    """
    parts = _gumbel_parts(logits, noise, temperature)
    return SurrogateMask.apply(logits, parts.hard, parts.surrogate)


def _gumbel_parts(logits: torch.Tensor, noise: torch.Tensor, temperature: float) -> MaskParts:
    """:func:`gumbel_softmax_keep` as :class:`MaskParts`: hard 1[m + noise ≥ 0], the
    gradient of σ((m + noise) / T)."""
    difference = logits.detach() + noise
    unit = temperature == 1.0  # x / 1 == x exactly: skip both divisions (two passes per layer and step)
    soft = torch.sigmoid(difference if unit else difference / temperature)

    def surrogate(grad: torch.Tensor) -> torch.Tensor:
        grad = torch.ops.aten.sigmoid_backward(grad, soft)
        return grad if unit else grad / temperature

    return MaskParts(indicator(difference, keep_zero=True), surrogate)


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
    elementwise = True
    stochastic = True

    def __init__(self, temperature: float = 1.0, learn_scale: bool = False, scale_learning_rate: float = 1e-3) -> None:
        self.temperature = _check_number(temperature, "temperature", self.name, 0.0, None, "The paper uses 1.")
        if not isinstance(learn_scale, bool):
            raise ValueError(f"aslp.learn_scale must be true or false, got {learn_scale!r}.")
        rate = _check_number(scale_learning_rate, "scale_learning_rate", self.name, 0.0, None, "The paper uses 1e-3.")
        self.learn_scale = learn_scale
        self.scale_learning_rate = rate if learn_scale else None

    def parts(self, scores, state, generator=None) -> MaskParts:
        """With ``generator``: one hard Gumbel-softmax sample per weight (its logistic noise
        g_keep − g_prune = log(u / (1 − u)), u ~ U[0, 1) from it, one draw per weight, u
        clamped to the smallest normal float so the noise stays finite;
        :func:`gumbel_softmax_keep`); without: 1[m ≥ 0] with the gradient of σ(m/T)."""
        if generator is not None:
            noise = uniform_like(scores, generator).logit_(eps=torch.finfo(scores.dtype).tiny)  # in place: a fresh tensor
            return _gumbel_parts(scores, noise, self.temperature)
        held, version = _held(scores)
        temperature = self.temperature

        def surrogate(grad: torch.Tensor) -> torch.Tensor:
            return torch.ops.aten.sigmoid_backward(grad, torch.sigmoid(_unchanged(held, version) / temperature)) / temperature

        return MaskParts(indicator(held, keep_zero=True), surrogate)


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
