"""Nodes of the data_processing pipeline."""

from __future__ import annotations

from typing import Any

from supermask_pipeline.images import ImageSplit, RawImageData, split_dataset


def split_raw_images(raw_images: RawImageData, params: dict[str, Any]) -> tuple[ImageSplit, ImageSplit, ImageSplit]:
    """Split the official training set into train and validation (Zhou et al. 2019), keep the test set.

    Args:
        raw_images: the verified official files (``raw_images`` catalog entry).
        params: ``num_val`` (images drawn for validation, 5,000) and ``split_seed``.

    Returns:
        (train, val, test) splits; MNIST gives 55,000 / 5,000 / 10,000 images.
    """
    return split_dataset(raw_images, num_val=int(params["num_val"]), seed=int(params["split_seed"]))
