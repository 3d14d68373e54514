"""Nodes of the supermask pipeline: the template's initialise → train → evaluate → plot with the
recipe of the chosen strategy, the test accuracy over sampled masks, and fine-tuning under the
fixed mask.

Strategies (METHODS.md, "Learned supermasks"): ``bernoulli`` (Zhou, Lan, Liu & Yosinski,
NeurIPS 2019), ``threshold`` (M. Shlis, "Super-Masks: Are They Good Initializations?"),
``edge_popup`` (Ramanujan et al., CVPR 2020) and ``aslp`` (Dupont et al. 2022, arXiv
2202.12986); the masks themselves live in :mod:`supermask_pipeline.masks.strategies`.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
import torch

from supermask_pipeline.images import ImageSplit
from supermask_pipeline.masks import get_mask_strategy
from supermask_pipeline.models import MaskedNetwork, check_layer_tensors, get_architecture
from supermask_pipeline.pipelines.training.nodes import (
    NETWORK_OPTIONS,
    child_seeds,
    device_tensors,
    evaluate_network,
    initialise_network,
    train_network,
    training_config,
)
from supermask_pipeline.training import CheckpointStore, evaluate_sampled, resolve_device

logger = logging.getLogger(__name__)

Tensors = dict[str, torch.Tensor]

#: Kedro namespace of the pipeline: datasets ``supermask.<name>``, MLflow keys ``supermask.<metric>``.
NAMESPACE = "supermask"
#: Keys of one recipe (``supermask.recipes.<strategy>``); ``presets`` is optional.
RECIPE_KEYS = ("init", "method", "data", "training")


def select_recipe(
    strategy: str, recipes: dict[str, dict[str, Any]], catalog_strategy: str | None = None
) -> dict[str, Any]:
    """The recipe of ``strategy`` (``supermask.recipes.<strategy>``), checked.

    Args:
        strategy: ``supermask.strategy``.
        recipes: strategy name → recipe with ``init``, ``method``, ``data``, ``training`` and
            optionally ``presets``.
        catalog_strategy: the strategy the catalog's paths were built for (runtime parameter
            or ``globals.yml``); None: not checked.

    Returns:
        The recipe: ``init``, ``method`` (``name`` = ``strategy``), ``data``, ``training``,
        ``presets`` (``{}`` when absent).

    Raises:
        ValueError: an unknown strategy (the message lists the known ones), a recipe that
            lacks a key or whose ``method.name`` is another strategy, or a catalog built for
            another strategy (the strategy was set where the catalog cannot see it).
    """
    if not isinstance(recipes, dict) or not recipes:
        raise ValueError("supermask.recipes must map every strategy name to its recipe; it is empty.")
    if not isinstance(strategy, str) or strategy not in recipes:
        raise ValueError(
            f"Unknown supermask strategy {strategy!r}. Known strategies: {', '.join(sorted(recipes))}. "
            "Choose one with --params=supermask.strategy=<name>."
        )
    recipe = recipes[strategy]
    missing = [key for key in RECIPE_KEYS if not isinstance(recipe, dict) or key not in recipe]
    if missing:
        raise ValueError(f"supermask.recipes.{strategy} lacks {missing}; it needs {list(RECIPE_KEYS)}.")
    name = recipe["method"].get("name", strategy)
    if name != strategy:
        raise ValueError(
            f"supermask.recipes.{strategy}.method.name is {name!r}; it must be {strategy!r} (or left out)."
        )
    if catalog_strategy is not None and catalog_strategy != strategy:
        raise ValueError(
            f"supermask.strategy is {strategy!r} but the catalog's paths are those of {catalog_strategy!r}: "
            "the catalog reads the strategy from the command line (--params=supermask.strategy=...) or "
            "from conf/base/globals.yml (supermask_strategy) only. Set it there."
        )
    return {**recipe, "method": {**recipe["method"], "name": strategy}, "presets": recipe.get("presets") or {}}


def _network_model(model: dict[str, Any], method: dict[str, Any]) -> dict[str, Any]:
    """``model`` with ``method.activation`` (Zhou et al. and edge-popup use ReLU) when it is set."""
    activation = method.get("activation")
    return {**model, "activation": activation} if activation else dict(model)


def _training_method(method: dict[str, Any]) -> dict[str, Any]:
    """``method`` without ``activation`` (which goes to the model): name, strategy and network options."""
    return {key: value for key, value in method.items() if key != "activation"}


def _check_binary(spec, masks: Tensors) -> None:
    """Masks of ``spec``'s layers, int8, holding only 0 and 1 (ValueError naming the layer otherwise)."""
    check_layer_tensors(spec, masks, "masks", floating=False)
    for name, mask in masks.items():
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError(
                f"The masks{_where(masks)} for layer {name!r} hold values other than 0 and 1 "
                f"({sorted(mask.unique().tolist())}); a learned supermask is binary. A signed-supermask file?"
            )


def _where(tensors: object) -> str:
    source = getattr(tensors, "source", None)
    return f" ({source})" if source else ""


def initialise_supermask(
    model: dict[str, Any], strategy: str, recipes: dict[str, dict[str, Any]], catalog_strategy: str, seed: int
) -> tuple[Tensors, Tensors]:
    """Seeded initial weights and mask scores with the strategy's initialisers
    (:func:`~supermask_pipeline.pipelines.training.nodes.initialise_network` with ``recipe.init``).

    Raises:
        ValueError: see :func:`select_recipe`; unknown architecture or initialiser.
    """
    recipe = select_recipe(strategy, recipes, catalog_strategy)
    return initialise_network(model, recipe["init"], seed)


def train_supermask(
    initial_weights: Tensors,
    initial_mask_scores: Tensors,
    train_split: ImageSplit,
    val_split: ImageSplit,
    training_checkpoints: CheckpointStore,
    model: dict[str, Any],
    dataset: str,
    strategy: str,
    recipes: dict[str, dict[str, Any]],
    catalog_strategy: str,
    seed: int,
) -> tuple[Tensors, Tensors, Tensors, pd.DataFrame]:
    """Train the mask scores over the frozen initial weights with the strategy's recipe
    (:func:`~supermask_pipeline.pipelines.training.nodes.train_network`).

    Live MLflow metrics ``supermask.<name>`` per epoch; tag ``method`` = the strategy. Early
    stopping and restoring the best epoch follow ``recipe.training``.

    Returns:
        (trained_weights: the pruned network, the effective weights under the final 0/1 mask
        (weight transform, rescaling and learned scale applied), float32;
        trained_mask_scores: final scores, float32; masks: int8 0/1; training_history).

    Raises:
        ValueError: see :func:`select_recipe` and ``train_network``.
        TrainingDivergedError: the training loss became NaN or infinite.
    """
    recipe = select_recipe(strategy, recipes, catalog_strategy)
    return train_network(
        initial_weights, initial_mask_scores, train_split, val_split, training_checkpoints,
        _network_model(model, recipe["method"]), dataset, _training_method(recipe["method"]),
        recipe["data"], recipe["training"], recipe["presets"], seed,
        metric_prefix=NAMESPACE, method_tag=strategy,
    )


def evaluate_supermask(
    trained_weights: Tensors,
    masks: Tensors,
    test_split: ImageSplit,
    train_split: ImageSplit,
    model: dict[str, Any],
    strategy: str,
    recipes: dict[str, dict[str, Any]],
    catalog_strategy: str,
) -> tuple[dict[str, dict[str, float]], dict[str, Any], pd.DataFrame]:
    """Prune and test: the pruned weights (weights ⊙ final mask) in a dense network on the test split.

    Returns:
        (test_metrics for MLflow: ``supermask.test_accuracy``, ``.test_loss``,
        ``.remaining_weights`` (fractions), ``.remaining_weight_count`` …; evaluation_summary:
        the same with ``strategy`` and ``per_layer``; remaining_weights_per_layer: one row per
        layer and the total).

    Raises:
        ValueError: see :func:`select_recipe`; masks that are not int8 0/1 of the architecture.
    """
    recipe = select_recipe(strategy, recipes, catalog_strategy)
    _check_binary(get_architecture(model["architecture"]), masks)
    metrics, summary, table = evaluate_network(
        trained_weights, masks, test_split, train_split, _network_model(model, recipe["method"]),
        recipe["data"], recipe["training"], recipe["presets"],
    )
    return metrics, {"strategy": strategy, **summary}, table


def learned_scales(network: MaskedNetwork, trained_weights: Tensors, masks: Tensors) -> dict[str, float]:
    """Set the learnable per-layer scales s of ``network`` (ASLP with ``learn_scale``) from the
    pruned weights, which hold s · (W ⊙ m · r); returns layer name → s.

    The pruned weights are the only saved trace of s. Per layer, s is the least-squares ratio
    of ``trained_weights`` to the network's own s-free effective weight over the kept
    weights (exact up to float rounding). A layer without a kept nonzero weight keeps s = 1:
    its pruned output is 0 whatever s is. A network without scales is left as it is ({}).
    """
    scales: dict[str, float] = {}
    with torch.no_grad():
        for layer in network.masked_layers():
            if layer.scale is None:
                continue
            name = layer.spec.name
            layer.scale.fill_(1.0)
            base = layer.effective_weight(layer.final_mask()).detach().cpu()
            kept = masks[name] != 0
            denominator = float((base[kept] ** 2).sum())
            if denominator > 0:
                layer.scale.fill_(float((trained_weights[name][kept] * base[kept]).sum()) / denominator)
            scales[name] = float(layer.scale)
    return scales


def evaluate_sampled_masks(
    initial_weights: Tensors,
    trained_mask_scores: Tensors,
    trained_weights: Tensors,
    masks: Tensors,
    evaluation_summary: dict[str, Any],
    test_split: ImageSplit,
    train_split: ImageSplit,
    model: dict[str, Any],
    strategy: str,
    recipes: dict[str, dict[str, Any]],
    catalog_strategy: str,
    evaluation_samples: int,
    seed: int,
) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """Test accuracy over ``evaluation_samples`` masks sampled from the trained scores
    (stochastic strategies: bernoulli, aslp), next to the deterministic mask's.

    Zhou et al. (2019, Section 5) report the mean test accuracy over 10 sampled Bernoulli
    masks; each mask is drawn once per layer and held for the whole test split
    (:func:`~supermask_pipeline.training.evaluate_sampled`, generator seeded with a child seed
    of ``seed``). The network is rebuilt from the initial weights and trained scores with the
    recipe's network options (ASLP's learned scales recovered by :func:`learned_scales`); its
    deterministic mask must equal ``masks``. A deterministic strategy (threshold,
    edge_popup) has nothing to sample: no metrics are logged and the report says so.

    Returns:
        (metrics for MLflow, ``supermask.sampled_test_accuracy_mean``, ``_std``,
        ``supermask.sampled_test_loss_mean``, ``_std`` (fractions; nats; std over the masks,
        ddof 1), empty for a deterministic strategy; report for JSON: ``strategy``,
        ``stochastic``, ``samples``, ``sampling_seed``, ``test_accuracy`` (the deterministic
        mask, from ``evaluation_summary``) and the sampled figures).

    Raises:
        ValueError: see :func:`select_recipe`; ``evaluation_samples`` not an integer ≥ 1;
            tensors that do not fit the architecture; trained scores whose deterministic mask
            differs from ``masks`` (files of different runs).
    """
    recipe = select_recipe(strategy, recipes, catalog_strategy)
    method = recipe["method"]
    options = {k: v for k, v in method.items() if k not in ("name", "activation", *NETWORK_OPTIONS)}
    mask_strategy = get_mask_strategy(strategy, **options)
    report: dict[str, Any] = {
        "strategy": strategy,
        "stochastic": mask_strategy.stochastic,
        "test_accuracy": evaluation_summary["test_accuracy"],
    }
    if not mask_strategy.stochastic:
        logger.info(
            "%s is deterministic: every sampled mask is its final mask, so there is no sampled test accuracy "
            "(its prune-and-test accuracy is supermask.test_accuracy).", strategy,
        )
        return {}, {**report, "samples": 0}
    if isinstance(evaluation_samples, bool) or not isinstance(evaluation_samples, int) or evaluation_samples < 1:
        raise ValueError(f"supermask.evaluation_samples must be an integer ≥ 1, got {evaluation_samples!r}.")
    spec = get_architecture(model["architecture"])
    check_layer_tensors(spec, initial_weights, "initial weights")
    check_layer_tensors(spec, trained_mask_scores, "trained mask scores")
    check_layer_tensors(spec, trained_weights, "trained weights")
    _check_binary(spec, masks)
    config = training_config(recipe["training"], recipe["presets"], spec.name)
    device = resolve_device(config.device)
    network = MaskedNetwork(
        spec, mask_strategy, initial_weights, trained_mask_scores,
        _network_model(model, method).get("activation", "elu"),
        **{k: method[k] for k in NETWORK_OPTIONS if k in method},
    )
    rebuilt = network.masks()
    differing = [name for name in rebuilt if not torch.equal(rebuilt[name], masks[name])]
    if differing:
        raise ValueError(
            f"The trained mask scores{_where(trained_mask_scores)} give another mask than the saved masks"
            f"{_where(masks)} in layers {differing}: they come from different runs. Rerun supermask.train."
        )
    scales = learned_scales(network, trained_weights, masks)
    network.to(device)
    sampling_seed = child_seeds(seed, 3)[2]  # children 0 and 1 drew the initial weights and scores
    test_data = device_tensors(test_split, recipe["data"], device, train_split)
    result = evaluate_sampled(network, test_data, evaluation_samples, config.eval_batch_size, sampling_seed)
    values = {
        "sampled_test_accuracy_mean": result["accuracy_mean"],
        "sampled_test_accuracy_std": result["accuracy_std"],
        "sampled_test_loss_mean": result["loss_mean"],
        "sampled_test_loss_std": result["loss_std"],
    }
    logger.info(
        "%s: test accuracy %.4f with the final mask, %.4f ± %.4f over %d sampled masks.",
        strategy, evaluation_summary["test_accuracy"], values["sampled_test_accuracy_mean"],
        values["sampled_test_accuracy_std"], evaluation_samples,
    )
    report.update(samples=evaluation_samples, sampling_seed=sampling_seed, **values)
    if scales:
        report["learned_scales"] = scales
    return {name: {"value": value, "step": 0} for name, value in values.items()}, report


def fine_tune_supermask(
    trained_weights: Tensors,
    masks: Tensors,
    train_split: ImageSplit,
    val_split: ImageSplit,
    fine_tune_checkpoints: CheckpointStore,
    model: dict[str, Any],
    dataset: str,
    strategy: str,
    recipes: dict[str, dict[str, Any]],
    catalog_strategy: str,
    fine_tune: dict[str, Any],
    seed: int,
) -> tuple[Tensors, pd.DataFrame]:
    """Train the kept weights of the pruned network under its fixed 0/1 mask (Shlis: Adam, lr 1e-5).

    The network starts from the pruned weights (weight transform, rescaling and learned scale
    already applied) with :class:`~supermask_pipeline.masks.FixedMaskStrategy` over
    ``masks``: a pruned weight gets no gradient and stays 0. Data and activation are the
    strategy's recipe; training is ``fine_tune.training`` (``fine_tune.presets`` for nulls).
    Live MLflow metrics ``supermask.fine_tune.<name>``; checkpoints in ``fine_tune_checkpoints``.

    Returns:
        (fine_tuned_weights: float32, pruned entries exactly 0; fine_tune_history: one row per epoch).

    Raises:
        ValueError: see :func:`select_recipe`; masks that are not int8 0/1; a bad training parameter.
        TrainingDivergedError: the loss became NaN or infinite.
    """
    recipe = select_recipe(strategy, recipes, catalog_strategy)
    _check_binary(get_architecture(model["architecture"]), masks)
    fixed_mask = {name: mask.to(torch.float32) for name, mask in masks.items()}
    weights, _, _, history = train_network(
        trained_weights, fixed_mask, train_split, val_split, fine_tune_checkpoints,
        _network_model(model, recipe["method"]), dataset, {"name": "fixed_mask"},
        recipe["data"], fine_tune["training"], fine_tune.get("presets") or {}, seed,
        metric_prefix=f"{NAMESPACE}.fine_tune", method_tag=strategy,
    )
    return weights, history


def evaluate_fine_tuned(
    fine_tuned_weights: Tensors,
    masks: Tensors,
    evaluation_summary: dict[str, Any],
    test_split: ImageSplit,
    train_split: ImageSplit,
    model: dict[str, Any],
    strategy: str,
    recipes: dict[str, dict[str, Any]],
    catalog_strategy: str,
    fine_tune: dict[str, Any],
) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """Test accuracy of the fine-tuned pruned network, reported apart from the supermask's.

    Returns:
        (metrics for MLflow: ``supermask.fine_tuned_test_accuracy``, ``supermask.fine_tuned_test_loss``;
        summary for JSON: those, the supermask's own ``test_accuracy`` before fine-tuning, the
        remaining weights (unchanged by fine-tuning) and ``per_layer``).

    Raises:
        ValueError: see :func:`select_recipe`; masks that are not int8 0/1.
    """
    recipe = select_recipe(strategy, recipes, catalog_strategy)
    _check_binary(get_architecture(model["architecture"]), masks)
    metrics, summary, _ = evaluate_network(
        fine_tuned_weights, masks, test_split, train_split, _network_model(model, recipe["method"]),
        recipe["data"], fine_tune["training"], fine_tune.get("presets") or {},
    )
    values = {
        "fine_tuned_test_accuracy": metrics["test_accuracy"]["value"],
        "fine_tuned_test_loss": metrics["test_loss"]["value"],
    }
    report = {
        "strategy": strategy,
        **values,
        "test_accuracy_before_fine_tuning": evaluation_summary["test_accuracy"],
        **{key: value for key, value in summary.items() if key not in ("test_accuracy", "test_loss")},
    }
    return {name: {"value": value, "step": 0} for name, value in values.items()}, report
