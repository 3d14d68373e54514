"""Checkpoints written on a background thread: in order, all on disk when ``train`` returns or
raises, and a failed write stops the run with its error."""

from __future__ import annotations

import json
import threading

import pytest
import torch

from supermask_pipeline.masks import BernoulliStrategy
from supermask_pipeline.models import MaskedNetwork, get_architecture, initialise_tensors
from supermask_pipeline.training import Checkpointing, CheckpointStore, TensorDataset, TrainingConfig, train
from supermask_pipeline.training.checkpoint import CheckpointError, CheckpointWriter, TrainingState


def _network():
    spec = get_architecture("fcn")
    return MaskedNetwork(spec, BernoulliStrategy(), initialise_tensors(spec, "kaiming_normal", 0),
                         initialise_tensors(spec, "constant", 1))


def _data(n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g))


def _config(**overrides):
    return TrainingConfig(**{**dict(epochs=4, batch_size=16, show_progress=False, device="cpu"), **overrides})


class _RecordingStore(CheckpointStore):
    """A store that records which thread wrote which epoch."""

    def __init__(self, root, fail_at=None):
        super().__init__(root)
        self.writes: list[tuple[int, str]] = []
        self.fail_at = fail_at

    def save(self, run_fingerprint, state, *, name=None):
        self.writes.append((state.epoch, threading.current_thread().name))
        if state.epoch == self.fail_at:
            raise CheckpointError(f"disk full at epoch {state.epoch}")
        return super().save(run_fingerprint, state, name=name)


def test_every_epoch_is_written_in_order_off_the_training_thread_and_the_last_is_on_disk(tmp_path):
    store = _RecordingStore(tmp_path / "ckpt")
    history = train(_network(), _data(), None, _config(), checkpointing=Checkpointing(store))
    assert [epoch for epoch, _ in store.writes] == [1, 2, 3, 4]
    assert all(name.startswith("checkpoint-writer") for _, name in store.writes)
    (folder,) = (tmp_path / "ckpt").iterdir()
    records = sorted(p.name for p in folder.glob("epoch_*.json"))
    assert records == ["epoch_0004.json"]  # keep=1: the earlier ones were pruned, in order
    record = json.loads((folder / records[0]).read_text())
    assert [row["epoch"] for row in record["history"]] == list(history["epoch"])
    assert not [t for t in threading.enumerate() if t.name.startswith("checkpoint-writer")]


def test_a_failed_write_stops_the_run_with_its_error(tmp_path):
    store = _RecordingStore(tmp_path / "ckpt", fail_at=2)
    with pytest.raises(CheckpointError, match="disk full at epoch 2"):
        train(_network(), _data(), None, _config(epochs=6), checkpointing=Checkpointing(store))
    # Raised when epoch 3's checkpoint is handed over at the latest: no epoch after 3 is written.
    assert [epoch for epoch, _ in store.writes] == [1, 2]
    (folder,) = (tmp_path / "ckpt").iterdir()
    assert sorted(p.name for p in folder.glob("epoch_*.json")) == ["epoch_0001.json"]


def test_a_failed_write_of_the_last_epoch_is_raised_by_train(tmp_path):
    store = _RecordingStore(tmp_path / "ckpt", fail_at=4)
    with pytest.raises(CheckpointError, match="disk full at epoch 4"):
        train(_network(), _data(), None, _config(), checkpointing=Checkpointing(store))


def test_the_checkpoint_in_flight_lands_when_a_callback_raises(tmp_path):
    store = CheckpointStore(tmp_path / "ckpt")

    def stop_at_two(epoch, row):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_network(), _data(), None, _config(), on_epoch_end=stop_at_two, checkpointing=Checkpointing(store))
    (folder,) = (tmp_path / "ckpt").iterdir()
    assert sorted(p.name for p in folder.glob("epoch_*.json")) == ["epoch_0002.json"]
    # The rerun resumes from it and ends where an uninterrupted run ends.
    resumed = train(_network(), _data(), None, _config(), checkpointing=Checkpointing(store))
    fresh = train(_network(), _data(), None, _config(), checkpointing=Checkpointing(CheckpointStore(tmp_path / "b")))
    compared = [c for c in fresh.columns if c != "epoch_time_s"]
    assert resumed[compared].equals(fresh[compared])


def test_the_writer_writes_a_captured_state_not_the_live_tensors(tmp_path):
    live = torch.zeros(1000)
    state = TrainingState(epoch=1, tensors={"model.w": live.clone()}, meta={})
    writer = CheckpointWriter(CheckpointStore(tmp_path), "f" * 64)
    writer.submit(state)
    live.add_(1.0)  # training goes on meanwhile
    epoch, record = writer.wait()
    writer.close()
    assert epoch == 1 and record.name == "epoch_0001.json"
    read = CheckpointStore(tmp_path).read(record, "f" * 64)
    assert torch.equal(read.tensors["model.w"], torch.zeros(1000))
    assert writer.wait() == (1, record)  # nothing in flight: the newest written
