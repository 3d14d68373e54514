"""Raw image sources, train/val/test splitting and tensor loading (no Kedro imports).

- :mod:`.sources`: official files, checksums, download and parsing (:func:`load_raw_images`).
- :mod:`.splitting`: Zhou et al. (2019) validation split (:func:`split_dataset`).
- :mod:`.tensors`: splits as normalised tensors on a device (:func:`split_to_tensors`).
"""

from supermask_pipeline.data.sources import (
    RAW_SOURCES,
    RawArchiveSpec,
    RawDataChecksumError,
    RawDataCorruptError,
    RawDataError,
    RawDataNotFoundError,
    RawFileSpec,
    RawImageData,
    RawSourceSpec,
    encode_idx,
    load_raw_images,
    missing_raw_files,
    parse_cifar_batch,
    parse_idx,
)
from supermask_pipeline.data.splitting import SPLIT_NAMES, ImageSplit, split_dataset
from supermask_pipeline.data.tensors import (
    NORMALISATIONS,
    per_image_standardisation,
    split_to_tensors,
)

__all__ = [
    "NORMALISATIONS",
    "RAW_SOURCES",
    "SPLIT_NAMES",
    "ImageSplit",
    "RawArchiveSpec",
    "RawDataChecksumError",
    "RawDataCorruptError",
    "RawDataError",
    "RawDataNotFoundError",
    "RawFileSpec",
    "RawImageData",
    "RawSourceSpec",
    "encode_idx",
    "load_raw_images",
    "missing_raw_files",
    "parse_cifar_batch",
    "parse_idx",
    "per_image_standardisation",
    "split_dataset",
    "split_to_tensors",
]
