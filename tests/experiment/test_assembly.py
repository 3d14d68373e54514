"""Building and running one run from its RunConfig on tiny random data: seeded initial tensors,
mask checks, the network, training, evaluation, sampled evaluation, learned scales, lottery rounds."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from kedro.config import OmegaConfigLoader

from supermask_pipeline.experiment import merge, run_config
from supermask_pipeline.experiment.assembly import (
    build_network,
    check_masks,
    check_split,
    evaluate_run,
    evaluate_sampled_run,
    found_mask_start,
    initialise_network,
    lottery_rounds,
    learned_scales,
    train_run,
)
from supermask_pipeline.images import ImageSplit
from supermask_pipeline.masks import ASLPStrategy, BernoulliStrategy, remaining_weights_table
from supermask_pipeline.models import MaskedNetwork, get_architecture, initialise_tensors, layer_specs
from supermask_pipeline.models.architectures import resolve_dataset
from supermask_pipeline.seeds import RunSeeds
from supermask_pipeline.training import HISTORY_COLUMNS, CheckpointStore

REPO = Path(__file__).resolve().parents[2]
FAST = {"epochs": 2, "batch_size": 8, "show_progress": False, "device": "cpu"}
FCN_LAYERS = {"fc1": (300, 784), "fc2": (100, 300), "fc3": (10, 100)}


@pytest.fixture(scope="module")
def params() -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loader = OmegaConfigLoader(
            conf_source=str(REPO / "conf"), base_env="base", default_run_env="base",
            custom_resolvers={"dataset_for": resolve_dataset}, merge_strategy={"parameters": "soft"},
        )
        return dict(loader["parameters"])


@pytest.fixture(scope="module")
def run_of(params):
    """``run_of(method, architecture="fcn", seed=0, samples=3, **block overrides)``: the committed
    recipe, trained for a few steps on the CPU."""

    def make(name: str, architecture: str = "fcn", seed: int = 0, samples: int = 3, **overrides):
        block = merge(params[name], merge({"training": FAST}, overrides))
        return run_config(name, block, params["defaults"], {"architecture": architecture}, "auto", seed, samples)

    return make


def tiny_split(num: int, seed: int, shape=(28, 28, 1), name: str = "train") -> ImageSplit:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(num, *shape), dtype=np.uint8)
    labels = (np.arange(num) % 10).astype(np.int64)
    return ImageSplit(images, labels, {"source": "tiny", "split": name})


@pytest.fixture(scope="module")
def splits() -> dict[str, ImageSplit]:
    return {"train": tiny_split(24, 0), "val": tiny_split(8, 1, name="val"), "test": tiny_split(10, 2, name="test")}


def random_masks(values, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    choices = torch.tensor(values, dtype=torch.int8)
    return {name: choices[torch.randint(len(values), shape, generator=g)] for name, shape in FCN_LAYERS.items()}


# --- initial tensors --------------------------------------------------------------------------


def test_initial_tensors_come_from_the_weights_and_mask_scores_streams_of_the_seed(run_of):
    run = run_of("dense", seed=5)
    weights, scores = initialise_network(run)
    spec = run.model.spec
    expected_w = initialise_tensors(spec, "elu_uniform", RunSeeds(5).weights, 4.5)
    expected_s = initialise_tensors(spec, "xavier_uniform", RunSeeds(5).mask_scores, None)
    assert set(weights) == set(scores) == set(FCN_LAYERS)
    for name, shape in FCN_LAYERS.items():
        assert weights[name].shape == scores[name].shape == shape
        assert weights[name].dtype == scores[name].dtype == torch.float32
        assert torch.equal(weights[name], expected_w[name])
        assert torch.equal(scores[name], expected_s[name])


def test_same_seed_same_tensors_other_seed_other_tensors(run_of):
    w0, s0 = initialise_network(run_of("dense", seed=0))
    w0_again, s0_again = initialise_network(run_of("dense", seed=0))
    w1, s1 = initialise_network(run_of("dense", seed=1))
    for name in FCN_LAYERS:
        assert torch.equal(w0[name], w0_again[name]) and torch.equal(s0[name], s0_again[name])
        assert not torch.equal(w0[name], w1[name]) and not torch.equal(s0[name], s1[name])


def test_weights_and_scores_are_different_streams_even_with_the_same_initialiser(run_of):
    same = {"weight_init": "xavier_uniform", "weight_init_scale": None,
            "mask_score_init": "xavier_uniform", "mask_score_init_scale": None}
    weights, scores = initialise_network(run_of("dense", init=same))
    assert all(not torch.equal(weights[name], scores[name]) for name in FCN_LAYERS)
    # The initialiser's constant is applied: signed_constant ±sqrt(6 / fan_in).
    weights, _ = initialise_network(run_of("signed_supermask"))
    assert torch.allclose(weights["fc1"].abs(), torch.full((300, 784), math.sqrt(6.0 / 784)))


def test_conv_tensors_have_the_conv_shapes(run_of):
    weights, scores = initialise_network(run_of("edge_popup", architecture="conv2"))
    assert [tuple(weights[layer.name].shape) for layer in layer_specs(get_architecture("conv2"))] == [
        (64, 3, 3, 3), (64, 64, 3, 3), (256, 16384), (256, 256), (10, 256)]
    assert all(weights[n].shape == scores[n].shape for n in weights)


# --- checks -----------------------------------------------------------------------------------


def test_check_split_accepts_the_architecture_input_and_names_a_wrong_one(run_of, splits):
    check_split(splits["train"], run_of("dense"), "train_split")
    with pytest.raises(ValueError, match=r"train_split holds images of shape \(28, 28, 1\) \(tiny\), but architecture "
                                         r"'conv2' on dataset 'cifar10' takes \(32, 32, 3\): the split file .*"
                                         r"data/03_primary/cifar10/train\.h5\) is not of 'cifar10'\. Rerun the data "
                                         r"processing .*--params=model\.architecture=conv2,dataset=cifar10"):
        check_split(splits["train"], run_of("dense", architecture="conv2"), "train_split")


def test_check_masks_allows_signed_masks_only_where_the_strategy_is_signed(run_of):
    signed = random_masks([-1, 0, 1])
    binary = random_masks([0, 1])
    check_masks(run_of("signed_supermask"), signed, binary=False)
    check_masks(run_of("signed_supermask"), binary, binary=False)
    check_masks(run_of("threshold"), binary, binary=True)
    with pytest.raises(ValueError, match=r"for layer 'fc1' hold \[-1, 0, 1\]; a mask of 'threshold' must be binary \(0 and 1\)"):
        check_masks(run_of("threshold"), signed, binary=True)
    two = {**signed, "fc2": torch.full((100, 300), 2, dtype=torch.int8)}
    with pytest.raises(ValueError, match=r"layer 'fc2' hold \[2\]; a mask of 'signed_supermask' must be in \{-1, 0, \+1\}"):
        check_masks(run_of("signed_supermask"), two, binary=False)


def test_check_masks_refuses_masks_of_another_dtype_shape_or_architecture(run_of):
    run = run_of("threshold")
    binary = random_masks([0, 1])
    with pytest.raises(ValueError, match="fc1"):
        check_masks(run, {**binary, "fc1": binary["fc1"].float()}, binary=True)
    with pytest.raises(ValueError, match="fc2"):
        check_masks(run, {**binary, "fc2": torch.ones((100, 301), dtype=torch.int8)}, binary=True)
    with pytest.raises(ValueError, match=r"missing \['fc3'\]"):
        check_masks(run, {k: v for k, v in binary.items() if k != "fc3"}, binary=True)


def test_found_mask_start_gives_the_found_weights_and_a_float_0_1_mask(run_of):
    run = run_of("fine_tune")
    weights, _ = initialise_network(run)
    masks = random_masks([0, 1], seed=3)
    start_weights, start_masks = found_mask_start(run, weights, masks)
    for name in FCN_LAYERS:
        assert torch.equal(start_weights[name], weights[name])
        assert start_masks[name].dtype == torch.float32
        assert torch.equal(start_masks[name], masks[name].float())
    with pytest.raises(ValueError, match="must be binary"):
        found_mask_start(run, weights, random_masks([-1, 0, 1]))
    with pytest.raises(ValueError, match=r"hold \[0, 1, 3\]"):
        found_mask_start(run, weights, {**masks, "fc3": torch.tensor([[0, 1, 3] * 33 + [1]] * 10, dtype=torch.int8)})
    with pytest.raises(ValueError, match="found weights"):
        found_mask_start(run, {**weights, "fc1": weights["fc1"].T.contiguous()}, masks)


# --- the network ------------------------------------------------------------------------------


def test_build_network_applies_the_strategy_and_network_options(run_of):
    run = run_of("bernoulli")
    weights, scores = initialise_network(run)
    network = build_network(run, weights, scores)
    assert isinstance(network.strategy, BernoulliStrategy)
    assert (network.activation_name, network.weight_transform, network.rescale) == ("relu", "signed_constant", True)
    # signed_constant: sign(W)·std of the layer, applied once.
    fc1 = network.masked_layers()[0]
    assert torch.allclose(fc1.weight, torch.sign(weights["fc1"]) * weights["fc1"].std())
    assert torch.equal(fc1.mask_scores.detach(), scores["fc1"])


def test_build_network_without_scores_for_dense_and_refuses_missing_or_bad_tensors(run_of):
    dense = run_of("dense")
    weights, scores = initialise_network(dense)
    network = build_network(dense, weights)
    assert all(layer.mask_scores is None for layer in network.masked_layers())
    threshold = run_of("threshold")
    with pytest.raises(ValueError, match=r"Method 'threshold' \(threshold\) needs initial mask scores"):
        build_network(threshold, weights, None)
    with pytest.raises(ValueError, match=r"initial weights.*fc2"):
        build_network(threshold, {**weights, "fc2": torch.zeros(3, 3)}, scores)
    bad = {**weights, "fc1": weights["fc1"].clone()}
    bad["fc1"][0, 0] = float("nan")
    with pytest.raises(ValueError, match="fc1"):
        build_network(threshold, bad, scores)


# --- training ---------------------------------------------------------------------------------


def test_train_run_trains_the_signed_supermask_for_the_given_epochs(run_of, splits):
    run = run_of("signed_supermask", seed=2)
    weights, scores = initialise_network(run)
    epochs = []
    result = train_run(run, weights, scores, splits["train"], splits["val"], None,
                       on_epoch_end=lambda epoch, row: epochs.append((epoch, set(row))))
    assert [e for e, _ in epochs] == [1, 2]
    assert list(result.history.columns) == list(HISTORY_COLUMNS)
    assert list(result.history["epoch"]) == [1, 2]
    for name, shape in FCN_LAYERS.items():
        mask = result.masks[name]
        assert mask.dtype == torch.int8 and mask.shape == shape
        assert set(mask.unique().tolist()) <= {-1, 0, 1}
        # Frozen weights under the signed mask: the pruned network is W ⊙ S.
        assert torch.equal(result.trained_weights[name], weights[name] * mask.float())
        assert not torch.equal(result.trained_mask_scores[name], scores[name])  # the scores trained
    kept = sum(int(m.count_nonzero()) for m in result.masks.values()) / sum(m.numel() for m in result.masks.values())
    assert result.history["remaining_weights"].iloc[-1] == pytest.approx(kept)


def test_train_run_is_seeded_and_resumes_from_its_checkpoints(run_of, splits, tmp_path):
    def trained(seed, store=None):
        run = run_of("dense", seed=seed, training={"epochs": 1})
        weights, scores = initialise_network(run)
        return train_run(run, weights, scores, splits["train"], splits["val"], store)

    first, again, other = trained(0), trained(0), trained(1)
    for name in FCN_LAYERS:
        assert torch.equal(first.trained_weights[name], again.trained_weights[name])
        assert not torch.equal(first.trained_weights[name], other.trained_weights[name])
        assert bool((first.masks[name] == 1).all())  # dense: everything kept
    assert first.trained_mask_scores == {}
    store = CheckpointStore(tmp_path / "checkpoints")
    checkpointed = trained(0, store)
    assert any((tmp_path / "checkpoints").rglob("*.json"))
    resumed = trained(0, store)  # the finished run comes back from its checkpoint
    for name in FCN_LAYERS:
        assert torch.equal(checkpointed.trained_weights[name], first.trained_weights[name])
        assert torch.equal(resumed.trained_weights[name], first.trained_weights[name])
    assert list(resumed.history["epoch"]) == [1]


def test_train_run_refuses_splits_of_another_architecture(run_of, splits):
    run = run_of("dense", architecture="conv2")
    weights, scores = initialise_network(run)
    with pytest.raises(ValueError, match="train_split holds images of shape"):
        train_run(run, weights, scores, splits["train"], splits["val"], None)


# --- evaluation -------------------------------------------------------------------------------


def test_evaluate_run_counts_what_the_masks_keep(run_of, splits):
    run = run_of("signed_supermask")
    weights, _ = initialise_network(run)
    masks = random_masks([-1, 0, 1], seed=4)
    pruned = {name: weights[name] * masks[name].float() for name in FCN_LAYERS}
    values, summary, table = evaluate_run(run, pruned, masks, splits["test"], splits["train"])
    positive = sum(int((m == 1).sum()) for m in masks.values())
    negative = sum(int((m == -1).sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    assert total == 266200
    assert values["positive_weight_count"] == positive and values["negative_weight_count"] == negative
    assert values["remaining_weight_count"] == positive + negative
    assert values["remaining_weights"] == pytest.approx((positive + negative) / total)
    assert 0.0 <= values["test_accuracy"] <= 1.0 and values["test_loss"] > 0
    assert set(values) == {"test_accuracy", "test_loss", "remaining_weights", "remaining_weight_count",
                           "positive_weight_count", "negative_weight_count"}
    assert summary == {**values, "method": "signed_supermask", "architecture": "fcn",
                       "per_layer": table.to_dict(orient="records")}
    expected = remaining_weights_table(masks)
    assert table.equals(expected)
    assert list(table["layer"]) == ["fc1", "fc2", "fc3", "total"]
    for name in FCN_LAYERS:
        row = table[table["layer"] == name].iloc[0]
        assert row["remaining"] == int(masks[name].count_nonzero())


def test_evaluate_run_of_zero_weights_is_uniform_logits(run_of, splits):
    run = run_of("threshold")
    zeros = {name: torch.zeros(shape) for name, shape in FCN_LAYERS.items()}
    masks = {name: torch.zeros(shape, dtype=torch.int8) for name, shape in FCN_LAYERS.items()}
    values, _, _ = evaluate_run(run, zeros, masks, splits["test"], splits["train"])
    # Every logit 0 (no biases): loss ln 10, and argmax picks class 0 for every image.
    assert values["test_loss"] == pytest.approx(math.log(10), rel=1e-6)
    assert values["test_accuracy"] == pytest.approx(float((splits["test"].labels == 0).mean()))
    assert values["remaining_weights"] == 0.0 and values["remaining_weight_count"] == 0.0


def test_evaluate_run_refuses_masks_of_another_kind_and_splits_of_another_shape(run_of, splits):
    run = run_of("threshold")
    weights, _ = initialise_network(run)
    with pytest.raises(ValueError, match="must be binary"):
        evaluate_run(run, weights, random_masks([-1, 0, 1]), splits["test"], splits["train"])
    with pytest.raises(ValueError, match="test_split holds images of shape"):
        evaluate_run(run, weights, random_masks([0, 1]), tiny_split(4, 0, (32, 32, 3)), splits["train"])


@pytest.mark.parametrize("method", ["dense", "threshold", "signed_supermask", "edge_popup"])
def test_sampled_evaluation_is_nothing_for_a_deterministic_strategy(run_of, splits, method):
    run = run_of(method)
    values, report = evaluate_sampled_run(run, {}, {}, {}, {}, splits["test"], splits["train"])
    assert values == {}
    assert report == {"method": method, "stochastic": False, "samples": 0}


def test_sampled_evaluation_of_bernoulli_gives_a_mean_and_std_over_the_samples(run_of, splits):
    run = run_of("bernoulli", seed=3, samples=4, training={"epochs": 1})
    weights, scores = initialise_network(run)
    result = train_run(run, weights, scores, splits["train"], splits["val"], None)
    arguments = (run, weights, result.trained_mask_scores, result.trained_weights, result.masks,
                 splits["test"], splits["train"])
    values, report = evaluate_sampled_run(*arguments)
    assert set(values) == {"sampled_test_accuracy_mean", "sampled_test_accuracy_std",
                           "sampled_test_loss_mean", "sampled_test_loss_std"}
    assert 0.0 <= values["sampled_test_accuracy_mean"] <= 1.0
    assert values["sampled_test_accuracy_std"] >= 0.0 and values["sampled_test_loss_std"] >= 0.0
    assert values["sampled_test_loss_mean"] > 0.0
    assert report == {"method": "bernoulli", "stochastic": True, "samples": 4,
                      "sampling_seed": RunSeeds(3).sampled_evaluation, **values}
    assert evaluate_sampled_run(*arguments) == (values, report)  # the seed's own stream: reproducible
    one = run_of("bernoulli", seed=3, samples=1, training={"epochs": 1})
    single, _ = evaluate_sampled_run(one, *arguments[1:])
    assert single["sampled_test_accuracy_std"] == 0.0 and single["sampled_test_loss_std"] == 0.0


def test_sampled_evaluation_refuses_scores_and_masks_of_different_runs(run_of, splits):
    run = run_of("bernoulli")
    weights, _ = initialise_network(run)
    scores = {name: torch.full(shape, 1.0) for name, shape in FCN_LAYERS.items()}  # every weight kept
    masks = {name: torch.ones(shape, dtype=torch.int8) for name, shape in FCN_LAYERS.items()}
    masks["fc2"][0, 0] = 0
    with pytest.raises(ValueError, match=r"give another mask than the saved masks in layers \['fc2'\].*Rerun bernoulli\.train"):
        evaluate_sampled_run(run, weights, scores, weights, masks, splits["test"], splits["train"])
    with pytest.raises(ValueError, match="must be binary"):
        evaluate_sampled_run(run, weights, scores, weights, random_masks([-1, 0, 1]), splits["test"], splits["train"])


def test_sampled_evaluation_of_aslp_recovers_the_learned_scales(run_of, splits):
    run = run_of("aslp", samples=2, method={"learn_scale": True})
    weights, scores = initialise_network(run)
    scores = {name: s + 0.5 for name, s in scores.items()}  # constant 0 → every logit 0.5: all kept
    network = build_network(run, weights, scores)
    with torch.no_grad():
        for layer, value in zip(network.masked_layers(), (0.5, 2.0, 1.5)):
            layer.scale.fill_(value)
    values, report = evaluate_sampled_run(run, weights, network.mask_scores(), network.effective_weights(),
                                          network.masks(), splits["test"], splits["train"])
    assert report["learned_scales"] == pytest.approx({"fc1": 0.5, "fc2": 2.0, "fc3": 1.5}, rel=1e-6)
    assert report["samples"] == 2 and set(values) <= set(report)


# --- learned scales ---------------------------------------------------------------------------


def test_learned_scales_are_recovered_from_the_pruned_weights():
    spec = get_architecture("fcn")
    weights = initialise_tensors(spec, "kaiming_normal", 0)
    scores = initialise_tensors(spec, "xavier_uniform", 1)
    scores["fc3"] = -scores["fc3"].abs()  # a layer with nothing kept keeps s = 1
    strategy = ASLPStrategy(learn_scale=True)
    options = {"weight_transform": "signed_kaiming_constant", "rescale": True}
    trained = MaskedNetwork(spec, strategy, weights, scores, "relu", **options)
    with torch.no_grad():
        for layer, value in zip(trained.masked_layers(), (0.5, 1.7, 3.0)):
            layer.scale.fill_(value)
    rebuilt = MaskedNetwork(spec, strategy, weights, scores, "relu", **options)
    scales = learned_scales(rebuilt, trained.effective_weights(), trained.masks())
    assert scales == pytest.approx({"fc1": 0.5, "fc2": 1.7, "fc3": 1.0}, rel=1e-6)
    for name, weight in rebuilt.effective_weights().items():
        torch.testing.assert_close(weight, trained.effective_weights()[name], rtol=1e-6, atol=0)


def test_a_network_without_scales_is_left_as_it_is():
    spec = get_architecture("fcn")
    weights = initialise_tensors(spec, "kaiming_normal", 0)
    scores = initialise_tensors(spec, "xavier_uniform", 1)
    network = MaskedNetwork(spec, BernoulliStrategy(), weights, scores, "relu")
    before = network.effective_weights()
    assert learned_scales(network, {n: 2 * w for n, w in before.items()}, network.masks()) == {}
    assert all(torch.equal(before[n], w) for n, w in network.effective_weights().items())


# --- lottery rounds ---------------------------------------------------------------------------


def test_lottery_rounds_prune_every_configuration_by_the_layer_rates(run_of, splits, tmp_path):
    configurations = [{"criterion": "large_final", "mask_1_action": "none", "mask_0_action": "mask"},
                      {"criterion": "large_final", "mask_1_action": "random_reinit", "mask_0_action": "mask"}]
    run = run_of("lottery", seed=1, training={"epochs": 1}, pruning={"rounds": 1, "configurations": configurations})
    weights, _ = initialise_network(run)
    epochs, rounds = [], []
    results = lottery_rounds(run, weights, splits["train"], splits["val"], splits["test"],
                             CheckpointStore(tmp_path / "checkpoints"),
                             on_epoch_end=lambda c, r, e, row: epochs.append((c.name, r, e)),
                             on_round_end=lambda result: rounds.append((result.configuration.name, result.round)))
    names = ["large_final.none.mask", "large_final.random_reinit.mask"]
    assert list(results) == names
    assert rounds == [(n, r) for n in names for r in (0, 1)]
    assert epochs == [(n, r, 1) for n in names for r in (0, 1)]
    # Zhou et al.'s rates: fc 20 %, output layer 10 %, per layer.
    kept = {"fc1": round(0.8 * 235200), "fc2": round(0.8 * 30000), "fc3": round(0.9 * 1000)}
    for name in names:
        dense, pruned = results[name]
        assert (dense.round, pruned.round) == (0, 1)
        assert dense.remaining_weights == 1.0 and dense.remaining_weight_count == 266200
        assert pruned.remaining_weight_count == sum(kept.values())
        assert {n: int(m.sum()) for n, m in pruned.masks.items()} == kept
        assert not math.isnan(pruned.test_accuracy) and 0.0 <= pruned.test_accuracy <= 1.0
    # Round 0 is the same dense run for every configuration.
    for layer in FCN_LAYERS:
        assert torch.equal(results[names[0]][0].trained_weights[layer], results[names[1]][0].trained_weights[layer])


def test_lottery_rounds_refuse_splits_of_another_architecture(run_of, splits):
    run = run_of("lottery", training={"epochs": 1}, pruning={"rounds": 0})
    weights, _ = initialise_network(run)
    with pytest.raises(ValueError, match="train_split holds images of shape"):
        lottery_rounds(run, weights, tiny_split(8, 0, (32, 32, 3)), splits["val"], splits["test"], None)
