"""Raw image sources, train/val/test splitting and tensor loading (no Kedro imports).

- :mod:`.sources`: a source's verified train and test sets (:func:`load_raw_images`).
- :mod:`.specs`: the known sources (:data:`RAW_SOURCES`), parsed from dataset entries
  (:func:`dataset_from_config`; the published ones in :mod:`.published`, a project's own from
  ``conf/<env>/datasets.yml`` by :func:`configure_datasets`).
- :mod:`.formats`, :mod:`.idx`, :mod:`.cifar`: the file formats (idx, CIFAR python batches, npz, HDF5).
- :mod:`.download`, :mod:`.archive`: local lookup, checksums, download; archive extraction.
- :mod:`.errors`: what loading raises (:class:`RawDataError` and its subclasses).
- :mod:`.splitting`: Zhou et al. (2019) validation split (:func:`split_dataset`).
- :mod:`.normalisation`: splits as normalised tensors on a device (:func:`split_to_tensors`).
- :mod:`.augmentation`: batched, seeded augmentation on the device (:func:`random_crop_flip`).
"""

from supermask_pipeline.images.augmentation import AUGMENTATIONS, get_augmentation, random_crop_flip
from supermask_pipeline.images.cifar import parse_cifar_batch
from supermask_pipeline.images.errors import (
    RawDataChecksumError,
    RawDataCorruptError,
    RawDataError,
    RawDataNotFoundError,
)
from supermask_pipeline.images.idx import encode_idx, parse_idx
from supermask_pipeline.images.sources import (
    CHECKSUMS_FILE,
    RawImageData,
    check_raw_available,
    load_raw_images,
    missing_raw_files,
)
from supermask_pipeline.images.specs import (
    RAW_SOURCES,
    DatasetConfigError,
    RawArchiveSpec,
    RawFileSpec,
    RawSourceSpec,
    configure_datasets,
    dataset_from_config,
)
from supermask_pipeline.images.splitting import CONTENT_DIGEST, SPLIT_NAMES, ImageSplit, split_content_sha256, split_dataset
from supermask_pipeline.images.normalisation import (
    NORMALISATIONS,
    channel_statistics,
    per_image_standardisation,
    split_to_tensors,
)

__all__ = [
    "AUGMENTATIONS",
    "CHECKSUMS_FILE",
    "CONTENT_DIGEST",
    "DatasetConfigError",
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
    "channel_statistics",
    "check_raw_available",
    "configure_datasets",
    "dataset_from_config",
    "encode_idx",
    "get_augmentation",
    "load_raw_images",
    "missing_raw_files",
    "parse_cifar_batch",
    "parse_idx",
    "per_image_standardisation",
    "random_crop_flip",
    "split_content_sha256",
    "split_dataset",
    "split_to_tensors",
]
