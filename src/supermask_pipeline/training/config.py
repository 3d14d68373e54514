"""Hyperparameters of the training engine, validated once, with a description per field (OpenLTH style)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

OPTIMIZERS = ("sgd", "adam")
PRECISIONS = ("fp32", "bf16")
#: Fields that do not change what training computes: they are left out of a run's fingerprint,
#: so changing them never forces a checkpointed run to start over.
OPERATIONAL_FIELDS = ("eval_batch_size", "device", "show_progress", "checkpoint_every", "resume", "channels_last")
WEIGHT_DECAY_MODES = ("decoupled", "l2")
LR_SCHEDULES = ("exponential", "cosine")
VALIDATION_MASKS = ("final", "sampled")


def _f(default: Any, help: str) -> Any:  # noqa: A002
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class TrainingConfig:
    """How a network is trained, for every method.

    Defaults are the signed-supermask recipe of Koster et al. (2022, Appendix): SGD
    with Nesterov momentum 0.9, decoupled weight decay 5e-4 applied every step and
    not scaled by the learning rate (TensorFlow Addons' SGDW), learning rate and
    weight decay both decayed by 0.9 every 10 epochs (continuously), batch 128.
    The defaults of the fields added for the learned supermasks (``lr_schedule``,
    ``early_stopping_patience``, ``restore_best``) keep that recipe unchanged.

    Recipes of the learned supermasks (METHODS.md) in these fields: edge-popup
    (Ramanujan et al. 2020) ``lr_schedule: cosine``, learning rate 0.1, momentum 0.9,
    ``weight_decay: 1e-4`` with ``weight_decay_mode: l2`` (PyTorch's SGD weight decay, on
    the scores), 100 epochs, batch 128; Bernoulli (Zhou et al. 2019) SGD momentum 0.9,
    learning rate 100; ASLP (Dupont et al. 2022) learning rate 50, momentum 0.9, batch
    256, ``early_stopping_patience`` > 0 with ``restore_best: true``.

    Raises (from :meth:`from_params`):
        ValueError: an unknown key (the message lists the known ones) or a value of
            the wrong type or range (the message names the parameter).
    """

    epochs: int = _f(100, "number of passes over the training split")
    batch_size: int = _f(128, "images per optimizer step")
    optimizer: str = _f("sgd", "sgd (with momentum/nesterov) or adam")
    learning_rate: float = _f(0.05, "initial learning rate")
    momentum: float = _f(0.9, "SGD momentum")
    nesterov: bool = _f(True, "Nesterov momentum (SGD only)")
    weight_decay: float = _f(
        5e-4,
        "weight decay on every trained tensor: the mask scores of a mask method (edge-popup: 1e-4, l2), the "
        "weights of dense or fixed-mask training; not on tensors with a learning rate of their own (ASLP's "
        "learnable scales: weight decay 0)",
    )
    weight_decay_mode: str = _f(
        "decoupled",
        "decoupled: p ← p·(1 − wd_t) each step, not scaled by the learning rate (SGDW); "
        "l2: wd·p added to the gradient",
    )
    lr_decay_rate: float = _f(0.9, "learning rate and weight decay multiplied by this every lr_decay_epochs (1: no decay)")
    lr_decay_epochs: float = _f(10.0, "epochs per decay_rate factor; the decay is continuous (per step)")
    lr_schedule: str = _f(
        "exponential",
        "exponential: lr·lr_decay_rate^(t / (lr_decay_epochs·steps per epoch)) (Koster et al. 2022); "
        "cosine: lr·½(1 + cos(π·t/T)) over all T = epochs·steps per epoch steps (Ramanujan et al. 2020); "
        "t counts optimizer steps; decoupled weight decay follows the same factor",
    )
    early_stopping_patience: int = _f(
        0,
        "stop after this many epochs in a row without a new best validation accuracy (needs validation "
        "data; Zhou et al. 2019, Dupont et al. 2022); 0: off",
    )
    restore_best: bool = _f(
        False,
        "at the end load the model state of the epoch with the best validation accuracy (the earliest on "
        "ties; needs validation data); false: keep the last state",
    )
    validation_masks: str = _f(
        "final",
        "the mask of the per-epoch validation (and so of early stopping and the best epoch): final: the "
        "deterministic final mask; sampled: stochastic strategies draw one mask, held for the whole "
        "validation split, from the seed's validation stream of epoch e (RunSeeds.validation; Dupont "
        "et al. 2022's code validates on sampled masks); deterministic strategies are the same either way",
    )
    eval_batch_size: int = _f(2000, "images per forward pass in evaluation")
    device: str = _f("auto", "auto (CUDA when present, else CPU), cpu, cuda or cuda:N")
    seed: int = _f(
        0,
        "run seed; batch order, augmentation, mask sampling and the sampled validation masks are its "
        "named streams (supermask_pipeline.seeds)",
    )
    deterministic: bool = _f(True, "torch.use_deterministic_algorithms (bit-identical reruns on the same machine)")
    show_progress: bool = _f(True, "progress bars on the terminal")
    precision: str = _f("fp32", "fp32, or bf16: forward and loss under torch.autocast(bfloat16); weights, scores and optimizer stay fp32")
    channels_last: bool = _f(False, "conv nets: images and conv weights in channels_last memory format (faster on GPUs with tensor cores)")
    checkpoint_every: int = _f(1, "epochs between checkpoints (the last epoch is always checkpointed); 0: never")
    resume: bool = _f(True, "continue from the newest checkpoint of the same run (same inputs); false: start over")

    def __post_init__(self) -> None:
        def positive(name: str, kind: tuple[type, ...], what: str) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, kind) or not value > 0:
                raise ValueError(f"training.{name} must be a positive {what}, got {value!r}.")

        for name in ("epochs", "batch_size", "eval_batch_size"):
            positive(name, (int,), "integer")
        for name in ("learning_rate", "lr_decay_epochs"):
            positive(name, (int, float), "number")
        if self.precision not in PRECISIONS:
            raise ValueError(f"training.precision must be one of {PRECISIONS}, got {self.precision!r}.")
        for name in ("deterministic", "show_progress", "nesterov", "resume", "channels_last", "restore_best"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"training.{name} must be true or false, got {getattr(self, name)!r}.")
        if isinstance(self.checkpoint_every, bool) or not isinstance(self.checkpoint_every, int) or self.checkpoint_every < 0:
            raise ValueError(f"training.checkpoint_every must be an integer ≥ 0 (0: no checkpoints), got {self.checkpoint_every!r}.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer ≥ 0, got {self.seed!r}.")
        for name in ("momentum", "weight_decay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"training.{name} must be a number ≥ 0, got {value!r}.")
        if not 0 < self.lr_decay_rate <= 1:
            raise ValueError(f"training.lr_decay_rate must lie in (0, 1], got {self.lr_decay_rate!r}.")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"training.lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}.")
        patience = self.early_stopping_patience
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(
                f"training.early_stopping_patience must be an integer ≥ 0 (epochs without a better validation "
                f"accuracy; 0: no early stopping), got {patience!r}."
            )
        if self.validation_masks not in VALIDATION_MASKS:
            raise ValueError(
                f"training.validation_masks must be one of {VALIDATION_MASKS}, got {self.validation_masks!r}."
            )
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"training.optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}.")
        if self.weight_decay_mode not in WEIGHT_DECAY_MODES:
            raise ValueError(
                f"training.weight_decay_mode must be one of {WEIGHT_DECAY_MODES}, got {self.weight_decay_mode!r}."
            )
        resolve_device(self.device)

    def result_parameters(self) -> dict[str, Any]:
        """The fields that change what training computes (all but :data:`OPERATIONAL_FIELDS`), for fingerprints."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in OPERATIONAL_FIELDS}

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> TrainingConfig:
        """Build from a parameter dict (``params:<namespace>.training``), rejecting unknown keys."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"Unknown training parameter(s) {unknown}. Known: {sorted(known)}.")
        values = dict(params)
        for name in ("learning_rate", "momentum", "weight_decay", "lr_decay_rate", "lr_decay_epochs"):
            if isinstance(values.get(name), int) and not isinstance(values.get(name), bool):
                values[name] = float(values[name])
        return cls(**values)


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; otherwise the named device.

    Raises:
        ValueError: an unparsable name, or CUDA asked for where none is available.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"training.device {name!r} is not a device name (auto, cpu, cuda, cuda:0).") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"training.device is {name!r} but no CUDA device is available; use device: auto or cpu.")
    return device
