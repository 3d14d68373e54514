"""Batched seeds: K seeds of one configuration in one pass give each seed's own run."""

import json

import pytest
import torch

from supermask_pipeline.masks import get_mask_strategy
from supermask_pipeline.models import MaskedNetwork, get_architecture, initialise_tensors
from supermask_pipeline.training import Checkpointing, CheckpointStore, TensorDataset, TrainingConfig, train
from supermask_pipeline.training.batched import BATCHED_IDENTITY, train_seeds

SPEC = get_architecture("fcn")


def _data(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g))


def _network(seed, strategy="signed_supermask", **options):
    weights = initialise_tensors(SPEC, "signed_constant", seed, 6.0)
    scores = initialise_tensors(SPEC, "xavier_uniform", 100 + seed)
    return MaskedNetwork(SPEC, get_mask_strategy(strategy, **options), weights, scores)


def _config(seed, **overrides):
    values = dict(epochs=1, batch_size=64, learning_rate=0.05, weight_decay=5e-4, weight_decay_mode="decoupled",
                  device="cpu", show_progress=False, checkpoint_every=0, seed=seed)
    return TrainingConfig(**{**values, **overrides})


@pytest.mark.parametrize("strategy,options", [("signed_supermask", {"threshold": 0.01}), ("signed_supermask", {}),
                                              ("edge_popup", {"keep_fraction": 0.5}), ("bernoulli", {})])
def test_logits_after_the_first_step_equal_separate_runs(strategy, options):
    seeds = [0, 1, 2]
    data, probe = _data(64), _data(32, seed=9)  # one step of batch 64
    separate = [_network(s, strategy, **options) for s in seeds]
    for seed, model in zip(seeds, separate):
        train(model, data, None, _config(seed))
    batched = [_network(s, strategy, **options) for s in seeds]
    histories = train_seeds(batched, data, None, [_config(s) for s in seeds])
    assert len(histories) == 3
    with torch.no_grad():
        for a, b in zip(separate, batched):
            a.eval(), b.eval()
            assert torch.allclose(a(probe.images), b(probe.images), atol=1e-5, rtol=0)
            assert not torch.equal(batched[0](probe.images), batched[1](probe.images))  # seeds differ
    for model in batched:  # the parameters have their own storage again
        assert model.fc1.mask_scores.data.untyped_storage().data_ptr() != batched[0].fc1.mask_scores.data.untyped_storage().data_ptr() or model is batched[0]


def test_each_seed_checkpoints_and_resumes_as_its_own_run(tmp_path):
    seeds = [3, 4]
    data, val = _data(256), _data(64, seed=5)
    configs = [_config(s, epochs=3, checkpoint_every=1) for s in seeds]

    def stores(root):
        return [Checkpointing(CheckpointStore(root / f"seed_{s}"), {"seed": s}) for s in seeds]

    reference = [_network(s) for s in seeds]
    expected = train_seeds(reference, data, val, configs, checkpointing=stores(tmp_path / "a"))

    def interrupt(epoch, row):
        if epoch == 2:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train_seeds([_network(s) for s in seeds], data, val, configs, [interrupt, None], stores(tmp_path / "b"))
    seen = {s: [] for s in seeds}
    resumed_models = [_network(s) for s in seeds]
    resumed = train_seeds(resumed_models, data, val, configs,
                          [lambda e, r, s=s: seen[s].append(e) for s in seeds], stores(tmp_path / "b"))
    for k, s in enumerate(seeds):
        assert resumed[k].drop(columns="epoch_time_s").equals(expected[k].drop(columns="epoch_time_s"))
        for name, value in reference[k].state_dict().items():
            assert torch.equal(value, resumed_models[k].state_dict()[name]), name
        assert seen[s] == [1, 2, 3]  # the restored epoch replayed once, then the rest
        records = sorted((tmp_path / "b" / f"seed_{s}").rglob("epoch_*.json"))
        identity = json.loads(records[-1].read_text())["identity"]
        assert identity["seed"] == s and identity["training"]["seed"] == s
        assert identity["engine"] == BATCHED_IDENTITY["engine"]
    folders = {p.parent for s in seeds for p in (tmp_path / "b" / f"seed_{s}").rglob("epoch_*.json")}
    assert len(folders) == 2


def test_configurations_that_differ_beyond_the_seed_are_refused():
    with pytest.raises(ValueError, match="except `seed`"):
        train_seeds([_network(0), _network(1)], _data(64), None, [_config(0), _config(1, learning_rate=0.1)])
    with pytest.raises(ValueError, match="two or more"):
        train_seeds([_network(0)], _data(64), None, [_config(0)])
