"""Atomic saves for kedro-datasets file datasets (CSV, JSON, matplotlib figures).

:class:`AtomicSaveMixin` turns the ``save`` of any kedro-datasets file dataset (a
:class:`kedro.io.core.AbstractVersionedDataset` whose ``save`` writes to
``self._get_save_path()``) into write-beside, fsync, ``os.replace`` on the local file
system, through :func:`supermask_pipeline.atomic_write.atomic_path`: a crash or an error at any
moment leaves the previous file (or previous version) readable and no temporary file.

The classes work as the inner ``dataset:`` of kedro-mlflow's ``MlflowArtifactDataset``,
which logs the final file (never the temporary one) once the save has completed.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io.core import DatasetError
from kedro_datasets.json import JSONDataset
from kedro_datasets.matplotlib import MatplotlibDataset
from kedro_datasets.pandas import CSVDataset
from kedro_datasets.text import TextDataset
from matplotlib.figure import Figure

from supermask_pipeline.atomic_write import atomic_path

__all__ = ["AtomicCSVDataset", "AtomicJSONDataset", "AtomicMatplotlibDataset", "AtomicSaveMixin"]

_LOCAL_PROTOCOLS = ("file", "local")


class AtomicSaveMixin:
    """Make a kedro-datasets file dataset's ``save`` atomic on the local file system.

    Put it first among the bases: ``class AtomicCSVDataset(AtomicSaveMixin, CSVDataset)``.
    The wrapped dataset must write its whole file to ``self._get_save_path()`` in ``save``
    (true of kedro-datasets' single-file datasets).

    Saving resolves the real save path once (``super()._get_save_path()``, which picks the
    version folder of a versioned dataset and refuses an existing version), makes
    ``_get_save_path()`` return a hidden temporary sibling while the wrapped ``save`` runs,
    then fsyncs the temporary file and renames it onto the real path with ``os.replace``.
    On any failure the temporary file (and a version folder this save created) is removed
    and the previous file is left byte for byte as it was.

    Other protocols (``s3://``, ``gs://`` …) delegate to the wrapped ``save``: object stores
    replace whole objects, so readers never see half of one there either.

    Raises (from ``save``):
        DatasetError: the wrapped save failed (the message says why; the previous file is
            unchanged) or wrote nothing.
    """

    # The temporary path that _get_save_path() returns while a save is in progress.
    _atomic_tmp_path: PurePosixPath | None = None

    def _get_save_path(self) -> PurePosixPath:
        if self._atomic_tmp_path is not None:
            return self._atomic_tmp_path
        return super()._get_save_path()  # type: ignore[misc]

    def save(self, data: Any) -> None:
        """Save through the wrapped dataset, atomically on the local file system."""
        # The raw save of the wrapped class: its Kedro wrapper would reset the version
        # cache (a new timestamp) and check the load version before our rename.
        bound = super().save  # type: ignore[misc]
        raw = getattr(bound, "__wrapped__", None)
        inner_save = partial(raw, self) if raw is not None else bound
        if getattr(self, "_protocol", "file") not in _LOCAL_PROTOCOLS:
            inner_save(data)
            return

        target = Path(str(super()._get_save_path()))  # type: ignore[misc]  # resolved once
        created = _missing_folders(target.parent)
        try:
            with atomic_path(target) as tmp:
                self._atomic_tmp_path = PurePosixPath(tmp.as_posix())
                try:
                    inner_save(data)
                finally:
                    self._atomic_tmp_path = None
                if not tmp.is_file():
                    raise DatasetError(
                        f"{type(self).__name__} wrote nothing for {target}; the previous file, if any, is unchanged."
                    )
        except BaseException:
            for folder in created:  # deepest first; only folders this save made, if still empty
                try:
                    folder.rmdir()
                except OSError:
                    break
            raise


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and those of its ancestors that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


class AtomicCSVDataset(AtomicSaveMixin, CSVDataset):
    """A pandas DataFrame as a CSV file (``kedro_datasets.pandas.CSVDataset``), saved atomically.

    Same arguments as ``CSVDataset`` (``filepath``, ``load_args``, ``save_args``, ``version``,
    ``credentials``, ``fs_args``, ``metadata``); see :class:`AtomicSaveMixin` for the save.

    Example catalog entry (inside kedro-mlflow)::

        training_history:
          type: kedro_mlflow.io.artifacts.MlflowArtifactDataset
          dataset:
            type: supermask_pipeline.datasets.AtomicCSVDataset
            filepath: data/07_model_output/training_history.csv
    """


class AtomicJSONDataset(AtomicSaveMixin, JSONDataset):
    """JSON-serialisable data as a JSON file (``kedro_datasets.json.JSONDataset``), saved atomically.

    Same arguments as ``JSONDataset``; see :class:`AtomicSaveMixin` for the save.
    """


class AtomicMatplotlibDataset(AtomicSaveMixin, MatplotlibDataset):
    """One matplotlib Figure as an image file (``kedro_datasets.matplotlib.MatplotlibDataset``), saved atomically.

    Same arguments as ``MatplotlibDataset`` (``save_args`` go to ``Figure.savefig``, e.g.
    ``dpi``); the format follows the file extension. Only a single Figure: a list or dict of
    figures would be written as a folder of files, which cannot be replaced atomically.

    Raises (from ``save``):
        DatasetError: ``data`` is not a Figure, or the save failed (previous file unchanged).
    """

    def save(self, data: Figure) -> None:
        """Write the figure atomically (see :class:`AtomicSaveMixin`)."""
        if not isinstance(data, Figure):
            several = isinstance(data, list | dict)
            kind = "a list/dict of figures (a folder of files)" if several else type(data).__name__
            raise DatasetError(
                f"AtomicMatplotlibDataset({self._filepath}) saves one matplotlib Figure, got {kind}; "
                f"use one dataset per figure."
            )
        super().save(data)


class AtomicBinaryDataset(AtomicSaveMixin, TextDataset):
    """Bytes as a file (``kedro_datasets.text.TextDataset`` opened in binary mode), saved atomically:
    the compact network file and the ONNX file of the export.

    Same arguments as ``TextDataset``; ``fs_args`` default to ``open_args_load: {mode: rb}`` and
    ``open_args_save: {mode: wb}``. See :class:`AtomicSaveMixin` for the save.

    Raises (from ``save``):
        DatasetError: ``data`` is not bytes, or the save failed (previous file unchanged).
    """

    def __init__(self, *, filepath: str, fs_args: dict[str, Any] | None = None, **kwargs: Any) -> None:
        fs_args = {"open_args_load": {"mode": "rb"}, "open_args_save": {"mode": "wb"}, **(fs_args or {})}
        super().__init__(filepath=filepath, fs_args=fs_args, **kwargs)

    def save(self, data: bytes) -> None:
        """Write the bytes atomically (see :class:`AtomicSaveMixin`)."""
        if not isinstance(data, bytes | bytearray):
            raise DatasetError(f"AtomicBinaryDataset({self._filepath}) saves bytes, got {type(data).__name__}.")
        super().save(bytes(data))
