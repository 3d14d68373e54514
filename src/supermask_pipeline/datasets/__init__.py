"""Custom Kedro datasets: raw image files and HDF5 train/val/test splits."""

from supermask_pipeline.datasets.hdf5_split import HDF5SplitDataset
from supermask_pipeline.datasets.raw_images import RawImageDataset

__all__ = ["HDF5SplitDataset", "RawImageDataset"]
