"""The masked network: one module for every architecture and every method.

Each masked layer computes with ``W ⊙ mask`` where the mask comes from its trainable
``mask_scores`` through a :class:`~supermask_pipeline.masks.MaskStrategy` (for the
dense baseline the mask is all ones and ``W`` trains). See Ramanujan et al. (2020)
for the mechanism and Koster et al. (2022) for the signed variant.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from supermask_pipeline.masks.strategies import MaskStrategy
from supermask_pipeline.registry import lookup
from supermask_pipeline.models.architectures import POOL, ArchitectureSpec, LayerSpec, layer_specs

ACTIVATIONS = {"elu": F.elu, "relu": F.relu}


def get_activation(name: str):
    """Activation function by name (``elu`` for Koster et al., ``relu`` for Zhou et al.).

    Raises:
        ValueError: unknown name; the message lists the choices.
    """
    return lookup(ACTIVATIONS, name, "activation")


class MaskedLayer(nn.Module):
    """A convolution (3×3, stride 1, padding 1) or dense layer whose weight is multiplied by a mask.

    Tensors (float32): ``weight`` of ``layer.weight_shape`` (trainable only under a
    strategy with ``trains_weights``); ``mask_scores`` of the same shape (only for
    strategies with ``uses_scores``; trainable unless the strategy is a fixed mask);
    buffer ``mask_state``, a 0-d tensor fixed at construction from the initial scores
    (the threshold τ of the signed supermask); optional buffer ``pruned_values`` of the
    weight's shape: the frozen value of every pruned weight (Zhou et al.'s mask-0
    action ``freeze_init``), so that the effective weight is ``W ⊙ m + P ⊙ (1 − m)``.
    No bias: the networks of this project have none.

    Raises:
        ValueError: missing scores for a strategy that uses them, or ``pruned_values``
            with a strategy whose masks are not binary or of another shape.
    """

    def __init__(
        self,
        layer: LayerSpec,
        strategy: MaskStrategy,
        weight: torch.Tensor,
        mask_scores: torch.Tensor | None,
        pruned_values: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.spec = layer
        self.strategy = strategy
        self.weight = nn.Parameter(weight.detach().clone().float(), requires_grad=strategy.trains_weights)
        if strategy.uses_scores:
            if mask_scores is None:
                raise ValueError(f"Method {strategy.name!r} needs mask scores for layer {layer.name!r}.")
            scores = mask_scores.detach().clone().float()
            self.mask_scores = nn.Parameter(scores, requires_grad=strategy.trains_scores)
            self.register_buffer("mask_state", strategy.setup(scores))
        else:
            self.mask_scores = None
            self.register_buffer("mask_state", torch.zeros(()))
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
        """The forward-pass mask (differentiable with respect to the scores), shape of the weight."""
        if self.mask_scores is None:
            return torch.ones_like(self.weight)
        return self.strategy.mask(self.mask_scores, self.mask_state)

    def final_mask(self) -> torch.Tensor:
        """The deterministic mask, detached, float32 of the weight's shape."""
        if self.mask_scores is None:
            return torch.ones_like(self.weight).detach()
        return self.strategy.final_mask(self.mask_scores, self.mask_state).detach()

    def effective_weight(self, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``W ⊙ mask`` (``W`` for the dense baseline; ``W ⊙ m + P ⊙ (1 − m)`` with frozen
        pruned values P), shape of the weight. ``mask``: default the forward-pass mask."""
        if self.mask_scores is None:
            return self.weight
        mask = self.mask() if mask is None else mask
        if self.pruned_values is None:
            return self.weight * mask
        return self.weight * mask + self.pruned_values * (1.0 - mask)

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

    Input: images float32 (N, C, H, W) matching ``spec.input_shape``. Output: logits (N, classes).

    Raises:
        ValueError: a layer missing from ``weights``/``mask_scores`` or a shape mismatch
            (the message names the file when known, the layer, expected and found shapes),
            a non-floating dtype or NaN/infinite values, or an unknown activation.
    """

    def __init__(
        self,
        spec: ArchitectureSpec,
        strategy: MaskStrategy,
        weights: Mapping[str, torch.Tensor],
        mask_scores: Mapping[str, torch.Tensor] | None = None,
        activation: str = "elu",
        pruned_values: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.strategy = strategy
        self.activation_name = activation
        self._activation = get_activation(activation)
        self.layer_names: list[str] = []
        for layer in layer_specs(spec):
            weight = _checked(weights, layer, "weights", _where(weights))
            scores = _checked(mask_scores, layer, "mask scores", _where(mask_scores)) if strategy.uses_scores else None
            frozen = None if pruned_values is None else _checked(pruned_values, layer, "pruned values", _where(pruned_values))
            self.add_module(layer.name, MaskedLayer(layer, strategy, weight, scores, frozen))
            self.layer_names.append(layer.name)

    def masked_layers(self) -> list[MaskedLayer]:
        """The masked layers in forward order."""
        return [getattr(self, name) for name in self.layer_names]

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
    def effective_weights(self) -> dict[str, torch.Tensor]:
        """Layer name → ``W ⊙ final mask`` (plus frozen pruned values, if any) as float32 on
        the CPU: the pruned network, evaluated by a dense network of these weights."""
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
