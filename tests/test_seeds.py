"""The run's random streams: named children of one SeedSequence, distinct, deterministic, and the ones the engine uses."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from supermask_pipeline.masks import BernoulliStrategy
from supermask_pipeline.models import MaskedNetwork, get_architecture, initialise_tensors
from supermask_pipeline.seeds import STREAMS, RunSeeds
from supermask_pipeline.training import TensorDataset, TrainingConfig, train
from supermask_pipeline.training.iterative_pruning import round_seed

NAMED = (
    "weights", "mask_scores", "batch_order", "augmentation", "mask_sampling", "sampled_evaluation", "mask_criteria",
)


def _all_streams(seed: int) -> dict[tuple, int]:
    seeds = RunSeeds(seed)
    values = {(seed, name): getattr(seeds, name) for name in NAMED}
    values.update({(seed, "validation", epoch): seeds.validation(epoch) for epoch in range(1, 101)})
    values.update({(seed, "lottery_round", r): seeds.lottery_round(r) for r in range(31)})
    return values


def test_the_streams_are_the_documented_names():
    assert set(STREAMS) == {*NAMED, "validation", "lottery_round"} and len(STREAMS) == len(NAMED) + 2
    # Spawn-key order is fixed: a new stream goes last, so no existing stream's values change.
    assert STREAMS[:8] == (*NAMED[:6], "validation", "lottery_round") and STREAMS[-1] == "mask_criteria"


def test_every_stream_of_seeds_0_to_9_is_distinct_from_every_other():
    values: dict[tuple, int] = {}
    for seed in range(10):
        values.update(_all_streams(seed))
    assert len(values) == 10 * (len(NAMED) + 100 + 31)
    assert len(set(values.values())) == len(values)  # pairwise distinct across seeds and streams
    # In particular not the old scheme's overlap: seed 0's mask sampling was seed 2's batch order.
    assert RunSeeds(0).mask_sampling != RunSeeds(2).batch_order
    assert RunSeeds(0).augmentation != RunSeeds(1).batch_order


def test_values_are_deterministic_and_valid_seeds_for_torch_and_numpy():
    assert _all_streams(7) == _all_streams(7)
    for value in _all_streams(3).values():
        assert isinstance(value, int) and 0 <= value < 2**63
    value = RunSeeds(0).weights
    torch.Generator().manual_seed(value)
    np.random.default_rng(value)
    # The scheme itself: the stream index and its indices are the spawn key of the run seed's SeedSequence.
    low, high = np.random.SeedSequence(entropy=5, spawn_key=(STREAMS.index("validation"), 4)).generate_state(2, np.uint32)
    assert RunSeeds(5).validation(4) == (int(low) | int(high) << 32) & (2**63 - 1)
    assert RunSeeds(5).stream("validation", 4) == RunSeeds(5).validation(4)
    assert RunSeeds(5).stream("weights") == RunSeeds(5).weights
    assert RunSeeds(np.int64(5)) == RunSeeds(5) and type(RunSeeds(np.int64(5)).seed) is int


@pytest.mark.parametrize("bad", [-1, 1.0, "0", True, None])
def test_a_bad_run_seed_is_rejected(bad):
    with pytest.raises(ValueError, match="run seed must be an integer ≥ 0"):
        RunSeeds(bad)


def test_unknown_streams_and_bad_indices_are_rejected():
    seeds = RunSeeds(0)
    with pytest.raises(ValueError, match=r"Unknown random stream 'dropout'.*'weights'.*'lottery_round'"):
        seeds.stream("dropout")
    with pytest.raises(ValueError, match="'validation' takes one index, got 0"):
        seeds.stream("validation")
    with pytest.raises(ValueError, match="'weights' takes no index, got 1"):
        seeds.stream("weights", 1)
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="must be an integer ≥ 0"):
            seeds.validation(bad)
        with pytest.raises(ValueError, match="must be an integer ≥ 0"):
            seeds.lottery_round(bad)
    with pytest.raises(AttributeError):
        seeds.seed = 1  # frozen


# --- the streams the training code draws from -------------------------------------------------


class _Recorder(nn.Module):
    """Logits from a linear map; records the training images it sees (their first pixel is their index)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 10)
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        if self.training:
            self.seen.append(x[:, 0, 0, 0].detach().clone())
        return self.linear(x.flatten(1))


def test_the_engine_draws_batch_order_augmentation_and_mask_sampling_from_the_run_seeds():
    n, seed = 12, 3
    images = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    data = TensorDataset(images, torch.zeros(n, dtype=torch.long))
    config = TrainingConfig(epochs=1, batch_size=5, show_progress=False, device="cpu", seed=seed)
    augment_seeds = []

    def augment(x, generator):
        augment_seeds.append(generator.initial_seed())
        return x

    model = _Recorder()
    train(model, data, None, config, augment=augment)
    expected = torch.randperm(n, generator=torch.Generator().manual_seed(RunSeeds(seed).batch_order))
    assert torch.equal(torch.cat(model.seen).long(), expected)
    assert set(augment_seeds) == {RunSeeds(seed).augmentation}

    spec = get_architecture("fcn")
    network = MaskedNetwork(
        spec, BernoulliStrategy(), initialise_tensors(spec, "kaiming_normal", 0), initialise_tensors(spec, "constant", 1)
    )
    digits = TensorDataset(torch.randn(8, 1, 28, 28), torch.zeros(8, dtype=torch.long))
    train(network, digits, None, config)
    assert network.sampler.seed == RunSeeds(seed).mask_sampling


def test_lottery_rounds_draw_from_the_lottery_round_stream():
    assert [round_seed(4, r) for r in range(3)] == [RunSeeds(4).lottery_round(r) for r in range(3)]
    assert len({round_seed(s, r) for s, r in itertools.product(range(3), range(5))}) == 15
