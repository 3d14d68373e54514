"""The run object behind ``train`` and the masked-network protocol the engine asks instead of probing attributes."""

from __future__ import annotations

import torch
from torch import nn

from supermask_pipeline.masks import BernoulliStrategy, DenseStrategy
from supermask_pipeline.models import MaskedNetwork, get_architecture, initialise_tensors
from supermask_pipeline.training import MaskedModel, TensorDataset, TrainingConfig, TrainingRun, train
from supermask_pipeline.training.masked_model import LearningRateOverrides, PlainModel, as_masked_model
from supermask_pipeline.training.optimization import parameter_groups


def _network(strategy=None):
    spec = get_architecture("fcn")
    return MaskedNetwork(
        spec, strategy or BernoulliStrategy(), initialise_tensors(spec, "kaiming_normal", 0),
        initialise_tensors(spec, "constant", 1),
    )


def _data(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    return TensorDataset(torch.randn(n, 1, 28, 28, generator=g) + labels.view(-1, 1, 1, 1) * 0.3, labels)


def _config(**overrides):
    return TrainingConfig(**{**dict(epochs=3, batch_size=16, show_progress=False, device="cpu"), **overrides})


def test_a_masked_network_implements_the_protocol_and_a_plain_module_gets_the_adapter():
    network = _network(DenseStrategy())
    assert isinstance(network, MaskedModel) and as_masked_model(network) is network
    plain = as_masked_model(nn.Linear(3, 2))
    assert isinstance(plain, PlainModel) and isinstance(plain, MaskedModel)
    assert plain.remaining_fraction() == 1.0 and plain.mask_generator() is None
    plain.seed_mask_sampling(5)  # nothing to seed
    with plain.frozen_sample(torch.Generator()) as drawn:
        assert drawn == {}
    assert plain.learning_rate_overrides() == {}
    assert not isinstance(nn.Linear(3, 2), MaskedModel)


class _WithOverride(nn.Module):
    """Not a masked network, but it names a tensor with a learning rate of its own."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Parameter(torch.zeros(())), nn.Parameter(torch.zeros(()))

    def learning_rate_overrides(self):
        return {"b": 0.5}


def test_a_plain_module_keeps_its_learning_rate_overrides():
    module = _WithOverride()
    assert isinstance(module, LearningRateOverrides) and not isinstance(module, MaskedModel)
    assert as_masked_model(module).learning_rate_overrides() == {"b": 0.5}
    base, own = parameter_groups(module, _config())
    assert base["params"] == [module.a] and own["params"] == [module.b] and own["lr"] == 0.5


def test_the_run_steps_one_by_one_give_what_train_gives():
    config = _config(validation_masks="sampled")
    reference = _network()
    expected = train(reference, _data(), _data(16, 1), config)
    network = _network()
    run = TrainingRun(network, _data(), _data(16, 1), config)
    run.start_or_resume()
    assert run.rows == [] and not run.stop
    assert set(run.generators()) == {"batch_order", "augmentation", "mask_sampling"}
    rows = [run.train_epoch(epoch) for epoch in (1, 2, 3)]
    history = run.finish()
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    compared = [c for c in history.columns if c != "epoch_time_s"]
    assert history[compared].equals(expected[compared])
    assert history.attrs == expected.attrs
    for name, tensor in reference.state_dict().items():
        assert torch.equal(network.state_dict()[name], tensor), name


def test_a_plain_module_checkpoints_no_mask_sampling_stream():
    run = TrainingRun(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), _data(), None, _config())
    assert set(run.generators()) == {"batch_order", "augmentation"}
