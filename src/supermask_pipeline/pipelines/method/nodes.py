"""Nodes of the one method template: parameters → :class:`~supermask_pipeline.experiment.RunConfig`
→ the library step → MLflow. The keyword-only ``method`` (the registry row's name: parameter
block, MLflow prefix) and ``tag`` (the MLflow ``method`` tag; a grid's ``lottery.<configuration>``)
are bound per namespace by the pipeline."""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd
from matplotlib.figure import Figure

from supermask_pipeline.experiment import assembly
from supermask_pipeline.experiment.config import RunConfig, run_config
from supermask_pipeline.export.pyfunc import log_compact_model
from supermask_pipeline.export.runs import export_run
from supermask_pipeline.images import ImageSplit
from supermask_pipeline.pipelines.datasets_tracking import log_split_inputs
from supermask_pipeline.pipelines.tracking import (
    live_metric_logger,
    log_effective_parameters,
    metrics_written,
    set_run_tags,
)
from supermask_pipeline.reporting import plot_accuracy_vs_remaining, plot_remaining_weights, plot_training_curves
from supermask_pipeline.reporting.records import ticket_history
from supermask_pipeline.training import CheckpointStore
from supermask_pipeline.training.iterative_pruning import RoundResult

Tensors = dict[str, Any]
Params = dict[str, Any]

#: Columns of the lottery rounds table: one row per (configuration, round); fractions in [0, 1].
ROUNDS_COLUMNS = [
    "configuration", "criterion", "same_sign", "mask_1_action", "mask_0_action", "round",
    "remaining_weights", "remaining_weight_count", "val_accuracy", "best_val_accuracy",
    "test_accuracy", "test_loss", "epochs", "wall_time_s",
]
#: Metrics logged once per round as ``<method>.<configuration>.round.<name>`` (step = round).
ROUND_METRICS = ("test_accuracy", "test_loss", "val_accuracy", "remaining_weights")


def _run(method: str, recipe: Params, defaults: Params, model: Params, dataset: str, seed: int,
         evaluation_samples: int = 10) -> RunConfig:
    return run_config(method, recipe, defaults, model, dataset, seed, evaluation_samples)


def _metrics(values: dict[str, float]) -> dict[str, dict[str, float]]:
    """For kedro-mlflow's MlflowMetricsHistoryDataset: ``{name: {value, step}}``."""
    return {name: {"value": value, "step": 0} for name, value in values.items()}


def _start(run: RunConfig, tag: str) -> None:
    set_run_tags({"architecture": run.model.architecture, "dataset": run.model.dataset, "method": tag, "seed": run.seed})
    log_effective_parameters(f"{run.name}.effective_training", run.training.result_parameters())


def initialise(recipe: Params, defaults: Params, model: Params, dataset: str, seed: int, *, method: str) -> tuple[Tensors, Tensors]:
    """Seeded initial weights and mask scores (``<method>.init``; streams ``weights`` and ``mask_scores``).

    Raises:
        ParameterError: a bad parameter of the method (named in the message).
    """
    return assembly.initialise_network(_run(method, recipe, defaults, model, dataset, seed))


def start_from_found_mask(
    found_weights: Tensors, found_masks: Tensors, recipe: Params, defaults: Params, model: Params, dataset: str,
    seed: int, *, method: str,
) -> tuple[Tensors, Tensors]:
    """A fine-tuning method's start: the source method's pruned weights and its 0/1 mask
    (:func:`~supermask_pipeline.experiment.assembly.found_mask_start`)."""
    return assembly.found_mask_start(_run(method, recipe, defaults, model, dataset, seed), found_weights, found_masks)


def train(
    initial_weights: Tensors, initial_mask_scores: Tensors, train_split: ImageSplit, val_split: ImageSplit,
    training_checkpoints: CheckpointStore, recipe: Params, defaults: Params, model: Params, dataset: str, seed: int,
    *, method: str, tag: str,
) -> tuple[Tensors, Tensors, Tensors, pd.DataFrame]:
    """Train with the engine; live MLflow metrics ``<method>.<name>`` per epoch, tags, effective
    training parameters. A rerun with the same inputs resumes from the newest checkpoint.

    Returns:
        (trained_weights, trained_mask_scores, masks, training_history): see
        :class:`~supermask_pipeline.experiment.assembly.TrainedNetwork`.
    """
    run = _run(method, recipe, defaults, model, dataset, seed)
    _start(run, tag)
    log_split_inputs(train=train_split, val=val_split)  # MLflow's Dataset column
    live = live_metric_logger(method)
    with metrics_written(live):
        result = assembly.train_run(run, initial_weights, initial_mask_scores, train_split, val_split,
                                    training_checkpoints, live)
    return result.trained_weights, result.trained_mask_scores, result.masks, result.history


def train_batched(
    calls: list[tuple[list[Any], dict[str, str]]], run_ids: list[str | None]
) -> list[tuple[Tensors, Tensors, Tensors, pd.DataFrame]]:
    """:func:`train` for several seeds of one configuration in one batched engine run
    (``grid.batch_seeds``): ``calls`` holds every point's train-node arguments (the node's
    inputs in order) and its ``method``/``tag`` keywords; each seed's tags, effective
    parameters and live metrics go to its own MLflow run (``run_ids``, none of them active).

    Returns:
        Per point, the outputs of :func:`train` (trained_weights, trained_mask_scores, masks,
        training_history).
    """
    runs, weights, scores, stores, loggers = [], [], [], [], []
    for (args, keywords), run_id in zip(calls, run_ids):
        initial_weights, initial_mask_scores, _, _, store, *run_args = args
        run = _run(keywords["method"], *run_args)
        runs.append(run), weights.append(initial_weights), scores.append(initial_mask_scores), stores.append(store)
        loggers.append(live_metric_logger(keywords["method"], run_id=run_id) if run_id else None)
        if run_id:
            client = mlflow.MlflowClient()
            client.set_tag(run_id, "method", keywords["tag"])
            client.set_tag(run_id, "batched_seeds", str(len(calls)))
            for key, value in run.training.result_parameters().items():
                client.log_param(run_id, f"{run.name}.effective_training.{key}", value)
    train_split, val_split = calls[0][0][2], calls[0][0][3]
    with metrics_written(*loggers):
        results = assembly.train_runs(runs, weights, scores, train_split, val_split, stores, loggers)
    return [(r.trained_weights, r.trained_mask_scores, r.masks, r.history) for r in results]


def train_lottery(
    initial_weights: Tensors, train_split: ImageSplit, val_split: ImageSplit, test_split: ImageSplit,
    training_checkpoints: CheckpointStore, recipe: Params, defaults: Params, model: Params, dataset: str, seed: int,
    *, method: str, tag: str,
) -> tuple[dict, dict, pd.DataFrame, Tensors, Tensors, Tensors, pd.DataFrame]:
    """Every configuration's rounds (:func:`~supermask_pipeline.experiment.assembly.lottery_rounds`).

    Live MLflow metrics: per epoch ``<method>.<configuration>.<metric>`` at step
    ``round · epochs + epoch``; per round ``<method>.<configuration>.round.<metric>`` (step = round).

    Returns:
        (round_weights, round_masks: partition ``<configuration>/round_NN`` → layer → tensor;
        rounds_table (:data:`ROUNDS_COLUMNS`); then the ticket the template evaluates, the last
        round of the first configuration: trained_weights, trained_mask_scores (empty), masks,
        training_history (every epoch of every round of every configuration, with
        ``configuration`` and ``round``)).
    """
    run = _run(method, recipe, defaults, model, dataset, seed)
    _start(run, tag)
    log_split_inputs(train=train_split, val=val_split)
    epoch_loggers = {c.name: live_metric_logger(f"{method}.{c.name}") for c in run.pruning.configurations}
    round_loggers = {c.name: live_metric_logger(f"{method}.{c.name}.round", ROUND_METRICS)
                     for c in run.pruning.configurations}

    def on_epoch_end(configuration, round_index: int, epoch: int, row: dict[str, float]) -> None:
        epoch_loggers[configuration.name](round_index * run.training.epochs + epoch, row)

    def on_round_end(result: RoundResult) -> None:
        round_loggers[result.configuration.name](result.round, _round_row(result))

    with metrics_written(*epoch_loggers.values(), *round_loggers.values()):
        results = assembly.lottery_rounds(run, initial_weights, train_split, val_split, test_split,
                                          training_checkpoints, on_epoch_end, on_round_end)
    weights, masks, rows, histories = {}, {}, [], []
    for name, rounds in results.items():
        for result in rounds:
            key = f"{name}/round_{result.round:02d}"
            weights[key], masks[key] = result.trained_weights, result.masks
            rows.append(_round_row(result))
            histories.append(result.history.assign(configuration=name, round=result.round))
    history = pd.concat(histories, ignore_index=True)
    history = history[["configuration", "round"] + [c for c in history.columns if c not in ("configuration", "round")]]
    ticket = next(iter(results.values()))[-1]
    return (weights, masks, pd.DataFrame(rows, columns=ROUNDS_COLUMNS),
            ticket.trained_weights, {}, ticket.masks, history)


def _round_row(result: RoundResult) -> dict[str, Any]:
    c = result.configuration
    return {
        "configuration": c.name, "criterion": c.criterion, "same_sign": c.same_sign,
        "mask_1_action": c.mask_1_action, "mask_0_action": c.mask_0_action, "round": result.round,
        "remaining_weights": result.remaining_weights, "remaining_weight_count": result.remaining_weight_count,
        "val_accuracy": result.val_accuracy,
        "best_val_accuracy": float(result.history["val_accuracy"].max()) if len(result.history) else float("nan"),
        "test_accuracy": result.test_accuracy, "test_loss": result.test_loss,
        "epochs": len(result.history), "wall_time_s": result.wall_time_s,
    }


def evaluate(
    trained_weights: Tensors, masks: Tensors, test_split: ImageSplit, train_split: ImageSplit,
    recipe: Params, defaults: Params, model: Params, dataset: str, seed: int, *, method: str,
) -> tuple[dict, dict, pd.DataFrame]:
    """Prune and test (:func:`~supermask_pipeline.experiment.assembly.evaluate_run`).

    Returns:
        (test_metrics for MLflow, ``<method>.test_accuracy`` …; evaluation_summary for JSON;
        remaining_weights_per_layer).
    """
    values, summary, table = assembly.evaluate_run(
        _run(method, recipe, defaults, model, dataset, seed), trained_weights, masks, test_split, train_split
    )
    log_split_inputs(test=test_split)  # MLflow's Dataset column: the split the test figures are of
    return _metrics(values), summary, table


def evaluate_sampled(
    initial_weights: Tensors, trained_mask_scores: Tensors, trained_weights: Tensors, masks: Tensors,
    test_split: ImageSplit, train_split: ImageSplit, recipe: Params, defaults: Params, model: Params, dataset: str,
    seed: int, evaluation_samples: int, *, method: str,
) -> tuple[dict, dict]:
    """Test accuracy over sampled masks of a stochastic strategy (bernoulli, aslp); no metric
    for a deterministic one (:func:`~supermask_pipeline.experiment.assembly.evaluate_sampled_run`)."""
    run = _run(method, recipe, defaults, model, dataset, seed, evaluation_samples)
    values, report = assembly.evaluate_sampled_run(
        run, initial_weights, trained_mask_scores, trained_weights, masks, test_split, train_split
    )
    return _metrics(values), report


def export(
    trained_weights: Tensors, masks: Tensors, train_split: ImageSplit, test_split: ImageSplit,
    recipe: Params, defaults: Params, model: Params, dataset: str, seed: int, *, method: str,
) -> tuple[bytes, bytes, dict, dict]:
    """The found network as a compact file and ONNX, reloaded and tested
    (:func:`~supermask_pipeline.export.runs.export_run`).

    Returns:
        (compact_network bytes, onnx_network bytes, export_metrics for MLflow
        ``<method>.export.compact_bytes`` …, export_summary for JSON).
    """
    result = export_run(_run(method, recipe, defaults, model, dataset, seed), trained_weights, masks,
                        train_split, test_split)
    return result.compact, result.onnx, _metrics(result.metrics), result.summary


def log_model(compact_network: bytes, test_split: ImageSplit, *, tag: str) -> dict[str, Any]:
    """Log the compact network as the MLflow model ``model`` of the active run (models from code,
    no pickle; :func:`~supermask_pipeline.export.pyfunc.log_compact_model`), with the first
    five test images as its input example; nothing without an active run.

    Returns:
        ``{"logged": bool, "model_uri", "model_id", "run_id", "name", "method"}`` for JSON.
    """
    run = mlflow.active_run()
    if run is None:
        return {"logged": False, "method": tag}
    info = log_compact_model(compact_network, test_split.images[:5], name="model", tags={"method": tag})
    return {"logged": True, "model_uri": info.model_uri, "model_id": info.model_id, "run_id": run.info.run_id,
            "runs_uri": f"runs:/{run.info.run_id}/model", "name": "model", "method": tag}


def plot(history: pd.DataFrame, remaining_per_layer: pd.DataFrame) -> tuple[Figure, Figure]:
    """Training curves (the last round's for a lottery ticket) and remaining weights per layer."""
    return plot_training_curves(ticket_history(history)), plot_remaining_weights(remaining_per_layer)


def plot_lottery(table: pd.DataFrame) -> Figure:
    """Test accuracy (%) against remaining weights (%, log scale), one line per configuration,
    with the dense baseline (round 0) and the band 1 point below it dotted.

    Raises:
        ValueError: an empty table.
    """
    if table.empty:
        raise ValueError("The lottery rounds table is empty: nothing to plot.")
    series = {name: group.sort_values("round")[["remaining_weights", "test_accuracy"]]
              for name, group in table.groupby("configuration", sort=False)}
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
