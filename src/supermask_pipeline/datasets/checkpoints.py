"""Kedro dataset handing a training node its checkpoint folder."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any, NoReturn

from kedro.io.core import AbstractDataset, DatasetError

from supermask_pipeline.training.checkpoint import CheckpointStore

__all__ = ["TrainingCheckpointsDataset"]


class TrainingCheckpointsDataset(AbstractDataset[None, CheckpointStore]):
    """The checkpoint folder of one training node, as a :class:`CheckpointStore`.

    Loading reads nothing: it returns a handle on ``path`` through which the training
    engine writes and finds its checkpoints while the node runs (Kedro saves outputs only
    when a node returns, which is too late for a run that dies after hours). Keeping the
    folder in the catalog lets ``conf/local/catalog.yml`` move it, e.g. to a scratch disk.
    The folder may be deleted at any time to force fresh runs.

    Example catalog entry::

        "{namespace}.training_checkpoints":
          type: supermask_pipeline.datasets.TrainingCheckpointsDataset
          path: data/06_models/{namespace}/checkpoints

    Args:
        path: folder of the checkpoints (created on the first save).
        keep: regular checkpoints kept per run fingerprint (≥ 1; the newest).
        metadata: free-form, ignored by Kedro.

    Raises:
        DatasetError: on save (checkpoints are written by the engine, not by Kedro), or
            ``keep`` < 1.
    """

    def __init__(self, path: str, keep: int = 1, metadata: dict[str, Any] | None = None) -> None:
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise DatasetError(f"TrainingCheckpointsDataset({path}) keep must be an integer ≥ 1, got {keep!r}.")
        self._path = Path(path).expanduser()
        self._keep = keep
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"path": str(PurePosixPath(self._path)), "keep": self._keep}

    def load(self) -> CheckpointStore:
        """A handle on the folder (nothing is read or created)."""
        return CheckpointStore(self._path, keep=self._keep)

    def save(self, data: None) -> NoReturn:
        """Not supported: the training engine writes checkpoints itself."""
        raise DatasetError(
            f"TrainingCheckpointsDataset({self._path}) is read-only for Kedro; the training engine writes checkpoints."
        )

    def _exists(self) -> bool:
        return True
