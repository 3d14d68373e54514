import math

import pytest
import torch
from torch import nn

from supermask_pipeline.masks import DenseStrategy, SignedSupermaskStrategy
from supermask_pipeline.models import MaskedNetwork, get_architecture, initialise_tensors
from supermask_pipeline.training import (
    HISTORY_COLUMNS,
    TensorDataset,
    TrainingConfig,
    TrainingDivergedError,
    evaluate,
    train,
)


def _data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 1, 28, 28, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    # Make the labels learnable: shift the mean of each class.
    images += labels.view(-1, 1, 1, 1).float() * 0.3
    return TensorDataset(images, labels)


def _signed_network(seed=0):
    spec = get_architecture("fcn")
    return MaskedNetwork(
        spec,
        SignedSupermaskStrategy(0.4),
        initialise_tensors(spec, "signed_constant", seed),
        initialise_tensors(spec, "xavier_uniform", seed + 1),
    )


def _config(**overrides):
    base = dict(epochs=2, batch_size=32, show_progress=False, device="cpu")
    return TrainingConfig(**{**base, **overrides})


def test_history_has_one_row_per_epoch_and_weights_stay_frozen():
    network = _signed_network()
    weights_before = {n: network.get_submodule(n).weight.clone() for n in network.layer_names}
    scores_before = network.mask_scores()
    seen = []
    history = train(network, _data(), _data(32, 1), _config(epochs=3), on_epoch_end=lambda e, r: seen.append(e))
    assert list(history.columns) == HISTORY_COLUMNS
    assert history["epoch"].tolist() == [1, 2, 3] == seen
    assert history[["train_loss", "val_loss", "val_accuracy"]].notna().all().all()
    for name in network.layer_names:
        assert torch.equal(network.get_submodule(name).weight, weights_before[name])
        assert not torch.equal(network.mask_scores()[name], scores_before[name])


def test_same_seed_gives_bit_identical_results_on_cpu():
    results = []
    for _ in range(2):
        network = _signed_network()
        history = train(network, _data(), _data(32, 1), _config())
        results.append((network.mask_scores(), history))
    (scores_a, hist_a), (scores_b, hist_b) = results
    assert all(torch.equal(scores_a[k], scores_b[k]) for k in scores_a)
    assert hist_a.drop(columns="epoch_time_s").equals(hist_b.drop(columns="epoch_time_s"))
    other = _signed_network()
    train(other, _data(), None, _config(seed=1))
    assert not torch.equal(other.mask_scores()["fc1"], scores_a["fc1"])


def test_decoupled_weight_decay_is_not_scaled_by_the_learning_rate():
    # With a zero gradient, one SGD step only applies the decay: p ← p · (1 − wd).
    class Constant(nn.Module):
        def __init__(self):
            super().__init__()
            self.p = nn.Parameter(torch.full((3,), 2.0))

        def forward(self, x):
            return torch.zeros(x.shape[0], 10) + 0 * self.p.sum()

    model = Constant()
    data = TensorDataset(torch.zeros(4, 1, 1, 1), torch.zeros(4, dtype=torch.long))
    train(model, data, None, _config(epochs=1, batch_size=4, learning_rate=1e-6, weight_decay=0.1, momentum=0.0))
    assert torch.allclose(model.p, torch.full((3,), 2.0 * 0.9))


def test_learning_rate_and_weight_decay_decay_exponentially_per_step():
    data = _data(64)
    history = train(
        _signed_network(),
        data,
        None,
        _config(epochs=4, batch_size=32, lr_decay_rate=0.5, lr_decay_epochs=2, learning_rate=0.1, weight_decay=1e-3),
    )
    # After epoch e (2 steps per epoch) the factor is 0.5 ** (e / 2).
    for epoch, lr, wd in history[["epoch", "learning_rate", "weight_decay"]].itertuples(index=False):
        assert lr == pytest.approx(0.1 * 0.5 ** (epoch / 2))
        assert wd == pytest.approx(1e-3 * 0.5 ** (epoch / 2))


def test_dense_training_learns_and_evaluate_reports_fractions():
    spec = get_architecture("fcn")
    network = MaskedNetwork(spec, DenseStrategy(), initialise_tensors(spec, "elu_uniform", 0))
    data = _data(256)
    before = evaluate(network, data)
    history = train(network, data, None, _config(epochs=5, learning_rate=0.01))
    after = evaluate(network, data)
    assert 0.0 <= after["accuracy"] <= 1.0
    assert after["loss"] < before["loss"]
    assert history["remaining_weights"].eq(1.0).all()


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("learning_rate", -0.1, "learning_rate"),
        ("epochs", 0, "epochs"),
        ("optimizer", "lion", "optimizer"),
        ("lr_decay_rate", 1.5, "lr_decay_rate"),
        ("weight_decay_mode", "l1", "weight_decay_mode"),
        ("device", "tpu", "device"),
    ],
)
def test_bad_training_parameters_name_the_parameter(field, value, match):
    with pytest.raises(ValueError, match=match):
        TrainingConfig.from_params({field: value})


def test_unknown_training_parameter_is_rejected():
    with pytest.raises(ValueError, match="learning_rte"):
        TrainingConfig.from_params({"learning_rte": 0.1})


def test_integer_learning_rate_is_accepted_as_float():
    assert TrainingConfig.from_params({"learning_rate": 1}).learning_rate == 1.0
    assert math.isclose(TrainingConfig().weight_decay, 5e-4)


def test_divergence_stops_training_with_the_epoch():
    network = _signed_network()
    data = _data()
    data.images[0, 0, 0, 0] = float("nan")
    with pytest.raises(TrainingDivergedError, match="epoch 1"):
        train(network, data, None, _config())
