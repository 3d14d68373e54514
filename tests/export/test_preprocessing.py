"""The pixels of a shipped network are normalised exactly as the training data path does it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from supermask_pipeline.export import InputSpec, normalise_pixels
from supermask_pipeline.images import ImageSplit, split_to_tensors
from supermask_pipeline.images.normalisation import NORMALISATIONS, channel_statistics


@pytest.mark.parametrize("normalisation", NORMALISATIONS)
@pytest.mark.parametrize("channels", [1, 3])
def test_normalise_pixels_is_split_to_tensors(normalisation, channels):
    rng = np.random.default_rng(channels)
    train = ImageSplit(rng.integers(0, 256, (20, 8, 8, channels), dtype=np.uint8), np.zeros(20, dtype=np.int64))
    test = ImageSplit(rng.integers(0, 256, (6, 8, 8, channels), dtype=np.uint8), np.zeros(6, dtype=np.int64))
    expected, _ = split_to_tensors(test, normalisation, reference=train)
    mean, std = channel_statistics(train)
    spec = InputSpec(normalisation, tuple(mean), tuple(std)) if normalisation == "per_channel_standardisation" \
        else InputSpec(normalisation)
    assert torch.equal(normalise_pixels(test.images, spec), expected)


def test_missing_statistics_and_bad_shapes_are_named():
    with pytest.raises(ValueError, match="needs 1 channel means"):
        normalise_pixels(np.zeros((2, 4, 4, 1), np.uint8), InputSpec("per_channel_standardisation"))
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        normalise_pixels(np.zeros((4, 4, 1), np.uint8), InputSpec())
