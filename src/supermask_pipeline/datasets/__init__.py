"""Custom Kedro datasets: raw image files, HDF5 train/val/test splits, safetensors layer
tensors, the training-checkpoint folder, and atomic-save versions of kedro-datasets' CSV, JSON and matplotlib datasets.

The atomic and safetensors classes are imported on first use (PEP 562): importing
``kedro_datasets.pandas`` pulls in every pandas dataset (BigQuery client included) and
costs seconds that the HDF5 and raw-image users need not pay.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from supermask_pipeline.datasets.hdf5_split import HDF5SplitDataset, SplitCorruptError
from supermask_pipeline.datasets.raw_images import RawImageDataset

if TYPE_CHECKING:
    from supermask_pipeline.datasets.atomic_files import (
        AtomicBinaryDataset,
        AtomicCSVDataset,
        AtomicJSONDataset,
        AtomicMatplotlibDataset,
        AtomicSaveMixin,
    )
    from supermask_pipeline.datasets.checkpoints import TrainingCheckpointsDataset
    from supermask_pipeline.datasets.safetensors_files import SafetensorsDataset

_LAZY = {
    "AtomicBinaryDataset": "atomic_files",
    "AtomicCSVDataset": "atomic_files",
    "AtomicJSONDataset": "atomic_files",
    "AtomicMatplotlibDataset": "atomic_files",
    "AtomicSaveMixin": "atomic_files",
    "SafetensorsDataset": "safetensors_files",
    "TrainingCheckpointsDataset": "checkpoints",
}

__all__ = [
    "AtomicBinaryDataset",
    "AtomicCSVDataset",
    "AtomicJSONDataset",
    "AtomicMatplotlibDataset",
    "AtomicSaveMixin",
    "HDF5SplitDataset",
    "RawImageDataset",
    "SafetensorsDataset",
    "SplitCorruptError",
    "TrainingCheckpointsDataset",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
