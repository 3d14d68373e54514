"""Checkpoint and resume of the training engine: exact continuation, fingerprints, divergence."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from supermask_pipeline.images.augmentation import random_crop_flip
from supermask_pipeline.masks import ASLPStrategy, BernoulliStrategy, DenseStrategy, SignedSupermaskStrategy
from supermask_pipeline.models import MaskedNetwork, get_architecture, initialise_tensors
from supermask_pipeline.training import (
    CheckpointStore,
    Checkpointing,
    TensorDataset,
    TrainingConfig,
    TrainingDivergedError,
    train,
)
from supermask_pipeline.training.checkpoint import CheckpointError, TrainingState, identity_changes

COMPARED = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "remaining_weights", "learning_rate"]


class Interrupt(Exception):
    pass


def _data(n=80, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    images = torch.randn(n, 1, 28, 28, generator=g) + labels.view(-1, 1, 1, 1).float() * 0.3
    return TensorDataset(images, labels)


def _network(method="signed_supermask"):
    spec = get_architecture("fcn")
    weights = initialise_tensors(spec, "signed_constant", 0)
    if method in ("bernoulli", "aslp"):  # stochastic masks: the sampling generator must be checkpointed
        strategy = BernoulliStrategy() if method == "bernoulli" else ASLPStrategy(learn_scale=True)
        return MaskedNetwork(spec, strategy, weights, initialise_tensors(spec, "constant", 1), rescale=True)
    strategy = SignedSupermaskStrategy(0.4) if method == "signed_supermask" else DenseStrategy()
    return MaskedNetwork(spec, strategy, weights, initialise_tensors(spec, "xavier_uniform", 1))


def _config(**overrides):
    base = dict(epochs=4, batch_size=16, show_progress=False, device="cpu")
    return TrainingConfig(**{**base, **overrides})


def _state(network):
    return {k: v.clone() for k, v in network.state_dict().items()}


def _interrupted_then_resumed(tmp_path, method, config, stop_after, augment=None):
    store = CheckpointStore(tmp_path / "ckpt")
    checkpointing = Checkpointing(store, {"method": method})

    def stop(epoch, row):
        if epoch == stop_after:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(_network(method), _data(), _data(24, 1), config, on_epoch_end=stop, checkpointing=checkpointing,
              augment=augment)
    seen = []
    network = _network(method)
    history = train(
        network, _data(), _data(24, 1), config, on_epoch_end=lambda e, r: seen.append(e), checkpointing=checkpointing,
        augment=augment,
    )
    return network, history, seen, store


@pytest.mark.parametrize(
    ("method", "overrides", "augment"),
    [
        ("signed_supermask", {}, None),
        ("dense", {"optimizer": "adam", "learning_rate": 1e-3, "weight_decay_mode": "l2"}, None),
        ("signed_supermask", {}, random_crop_flip),  # the augmentation generator is checkpointed too
        ("bernoulli", {"learning_rate": 50.0}, None),  # and the mask-sampling generator
        ("aslp", {"learning_rate": 5.0, "early_stopping_patience": 3, "restore_best": True}, None),  # + scale group
    ],
)
def test_resumed_run_is_bit_identical_to_an_uninterrupted_one(tmp_path, method, overrides, augment):
    config = _config(**overrides)
    reference = _network(method)
    expected = train(reference, _data(), _data(24, 1), config, augment=augment)
    network, history, seen, store = _interrupted_then_resumed(tmp_path, method, config, stop_after=2, augment=augment)
    for name, tensor in _state(reference).items():
        assert torch.equal(network.state_dict()[name], tensor), name
    assert history[COMPARED].equals(expected[COMPARED])
    assert seen == [1, 2, 3, 4]  # restored epochs are replayed to the callback once, then training goes on
    # Only the newest checkpoint is kept, and it is the final epoch.
    (folder,) = [p for p in store.root.iterdir()]
    assert sorted(p.name for p in folder.iterdir()) == ["epoch_0004.json", "epoch_0004.safetensors"]


def test_resume_continues_after_the_checkpointed_epoch(tmp_path, caplog):
    config = _config(epochs=3)
    store = CheckpointStore(tmp_path / "ckpt")
    checkpointing = Checkpointing(store, {"method": "signed"})
    epochs_trained = []
    with pytest.raises(Interrupt):
        train(_network(), _data(), None, config, checkpointing=checkpointing,
              on_epoch_end=lambda e, r: (_ for _ in ()).throw(Interrupt) if e == 2 else None)
    original = _config(epochs=3)
    with caplog.at_level(logging.INFO, logger="supermask_pipeline.training.engine"):
        history = train(_network(), _data(), None, original, checkpointing=checkpointing,
                        on_epoch_end=lambda e, r: epochs_trained.append((e, r["epoch_time_s"])))
    assert "Resuming from the checkpoint of epoch 2 of 3" in caplog.text
    assert history["epoch"].tolist() == [1, 2, 3]
    # Epochs 1-2 come from the checkpoint (their recorded times), only epoch 3 ran again.
    assert [e for e, _ in epochs_trained] == [1, 2, 3]


def test_changed_parameters_start_over_say_so_and_keep_old_checkpoints(tmp_path, caplog):
    store = CheckpointStore(tmp_path / "ckpt")
    checkpointing = Checkpointing(store, {"method": "signed"})
    train(_network(), _data(), None, _config(epochs=2), checkpointing=checkpointing)
    (old,) = list(store.root.iterdir())
    old_bytes = {p.name: p.read_bytes() for p in old.iterdir()}
    with caplog.at_level(logging.INFO, logger="supermask_pipeline.training.engine"):
        history = train(_network(), _data(), None, _config(epochs=2, learning_rate=0.1), checkpointing=checkpointing)
    assert "training.learning_rate: 0.05 → 0.1" in caplog.text
    assert "starting over" in caplog.text
    assert "Resuming" not in caplog.text
    assert history["epoch"].tolist() == [1, 2]
    assert {p.name: p.read_bytes() for p in old.iterdir()} == old_bytes
    assert len(list(store.root.iterdir())) == 2


def test_operational_parameters_do_not_force_a_restart(tmp_path, caplog):
    store = CheckpointStore(tmp_path / "ckpt")
    checkpointing = Checkpointing(store, {"method": "signed"})
    train(_network(), _data(), None, _config(epochs=2), checkpointing=checkpointing)
    with caplog.at_level(logging.INFO, logger="supermask_pipeline.training.engine"):
        train(_network(), _data(), None, _config(epochs=2, eval_batch_size=7, show_progress=False, checkpoint_every=3),
              checkpointing=checkpointing)
    assert "Resuming from the checkpoint of epoch 2 of 2" in caplog.text


def test_resume_false_starts_over(tmp_path, caplog):
    store = CheckpointStore(tmp_path / "ckpt")
    checkpointing = Checkpointing(store, {})
    train(_network(), _data(), None, _config(epochs=1), checkpointing=checkpointing)
    with caplog.at_level(logging.INFO, logger="supermask_pipeline.training.engine"):
        train(_network(), _data(), None, _config(epochs=1, resume=False), checkpointing=checkpointing)
    assert "resume is false: starting over" in caplog.text


def test_a_corrupted_checkpoint_is_skipped_not_trusted(tmp_path, caplog):
    store = CheckpointStore(tmp_path / "ckpt", keep=2)
    checkpointing = Checkpointing(store, {})
    train(_network(), _data(), None, _config(epochs=2), checkpointing=checkpointing)
    (folder,) = list(store.root.iterdir())
    newest = folder / "epoch_0002.safetensors"
    newest.write_bytes(newest.read_bytes()[:-10])  # truncated
    with caplog.at_level(logging.INFO):
        history = train(_network(), _data(), None, _config(epochs=2), checkpointing=checkpointing)
    assert "expected sha256" in caplog.text and str(newest) in caplog.text
    assert "Resuming from the checkpoint of epoch 1 of 2" in caplog.text
    assert history["epoch"].tolist() == [1, 2]


def test_checkpoint_files_are_safetensors_and_strict_json(tmp_path):
    store = CheckpointStore(tmp_path / "ckpt")
    train(_network(), _data(), _data(24, 1), _config(epochs=1), checkpointing=Checkpointing(store, {"method": "x"}))
    (folder,) = list(store.root.iterdir())
    record_path = folder / "epoch_0001.json"
    record = json.loads(record_path.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    tensors = (folder / record["tensors_file"]).read_bytes()
    assert hashlib.sha256(tensors).hexdigest() == record["tensors_sha256"]
    assert record["epoch"] == 1 and len(record["history"]) == 1
    assert record["identity"]["method"] == "x" and record["identity"]["training"]["learning_rate"] == 0.05
    state = store.read(record_path)
    assert {"model.fc1.weight", "model.fc1.mask_scores", "model.fc1.mask_threshold", "optimizer.0.momentum_buffer",
            "rng.batch_order", "rng.torch", "rng.numpy"} <= set(state.tensors)
    assert not list(folder.glob(".*tmp"))  # no temporary file left behind


class _NaNAfter(torch.nn.Module):
    """A linear model whose output turns NaN from the ``bad_call``-th training forward pass on."""

    def __init__(self, bad_call: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(784, 10)
        self.calls, self.bad_call = 0, bad_call

    def forward(self, x):
        out = self.linear(x.flatten(1))
        if self.training:
            self.calls += 1
            if self.calls >= self.bad_call:
                out = out * float("nan")
        return out


def test_divergence_reports_epoch_and_step_and_checkpoints_the_last_finite_state(tmp_path):
    # 80 images / batch 16 = 5 steps per epoch; call 13 is epoch 3, step 3. Checkpoints only every
    # 5 epochs, so the epoch-2 state must be written because of the divergence.
    store = CheckpointStore(tmp_path / "ckpt")
    torch.manual_seed(0)
    model = _NaNAfter(bad_call=13)
    with pytest.raises(TrainingDivergedError) as info:
        train(model, _data(), None, _config(epochs=6, checkpoint_every=5), checkpointing=Checkpointing(store, {}))
    err = info.value
    assert (err.epoch, err.step) == (3, 3)
    assert "epoch 3, step 3 of 5" in str(err) and "end of epoch 2" in str(err)
    assert err.checkpoint is not None and err.checkpoint.name == "epoch_0002.json"
    state = store.read(err.checkpoint)
    assert state.epoch == 2 and len(state.meta["history"]) == 2
    assert all(torch.isfinite(v).all() for k, v in state.tensors.items() if k.startswith("model."))


def test_divergence_without_checkpointing_still_names_epoch_and_step():
    torch.manual_seed(0)
    with pytest.raises(TrainingDivergedError, match="epoch 1, step 2 of 5.*Checkpointing is off"):
        train(_NaNAfter(bad_call=2), _data(), None, _config(epochs=2))


def test_store_rejects_a_record_of_another_format(tmp_path):
    store = CheckpointStore(tmp_path)
    path = store.save("f" * 64, TrainingState(epoch=1, tensors={"a": torch.zeros(2)}, meta={}))
    record = json.loads(path.read_text())
    record["format_version"] = 99
    path.write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match="expected format_version 1, found 99"):
        store.read(path)
    assert store.latest("f" * 64) is None


def test_identity_changes_lists_nested_differences():
    old = {"training": {"learning_rate": 0.05, "epochs": 3}, "data": {"train": "a" * 64}}
    new = {"training": {"learning_rate": 0.1, "epochs": 3}, "data": {"train": "b" * 64}}
    assert identity_changes(old, new) == ["data.train (content changed)", "training.learning_rate: 0.05 → 0.1"]


def test_training_config_rejects_bad_checkpoint_parameters():
    with pytest.raises(ValueError, match="training.checkpoint_every must be an integer ≥ 0"):
        _config(checkpoint_every=-1)
    with pytest.raises(ValueError, match="training.resume must be true or false"):
        _config(resume="yes")


def test_leftovers_of_a_killed_writer_are_cleaned_up(tmp_path):
    store = CheckpointStore(tmp_path)
    folder = store.folder("a" * 64)
    folder.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = folder / f".epoch_0002.safetensors.{int(dead.stdout)}.0123abcd.tmp"  # killed mid-write
    live = folder / f".epoch_0002.json.{os.getpid()}.0123abcd.tmp"  # a writer still running
    orphan = folder / "epoch_0001.safetensors"  # killed between deleting a record and its tensors
    for path in (stale, live, orphan):
        path.write_bytes(b"x")
    store.save("a" * 64, TrainingState(epoch=2, tensors={"t": torch.zeros(1)}, meta={}))
    assert sorted(p.name for p in folder.iterdir()) == sorted(["epoch_0002.json", "epoch_0002.safetensors", live.name])
