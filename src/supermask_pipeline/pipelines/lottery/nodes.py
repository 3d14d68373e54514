"""Nodes of the lottery pipeline: the rounds of every configuration, then table and plot."""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch
from matplotlib.figure import Figure

from supermask_pipeline.images import ImageSplit
from supermask_pipeline.images.augmentation import get_augmentation
from supermask_pipeline.models import check_layer_tensors, get_architecture
from supermask_pipeline.models.architectures import resolve_dataset
from supermask_pipeline.pipelines.tracking import live_metric_logger, log_effective_parameters, set_run_tags
from supermask_pipeline.pipelines.training.nodes import check_split, device_tensors, training_config
from supermask_pipeline.reporting import plot_accuracy_vs_remaining
from supermask_pipeline.training import CheckpointStore, resolve_device
from supermask_pipeline.training.checkpoint import array_sha256
from supermask_pipeline.training.iterative_pruning import LotteryConfiguration, RoundResult, iterative_pruning

#: Columns of the rounds table: one row per (configuration, round); fractions in [0, 1].
TABLE_COLUMNS = [
    "configuration", "criterion", "same_sign", "mask_1_action", "mask_0_action", "round",
    "remaining_weights", "remaining_weight_count", "val_accuracy", "best_val_accuracy",
    "test_accuracy", "test_loss", "epochs", "wall_time_s",
]
#: Metrics logged once per round to MLflow as ``lottery.<configuration>.round.<name>`` (step = round).
ROUND_METRICS = ("test_accuracy", "test_loss", "val_accuracy", "remaining_weights")


def _configurations(pruning: dict[str, Any]) -> list[LotteryConfiguration]:
    configurations = pruning.get("configurations")
    if not isinstance(configurations, list) or not configurations:
        raise ValueError(
            "lottery.pruning.configurations must be a non-empty list like "
            "[{criterion: large_final, mask_1_action: none, mask_0_action: mask}], "
            f"got {configurations!r}."
        )
    parsed = [LotteryConfiguration.from_params(item) for item in configurations]
    names = [c.name for c in parsed]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"lottery.pruning.configurations lists {duplicates} more than once.")
    return parsed


def train_lottery_tickets(
    initial_weights: dict[str, torch.Tensor],
    train_split: ImageSplit,
    val_split: ImageSplit,
    test_split: ImageSplit,
    training_checkpoints: CheckpointStore,
    model: dict[str, Any],
    dataset: str,
    activation: str | None,
    pruning: dict[str, Any],
    data: dict[str, Any],
    training: dict[str, Any],
    presets: dict[str, dict[str, Any]],
    seed: int,
) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, dict[str, torch.Tensor]], pd.DataFrame, pd.DataFrame]:
    """Every configuration's chain of rounds (train → prune → mask-1/mask-0 action → retrain).

    Live MLflow metrics: per epoch ``lottery.<configuration>.<metric>`` at step
    ``round · epochs + epoch``; per round ``lottery.<configuration>.round.<metric>`` at
    step ``round`` (:data:`ROUND_METRICS`). A rerun with the same inputs returns finished
    rounds from their checkpoints and continues the interrupted one.

    Args:
        initial_weights: ``w_i``, layer name → float32 tensor of the layer's weight shape.
        train_split, val_split, test_split: the dataset's splits (uint8 images).
        training_checkpoints: where the engine checkpoints every round.
        model: ``architecture`` (and ``activation``, used when ``activation`` is null).
        dataset: ``auto`` or the dataset name (must fit the architecture).
        activation: the lottery networks' activation (Zhou et al.: ``relu``), or null.
        pruning: ``rounds`` (pruning rounds after the dense round 0), ``rates`` (per-layer
            base-rate overrides or null), ``configurations`` (list of mappings with
            ``criterion``, ``mask_1_action``, ``mask_0_action``, ``same_sign``).
        data, training, presets: the recipe (as for every training node).
        seed: seeds the batch order and the rounds' random choices.

    Returns:
        (round_weights and round_masks: partition ``<configuration>/round_NN`` → layer name →
        trained float32 weights / int8 0/1 mask; rounds_table: :data:`TABLE_COLUMNS`;
        training_history: every epoch of every round, with ``configuration`` and ``round``).

    Raises:
        ValueError: bad configurations, rounds, rates, training parameters, or initial
            weights that do not fit the architecture (names the file and layer).
        TrainingDivergedError: a round's loss became NaN or infinite.
    """
    spec = get_architecture(model["architecture"])
    configurations = _configurations(pruning)
    config = training_config(training, presets, spec.name, seed)
    device = resolve_device(config.device)
    dataset_name = resolve_dataset(spec.name, dataset)
    check_split(train_split, spec, "train_split")
    check_layer_tensors(spec, initial_weights, "initial weights")
    activation = activation or model.get("activation", "elu")
    set_run_tags({"architecture": spec.name, "dataset": dataset_name, "method": "lottery", "seed": seed})
    log_effective_parameters("lottery.effective_training", config.result_parameters())
    identity = {
        "architecture": spec.name,
        "activation": activation,
        "data": {"dataset": dataset_name, **data},
        "train_split": array_sha256(train_split.images, train_split.labels),
        "val_split": array_sha256(val_split.images, val_split.labels),
    }
    train_data = device_tensors(train_split, data, device, train_split)
    val_data = device_tensors(val_split, data, device, train_split)
    test_data = device_tensors(test_split, data, device, train_split)
    weights: dict[str, dict[str, torch.Tensor]] = {}
    masks: dict[str, dict[str, torch.Tensor]] = {}
    rows: list[dict[str, Any]] = []
    histories: list[pd.DataFrame] = []
    for configuration in configurations:
        prefix = f"lottery.{configuration.name}"
        epoch_logger = live_metric_logger(prefix)
        round_logger = live_metric_logger(f"{prefix}.round", ROUND_METRICS)

        def on_epoch_end(round_index: int, epoch: int, row: dict[str, float], log=epoch_logger) -> None:
            log(round_index * config.epochs + epoch, row)

        def on_round_end(result: RoundResult, log=round_logger) -> None:
            log(result.round, _row(result))

        results = iterative_pruning(
            spec, initial_weights, train_data, val_data, config, configuration, pruning["rounds"],
            rates=pruning.get("rates"), activation=activation, seed=seed, test_data=test_data,
            store=training_checkpoints, identity=identity, augment=get_augmentation(data.get("augmentation", "none")),
            on_epoch_end=on_epoch_end, on_round_end=on_round_end,
        )
        for result in results:
            key = f"{configuration.name}/round_{result.round:02d}"
            weights[key] = result.trained_weights
            masks[key] = result.masks
            rows.append(_row(result))
            histories.append(result.history.assign(configuration=configuration.name, round=result.round))
    history = pd.concat(histories, ignore_index=True)
    first = ["configuration", "round"]
    history = history[first + [c for c in history.columns if c not in first]]
    return weights, masks, pd.DataFrame(rows, columns=TABLE_COLUMNS), history


def _row(result: RoundResult) -> dict[str, Any]:
    configuration = result.configuration
    return {
        "configuration": configuration.name,
        "criterion": configuration.criterion,
        "same_sign": configuration.same_sign,
        "mask_1_action": configuration.mask_1_action,
        "mask_0_action": configuration.mask_0_action,
        "round": result.round,
        "remaining_weights": result.remaining_weights,
        "remaining_weight_count": result.remaining_weight_count,
        "val_accuracy": result.val_accuracy,
        "best_val_accuracy": float(result.history["val_accuracy"].max()) if len(result.history) else float("nan"),
        "test_accuracy": result.test_accuracy,
        "test_loss": result.test_loss,
        "epochs": len(result.history),
        "wall_time_s": result.wall_time_s,
    }


def plot_lottery(table: pd.DataFrame) -> Figure:
    """Test accuracy (%) against remaining weights (%, log scale), one line per configuration,
    with the dense baseline (round 0) and the band 1 point below it dotted.

    Raises:
        ValueError: an empty table.
    """
    if table.empty:
        raise ValueError("The lottery rounds table is empty: nothing to plot.")
    series = {
        name: group.sort_values("round")[["remaining_weights", "test_accuracy"]]
        for name, group in table.groupby("configuration", sort=False)
    }
    figure = plot_accuracy_vs_remaining(series, title="Iterative pruning (Frankle & Carbin 2019; Zhou et al. 2019)")
    dense = table.loc[table["round"] == 0, "test_accuracy"]
    if len(dense):
        ax = figure.axes[0]
        baseline = 100 * float(dense.mean())
        ax.axhline(baseline, color="grey", linestyle=":", linewidth=1)
        ax.axhline(baseline - 1, color="grey", linestyle=":", linewidth=0.6)
        ax.annotate(f"dense {baseline:.2f} % (−1 point below)", (0.01, 0.02), xycoords="axes fraction",
                    fontsize="x-small", color="grey")
    return figure
