"""What the training engine needs from a model beyond ``nn.Module``: the masked-network protocol.

:class:`~supermask_pipeline.models.MaskedNetwork` implements :class:`MaskedModel`
structurally (no inheritance, so ``models`` does not depend on ``training``). Any other
``nn.Module`` trains too: :func:`as_masked_model` decides once per call of the engine
whether the model is a masked network and otherwise wraps it in :class:`PlainModel`,
whose answers are those of a dense network without stochastic masks. The engine then
asks the protocol, never the model's attributes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class LearningRateOverrides(Protocol):
    """A model that names tensors with a learning rate of their own (e.g. ASLP's learnable
    scales, Dupont et al. 2022); the engine puts them in optimizer groups with weight decay 0."""

    def learning_rate_overrides(self) -> Mapping[str, float]:
        """Parameter name (as in ``named_parameters``) → its learning rate (a positive number)."""
        ...


@runtime_checkable
class MaskedModel(LearningRateOverrides, Protocol):
    """A network whose weights are multiplied by masks, possibly sampled (Bernoulli, ASLP).

    The engine records :meth:`remaining_fraction` every epoch, seeds and checkpoints the
    mask-sampling generator, and validates on one sampled mask with :meth:`frozen_sample`
    (``TrainingConfig.validation_masks: sampled``).
    """

    def remaining_fraction(self) -> float:
        """Nonzero entries of the final masks over all masked weights, a fraction in [0, 1]."""
        ...

    def mask_generator(self) -> torch.Generator | None:
        """The generator stochastic masks are drawn from during training, on the model's
        device (its state is checkpointed as ``rng.mask_sampling``); None: the model draws none."""
        ...

    def seed_mask_sampling(self, seed: int) -> None:
        """Restart the mask-sampling stream from ``seed`` (integer ≥ 0)."""
        ...

    def frozen_sample(
        self, generator: torch.Generator | None = None
    ) -> AbstractContextManager[Mapping[str, torch.Tensor]]:
        """Within the block, every forward pass uses one mask per layer drawn from
        ``generator`` (deterministic strategies: their deterministic mask); yields layer
        name → the drawn mask."""
        ...


class PlainModel:
    """:class:`MaskedModel` answers for an ``nn.Module`` that is not a masked network.

    Every weight counts as remaining (fraction 1.0); there is no mask-sampling stream
    (seeding is a no-op, :meth:`mask_generator` is None, a checkpoint holds no
    ``rng.mask_sampling``); a frozen sample is the model itself. Learning-rate overrides
    are the module's own when it has :class:`LearningRateOverrides`, else none.

    Attributes:
        module: the wrapped module.
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self._overrides = module if isinstance(module, LearningRateOverrides) else None

    def learning_rate_overrides(self) -> Mapping[str, float]:  # noqa: D102
        return {} if self._overrides is None else self._overrides.learning_rate_overrides()

    def remaining_fraction(self) -> float:  # noqa: D102
        return 1.0

    def mask_generator(self) -> torch.Generator | None:  # noqa: D102
        return None

    def seed_mask_sampling(self, seed: int) -> None:  # noqa: D102
        return None

    def frozen_sample(
        self, generator: torch.Generator | None = None
    ) -> AbstractContextManager[Mapping[str, torch.Tensor]]:  # noqa: D102
        return contextlib.nullcontext({})


def as_masked_model(model: nn.Module) -> MaskedModel:
    """``model`` itself when it implements :class:`MaskedModel` (a MaskedNetwork), else a
    :class:`PlainModel` around it: one decision, so no caller probes attributes."""
    return model if isinstance(model, MaskedModel) else PlainModel(model)


__all__ = ["LearningRateOverrides", "MaskedModel", "PlainModel", "as_masked_model"]
