"""MLflow glue: the splits a run trained and was tested on, as MLflow dataset inputs.

The runs table's **Dataset** column (and a run's *Datasets used*) then shows e.g.
``mnist/train`` with the split's content checksum as digest, so two runs on different data
never look alike.
"""

from __future__ import annotations

import random
import time
import warnings

import mlflow
import mlflow.data
from mlflow.exceptions import MlflowException

from supermask_pipeline.images import CONTENT_DIGEST, ImageSplit, split_content_sha256

__all__ = ["LOG_INPUT_ATTEMPTS", "MLFLOW_DIGEST_LENGTH", "SPLIT_CONTEXTS", "log_split_inputs"]

#: MLflow context of each split (the tag ``mlflow.data.context``).
SPLIT_CONTEXTS = {"train": "train", "val": "validation", "test": "test"}
#: MLflow stores a dataset digest in 36 characters: the first 32 hex digits of the sha256 are logged.
MLFLOW_DIGEST_LENGTH = 32
#: Attempts of one ``log_inputs`` call that lost the race to create a dataset row (see below).
LOG_INPUT_ATTEMPTS = 5
#: Words of the tracking store's error when two runs created the same dataset row at once.
_UNIQUE_VIOLATION = ("integrityerror", "uniqueviolation", "unique constraint", "duplicate key")


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
    names, datasets, contexts = [], [], []
    for key, split in (("train", train), ("val", val), ("test", test)):
        if split is None:
            continue
        digest = split.attrs.get(CONTENT_DIGEST) or split_content_sha256(split.images, split.labels)
        name = f"{split.attrs.get('source', 'dataset')}/{key}"
        with warnings.catch_warnings():  # MLflow warns while it guesses the kind of a plain-path source
            warnings.simplefilter("ignore")
            datasets.append(mlflow.data.from_numpy(
                split.images, targets=split.labels, source=str(split.attrs.get("raw_root") or "unknown"),
                name=name, digest=str(digest)[:MLFLOW_DIGEST_LENGTH],
            ))
        contexts.append(SPLIT_CONTEXTS[key])
        names.append(name)
    if datasets:
        _log_inputs_retrying(datasets, contexts)
    return names


def _log_inputs_retrying(datasets: list, contexts: list[str]) -> None:
    """``mlflow.log_inputs``, again after a lost race to create the experiment's dataset row.

    A dataset is one row per (experiment, name, digest), shared by every run that used it. The
    tracking store looks the row up and inserts it when missing, in one transaction: two grid
    points starting at once on a shared server (Ray workers, one PostgreSQL) can both miss it,
    and the second insert fails on the unique key (SQLAlchemy's IntegrityError). That transaction
    wrote nothing, and the row now exists, so the same call succeeds when repeated. Any other
    error, and the last attempt's, is raised unchanged.

    Raises:
        MlflowException: the tracking store refused the inputs for another reason, or
            ``LOG_INPUT_ATTEMPTS`` attempts all lost the race.
    """
    for attempt in range(1, LOG_INPUT_ATTEMPTS + 1):
        try:
            mlflow.log_inputs(datasets=datasets, contexts=contexts, tags_list=[None] * len(datasets))
            return
        except MlflowException as error:
            if attempt == LOG_INPUT_ATTEMPTS or not any(word in str(error).lower() for word in _UNIQUE_VIOLATION):
                raise
            time.sleep(random.uniform(0.05, 0.25) * attempt)  # noqa: S311 - jitter, not cryptography
