"""MLflow glue: the splits a run trained and was tested on, as MLflow dataset inputs.

The runs table's **Dataset** column (and a run's *Datasets used*) then shows e.g.
``mnist/train`` with the split's content checksum as digest, so two runs on different data
never look alike.
"""

from __future__ import annotations

import warnings

import mlflow
import mlflow.data

from supermask_pipeline.images import CONTENT_DIGEST, ImageSplit, split_content_sha256

__all__ = ["MLFLOW_DIGEST_LENGTH", "SPLIT_CONTEXTS", "log_split_inputs"]

#: MLflow context of each split (the tag ``mlflow.data.context``).
SPLIT_CONTEXTS = {"train": "train", "val": "validation", "test": "test"}
#: MLflow stores a dataset digest in 36 characters: the first 32 hex digits of the sha256 are logged.
MLFLOW_DIGEST_LENGTH = 32


def log_split_inputs(
    train: ImageSplit | None = None, val: ImageSplit | None = None, test: ImageSplit | None = None
) -> list[str]:
    """Log the given splits as dataset inputs of the active MLflow run; nothing without one.

    Each split is an ``mlflow.data.from_numpy`` dataset (features: the uint8 images (N, H, W, C),
    targets: the int64 labels (N,); MLflow records their shapes, not their values) named
    ``<source>/<split>`` (``mnist/train``), with digest the first 32 hex digits of the split's
    content sha256 (attribute ``content_sha256``, computed if absent), source the raw files'
    folder (attribute ``raw_root``) and context ``train``, ``validation`` or ``test``. The train
    node logs ``train`` and ``val``, the evaluate node ``test`` (each node sees only its splits).

    Returns:
        The names logged (empty without an active run).
    """
    if mlflow.active_run() is None:
        return []
    names = []
    for key, split in (("train", train), ("val", val), ("test", test)):
        if split is None:
            continue
        digest = split.attrs.get(CONTENT_DIGEST) or split_content_sha256(split.images, split.labels)
        name = f"{split.attrs.get('source', 'dataset')}/{key}"
        with warnings.catch_warnings():  # MLflow warns while it guesses the kind of a plain-path source
            warnings.simplefilter("ignore")
            dataset = mlflow.data.from_numpy(
                split.images, targets=split.labels, source=str(split.attrs.get("raw_root") or "unknown"),
                name=name, digest=str(digest)[:MLFLOW_DIGEST_LENGTH],
            )
        mlflow.log_input(dataset, context=SPLIT_CONTEXTS[key])
        names.append(name)
    return names
