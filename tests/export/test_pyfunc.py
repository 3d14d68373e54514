"""The MLflow model: models from code over the compact file, loaded by runs:/<id>/model, no pickle."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

from supermask_pipeline import export
from supermask_pipeline.export.pyfunc import log_compact_model

from .conftest import SEED, signed_supermask


@pytest.fixture
def tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    # An experiment of this store: MLflow remembers the active experiment id process-wide, and a
    # test before this one (a Kedro session, the tracking server's) may have set one of another store.
    mlflow.set_experiment("pyfunc")
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(previous)


def test_the_logged_model_predicts_the_networks_classes(tracking):
    network, _ = signed_supermask(keep=0.1)
    compact = export.encode(network.effective_weights(), network.masks(), "fcn", "elu",
                            export.InputSpec("per_image_standardisation"), export.InitialWeights("signed_constant", None, SEED))
    images = np.random.default_rng(0).integers(0, 256, (200, 28, 28, 1), dtype=np.uint8)
    with mlflow.start_run() as run:
        info = log_compact_model(compact, images[:5], tags={"method": "signed_supermask"})
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    predicted = model.predict(images)
    with torch.no_grad():
        expected = network.eval()(export.normalise_pixels(images, export.InputSpec())).numpy()
    assert predicted.dtype == np.float32 and predicted.shape == (200, 10)
    assert np.array_equal(predicted, expected)  # the same logits, hence the same classes
    assert np.array_equal(predicted.argmax(1), expected.argmax(1))

    (inputs,), (outputs,) = info.signature.inputs.inputs, info.signature.outputs.inputs
    assert (inputs.type, inputs.shape) == (np.dtype("uint8"), (-1, 28, 28, 1))
    assert (outputs.type, outputs.shape) == (np.dtype("float32"), (-1, 10))
    logged = mlflow.get_logged_model(info.model_id)
    assert logged.source_run_id == run.info.run_id and logged.tags["method"] == "signed_supermask"

    folder = Path(mlflow.artifacts.download_artifacts(info.model_uri))
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert "artifacts/network.smnet" in files and "model_code.py" in {Path(f).name for f in files}
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".pt", ".pth", ".cloudpickle"))], files
    assert (folder / "artifacts/network.smnet").read_bytes() == compact
    assert "input_example.json" in files or "serving_input_example.json" in files


def test_a_corrupted_artifact_is_refused_when_the_model_loads(tracking):
    network, _ = signed_supermask()
    compact = export.encode(network.effective_weights(), network.masks(), "fcn", "elu")
    with mlflow.start_run():
        info = log_compact_model(compact, np.zeros((2, 28, 28, 1), np.uint8))
    artifact = Path(mlflow.artifacts.download_artifacts(info.model_uri)) / "artifacts/network.smnet"
    changed = bytearray(artifact.read_bytes())
    changed[-40] ^= 1
    artifact.write_bytes(bytes(changed))
    with pytest.raises(export.ChecksumError):
        mlflow.pyfunc.load_model(str(artifact.parent.parent))
