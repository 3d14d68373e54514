"""Nodes of the mask_criteria pipeline: the supermask at initialisation of every criterion."""

from __future__ import annotations

import itertools
from typing import Any

import pandas as pd
import torch
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from supermask_pipeline.images import ImageSplit
from supermask_pipeline.masks import DenseStrategy, criterion_masks, remaining_weights_table
from supermask_pipeline.models import MaskedNetwork, check_layer_tensors, get_architecture
from supermask_pipeline.pipelines.tracking import set_run_tags
from supermask_pipeline.reporting import plot_accuracy_vs_remaining
from supermask_pipeline.training import evaluate, resolve_device
from supermask_pipeline.experiment.assembly import device_tensors
from supermask_pipeline.experiment.config import run_config

TABLE_COLUMNS = ["criterion", "same_sign", "prune_step", "remaining_weights", "val_accuracy", "test_accuracy"]


def evaluate_mask_criteria(
    initial_weights: dict[str, torch.Tensor],
    trained_weights: dict[str, torch.Tensor],
    train_split: ImageSplit,
    val_split: ImageSplit,
    test_split: ImageSplit,
    recipe: dict[str, Any],
    defaults: dict[str, Any],
    model: dict[str, Any],
    dataset: str,
    seed: int,
    options: dict[str, Any],
) -> pd.DataFrame:
    """Accuracy of the untrained masked network ``w_i ⊙ m`` for every criterion, sign variant
    and prune step (the "supermask at initialisation", Zhou et al. 2019, section 5).

    Args:
        initial_weights, trained_weights: layer name → float32 weights of the dense run
            (w_i and w_f), the layer's weight shape.
        train_split: only for per-channel normalisation statistics.
        val_split, test_split: evaluated.
        recipe, defaults, model, dataset, seed: the dense run's parameters (its network,
            normalisation, evaluation batch size and device); the ``random`` criterion draws
            from the run seed's ``mask_criteria`` stream.
        options: ``criteria`` (names of :data:`~supermask_pipeline.masks.CRITERIA`),
            ``same_sign`` (list of booleans: also the variant that drops sign-flipped weights),
            ``prune_steps`` (p = 0 … prune_steps − 1; remaining fraction per layer (1 − r)^p),
            ``rates`` (per-layer base rate overrides ``fc``/``output``/``conv``, or null).

    Returns:
        One row per (criterion, same_sign, prune step): :data:`TABLE_COLUMNS`, remaining
        weights and accuracies as fractions.

    Raises:
        ValueError: unknown criterion, weights that do not fit the architecture, bad options.
    """
    run = run_config("dense", recipe, defaults, model, dataset, seed)
    spec = run.model.spec
    check_layer_tensors(spec, initial_weights, "initial weights")
    check_layer_tensors(spec, trained_weights, "trained weights")
    steps = options["prune_steps"]
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"mask_criteria.prune_steps must be a positive integer, got {steps!r}.")
    device = resolve_device(run.training.device)
    set_run_tags({"architecture": spec.name, "method": "mask_criteria", "seed": seed})
    val = device_tensors(val_split, run, device, train_split)
    test = device_tensors(test_split, run, device, train_split)
    criterion_seed = run.seeds.stream("mask_criteria")
    rows = []
    grid = list(itertools.product(options["criteria"], options["same_sign"], range(steps)))
    for criterion, same_sign, step in tqdm(grid, desc="mask criteria", unit="mask", disable=not run.training.show_progress):
        masks = criterion_masks(
            criterion, initial_weights, trained_weights, spec, step, options.get("rates"), criterion_seed, bool(same_sign)
        )
        weights = {name: initial_weights[name] * masks[name].float() for name in masks}
        network = MaskedNetwork(spec, DenseStrategy(), weights, activation=run.model.activation).to(device)
        total = remaining_weights_table(masks).iloc[-1]
        rows.append(
            {
                "criterion": criterion,
                "same_sign": bool(same_sign),
                "prune_step": step,
                "remaining_weights": float(total["remaining_weights"]),
                "val_accuracy": evaluate(network, val, run.training.eval_batch_size)["accuracy"],
                "test_accuracy": evaluate(network, test, run.training.eval_batch_size)["accuracy"],
            }
        )
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def plot_mask_criteria(table: pd.DataFrame) -> Figure:
    """Test accuracy (%) against remaining weights (%, log scale), one line per criterion
    (dashed: its same-sign variant), from :func:`evaluate_mask_criteria`'s table.

    Raises:
        ValueError: an empty table.
    """
    series = {}
    for (criterion, same_sign), group in table.groupby(["criterion", "same_sign"], sort=False):
        label = f"{criterion} (same sign)" if same_sign else criterion
        series[label] = group.sort_values("remaining_weights")[["remaining_weights", "test_accuracy"]]
    return plot_accuracy_vs_remaining(series, title="Supermask at initialisation (Zhou et al. 2019)")
