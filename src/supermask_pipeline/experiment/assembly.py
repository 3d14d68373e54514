"""Build what a run needs from its :class:`~supermask_pipeline.experiment.config.RunConfig`:
initial tensors, the masked network, tensors on the device, the engine's arguments; and run
the steps of the one method template (train, evaluate, sampled evaluation, lottery rounds).
No Kedro: the nodes of :mod:`supermask_pipeline.pipelines.method` call these and add only
the MLflow glue.

Tensors are dicts layer name (``fc1`` …, ``conv1`` …) → float32 CPU tensor of the layer's
weight shape ((out, in) or (out, in, 3, 3)) unless stated otherwise; masks are int8.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch

from supermask_pipeline.experiment.config import RunConfig
from supermask_pipeline.images import ImageSplit, split_to_tensors
from supermask_pipeline.images.augmentation import get_augmentation
from supermask_pipeline.masks import DenseStrategy, remaining_weights_table
from supermask_pipeline.models import MaskedNetwork, check_layer_tensors, initialise_tensors, layer_specs
from supermask_pipeline.training import (
    CheckpointStore,
    Checkpointing,
    TensorDataset,
    evaluate,
    evaluate_sampled,
    resolve_device,
    train,
)
from supermask_pipeline.training.checkpoint import array_sha256
from supermask_pipeline.training.iterative_pruning import LotteryConfiguration, RoundResult, iterative_pruning

logger = logging.getLogger(__name__)

Tensors = dict[str, torch.Tensor]
EpochCallback = Callable[[int, dict[str, float]], None]


def _where(tensors: object) -> str:
    source = getattr(tensors, "source", None)
    return f" ({source})" if source else ""


def check_split(split: ImageSplit, run: RunConfig, name: str) -> None:
    """Check that a split's images (uint8 (N, H, W, C)) fit the architecture's input (C, H, W).

    The parameters were validated before the run (the architecture fits the dataset), so a
    mismatch means the split file holds another dataset's images: the file is what is wrong.

    Raises:
        ValueError: another image shape; the message names the split (catalog entry and default
            file), both shapes and the fix: rerun data_processing for the run's dataset.
    """
    spec = run.model.spec
    channels, height, width = spec.input_shape
    found = tuple(split.images.shape[1:])
    if found != (height, width, channels):
        dataset = run.model.dataset
        raise ValueError(
            f"{name} holds images of shape {found} ({split.attrs.get('source', '?')}), but architecture "
            f"{spec.name!r} on dataset {dataset!r} takes {(height, width, channels)}: the split file (catalog "
            f"entry {name!r}, by default data/03_primary/{dataset}/{name.removesuffix('_split')}.h5) is not of "
            f"{dataset!r}. Rerun the data processing for it (kedro run --pipeline=data_processing "
            f"--params=model.architecture={spec.name},dataset={dataset}), after checking that the catalog entry "
            f"raw_images (source, root) is of {dataset!r}."
        )


def device_tensors(split: ImageSplit, run: RunConfig, device: torch.device, reference: ImageSplit) -> TensorDataset:
    """The split on ``device``: images float32 (N, C, H, W) normalised by ``run.data.normalisation``
    (per-channel statistics from ``reference``, the train split), labels int64 (N,).

    Raises:
        ValueError: a reference with another channel count.
    """
    images, labels = split_to_tensors(split, run.data.normalisation, device, reference=reference)
    return TensorDataset(images, labels)


def initialise_network(run: RunConfig) -> tuple[Tensors, Tensors]:
    """Seeded initial weights and mask scores of every masked layer (streams ``weights`` and
    ``mask_scores`` of the run seed).

    Returns:
        (initial_weights, initial_mask_scores).
    """
    spec, init = run.model.spec, run.init
    weights = initialise_tensors(spec, init.weight_init, run.seeds.weights, init.weight_init_scale)
    scores = initialise_tensors(spec, init.mask_score_init, run.seeds.mask_scores, init.mask_score_init_scale)
    return weights, scores


def check_masks(run: RunConfig, masks: Tensors, binary: bool) -> None:
    """Masks of the architecture's layers, int8, in {0, 1} (``binary``) or {−1, 0, +1}.

    Raises:
        ValueError: a missing layer, another shape or dtype, or another value (names the file and layer).
    """
    check_layer_tensors(run.model.spec, masks, "masks", floating=False)
    allowed = torch.tensor([0, 1] if binary else [-1, 0, 1], dtype=torch.int8)
    for name, mask in masks.items():
        if not bool(torch.isin(mask, allowed).all()):
            kind = "binary (0 and 1)" if binary else "in {-1, 0, +1}"
            raise ValueError(
                f"The masks{_where(masks)} for layer {name!r} hold {sorted(mask.unique().tolist())}; "
                f"a mask of {run.name!r} must be {kind}. A file of another method?"
            )


def found_mask_start(run: RunConfig, found_weights: Tensors, found_masks: Tensors) -> tuple[Tensors, Tensors]:
    """The start of fine-tuning under a found mask (Shlis): the found method's pruned weights
    (weight transform, rescaling and learned scale applied) and its 0/1 mask as the fixed
    mask of :class:`~supermask_pipeline.masks.FixedMaskStrategy` (float32 0/1).

    Raises:
        ValueError: weights or masks that do not fit the architecture, or masks that are not 0/1.
    """
    check_layer_tensors(run.model.spec, found_weights, "found weights")
    check_masks(run, found_masks, binary=True)
    return dict(found_weights), {name: mask.to(torch.float32) for name, mask in found_masks.items()}


def build_network(run: RunConfig, weights: Tensors, mask_scores: Tensors | None = None) -> MaskedNetwork:
    """The masked network of the run's strategy and network options over ``weights`` (and scores).

    Raises:
        ValueError: tensors that do not fit the architecture (names the file and layer) or
            hold NaN/inf; scores missing for a strategy that uses them.
    """
    strategy = run.strategy.build()
    check_layer_tensors(run.model.spec, weights, "initial weights")
    if strategy.uses_scores:
        if mask_scores is None:
            raise ValueError(f"Method {run.name!r} ({strategy.name}) needs initial mask scores; none were given.")
        check_layer_tensors(run.model.spec, mask_scores, "initial mask scores")
    return MaskedNetwork(
        run.model.spec, strategy, weights, mask_scores if strategy.uses_scores else None, run.model.activation,
        weight_transform=run.strategy.weight_transform, rescale=run.strategy.rescale,
    )


def checkpoint_identity(run: RunConfig, train_split: ImageSplit, val_split: ImageSplit) -> dict:
    """The run's identity for the checkpoint fingerprint: method, network, data and split checksums."""
    return {
        **run.identity(),
        "train_split": array_sha256(train_split.images, train_split.labels),
        "val_split": array_sha256(val_split.images, val_split.labels),
    }


@dataclass(frozen=True)
class TrainedNetwork:
    """The result of :func:`train_run`.

    Attributes:
        trained_weights: the pruned network's effective weights (W ⊙ mask with the weight
            transform, rescaling and learned scale applied), float32.
        trained_mask_scores: final scores (empty without scores), float32.
        masks: int8, {−1, 0, +1} (signed) or {0, 1}.
        history: one row per epoch (:data:`~supermask_pipeline.training.HISTORY_COLUMNS`).
    """

    trained_weights: Tensors
    trained_mask_scores: Tensors
    masks: Tensors
    history: pd.DataFrame


def train_run(
    run: RunConfig,
    initial_weights: Tensors,
    initial_mask_scores: Tensors,
    train_split: ImageSplit,
    val_split: ImageSplit,
    store: CheckpointStore | None,
    on_epoch_end: EpochCallback | None = None,
) -> TrainedNetwork:
    """Train the run's network with the engine (checkpoints in ``store``, resume on rerun).

    Raises:
        ValueError: tensors or splits that do not fit the architecture.
        TrainingDivergedError: the training loss became NaN or infinite.
    """
    device = resolve_device(run.training.device)
    check_split(train_split, run, "train_split")
    check_split(val_split, run, "val_split")
    network = build_network(run, initial_weights, initial_mask_scores).to(device)
    history = train(
        network,
        device_tensors(train_split, run, device, train_split),
        device_tensors(val_split, run, device, train_split),
        run.training,
        on_epoch_end=on_epoch_end,
        checkpointing=None if store is None else Checkpointing(store, checkpoint_identity(run, train_split, val_split)),
        augment=get_augmentation(run.data.augmentation),
    )
    return TrainedNetwork(network.effective_weights(), network.mask_scores(), network.masks(), history)


def train_runs(
    runs: list[RunConfig],
    initial_weights: list[Tensors],
    initial_mask_scores: list[Tensors],
    train_split: ImageSplit,
    val_split: ImageSplit,
    stores: list[CheckpointStore | None],
    on_epoch_end: list[EpochCallback | None],
) -> list[TrainedNetwork]:
    """Several seeds of one configuration as one batched engine run
    (:func:`~supermask_pipeline.training.batched.train_seeds`): what :func:`train_run` gives each.

    Raises:
        ValueError: tensors or splits that do not fit, or runs that differ in more than the seed.
        TrainingDivergedError: a seed's training loss became NaN or infinite.
    """
    from supermask_pipeline.training.batched import train_seeds

    first = runs[0]
    device = resolve_device(first.training.device)
    check_split(train_split, first, "train_split")
    check_split(val_split, first, "val_split")
    networks = [build_network(run, w, s).to(device) for run, w, s in zip(runs, initial_weights, initial_mask_scores)]
    histories = train_seeds(
        networks,
        device_tensors(train_split, first, device, train_split),
        device_tensors(val_split, first, device, train_split),
        [run.training for run in runs],
        on_epoch_end,
        [None if store is None else Checkpointing(store, checkpoint_identity(run, train_split, val_split))
         for run, store in zip(runs, stores)],
        augment=get_augmentation(first.data.augmentation),
    )
    return [TrainedNetwork(n.effective_weights(), n.mask_scores(), n.masks(), h) for n, h in zip(networks, histories)]


def evaluate_run(
    run: RunConfig, trained_weights: Tensors, masks: Tensors, test_split: ImageSplit, train_split: ImageSplit
) -> tuple[dict[str, float], dict, pd.DataFrame]:
    """Prune and test: the pruned weights in a dense network on the test split.

    Returns:
        (values: ``test_accuracy``, ``test_loss`` (nats), ``remaining_weights`` (fraction),
        ``remaining_weight_count`` and its split into ``positive_weight_count`` (+1 entries)
        and ``negative_weight_count`` (−1); summary: the same with ``method``, ``architecture``
        and ``per_layer``; the per-layer table of :func:`~supermask_pipeline.masks.remaining_weights_table`).

    Raises:
        ValueError: tensors or split that do not fit the architecture, masks of another kind.
    """
    device = resolve_device(run.training.device)
    spec = run.model.spec
    check_split(test_split, run, "test_split")
    check_layer_tensors(spec, trained_weights, "trained weights")
    check_masks(run, masks, binary=run.strategy.build().binary)
    network = MaskedNetwork(spec, DenseStrategy(), trained_weights, activation=run.model.activation).to(device)
    result = evaluate(network, device_tensors(test_split, run, device, train_split), run.training.eval_batch_size)
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
    summary = {**values, "method": run.name, "architecture": spec.name, "per_layer": table.to_dict(orient="records")}
    return values, summary, table


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


def evaluate_sampled_run(
    run: RunConfig,
    initial_weights: Tensors,
    trained_mask_scores: Tensors,
    trained_weights: Tensors,
    masks: Tensors,
    test_split: ImageSplit,
    train_split: ImageSplit,
) -> tuple[dict[str, float], dict]:
    """Test accuracy over ``run.evaluation_samples`` masks sampled from the trained scores
    (stochastic strategies: bernoulli, aslp); nothing for a deterministic strategy.

    Zhou et al. (2019, Section 5) report the mean test accuracy over 10 sampled Bernoulli
    masks; each mask is drawn once per layer and held for the whole test split
    (:func:`~supermask_pipeline.training.evaluate_sampled`, stream ``sampled_evaluation`` of
    the run seed). The network is rebuilt from the initial weights and the trained scores
    (ASLP's learned scales recovered by :func:`learned_scales`); its deterministic mask must
    equal ``masks``.

    Returns:
        (values ``sampled_test_accuracy_mean``, ``_std``, ``sampled_test_loss_mean``, ``_std``
        (fractions; nats; std over the masks, ddof 1), empty for a deterministic strategy;
        report: ``method``, ``stochastic``, ``samples``, ``sampling_seed`` and the values).

    Raises:
        ValueError: tensors that do not fit the architecture; trained scores whose
            deterministic mask differs from ``masks`` (files of different runs).
    """
    strategy = run.strategy.build()
    report: dict = {"method": run.name, "stochastic": strategy.stochastic}
    if not strategy.stochastic:
        return {}, {**report, "samples": 0}
    check_layer_tensors(run.model.spec, trained_weights, "trained weights")
    check_masks(run, masks, binary=strategy.binary)
    network = build_network(run, initial_weights, trained_mask_scores)
    rebuilt = network.masks()
    differing = [name for name in rebuilt if not torch.equal(rebuilt[name], masks[name])]
    if differing:
        raise ValueError(
            f"The trained mask scores{_where(trained_mask_scores)} give another mask than the saved masks"
            f"{_where(masks)} in layers {differing}: they come from different runs. Rerun {run.name}.train."
        )
    scales = learned_scales(network, trained_weights, masks)
    device = resolve_device(run.training.device)
    network.to(device)
    seed = run.seeds.sampled_evaluation
    test_data = device_tensors(test_split, run, device, train_split)
    result = evaluate_sampled(network, test_data, run.evaluation_samples, run.training.eval_batch_size, seed)
    values = {
        "sampled_test_accuracy_mean": result["accuracy_mean"],
        "sampled_test_accuracy_std": result["accuracy_std"],
        "sampled_test_loss_mean": result["loss_mean"],
        "sampled_test_loss_std": result["loss_std"],
    }
    report.update(samples=run.evaluation_samples, sampling_seed=seed, **values)
    if scales:
        report["learned_scales"] = scales
    return values, report


def lottery_rounds(
    run: RunConfig,
    initial_weights: Tensors,
    train_split: ImageSplit,
    val_split: ImageSplit,
    test_split: ImageSplit,
    store: CheckpointStore | None,
    on_epoch_end: Callable[[LotteryConfiguration, int, int, dict[str, float]], None] | None = None,
    on_round_end: Callable[[RoundResult], None] | None = None,
) -> dict[str, list[RoundResult]]:
    """Every configuration's chain of rounds (train → prune → mask-1/mask-0 action → retrain,
    Frankle & Carbin 2019; Zhou et al. 2019), each round one engine run with checkpoints
    (round 0 is the same run for every configuration, so it is trained once).

    Returns:
        configuration name → its rounds, round 0 (dense) first.

    Raises:
        ValueError: weights or splits that do not fit the architecture.
        TrainingDivergedError: a round's loss became NaN or infinite.
    """
    device = resolve_device(run.training.device)
    check_split(train_split, run, "train_split")
    check_layer_tensors(run.model.spec, initial_weights, "initial weights")
    identity = checkpoint_identity(run, train_split, val_split)
    identity.pop("method")  # every round states its own mask; the strategy is always fixed_mask
    data = {name: device_tensors(split, run, device, train_split)
            for name, split in (("train", train_split), ("val", val_split), ("test", test_split))}
    results: dict[str, list[RoundResult]] = {}
    for configuration in run.pruning.configurations:
        results[configuration.name] = iterative_pruning(
            run.model.spec, initial_weights, data["train"], data["val"], run.training, configuration,
            run.pruning.rounds, rates=run.pruning.rates, activation=run.model.activation, seed=run.seed,
            test_data=data["test"], store=store, identity=identity, augment=get_augmentation(run.data.augmentation),
            on_epoch_end=None if on_epoch_end is None else (
                lambda r, e, row, c=configuration: on_epoch_end(c, r, e, row)),
            on_round_end=on_round_end,
        )
    return results

