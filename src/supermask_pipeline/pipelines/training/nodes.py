"""Nodes of the training template pipeline (one per step; the science lives in the library)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from supermask_pipeline.images import ImageSplit, split_to_tensors
from supermask_pipeline.images.augmentation import get_augmentation
from supermask_pipeline.masks import DenseStrategy, get_mask_strategy, remaining_weights_table
from supermask_pipeline.models import (
    ArchitectureSpec,
    MaskedNetwork,
    check_layer_tensors,
    get_architecture,
    initialise_tensors,
    layer_specs,
)
from supermask_pipeline.pipelines.tracking import live_metric_logger, log_effective_parameters, set_run_tags
from supermask_pipeline.reporting import plot_remaining_weights, plot_training_curves
from supermask_pipeline.training import (
    CheckpointStore,
    Checkpointing,
    TensorDataset,
    TrainingConfig,
    evaluate,
    resolve_device,
    train,
)
from supermask_pipeline.models.architectures import resolve_dataset
from supermask_pipeline.training.checkpoint import array_sha256

Tensors = dict[str, torch.Tensor]

#: ``method`` keys that configure the network rather than the mask strategy (passed to
#: :class:`MaskedNetwork`): Zhou et al.'s signed constant and dynamic weight rescaling,
#: Ramanujan et al.'s signed Kaiming constant (``weight_transform``: none | signed_constant |
#: signed_kaiming_constant; ``rescale``: true | false).
NETWORK_OPTIONS = ("weight_transform", "rescale")


def child_seeds(seed: int, count: int) -> list[int]:
    """``count`` independent child seeds (integers in [0, 2³²)) of one run seed: numpy's
    ``SeedSequence(seed).spawn(count)``, so the first children do not depend on ``count``
    (child 0: initial weights, 1: mask scores, 2: the sampled-mask evaluation).

    Raises:
        ValueError: ``seed`` is not an integer ≥ 0.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer ≥ 0, got {seed!r}.")
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(int(seed)).spawn(count)]


def device_tensors(
    split: ImageSplit, data_params: dict[str, Any], device: torch.device, reference: ImageSplit
) -> TensorDataset:
    """The split on ``device``: images float32 (N, C, H, W) normalised by ``data_params["normalisation"]``
    (per-channel statistics from ``reference``, the train split), labels int64 (N,).

    Raises:
        ValueError: unknown normalisation, or a reference with another channel count.
    """
    images, labels = split_to_tensors(split, data_params["normalisation"], device, reference=reference)
    return TensorDataset(images, labels)


def training_config(
    training: dict[str, Any], presets: dict[str, dict[str, Any]], architecture: str, seed: int | None = None
) -> TrainingConfig:
    """The validated training recipe of one run: ``training`` with every null value taken from
    ``presets[architecture]`` (per-architecture learning rate, weight decay, epochs, batch size).

    Raises:
        ValueError: no preset for the architecture while a value is null (names both), or a
            bad training parameter (see :class:`TrainingConfig`).
    """
    values = dict(training)
    missing = [key for key, value in values.items() if value is None]
    if missing:
        preset = presets.get(architecture) if isinstance(presets, dict) else None
        if not isinstance(preset, dict):
            raise ValueError(
                f"training {missing} are null (from the architecture preset) but presets has no entry "
                f"{architecture!r}; known presets: {sorted(presets or {})}. Add one or set the values."
            )
        for key in missing:
            if preset.get(key) is None:
                raise ValueError(f"training.{key} is null and presets.{architecture} has no {key}; set one of them.")
            values[key] = preset[key]
    if seed is not None:
        values["seed"] = seed
    return TrainingConfig.from_params(values)


def check_split(split: ImageSplit, spec: ArchitectureSpec, name: str) -> None:
    """Check that a split's images (uint8 (N, H, W, C)) fit the architecture's input (C, H, W).

    Raises:
        ValueError: another image shape; the message names the split, its source and the fix
            (pass the architecture as a runtime parameter so that the catalog picks the splits).
    """
    channels, height, width = spec.input_shape
    found = tuple(split.images.shape[1:])
    if found != (height, width, channels):
        raise ValueError(
            f"{name} holds images of shape {found} ({split.attrs.get('source', '?')}), but architecture "
            f"{spec.name!r} takes {(height, width, channels)} ({spec.dataset}). Pass the architecture as a "
            f"runtime parameter (--params=model.architecture={spec.name}) or set it in conf/base/globals.yml, "
            f"so that the catalog picks the matching splits."
        )


def initialise_network(model: dict[str, Any], init: dict[str, Any], seed: int) -> tuple[Tensors, Tensors]:
    """Seeded initial weights and mask scores of every masked layer.

    Args:
        model: ``architecture`` (fcn, conv2 …).
        init: ``weight_init`` / ``weight_init_scale`` and ``mask_score_init`` /
            ``mask_score_init_scale`` (initialiser names and their constants).
        seed: run seed; weights and scores use independent child seeds of it.

    Returns:
        (initial_weights, initial_mask_scores): layer name (``fc1`` …, ``conv1`` …) → float32
        CPU tensor of the layer's weight shape ((out, in) or (out, in, 3, 3)).

    Raises:
        ValueError: unknown architecture or initialiser (the message lists the choices).
    """
    spec = get_architecture(model["architecture"])
    weight_seed, score_seed = child_seeds(seed, 2)
    weights = initialise_tensors(spec, init["weight_init"], weight_seed, init.get("weight_init_scale"))
    scores = initialise_tensors(spec, init["mask_score_init"], score_seed, init.get("mask_score_init_scale"))
    return weights, scores


def train_network(
    initial_weights: Tensors,
    initial_mask_scores: Tensors,
    train_split: ImageSplit,
    val_split: ImageSplit,
    training_checkpoints: CheckpointStore,
    model: dict[str, Any],
    dataset: str,
    method: dict[str, Any],
    data: dict[str, Any],
    training: dict[str, Any],
    presets: dict[str, dict[str, Any]],
    seed: int,
    *,
    metric_prefix: str | None = None,
    method_tag: str | None = None,
) -> tuple[Tensors, Tensors, Tensors, pd.DataFrame]:
    """Train with the method's strategy; log live metrics to the active MLflow run.

    ``method`` holds ``name``, the strategy's options and optionally the network options
    :data:`NETWORK_OPTIONS` (``weight_transform``, ``rescale``), which go to the network.
    Live metrics are logged as ``<metric_prefix>.<name>`` and the effective training
    parameters as ``<metric_prefix>.effective_training.<key>`` (default prefix: the strategy
    name); the run's ``method`` tag is ``method_tag`` (default: the strategy name).

    Tensors are dicts layer name → CPU tensor of the layer's weight shape. The engine
    checkpoints into ``training_checkpoints`` every ``training.checkpoint_every`` epochs;
    rerunning the node with the same inputs (parameters, initial tensors, splits, training
    code) continues from the newest checkpoint, and the restored epochs' live metrics are
    logged to the new MLflow run in their original steps.

    Raises:
        ValueError: unknown method, bad training parameter (named in the message), or
            initial weights/scores that do not fit the architecture (the message names
            the file, the layer, expected and found shapes), or contain NaN/inf.
        TrainingDivergedError: the training loss became NaN or infinite (epoch and step
            in the message; the last finite state is checkpointed).

    Returns:
        (trained_weights: the pruned network W ⊙ mask, float32;
        trained_mask_scores: final scores, empty for the dense baseline;
        masks: int8 masks in {−1, 0, +1};
        training_history: one row per epoch).
    """
    spec = get_architecture(model["architecture"])
    options = {k: v for k, v in method.items() if k != "name" and k not in NETWORK_OPTIONS}
    network_options = {k: method[k] for k in NETWORK_OPTIONS if k in method}
    strategy = get_mask_strategy(method["name"], **options)
    prefix = metric_prefix or strategy.name
    config = training_config(training, presets, spec.name, seed)
    device = resolve_device(config.device)
    dataset_name = resolve_dataset(spec.name, dataset)
    check_split(train_split, spec, "train_split")
    augment = get_augmentation(data.get("augmentation", "none"))
    check_layer_tensors(spec, initial_weights, "initial weights")
    if strategy.uses_scores:
        check_layer_tensors(spec, initial_mask_scores, "initial mask scores")
    activation = model.get("activation", "elu")
    network = MaskedNetwork(spec, strategy, initial_weights, initial_mask_scores, activation, **network_options)
    network.to(device)
    set_run_tags(
        {"architecture": spec.name, "dataset": dataset_name, "method": method_tag or strategy.name, "seed": seed}
    )
    log_effective_parameters(f"{prefix}.effective_training", config.result_parameters())
    identity = {
        "architecture": spec.name,
        "activation": activation,
        "method": dict(method),
        "data": {"dataset": dataset_name, **data},
        "train_split": array_sha256(train_split.images, train_split.labels),
        "val_split": array_sha256(val_split.images, val_split.labels),
    }
    history = train(
        network,
        device_tensors(train_split, data, device, train_split),
        device_tensors(val_split, data, device, train_split),
        config,
        on_epoch_end=live_metric_logger(prefix),
        checkpointing=Checkpointing(training_checkpoints, identity),
        augment=augment,
    )
    return network.effective_weights(), network.mask_scores(), network.masks(), history


def evaluate_network(
    trained_weights: Tensors,
    masks: Tensors,
    test_split: ImageSplit,
    train_split: ImageSplit,
    model: dict[str, Any],
    data: dict[str, Any],
    training: dict[str, Any],
    presets: dict[str, dict[str, Any]],
) -> tuple[dict[str, dict[str, float]], dict[str, Any], pd.DataFrame]:
    """Test loss and accuracy of the pruned network, and its remaining weights.

    Returns:
        (test_metrics: for kedro-mlflow's MlflowMetricsHistoryDataset, ``{name: {value, step}}``
        with ``test_accuracy``, ``test_loss``, ``remaining_weights`` (fractions),
        ``remaining_weight_count`` and its split into ``positive_weight_count`` (+1) and
        ``negative_weight_count`` (−1); evaluation_summary: the same plus per-layer figures, for JSON;
        remaining_weights_per_layer: table of :func:`remaining_weights_table`).
    """
    spec = get_architecture(model["architecture"])
    config = training_config(training, presets, spec.name)
    device = resolve_device(config.device)
    check_split(test_split, spec, "test_split")
    check_layer_tensors(spec, trained_weights, "trained weights")
    check_layer_tensors(spec, masks, "masks", floating=False)
    network = MaskedNetwork(spec, DenseStrategy(), trained_weights, activation=model.get("activation", "elu")).to(device)
    result = evaluate(network, device_tensors(test_split, data, device, train_split), config.eval_batch_size)
    table = remaining_weights_table({layer.name: masks[layer.name] for layer in layer_specs(spec)})
    total = table.iloc[-1]
    values = {
        "test_accuracy": result["accuracy"],
        "test_loss": result["loss"],
        "remaining_weights": float(total["remaining_weights"]),
        "remaining_weight_count": float(total["remaining"]),
        "positive_weight_count": float(total["positive"]),
        "negative_weight_count": float(total["negative"]),
    }
    summary = {
        **values,
        "architecture": spec.name,
        "per_layer": table.to_dict(orient="records"),
    }
    return {name: {"value": value, "step": 0} for name, value in values.items()}, summary, table


def plot_results(history: pd.DataFrame, remaining_per_layer: pd.DataFrame) -> tuple[Figure, Figure]:
    """Training curves and remaining weights per layer, as matplotlib figures."""
    return plot_training_curves(history), plot_remaining_weights(remaining_per_layer)
