"""The found network as an MLflow model (models from code): no pickle, rebuilt from the compact file.

``mlflow.pytorch`` pickles the whole module, which this project never loads. Here the
logged model is :mod:`~supermask_pipeline.export.model_code` (a Python file MLflow stores
as source) plus the compact file as its artifact ``network``; loading the model runs that
file, whose :class:`CompactNetworkModel` reads the compact file with
:func:`~supermask_pipeline.export.read`. Serving needs this package installed (for its
reader), torch and numpy.

Input: uint8 images (N, H, W, C), the layout of the project's HDF5 splits; the model
applies the normalisation recorded in the file. Output: logits float32 (N, classes);
the predicted class is their argmax.
"""

from __future__ import annotations

import importlib.metadata
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch

from supermask_pipeline.export.compact import decode, read
from supermask_pipeline.export.preprocessing import normalise_pixels

__all__ = ["MODEL_CODE", "CompactNetworkModel", "log_compact_model"]

#: The models-from-code file: it builds :class:`CompactNetworkModel` and hands it to ``mlflow.models.set_model``.
MODEL_CODE = Path(__file__).with_name("model_code.py")
ARTIFACT = "network"


class CompactNetworkModel(mlflow.pyfunc.PythonModel):
    """A pyfunc model whose network is rebuilt from the compact file artifact ``network``."""

    def load_context(self, context) -> None:  # noqa: D102
        self.network = read(context.artifacts[ARTIFACT])
        self.module = self.network.module()

    def predict(self, context, model_input: np.ndarray, params: dict[str, Any] | None = None) -> np.ndarray:
        """uint8 images (N, H, W, C) → logits float32 (N, classes). (A numpy type hint: MLflow
        infers no schema from it; the logged tensor signature describes the input.)"""
        images = np.asarray(model_input)
        with torch.no_grad():
            return self.module(normalise_pixels(images, self.network.input)).numpy()


def _requirements() -> list[str]:
    return [f"{name}=={importlib.metadata.version(name)}" for name in ("mlflow", "torch", "numpy")]


def log_compact_model(compact: bytes, input_example: np.ndarray, name: str = "model",
                      tags: dict[str, str] | None = None) -> Any:
    """Log ``compact`` as an MLflow model of the active run, with its signature and ``input_example``.

    Args:
        compact: a compact network file's bytes.
        input_example: a few uint8 images (N, H, W, C) (e.g. the first five of the test split).
        name: the model's name in the run (``runs:/<run id>/<name>``; where two models of a
            run share a name, that URI gives the newest, ``models:/<model id>`` each one).
        tags: tags of the logged model (``method`` …), shown in the UI's model list.

    Returns:
        MLflow's ``ModelInfo`` (``model_uri``, ``model_id`` …).

    Raises:
        CompactFormatError: ``compact`` is not a readable compact file.
    """
    network = decode(compact, "the compact network to log")
    images = np.ascontiguousarray(np.asarray(input_example, dtype=np.uint8))
    with torch.no_grad():
        logits = network.module()(normalise_pixels(images, network.input)).numpy()
    signature = mlflow.models.infer_signature(images, logits)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "network.smnet"
        path.write_bytes(compact)
        return mlflow.pyfunc.log_model(
            name=name, python_model=str(MODEL_CODE), artifacts={ARTIFACT: str(path)}, signature=signature,
            input_example=images, pip_requirements=_requirements(), tags=dict(tags or {}),
        )
