"""Iterative pruning (lottery tickets): fixed-mask training, exact per-round counts, actions, resume per round."""

from __future__ import annotations

import logging

import pytest
import torch

from supermask_pipeline.masks import DenseStrategy, FixedMaskStrategy
from supermask_pipeline.models import MaskedNetwork, get_architecture, initialise_tensors, layer_specs
from supermask_pipeline.training import CheckpointStore, TensorDataset, TrainingConfig, train
from supermask_pipeline.training.iterative_pruning import (
    LotteryConfiguration,
    iterative_pruning,
    prune_round,
    round_seed,
)

SPEC = get_architecture("fcn")
KEPT = {r: {"fc1": round(235_200 * 0.8**r), "fc2": round(30_000 * 0.8**r), "fc3": round(1_000 * 0.9**r)} for r in range(4)}


class Interrupt(Exception):
    pass


def _data(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    images = torch.randn(n, 1, 28, 28, generator=g) + labels.view(-1, 1, 1, 1).float() * 0.3
    return TensorDataset(images, labels)


def _config(**overrides):
    base = dict(epochs=1, batch_size=16, optimizer="adam", learning_rate=1.2e-3, weight_decay=0.0,
                weight_decay_mode="l2", lr_decay_rate=1.0, show_progress=False, device="cpu")
    return TrainingConfig(**{**base, **overrides})


def _initial():
    return initialise_tensors(SPEC, "xavier_normal", 3)


def _small_layer_network(mask, frozen=None):
    """fcn with a random 0/1 mask on every layer."""
    weights = _initial()
    return MaskedNetwork(SPEC, FixedMaskStrategy(), weights, mask, activation="relu", pruned_values=frozen), weights


def _random_masks(seed=0, keep=0.3):
    g = torch.Generator().manual_seed(seed)
    return {layer.name: (torch.rand(layer.weight_shape, generator=g) < keep).float() for layer in layer_specs(SPEC)}


# --- the fixed-mask strategy ---------------------------------------------------------------


def test_fixed_mask_gives_pruned_weights_no_gradient_and_keeps_frozen_values():
    masks = _random_masks()
    frozen = {name: torch.full_like(m, 0.5) * (1 - m) for name, m in masks.items()}
    network, weights = _small_layer_network(masks, frozen)
    assert not any(layer.mask_scores.requires_grad for layer in network.masked_layers())
    data = _data()
    F = torch.nn.functional
    loss = F.cross_entropy(network(data.images), data.labels)
    loss.backward()
    for layer in network.masked_layers():
        pruned = masks[layer.spec.name] == 0
        assert bool((layer.weight.grad[pruned] == 0).all())
        assert bool((layer.weight.grad[~pruned] != 0).any())
    train(network, data, None, _config(epochs=2))
    effective = network.effective_weights()
    for name, mask in masks.items():
        pruned = mask == 0
        assert torch.equal(effective[name][pruned], torch.full_like(effective[name][pruned], 0.5))
        assert not torch.equal(effective[name][~pruned], weights[name][~pruned])  # kept weights trained
    # The saved effective weights are what the network computes.
    dense = MaskedNetwork(SPEC, DenseStrategy(), effective, activation="relu")
    network.eval()
    torch.testing.assert_close(dense(data.images), network(data.images), rtol=1e-5, atol=1e-5)


def test_fixed_mask_refuses_non_binary_masks_and_frozen_values_for_signed_masks():
    masks = _random_masks()
    masks["fc1"][0, 0] = 0.5
    with pytest.raises(ValueError, match="only 0 .pruned. and 1"):
        MaskedNetwork(SPEC, FixedMaskStrategy(), _initial(), masks)
    from supermask_pipeline.masks import SignedSupermaskStrategy

    with pytest.raises(ValueError, match="binary mask strategy"):
        MaskedNetwork(SPEC, SignedSupermaskStrategy(), _initial(), _random_masks(), pruned_values=_random_masks())


# --- one pruning round --------------------------------------------------------------------


@pytest.mark.parametrize("round_index", [1, 2, 3])
def test_prune_round_keeps_the_compounded_count_of_the_previous_masks_largest_final(round_index):
    w_i = _initial()
    g = torch.Generator().manual_seed(1)
    w_f = {n: t + 0.05 * torch.randn(t.shape, generator=g) for n, t in w_i.items()}
    previous = _random_masks(seed=2, keep=0.9) if round_index > 1 else {n: torch.ones_like(t) for n, t in w_i.items()}
    # The previous mask must keep at least this round's count.
    previous = {n: torch.where(torch.arange(m.numel()).reshape(m.shape) < KEPT[round_index - 1][n], 1.0, m) for n, m in previous.items()}
    config = LotteryConfiguration("large_final", "none", "mask")
    masks, starts, frozen = prune_round(SPEC, config, w_i, w_f, previous, round_index)
    assert {n: int(m.sum()) for n, m in masks.items()} == KEPT[round_index]
    for name, mask in masks.items():
        assert mask.dtype == torch.int8
        assert bool((mask.float() <= previous[name]).all())  # pruned stays pruned
        kept = mask == 1
        # large_final: every kept |w_f| ≥ every candidate |w_f| that was pruned this round.
        dropped = (previous[name] == 1) & ~kept
        if dropped.any():
            assert float(w_f[name][kept].abs().min()) >= float(w_f[name][dropped].abs().max())
        # mask-1 none: rewind to w_i; mask-0 mask: pruned start at 0 and nothing frozen.
        assert torch.equal(starts[name][kept], w_i[name][kept])
        assert bool((starts[name][~kept] == 0).all())
        assert bool((frozen[name] == 0).all())


def test_prune_round_freeze_init_and_random_reinit():
    w_i = _initial()
    w_f = {n: t * 1.1 for n, t in w_i.items()}
    ones = {n: torch.ones_like(t) for n, t in w_i.items()}
    config = LotteryConfiguration("large_final", "random_reinit", "freeze_init")
    masks, starts, frozen = prune_round(SPEC, config, w_i, w_f, ones, 1, seed=5)
    again = prune_round(SPEC, config, w_i, w_f, ones, 1, seed=5)
    for name, mask in masks.items():
        kept = mask == 1
        assert torch.equal(frozen[name][~kept], w_i[name][~kept])  # frozen at w_i
        assert bool((frozen[name][kept] == 0).all())
        assert not torch.equal(starts[name][kept], w_i[name][kept])  # re-drawn
        # drawn from the layer's own initial values
        assert bool(torch.isin(starts[name][kept], w_i[name].reshape(-1)).all())
        assert torch.equal(starts[name], again[1][name])  # seeded per round: reproducible


def test_round_seed_and_configuration_validation():
    assert round_seed(0, 1) == round_seed(0, 1) != round_seed(0, 2) != round_seed(1, 2)
    with pytest.raises(ValueError, match="mask-1 action.*random_reinit"):
        LotteryConfiguration("large_final", "reinit", "mask")
    with pytest.raises(ValueError, match="mask-0 action.*freeze_init"):
        LotteryConfiguration("large_final", "none", "freeze")
    with pytest.raises(ValueError, match="Unknown keys \\['prune_rate'\\]"):
        LotteryConfiguration.from_params({"criterion": "large_final", "prune_rate": 0.2})
    assert LotteryConfiguration("large_final", "none", "mask", True).name == "large_final_same_sign.none.mask"
    with pytest.raises(ValueError, match="rounds must be an integer"):
        iterative_pruning(SPEC, _initial(), _data(), None, _config(), LotteryConfiguration(), -1)


# --- chains of rounds, checkpoints and resume ---------------------------------------------


def _chain(store=None, on_round_end=None, configuration=LotteryConfiguration()):
    data = _data()
    return iterative_pruning(
        SPEC, _initial(), data, data, _config(), configuration, 2, activation="relu",
        test_data=data, store=store, on_round_end=on_round_end,
    )


def test_chain_counts_and_an_interrupted_chain_continues_from_its_round(tmp_path, caplog):
    reference = _chain()
    assert [r.round for r in reference] == [0, 1, 2]
    for r in reference:
        assert {n: int(m.sum()) for n, m in r.masks.items()} == KEPT[r.round]
        assert r.remaining_weight_count == sum(KEPT[r.round].values())
    store = CheckpointStore(tmp_path / "checkpoints")

    def stop_after_round_1(result):
        if result.round == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        _chain(store, stop_after_round_1)
    caplog.set_level(logging.INFO, logger="supermask_pipeline.training.engine")
    caplog.clear()
    resumed = _chain(store)
    assert caplog.text.count("Resuming from the checkpoint of epoch 1 of 1") == 2  # rounds 0 and 1 not retrained
    for a, b in zip(reference, resumed):
        assert a.history[["train_loss", "val_accuracy"]].equals(b.history[["train_loss", "val_accuracy"]])
        assert a.test_accuracy == b.test_accuracy
        for name in a.trained_weights:
            assert torch.equal(a.trained_weights[name], b.trained_weights[name])
            assert torch.equal(a.masks[name], b.masks[name])
    # Another configuration shares round 0 (same start): it is not trained again.
    caplog.clear()
    other = _chain(store, configuration=LotteryConfiguration("large_final", "signed_constant", "mask"))
    assert caplog.text.count("Resuming") == 1
    for name in other[0].trained_weights:
        assert torch.equal(other[0].trained_weights[name], reference[0].trained_weights[name])
    # signed_constant: kept start values are ±σ of the layer's initial weights.
    layer = "fc2"
    w_i = _initial()[layer]
    masks, starts, _ = prune_round(SPEC, LotteryConfiguration("large_final", "signed_constant", "mask"),
                                   _initial(), reference[0].trained_weights,
                                   {n: torch.ones_like(t) for n, t in _initial().items()}, 1)
    kept = masks[layer] == 1
    sigma = w_i.std(correction=0)
    torch.testing.assert_close(starts[layer][kept].abs(), torch.full_like(starts[layer][kept], float(sigma)))
    assert torch.equal(torch.sign(starts[layer][kept]), torch.sign(w_i[kept]))
