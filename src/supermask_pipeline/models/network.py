"""The masked network: one module for every architecture and every method.

Each masked layer computes with ``W ⊙ mask`` where the mask comes from its trainable
``mask_scores`` through a :class:`~supermask_pipeline.masks.MaskStrategy` (for the
dense baseline the mask is all ones and ``W`` trains). See Ramanujan et al. (2020)
for the mechanism and Koster et al. (2022) for the signed variant.

Options shared by every strategy live here, once: a weight transform applied at
construction (Zhou et al.'s signed constant, Ramanujan et al.'s signed Kaiming
constant), Zhou et al.'s dynamic weight rescaling, a learnable per-layer scale (for
strategies with ``learn_scale``, ASLP), and the seeded generator from which
stochastic strategies (Bernoulli, ASLP) draw their masks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from supermask_pipeline.masks.strategies import MaskedWeight, MaskParts, MaskStrategy
from supermask_pipeline.registry import lookup
from supermask_pipeline.models.architectures import POOL, ArchitectureSpec, LayerSpec, layer_specs

ACTIVATIONS = {"elu": F.elu, "relu": F.relu}


def get_activation(name: str):
    """Activation function by name (``elu`` for Koster et al., ``relu`` for Zhou et al.).

    Raises:
        ValueError: unknown name; the message lists the choices.
    """
    return lookup(ACTIVATIONS, name, "activation")


def _keep_weights(weight: torch.Tensor, layer: LayerSpec) -> torch.Tensor:
    return weight


def _signed_constant(weight: torch.Tensor, layer: LayerSpec) -> torch.Tensor:
    return torch.sign(weight) * weight.std(correction=0)


def _signed_kaiming_constant(weight: torch.Tensor, layer: LayerSpec) -> torch.Tensor:
    return torch.sign(weight) * math.sqrt(2.0 / layer.fan_in)


#: Weight transforms applied once when a layer is built: name → (weight, layer) → weight.
WEIGHT_TRANSFORMS: dict[str, Callable[[torch.Tensor, LayerSpec], torch.Tensor]] = {
    "none": _keep_weights,
    "signed_constant": _signed_constant,
    "signed_kaiming_constant": _signed_kaiming_constant,
}


def transform_weight(weight: torch.Tensor, layer: LayerSpec, transform: str) -> torch.Tensor:
    """The layer's weight after ``transform`` (float32, shape of ``weight``).

    - ``none``: unchanged.
    - ``signed_constant``: sign(W) · std(W), the population standard deviation (ddof 0) of
      this layer's given weights (which estimates the std of the initial distribution that
      the paper names): Zhou et al. (NeurIPS 2019), the "signed constant" mask-1 action
      (Section 3), used with learned supermasks (Section 5). Not the ``signed_constant``
      *initialiser*, which draws Koster et al.'s ±sqrt(6/fan_in).
    - ``signed_kaiming_constant``: sign(W) · sqrt(2 / fan_in): Ramanujan et al. (CVPR 2020),
      the "Signed Kaiming Constant" initialisation of their experiments.

    A weight exactly 0 stays 0 (sign(0) = 0).

    Raises:
        ValueError: unknown transform; the message lists the choices.
    """
    return lookup(WEIGHT_TRANSFORMS, transform, "weight transform")(weight.float(), layer)


def rescale_factor(mask: torch.Tensor) -> torch.Tensor:
    """numel / Σ|m| for one layer's mask, detached (0-d, dtype and device of ``mask``).

    Zhou et al. (NeurIPS 2019), Section 5, dynamic weight rescaling: the effective weight
    W ⊙ m is multiplied by this factor so that the layer's total input scale stays
    constant as the mask thins. It is a constant of the forward pass (no gradient flows
    through the count). An all-zero mask (Σ|m| = 0) gives 1: the layer's output is 0 anyway.
    """
    kept = mask.detach().abs().sum()
    return torch.where(kept > 0, mask.numel() / kept.clamp_min(1e-12), torch.ones_like(kept))


class MaskSampler:
    """The seeded generator from which a network's stochastic strategies draw masks, and the switch.

    One sampler is shared by all layers of a :class:`MaskedNetwork`. The generator lives on
    the device of the scores and is created lazily there from ``seed`` (a
    ``torch.Generator`` cannot move between devices; after a move the stream restarts from
    ``seed``). Its state is saved in training checkpoints (``rng.mask_sampling``) so that a
    resumed run draws the same masks.

    Attributes:
        seed: seed of the generator (integer ≥ 0).
        enabled: None: sample exactly in training mode; True/False: force sampling on/off.

    Raises:
        ValueError: a seed that is not an integer ≥ 0.
    """

    def __init__(self, seed: int = 0) -> None:
        self.enabled: bool | None = None
        self._generator: torch.Generator | None = None
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Restart the stream from ``seed`` (the generator is rebuilt at the next draw)."""
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"The mask-sampling seed must be an integer ≥ 0, got {seed!r}.")
        self.seed = seed
        self._generator = None

    def generator(self, device: torch.device | str) -> torch.Generator:
        """The generator on ``device`` (created from ``seed`` if there is none on that device yet)."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device).manual_seed(self.seed)
        return self._generator

    def active(self, training: bool) -> bool:
        """Whether a layer in ``training`` mode samples now."""
        return training if self.enabled is None else self.enabled


class MaskedLayer(nn.Module):
    """A convolution (3×3, stride 1, padding 1) or dense layer whose weight is multiplied by a mask.

    Tensors (float32): ``weight`` of ``layer.weight_shape`` (trainable only under a
    strategy with ``trains_weights``); ``mask_scores`` of the same shape (only for
    strategies with ``uses_scores``; trainable unless the strategy is a fixed mask);
    buffer ``mask_threshold``, a 0-d tensor fixed at construction from the initial scores
    (the threshold τ of the signed supermask); optional buffer ``pruned_values`` of the
    weight's shape: the frozen value of every pruned weight (Zhou et al.'s mask-0
    action ``freeze_init``), so that the effective weight is ``W ⊙ m + P ⊙ (1 − m)``;
    for a strategy with ``learn_scale`` a trainable 0-d ``scale`` (start 1).
    No bias: the networks of this project have none.

    Effective weight: ``s · (W ⊙ m · r + P ⊙ (1 − m))`` where r is
    :func:`rescale_factor` with ``rescale`` (else 1), P the frozen pruned values (else 0)
    and s the learnable scale (else 1).

    Keyword-only args:
        weight_transform: applied to ``weight`` once, here (see :func:`transform_weight`).
        rescale: Zhou et al.'s dynamic weight rescaling (:func:`rescale_factor`).
        sampler: the :class:`MaskSampler` of the network (a fresh one, seed 0, if None).

    Raises:
        ValueError: missing scores for a strategy that uses them, ``pruned_values``
            with a strategy whose masks are not binary or of another shape, or an
            unknown weight transform.
    """

    def __init__(
        self,
        layer: LayerSpec,
        strategy: MaskStrategy,
        weight: torch.Tensor,
        mask_scores: torch.Tensor | None,
        pruned_values: torch.Tensor | None = None,
        *,
        weight_transform: str = "none",
        rescale: bool = False,
        sampler: MaskSampler | None = None,
    ) -> None:
        super().__init__()
        self.spec = layer
        self.strategy = strategy
        self.rescale = bool(rescale)
        self.sampler = sampler if sampler is not None else MaskSampler()
        self.frozen_mask: torch.Tensor | None = None  # set by MaskedNetwork.frozen_sample
        weight = transform_weight(weight.detach(), layer, weight_transform)
        self.weight = nn.Parameter(weight.clone().float(), requires_grad=strategy.trains_weights)
        self.scale = nn.Parameter(torch.ones(())) if strategy.learn_scale else None
        if strategy.uses_scores:
            if mask_scores is None:
                raise ValueError(f"Method {strategy.name!r} needs mask scores for layer {layer.name!r}.")
            scores = mask_scores.detach().clone().float()
            self.mask_scores = nn.Parameter(scores, requires_grad=strategy.trains_scores)
            self.register_buffer("mask_threshold", strategy.setup(scores))
        else:
            self.mask_scores = None
            self.register_buffer("mask_threshold", torch.zeros(()))
        if pruned_values is not None:
            if not (strategy.uses_scores and strategy.binary):
                raise ValueError(
                    f"Frozen pruned values need a binary mask strategy (e.g. fixed_mask), not {strategy.name!r}."
                )
            if tuple(pruned_values.shape) != layer.weight_shape:
                raise ValueError(
                    f"pruned_values for layer {layer.name!r} have shape {tuple(pruned_values.shape)}, "
                    f"expected {layer.weight_shape}."
                )
            self.register_buffer("pruned_values", pruned_values.detach().clone().float())
        else:
            self.pruned_values = None

    def mask(self) -> torch.Tensor:
        """The forward-pass mask, shape of the weight: a frozen sample if one is set, else a
        fresh sample of a stochastic strategy while sampling is on (training mode, or forced
        by the sampler), else the strategy's deterministic mask; differentiable with respect
        to the scores except for a frozen sample."""
        if self.mask_scores is None:
            return torch.ones_like(self.weight)
        if self.frozen_mask is not None:
            return self.frozen_mask
        if self.strategy.stochastic and self.sampler.active(self.training):
            generator = self.sampler.generator(self.mask_scores.device)
            return self.strategy.sample(self.mask_scores, self.mask_threshold, generator)
        return self.strategy.mask(self.mask_scores, self.mask_threshold)

    def final_mask(self) -> torch.Tensor:
        """The deterministic mask, detached, float32 of the weight's shape."""
        if self.mask_scores is None:
            return torch.ones_like(self.weight).detach()
        return self.strategy.final_mask(self.mask_scores, self.mask_threshold).detach()

    def mask_parts(self) -> MaskParts | None:
        """The forward-pass mask as :class:`~supermask_pipeline.masks.strategies.MaskParts`:
        a frozen sample if one is set (no gradient), else the strategy's parts, sampled while
        sampling is on; None for a strategy that defines only ``mask`` (or without scores)."""
        if self.mask_scores is None:
            return None
        if self.frozen_mask is not None:
            return MaskParts(self.frozen_mask, None)
        generator = None
        if self.strategy.stochastic and self.sampler.active(self.training):
            generator = self.sampler.generator(self.mask_scores.device)
        return self.strategy.parts(self.mask_scores, self.mask_threshold, generator)

    def effective_weight(self, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``s · (W ⊙ m · r + P ⊙ (1 − m))`` (see the class docstring; ``W`` for the dense
        baseline), shape of the weight. ``mask``: default the forward-pass mask.

        The forward-pass mask enters through :class:`~supermask_pipeline.masks.strategies.MaskedWeight`:
        ``W ⊙ m`` and the gradients of W and of the scores in one autograd step, bit-identical
        to ``W * mask()``.
        """
        if self.mask_scores is None:
            weight = self.weight
        else:
            parts = None if mask is not None else self.mask_parts()
            if parts is not None:
                mask = parts.hard
                weight = MaskedWeight.apply(self.weight, self.mask_scores, mask, parts.surrogate)
            else:
                mask = self.mask() if mask is None else mask
                weight = self.weight * mask
            if self.rescale:
                weight = weight * rescale_factor(mask)
            if self.pruned_values is not None:
                weight = weight + self.pruned_values * (1.0 - mask)
        return weight if self.scale is None else weight * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in, H, W) → (N, out, H, W) for a convolution; (N, in) → (N, out) for a dense layer."""
        w = self.effective_weight()
        if self.spec.kind == "conv":
            return F.conv2d(x, w, padding=1)
        return F.linear(x, w)


class MaskedNetwork(nn.Module):
    """FCN or Conv-k network of :mod:`supermask_pipeline.models.architectures` with masked layers.

    Args:
        spec: the architecture.
        strategy: how scores become masks (``DenseStrategy`` for the baseline).
        weights: layer name → weight tensor (float, the layer's weight shape).
        mask_scores: layer name → scores (same shapes); required when the strategy uses scores.
        activation: ``elu`` (Koster et al.) or ``relu`` (Zhou et al.), after every hidden layer.
        pruned_values: layer name → frozen values of the pruned weights (same shapes), for a
            binary mask strategy; None: pruned weights are 0.

    Keyword-only args:
        weight_transform: ``none``, ``signed_constant`` (Zhou et al.: sign(W)·std of the
            layer) or ``signed_kaiming_constant`` (Ramanujan et al.: sign(W)·sqrt(2/fan_in)),
            applied to ``weights`` once here (see :func:`transform_weight`).
        rescale: Zhou et al.'s dynamic weight rescaling, W ⊙ m · numel/Σm per layer.
        sampling_seed: seed of the generator of stochastic strategies (the training engine
            reseeds it with the ``mask_sampling`` stream of ``RunSeeds(TrainingConfig.seed)``,
            :mod:`supermask_pipeline.seeds`).

    Sampling (stochastic strategies: Bernoulli, ASLP): a new mask every forward pass in
    training mode; the deterministic final mask in eval mode, unless :meth:`sampling`
    forces it on (or off), or :meth:`frozen_sample` holds one drawn mask fixed.

    What the training engine asks of it (:meth:`remaining_fraction`, :meth:`mask_generator`,
    :meth:`seed_mask_sampling`, :meth:`frozen_sample`, :meth:`learning_rate_overrides`) is
    the protocol :class:`supermask_pipeline.training.masked_model.MaskedModel`, which this
    class implements structurally (``models`` does not import ``training``).

    Input: images float32 (N, C, H, W) matching ``spec.input_shape``. Output: logits (N, classes).

    Raises:
        ValueError: a layer missing from ``weights``/``mask_scores`` or a shape mismatch
            (the message names the file when known, the layer, expected and found shapes),
            a non-floating dtype or NaN/infinite values, an unknown activation or weight
            transform, or a bad sampling seed.
    """

    def __init__(
        self,
        spec: ArchitectureSpec,
        strategy: MaskStrategy,
        weights: Mapping[str, torch.Tensor],
        mask_scores: Mapping[str, torch.Tensor] | None = None,
        activation: str = "elu",
        pruned_values: Mapping[str, torch.Tensor] | None = None,
        *,
        weight_transform: str = "none",
        rescale: bool = False,
        sampling_seed: int = 0,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.strategy = strategy
        self.activation_name = activation
        self._activation = get_activation(activation)
        lookup(WEIGHT_TRANSFORMS, weight_transform, "weight transform")
        if not isinstance(rescale, bool):
            raise ValueError(f"rescale must be true or false, got {rescale!r}.")
        self.weight_transform = weight_transform
        self.rescale = rescale
        self.sampler = MaskSampler(sampling_seed)
        self.layer_names: list[str] = []
        for layer in layer_specs(spec):
            weight = _checked(weights, layer, "weights", _where(weights))
            scores = _checked(mask_scores, layer, "mask scores", _where(mask_scores)) if strategy.uses_scores else None
            frozen = None if pruned_values is None else _checked(pruned_values, layer, "pruned values", _where(pruned_values))
            self.add_module(
                layer.name,
                MaskedLayer(
                    layer, strategy, weight, scores, frozen,
                    weight_transform=weight_transform, rescale=rescale, sampler=self.sampler,
                ),
            )
            self.layer_names.append(layer.name)

    def masked_layers(self) -> list[MaskedLayer]:
        """The masked layers in forward order."""
        return [getattr(self, name) for name in self.layer_names]

    def mask_generator(self) -> torch.Generator:
        """The generator of stochastic masks, on the device of the network's weights."""
        return self.sampler.generator(self.masked_layers()[0].weight.device)

    def seed_mask_sampling(self, seed: int) -> None:
        """Restart the mask-sampling stream from ``seed`` (integer ≥ 0; ValueError otherwise)."""
        self.sampler.reseed(seed)

    @contextmanager
    def sampling(self, enabled: bool = True) -> Iterator[MaskedNetwork]:
        """Within the block, stochastic strategies sample a new mask every forward pass
        (``enabled``) or use the deterministic mask (not ``enabled``), whatever the mode."""
        previous, self.sampler.enabled = self.sampler.enabled, bool(enabled)
        try:
            yield self
        finally:
            self.sampler.enabled = previous

    @contextmanager
    def frozen_sample(self, generator: torch.Generator | None = None) -> Iterator[dict[str, torch.Tensor]]:
        """Draw one mask per layer and use it for every forward pass within the block.

        For evaluating one sampled mask on a whole data set (Zhou et al. average test
        accuracy over 10 of them). Deterministic strategies give their deterministic mask.

        Args:
            generator: draws the masks, on the network's device; default :meth:`mask_generator`.

        Yields:
            layer name → the drawn mask (float 0/1 of the weight's shape, on the device).
        """
        generator = self.mask_generator() if generator is None else generator
        drawn = {}
        with torch.no_grad():
            for layer in self.masked_layers():
                if layer.mask_scores is not None:
                    sample = layer.strategy.sample(layer.mask_scores, layer.mask_threshold, generator)
                    drawn[layer.spec.name] = sample.detach()
        try:
            for layer in self.masked_layers():
                layer.frozen_mask = drawn.get(layer.spec.name)
            yield drawn
        finally:
            for layer in self.masked_layers():
                layer.frozen_mask = None

    def learning_rate_overrides(self) -> dict[str, float]:
        """Parameter name (as in ``named_parameters``) → its own learning rate: the learnable
        scales of a strategy with ``learn_scale`` (ASLP). The training engine puts them in an
        optimizer group of their own with weight decay 0."""
        if not self.strategy.learn_scale:
            return {}
        return {f"{name}.scale": float(self.strategy.scale_learning_rate) for name in self.layer_names}

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        layers = iter(self.masked_layers())
        for item in self.spec.conv:
            if item == POOL:
                x = F.max_pool2d(x, 2)
            else:
                x = self._activation(next(layers)(x))
        x = torch.flatten(x, 1)
        for layer in layers:
            x = layer(x)
            if not layer.spec.is_output:
                x = self._activation(x)
        return x

    @torch.no_grad()
    def masks(self) -> dict[str, torch.Tensor]:
        """Layer name → final mask as int8 (values in {−1, 0, +1}), on the CPU."""
        return {layer.spec.name: layer.final_mask().to("cpu", torch.int8) for layer in self.masked_layers()}

    @torch.no_grad()
    def remaining_fraction(self) -> float:
        """Remaining weights: nonzero entries of the final masks over all masked weights, a
        fraction in [0, 1] (1.0 without masked layers). Counted on the device, with a single
        device-to-host read (the engine calls it once per epoch)."""
        layers = self.masked_layers()
        total = sum(layer.weight.numel() for layer in layers)
        if not total:
            return 1.0
        kept = sum(layer.final_mask().count_nonzero() for layer in layers)
        return float(kept) / total

    @torch.no_grad()
    def effective_weights(self) -> dict[str, torch.Tensor]:
        """Layer name → the effective weight under the final mask (``W ⊙ m``, with the
        rescaling, frozen pruned values and learnable scale where set) as float32 on the CPU:
        the pruned network, evaluated by a dense network of these weights."""
        return {
            layer.spec.name: layer.effective_weight(layer.final_mask()).detach().to("cpu", torch.float32, copy=True).contiguous()
            for layer in self.masked_layers()
        }

    @torch.no_grad()
    def mask_scores(self) -> dict[str, torch.Tensor]:
        """Layer name → a CPU copy of the current mask scores, float32 (empty for the dense baseline)."""
        return {
            layer.spec.name: layer.mask_scores.detach().to("cpu", copy=True).contiguous()
            for layer in self.masked_layers()
            if layer.mask_scores is not None
        }


def _where(tensors: object) -> str:
    source = getattr(tensors, "source", None)
    return f" ({source})" if source else ""


class LayerTensors(dict):
    """Layer name → tensor, remembering the file it was read from (``source``), for error messages.

    A plain ``dict`` in every other respect; datasets that read weights, scores or masks
    return one so that :func:`check_layer_tensors` can name the file at fault.
    """

    source: str | None = None

    def __init__(self, *args, source: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.source = source


def check_layer_tensors(
    spec: ArchitectureSpec, tensors: Mapping[str, torch.Tensor], what: str, *, floating: bool = True
) -> None:
    """Check that ``tensors`` fit ``spec``: one tensor per masked layer, of its weight shape.

    Args:
        spec: the architecture.
        tensors: layer name → tensor; a :class:`LayerTensors` names its file in the errors.
        what: what the tensors are, for messages (``"initial weights"``).
        floating: require a floating dtype and finite values (weights, scores); False
            requires int8 (masks).

    Raises:
        ValueError: a layer missing, an extra key, a wrong shape, a non-floating dtype,
            or NaN/infinite values; the message names the file (when known), the layer,
            what was expected and what was found.
    """
    where = f" ({tensors.source})" if getattr(tensors, "source", None) else ""
    expected = [layer.name for layer in layer_specs(spec)]
    missing = [name for name in expected if name not in tensors]
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise ValueError(
            f"The {what}{where} do not fit architecture {spec.name!r}: expected tensors {expected}, "
            f"found {sorted(tensors)} (missing {missing}, unexpected {extra}). "
            "Were they made for another architecture?"
        )
    for layer in layer_specs(spec):
        _checked(tensors, layer, what, where, floating)


def _checked(
    tensors: Mapping[str, torch.Tensor] | None, layer: LayerSpec, what: str, where: str = "", floating: bool = True
) -> torch.Tensor:
    if tensors is None or layer.name not in tensors:
        found = sorted(tensors) if tensors else []
        raise ValueError(f"The {what}{where} have no tensor for layer {layer.name!r} (found keys: {found}).")
    tensor = tensors[layer.name]
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"The {what}{where} for layer {layer.name!r} are a {type(tensor).__name__}, expected a tensor.")
    if tuple(tensor.shape) != layer.weight_shape:
        raise ValueError(
            f"The {what}{where} for layer {layer.name!r} have shape {tuple(tensor.shape)}, "
            f"expected {layer.weight_shape}. Were they made for another architecture?"
        )
    if floating:
        if not tensor.is_floating_point():
            raise ValueError(
                f"The {what}{where} for layer {layer.name!r} have dtype {tensor.dtype}, expected a floating dtype (float32)."
            )
        bad = int((~torch.isfinite(tensor)).sum())
        if bad:
            nan = int(torch.isnan(tensor).sum())
            raise ValueError(
                f"The {what}{where} for layer {layer.name!r} contain {nan} NaN and {bad - nan} infinite "
                f"value(s); expected finite values. Regenerate them (kedro run --pipeline=init_weights)."
            )
    elif tensor.dtype != torch.int8:
        raise ValueError(f"The {what}{where} for layer {layer.name!r} have dtype {tensor.dtype}, expected torch.int8.")
    return tensor
