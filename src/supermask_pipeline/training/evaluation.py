"""Device-resident data and evaluation: cross-entropy and accuracy, with the final or sampled masks."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from supermask_pipeline.seeds import RunSeeds
from supermask_pipeline.training.config import TrainingConfig
from supermask_pipeline.training.masked_model import MaskedModel


@dataclass(frozen=True)
class TensorDataset:
    """Images and labels resident on one device.

    Attributes:
        images: float32 (N, C, H, W), already normalised.
        labels: int64 (N,), class indices.

    Raises:
        ValueError: the numbers of images and labels differ.
    """

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.shape[0] != self.labels.shape[0]:
            raise ValueError(
                f"{self.images.shape[0]} images but {self.labels.shape[0]} labels; they must match."
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def channels_last(data: TensorDataset) -> TensorDataset:
    """``data`` with 4-d images in ``torch.channels_last`` memory format (others unchanged)."""
    if data.images.dim() != 4:
        return data
    return TensorDataset(data.images.contiguous(memory_format=torch.channels_last), data.labels)


@torch.no_grad()
def evaluate(model: nn.Module, data: TensorDataset, batch_size: int = 2000) -> dict[str, float]:
    """Mean cross-entropy loss (nats) and accuracy (fraction in [0, 1]) of ``model`` on ``data``.

    Args:
        model: maps float32 images (B, C, H, W) to logits (B, classes), on the data's device.
        data: images and int64 labels (N,) on one device.
        batch_size: images per forward pass (memory bound only; the result does not depend on it).

    Returns:
        ``{"loss": float, "accuracy": float}``. The model is put in eval mode for the pass and
        restored afterwards; no gradient is recorded.
    """
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=data.labels.device)
    correct = torch.zeros((), device=data.labels.device, dtype=torch.int64)
    for start in range(0, len(data), batch_size):
        x = data.images[start : start + batch_size]
        y = data.labels[start : start + batch_size]
        logits = model(x)
        loss_sum += F.cross_entropy(logits, y, reduction="sum")
        correct += (logits.argmax(dim=1) == y).sum()
    model.train(was_training)
    n = max(len(data), 1)
    return {"loss": float(loss_sum) / n, "accuracy": float(correct) / n}


def evaluate_sampled(
    model: nn.Module, data: TensorDataset, samples: int = 10, batch_size: int = 2000, seed: int = 0
) -> dict[str, float]:
    """Loss and accuracy over ``samples`` masks drawn from a stochastic strategy (Bernoulli, ASLP).

    Each mask is drawn once per layer and held fixed for the whole of ``data``
    (:meth:`~supermask_pipeline.models.MaskedNetwork.frozen_sample`); Zhou et al. (NeurIPS
    2019, Section 5) report the mean test accuracy over 10 such masks. The masks come from
    a generator of its own seeded with ``seed`` on the model's device, so the result does
    not depend on how far training advanced the network's own sampling stream. For a
    deterministic strategy every sample is the deterministic mask (std 0). The accuracy of
    the deterministic final mask is :func:`evaluate`.

    Args:
        model: a :class:`~supermask_pipeline.models.MaskedNetwork` (any
            :class:`~supermask_pipeline.training.masked_model.MaskedModel`) on the data's device.
        data: images float32 (N, C, H, W) and labels int64 (N,) on one device.
        samples: number of masks drawn (≥ 1).
        batch_size: images per forward pass (memory only).
        seed: seed of the sampling generator (integer ≥ 0), e.g.
            :attr:`~supermask_pipeline.seeds.RunSeeds.sampled_evaluation`.

    Returns:
        ``{"accuracy_mean", "accuracy_std", "loss_mean", "loss_std"}``: accuracies as
        fractions, losses as mean cross-entropy in nats; std is the sample standard
        deviation over the masks (ddof 1; 0 for one sample).

    Raises:
        ValueError: a model that is not a masked network (no ``frozen_sample``), or
            ``samples``/``seed`` not integers ≥ 1 / ≥ 0.
    """
    if not isinstance(model, MaskedModel):
        raise ValueError(
            f"evaluate_sampled needs a MaskedNetwork (a model with frozen_sample()), got {type(model).__name__}; "
            "use evaluate() for other models."
        )
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be an integer ≥ 1 (masks drawn), got {samples!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer ≥ 0, got {seed!r}.")
    results = _sampled(model, model, data, samples, batch_size, seed)
    accuracies = [result["accuracy"] for result in results]
    losses = [result["loss"] for result in results]

    def spread(values: list[float]) -> float:
        return statistics.stdev(values) if len(values) > 1 else 0.0

    return {
        "accuracy_mean": statistics.fmean(accuracies),
        "accuracy_std": spread(accuracies),
        "loss_mean": statistics.fmean(losses),
        "loss_std": spread(losses),
    }


def validate(
    model: nn.Module, masked: MaskedModel, data: TensorDataset, config: TrainingConfig, epoch: int
) -> tuple[float, float]:
    """Validation (loss in nats, accuracy as a fraction) after ``epoch`` with the mask of
    ``config.validation_masks``.

    ``final``: the deterministic final mask (:func:`evaluate`). ``sampled``: one mask held
    for the whole split, drawn from a generator seeded with
    ``RunSeeds(config.seed).validation(epoch)``, so that the figure does not depend on the
    training's sampling stream and a resumed run repeats it (Dupont et al. 2022's code
    validates on sampled masks). A model that is not a masked network (``masked`` a
    :class:`~supermask_pipeline.training.masked_model.PlainModel`) has one mask either way.

    Args:
        model: the module evaluated; ``masked`` its :class:`MaskedModel` view.
        data: the validation split on the model's device.
        config: ``validation_masks``, ``seed``, ``eval_batch_size``.
        epoch: the epoch just trained (≥ 1).
    """
    if config.validation_masks == "sampled":
        (result,) = _sampled(model, masked, data, 1, config.eval_batch_size, RunSeeds(config.seed).validation(epoch))
    else:
        result = evaluate(model, data, config.eval_batch_size)
    return result["loss"], result["accuracy"]


def _sampled(
    model: nn.Module, masked: MaskedModel, data: TensorDataset, samples: int, batch_size: int, seed: int
) -> list[dict[str, float]]:
    """:func:`evaluate` under each of ``samples`` frozen masks drawn from one generator seeded with ``seed``."""
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    results = []
    for _ in range(samples):
        with masked.frozen_sample(generator):
            results.append(evaluate(model, data, batch_size))
    return results


__all__ = ["TensorDataset", "channels_last", "evaluate", "evaluate_sampled", "validate"]
