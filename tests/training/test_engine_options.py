"""Engine options of the learned-supermask recipes: cosine schedule, early stopping with the best
state restored (also across a resume), learning-rate groups, and evaluation over sampled masks."""

import math

import pytest
import torch
from torch import nn

from supermask_pipeline.masks import ASLPStrategy, BernoulliStrategy, ThresholdStrategy
from supermask_pipeline.models import MaskedNetwork, get_architecture, initialise_tensors
from supermask_pipeline.seeds import RunSeeds
from supermask_pipeline.training import (
    CheckpointStore,
    Checkpointing,
    TensorDataset,
    TrainingConfig,
    evaluate,
    evaluate_sampled,
    parameter_groups,
    schedule_factor,
    train,
)


class Interrupt(Exception):
    pass


def _config(**overrides):
    base = dict(epochs=2, batch_size=32, show_progress=False, device="cpu")
    return TrainingConfig(**{**base, **overrides})


def _data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    images = torch.randn(n, 1, 28, 28, generator=g) + labels.view(-1, 1, 1, 1).float() * 0.3
    return TensorDataset(images, labels)


def _network(strategy, scores_init="constant", scale=None):
    spec = get_architecture("fcn")
    return MaskedNetwork(
        spec, strategy, initialise_tensors(spec, "kaiming_normal", 0), initialise_tensors(spec, scores_init, 1, scale)
    )


# --- cosine schedule ------------------------------------------------------------------------

def test_cosine_schedule_anneals_from_lr_to_zero_over_all_steps():
    history = train(
        TwoLogits(), _label_zero(8), None,
        _config(epochs=4, batch_size=4, lr_schedule="cosine", learning_rate=0.1, weight_decay=1e-3),
    )
    # After epoch e of 4 (2 steps each) the factor is ½(1 + cos(π e / 4)); the weight decay follows it.
    for epoch, lr, wd in history[["epoch", "learning_rate", "weight_decay"]].itertuples(index=False):
        factor = 0.5 * (1 + math.cos(math.pi * epoch / 4))
        assert lr == pytest.approx(0.1 * factor, abs=1e-12)
        assert wd == pytest.approx(1e-3 * factor, abs=1e-12)
    factor = schedule_factor(_config(epochs=4, lr_schedule="cosine"), steps_per_epoch=5)
    assert [factor(t) for t in (0, 10, 20, 25)] == [1.0, pytest.approx(0.5), pytest.approx(0.0, abs=1e-15), 0.0]


# --- parameter groups -----------------------------------------------------------------------

class TwoLogits(nn.Module):
    """Logit 0 is ``a``, logit 1 is ``b`` (others 0); ``b`` has a learning rate of its own."""

    def __init__(self, a=0.0, b=0.0, b_lr=0.5):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a))
        self.b = nn.Parameter(torch.tensor(b))
        self.b_lr = b_lr

    def learning_rate_overrides(self):
        return {"b": self.b_lr}

    def forward(self, x):
        logits = torch.zeros(x.shape[0], 10) + 0 * x.flatten(1).sum(1, keepdim=True)
        return torch.cat([self.a.expand(x.shape[0], 1), self.b.expand(x.shape[0], 1), logits[:, 2:]], dim=1)


def _label_zero(n=4):
    return TensorDataset(torch.zeros(n, 1, 1, 1), torch.zeros(n, dtype=torch.long))


def test_a_tensor_with_its_own_learning_rate_steps_with_it():
    model = TwoLogits()
    one_step = _config(epochs=1, batch_size=4, learning_rate=0.1, momentum=0.0, weight_decay=0.0)
    train(model, _label_zero(), None, one_step)
    # At a = b = 0 the softmax is uniform: dL/da = −1 + 0.1, dL/db = 0.1.
    assert model.a.item() == pytest.approx(-0.1 * -0.9)
    assert model.b.item() == pytest.approx(-0.5 * 0.1)


def test_a_tensor_with_its_own_learning_rate_gets_no_weight_decay():
    model = TwoLogits(a=2.0, b=2.0, b_lr=1e-12)
    zero_grad = _config(epochs=1, batch_size=4, learning_rate=1e-12, momentum=0.0, weight_decay=0.1)
    train(model, _label_zero(), None, zero_grad)
    assert model.a.item() == pytest.approx(2.0 * 0.9)
    assert model.b.item() == pytest.approx(2.0)
    l2 = parameter_groups(TwoLogits(), _config(weight_decay_mode="l2", weight_decay=1e-4))
    found = [(g["lr"], g["weight_decay"], g["decoupled_weight_decay"]) for g in l2]
    assert found == [(0.05, 1e-4, 0.0), (0.5, 0.0, 0.0)]


def test_aslp_scales_form_their_own_group():
    network = _network(ASLPStrategy(learn_scale=True, scale_learning_rate=2e-3))
    base, scales = parameter_groups(network, _config())
    assert [p is layer.mask_scores for p, layer in zip(base["params"], network.masked_layers())] == [True] * 3
    assert [p is layer.scale for p, layer in zip(scales["params"], network.masked_layers())] == [True] * 3
    assert (base["lr"], base["decoupled_weight_decay"]) == (0.05, 5e-4)
    assert (scales["lr"], scales["weight_decay"], scales["decoupled_weight_decay"]) == (2e-3, 0.0, 0.0)


def test_an_override_of_an_unknown_tensor_is_rejected():
    model = TwoLogits()
    model.learning_rate_overrides = lambda: {"c": 0.1}
    with pytest.raises(ValueError, match=r"name \['c'\], which are not trainable"):
        parameter_groups(model, _config())


# --- early stopping -------------------------------------------------------------------------

class ScriptedAccuracy(nn.Module):
    """Validation accuracy of epoch e is ``script[e − 1]`` (10 validation images); ``p`` trains."""

    def __init__(self, script):
        super().__init__()
        self.p = nn.Parameter(torch.linspace(-1, 1, 10))
        self.register_buffer("evaluations", torch.zeros((), dtype=torch.int64))
        self.script = script

    def forward(self, x):
        if self.training:
            return x.flatten(1)[:, :10] * self.p
        right = round(self.script[int(self.evaluations)] * x.shape[0])
        self.evaluations += 1
        logits = torch.zeros(x.shape[0], 10)
        logits[:right, 0] = 1.0  # the validation labels are all 0
        logits[right:, 1] = 1.0
        return logits


SCRIPT = [0.2, 0.5, 0.4, 0.5, 0.3, 0.6, 0.7, 0.8]


def _scripted_run(config, checkpointing=None, stop_after=None):
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(16, 1, 1, 10, generator=g), torch.randint(0, 10, (16,), generator=g))
    val = TensorDataset(torch.zeros(10, 1, 1, 10), torch.zeros(10, dtype=torch.long))
    model = ScriptedAccuracy(SCRIPT)
    states, seen = {}, []

    def record(epoch, row):
        seen.append(epoch)
        states[epoch] = model.p.detach().clone()
        if epoch == stop_after:
            raise Interrupt

    history = train(model, data, val, config, on_epoch_end=record, checkpointing=checkpointing)
    return model, history, states, seen


def test_early_stopping_stops_at_patience_and_restores_the_best_state():
    config = _config(epochs=8, batch_size=8, early_stopping_patience=3, restore_best=True)
    model, history, states, _ = _scripted_run(config)
    # Best 0.5 at epoch 2; epoch 4 only ties it; epoch 5 is the third without improvement.
    assert history["epoch"].tolist() == [1, 2, 3, 4, 5]
    assert history.attrs == {"best_epoch": 2, "stopped_early": True}
    assert torch.equal(model.p, states[2]) and not torch.equal(states[2], states[5])


def test_without_restore_best_the_last_state_stays():
    model, history, states, _ = _scripted_run(_config(epochs=8, batch_size=8, early_stopping_patience=3))
    assert len(history) == 5 and torch.equal(model.p, states[5])
    model, history, states, _ = _scripted_run(_config(epochs=8, batch_size=8))  # patience 0: off
    assert len(history) == 8 and history.attrs == {"best_epoch": 8, "stopped_early": False}


def test_early_stopping_and_best_state_survive_a_resume(tmp_path):
    config = _config(epochs=8, batch_size=8, early_stopping_patience=3, restore_best=True)
    expected_model, expected, _, _ = _scripted_run(config)
    checkpointing = Checkpointing(CheckpointStore(tmp_path), {"method": "scripted"})
    with pytest.raises(Interrupt):
        _scripted_run(config, checkpointing, stop_after=3)  # the best (epoch 2) is only in the checkpoint
    model, history, _, seen = _scripted_run(config, checkpointing)
    assert seen == [1, 2, 3, 4, 5]
    assert history.drop(columns="epoch_time_s").iloc[3:].equals(expected.drop(columns="epoch_time_s").iloc[3:])
    assert history.attrs == expected.attrs
    assert torch.equal(model.p, expected_model.p)
    # A rerun after the stop trains nothing and ends in the same best state.
    model, again, _, seen = _scripted_run(config, checkpointing)
    assert seen == [1, 2, 3, 4, 5] and again.attrs == expected.attrs
    assert torch.equal(model.p, expected_model.p)


def test_early_stopping_needs_validation_data_and_valid_parameters():
    with pytest.raises(ValueError, match="need validation data"):
        train(TwoLogits(), _label_zero(), None, _config(early_stopping_patience=2))
    with pytest.raises(ValueError, match="training.early_stopping_patience must be an integer ≥ 0"):
        _config(early_stopping_patience=-1)
    with pytest.raises(ValueError, match="training.restore_best must be true or false"):
        _config(restore_best="yes")
    with pytest.raises(ValueError, match="training.lr_schedule must be one of"):
        _config(lr_schedule="step")


# --- evaluation over sampled masks ----------------------------------------------------------

def test_evaluate_sampled_averages_over_masks_drawn_from_its_seed():
    data = _data(64, 3)
    network = _network(BernoulliStrategy())
    result = evaluate_sampled(network, data, samples=5, seed=1)
    assert set(result) == {"accuracy_mean", "accuracy_std", "loss_mean", "loss_std"}
    assert result == evaluate_sampled(network, data, samples=5, seed=1)
    assert result["loss_std"] > 0  # logits 0: every mask a coin toss per weight
    assert network.fc1.frozen_mask is None and torch.equal(network.fc1.final_mask(), torch.zeros(300, 784))

    per_mask = []
    generator = torch.Generator().manual_seed(1)
    for _ in range(5):
        with network.frozen_sample(generator):
            per_mask.append(evaluate(network, data)["loss"])
    assert result["loss_mean"] == pytest.approx(sum(per_mask) / 5)


def test_evaluate_sampled_of_a_deterministic_strategy_is_evaluate():
    data = _data(64, 3)
    network = _network(ThresholdStrategy(), "kaiming_uniform")
    result = evaluate_sampled(network, data, samples=3)
    assert result["accuracy_std"] == result["loss_std"] == 0.0
    assert result["accuracy_mean"] == evaluate(network, data)["accuracy"]
    with pytest.raises(ValueError, match="needs a MaskedNetwork"):
        evaluate_sampled(TwoLogits(), data)
    with pytest.raises(ValueError, match="samples must be an integer ≥ 1"):
        evaluate_sampled(network, data, samples=0)


# --- validation on sampled masks (Dupont et al.'s code validates every epoch on sampled masks) ---

def test_validation_on_sampled_masks_is_seeded_by_the_epoch_and_leaves_training_unchanged():
    train_data, val_data = _data(64, 0), _data(48, 5)
    histories, states = {}, {}
    for masks in ("final", "sampled"):
        network = _network(ASLPStrategy(), "constant", 0.0)
        histories[masks] = train(network, train_data, val_data, _config(validation_masks=masks, epochs=1))
        states[masks] = {k: v.clone() for k, v in network.state_dict().items()}
    # The validation mask does not touch the training's sampling stream: the same trained scores.
    assert all(torch.equal(states["final"][k], states["sampled"][k]) for k in states["final"])
    network = _network(ASLPStrategy(), "constant", 0.0)
    network.load_state_dict(states["sampled"])
    seed = RunSeeds(0).validation(1)  # the validation stream of epoch 1 of the run seed 0
    sampled = evaluate_sampled(network, val_data, 1, seed=seed)
    final = evaluate(network, val_data)
    assert histories["sampled"]["val_loss"].iloc[-1] == pytest.approx(sampled["loss_mean"])
    assert histories["final"]["val_loss"].iloc[-1] == pytest.approx(final["loss"])
    assert sampled["loss_mean"] != pytest.approx(final["loss"])  # logits near 0: a sampled mask differs
    with pytest.raises(ValueError, match="training.validation_masks must be one of"):
        _config(validation_masks="mean")
