"""Kedro dataset storing layer tensors (weights, mask scores, masks) as one safetensors file."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import safetensors.torch
import torch
from kedro.io.core import DatasetError, Version, get_filepath_str
from kedro_datasets_experimental.safetensors import SafetensorsDataset as _KedroSafetensorsDataset

from supermask_pipeline.datasets.atomic_files import AtomicSaveMixin
from supermask_pipeline.models.network import LayerTensors

__all__ = ["SafetensorsDataset"]


class _TorchSafetensorsFile(_KedroSafetensorsDataset):
    """Kedro's safetensors dataset whose ``save`` serialises in memory and writes the bytes
    to ``self._get_save_path()`` through fsspec (the upstream one writes to
    ``open_file.name``, a local path only); the atomic rename comes from the mixin."""

    def save(self, data: dict[str, torch.Tensor]) -> None:
        payload = safetensors.torch.save(data)
        with self._fs.open(get_filepath_str(self._get_save_path(), self._protocol), mode="wb") as handle:
            handle.write(payload)
        self._invalidate_cache()


class SafetensorsDataset(AtomicSaveMixin, _TorchSafetensorsFile):
    """Layer name → ``torch.Tensor`` in one safetensors file, written atomically, validated on load.

    Stores any tensor dtype safetensors knows (float32 weights and scores, int8 masks)
    with its shape; no pickle anywhere: loading parses the bytes with
    ``safetensors.torch.load``. Versioned like Kedro's file datasets (``versioned: true``
    in the catalog: ``<filepath>/<timestamp>/<name>``). Built on
    ``kedro_datasets_experimental.safetensors.SafetensorsDataset`` with the torch backend.

    Saving copies every tensor to a contiguous CPU tensor and writes the file through
    :class:`~supermask_pipeline.datasets.atomic_files.AtomicSaveMixin` (temporary file, fsync,
    ``os.replace``): a failure leaves the previous file unchanged.

    Loading checks that the file exists, is not empty, parses as safetensors, holds at
    least one tensor (unless ``allow_empty``) and that every floating tensor is finite;
    it returns a :class:`~supermask_pipeline.models.LayerTensors` whose ``source`` is the
    file, so that :func:`~supermask_pipeline.models.check_layer_tensors` names the file
    when the tensors do not fit the architecture (missing layer, wrong shape or dtype).

    Example catalog entry::

        "{namespace}.initial_weights":
          type: supermask_pipeline.datasets.SafetensorsDataset
          filepath: data/04_feature/{namespace}/initial_weights.safetensors
          versioned: true
    """

    def __init__(  # noqa: PLR0913
        self,
        *,
        filepath: str,
        version: Version | None = None,
        credentials: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        allow_empty: bool = False,
    ) -> None:
        """Create a dataset for ``filepath``.

        Args:
            filepath: path of the ``.safetensors`` file, optionally with an fsspec protocol
                (``s3://``; saves are atomic on the local file system only).
            version: Kedro version (set by the catalog for ``versioned: true``).
            credentials: for the fsspec file system.
            fs_args: fsspec file system arguments (``open_args_load``/``open_args_save``).
            metadata: free-form metadata, ignored by Kedro.
            allow_empty: accept a file with no tensors on load (the dense baseline has no
                mask scores); saving an empty mapping is always allowed.
        """
        super().__init__(
            filepath=filepath,
            backend="torch",
            version=version,
            credentials=credentials,
            fs_args=fs_args,
            metadata=metadata,
        )
        self._allow_empty = bool(allow_empty)

    def _describe(self) -> dict[str, Any]:
        return {
            "filepath": self._filepath,
            "protocol": self._protocol,
            "version": self._version,
            "allow_empty": self._allow_empty,
        }

    def load(self) -> LayerTensors:
        """Read and validate the tensors.

        Returns:
            :class:`LayerTensors` (a dict) name → CPU tensor with the stored dtype and
            shape; ``source`` is the file read.

        Raises:
            DatasetError: the file is missing or empty, is not a complete safetensors file
                (truncated or corrupt), holds no tensors, or a floating tensor holds NaN or
                infinite values (the message names the tensor and the counts).
        """
        path = get_filepath_str(self._get_load_path(), self._protocol)
        if not self._fs.exists(path):
            raise DatasetError(f"Safetensors file {path} does not exist. Run the pipeline that writes it.")
        with self._fs.open(path, mode="rb") as handle:
            payload = handle.read()
        if not payload:
            raise DatasetError(f"Safetensors file {path}: contents expected tensors, found an empty file (0 bytes).")
        try:
            tensors = safetensors.torch.load(payload)
        except Exception as exc:  # SafetensorError (rust) and whatever a corrupt header triggers
            raise DatasetError(
                f"Safetensors file {path} could not be read as safetensors (truncated or corrupt?): {exc}"
            ) from exc
        if not tensors and not self._allow_empty:
            raise DatasetError(f"Safetensors file {path}: contents expected at least one tensor, found none.")
        for key in sorted(tensors):
            problem = _non_finite(tensors[key])
            if problem:
                raise DatasetError(f"Safetensors file {path}: tensor {key!r} expected finite values, found {problem}.")
        return LayerTensors(tensors, source=path)

    def save(self, data: Mapping[str, torch.Tensor]) -> None:
        """Write the tensors atomically.

        Args:
            data: name → tensor (any device, any strided layout; written contiguous, from
                the CPU, with their dtype and shape).

        Raises:
            DatasetError: ``data`` is not a mapping of str to tensors, a tensor is sparse,
                a floating tensor holds NaN or infinite values, or writing failed (the
                previous file, if any, is then unchanged).
        """
        where = f"SafetensorsDataset({self._filepath})"
        if not isinstance(data, Mapping):
            raise DatasetError(f"{where} saves a dict of layer name → torch.Tensor, got {type(data).__name__}.")
        tensors: dict[str, torch.Tensor] = {}
        storages: set[int] = set()
        for key, value in data.items():
            if not isinstance(key, str):
                raise DatasetError(f"{where}: tensor names expected str, found {type(key).__name__} {key!r}.")
            if not isinstance(value, torch.Tensor):
                raise DatasetError(f"{where}: value of {key!r} expected a torch.Tensor, found {type(value).__name__}.")
            if value.layout != torch.strided:
                raise DatasetError(f"{where}: tensor {key!r} expected a dense (strided) tensor, found {value.layout}.")
            problem = _non_finite(value)
            if problem:
                raise DatasetError(f"{where}: tensor {key!r} expected finite values, found {problem}; not written.")
            tensor = value.detach().to("cpu").contiguous()
            # safetensors refuses tensors that share memory (views of one another): copy those.
            if tensor.numel() and tensor.untyped_storage().data_ptr() in storages:
                tensor = tensor.clone()
            storages.add(tensor.untyped_storage().data_ptr())
            tensors[key] = tensor
        super().save(tensors)


def _non_finite(tensor: torch.Tensor) -> str:
    """'' for a finite or non-floating tensor, else e.g. '3 NaN and 1 infinite value(s)'."""
    if not tensor.is_floating_point() or tensor.layout != torch.strided:
        return ""
    values = tensor if tensor.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64) else tensor.float()
    finite = torch.isfinite(values)
    if bool(finite.all()):
        return ""
    nan = int(torch.isnan(values).sum())
    inf = int(torch.isinf(values).sum())
    return f"{nan} NaN and {inf} infinite value(s) of {tensor.numel()}"
