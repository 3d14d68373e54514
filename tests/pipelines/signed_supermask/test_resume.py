"""SIGKILL a `kedro run` in the middle of training, rerun it, and get the uninterrupted result."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import safetensors.torch

from tests.pipelines.conftest import versions

EPOCHS = 30
PARAMS = ",".join(
    [
        f"signed_supermask.training.epochs={EPOCHS}",
        "signed_supermask.training.batch_size=8",
        "signed_supermask.training.show_progress=false",
        "signed_supermask.training.device=cpu",
        "data_processing.num_val=6",
    ]
)
COMPARED = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "remaining_weights", "learning_rate"]


def _kedro(project: Path, params: str = PARAMS) -> subprocess.Popen:
    command = [sys.executable, "-m", "kedro", "run", "--pipelines=signed_supermask",
               "--from-nodes=signed_supermask.train", f"--params={params}"]
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "PYTHONUNBUFFERED": "1", "COLUMNS": "400"}
    return subprocess.Popen(command, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(process: subprocess.Popen, timeout: float = 300) -> str:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-4000:]
    return output


def _checkpoint_epochs(folder: Path) -> list[int]:
    return sorted(int(p.stem.split("_")[1]) for p in folder.glob("*/epoch_*.json"))


def _latest(folder: Path) -> dict:
    (latest,) = [folder / versions(folder)[-1] / folder.name]
    return safetensors.torch.load_file(latest)


def _metric_steps(run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in mlflow.MlflowClient().get_metric_history(run_id, key))


def _newest_run_id(project: Path) -> str:
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["supermask_pipeline"], filter_string="tags.method = 'signed_supermask'",
                              order_by=["start_time DESC"])  # the method's run, nested under the pipeline's
    return runs.iloc[0]["run_id"]


def test_sigkill_mid_training_then_rerun_gives_the_uninterrupted_result(project: Path, run_kedro):
    run_kedro("data_processing")
    run_kedro("init_weights")
    checkpoints = project / "data" / "06_models" / "signed_supermask" / "fcn" / "checkpoints"
    models = project / "data" / "06_models" / "signed_supermask" / "fcn"

    # 1. Start training in a subprocess; SIGKILL it once a few epochs are checkpointed.
    victim = _kedro(project)
    deadline = time.monotonic() + 240
    while not [e for e in _checkpoint_epochs(checkpoints) if e >= 3]:
        assert victim.poll() is None, victim.stdout.read()[-4000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=60)
    assert victim.returncode == -signal.SIGKILL
    killed_at = max(_checkpoint_epochs(checkpoints))
    assert 3 <= killed_at < EPOCHS, killed_at  # it really died in the middle
    assert versions(models / "trained_weights.safetensors") == []  # the node never returned

    # 2. Rerun the same node with the same parameters: it resumes.
    resumed_log = _finish(_kedro(project))
    found = re.search(rf"Resuming from the checkpoint of\s+epoch\s+(\d+)\s+of\s+{EPOCHS}", resumed_log)
    assert found, resumed_log[-4000:]
    resumed_epoch = int(found.group(1))
    assert killed_at <= resumed_epoch < EPOCHS
    resumed_run = _newest_run_id(project)
    assert not list(checkpoints.rglob(".*.tmp"))  # a write cut by the kill leaves nothing behind after the rerun
    resumed = {name: _latest(models / f"{name}.safetensors") for name in ("trained_weights", "trained_mask_scores", "masks")}
    resumed_history = pd.read_csv(project / "data" / "07_model_output" / "signed_supermask" / "fcn" / "training_history.csv")

    # 3. An uninterrupted run from scratch with the same seed (resume off forces a fresh start).
    reference_log = _finish(_kedro(project, PARAMS + ",signed_supermask.training.resume=false"))
    assert "Resuming" not in reference_log and "resume is false: starting over" in reference_log
    reference_run = _newest_run_id(project)
    assert reference_run != resumed_run
    for name, tensors in resumed.items():
        expected = _latest(models / f"{name}.safetensors")
        assert tensors.keys() == expected.keys()
        for layer in tensors:
            assert tensors[layer].equal(expected[layer]), f"{name}.{layer} differs after resume"
    reference_history = pd.read_csv(project / "data" / "07_model_output" / "signed_supermask" / "fcn" / "training_history.csv")
    pd.testing.assert_frame_equal(resumed_history[COMPARED], reference_history[COMPARED])

    # 4. Live metrics of the resumed run: every epoch exactly once, equal to the reference run's.
    for key in ("signed_supermask.val_accuracy", "signed_supermask.train_loss"):
        steps = _metric_steps(resumed_run, key)
        assert [s for s, _ in steps] == list(range(1, EPOCHS + 1)), key
        assert steps == _metric_steps(reference_run, key)
