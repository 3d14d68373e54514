"""Splits as tensors: layout, dtypes and normalisations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from supermask_pipeline.data.splitting import ImageSplit
from supermask_pipeline.data.tensors import NORMALISATIONS, per_image_standardisation, split_to_tensors


def _split(num: int = 6, height: int = 5, width: int = 4, channels: int = 3, seed: int = 0) -> ImageSplit:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(num, height, width, channels), dtype=np.uint8)
    return ImageSplit(images=images, labels=np.arange(num, dtype=np.int64) % 10, attrs={})


def _reference_standardisation(images: np.ndarray) -> np.ndarray:
    """tf.image.per_image_standardization on pixel values scaled to [0, 1], in float64."""
    x = images.astype(np.float64) / 255.0
    flat = x.reshape(len(x), -1)
    floor = 1.0 / np.sqrt(flat.shape[1])
    std = np.maximum(flat.std(axis=1, keepdims=True), floor)
    return ((flat - flat.mean(axis=1, keepdims=True)) / std).reshape(x.shape)


@pytest.mark.parametrize("normalisation", NORMALISATIONS)
def test_layout_and_dtypes(normalisation):
    split = _split()
    images, labels = split_to_tensors(split, normalisation)
    assert images.shape == (6, 3, 5, 4) and images.dtype == torch.float32
    assert labels.shape == (6,) and labels.dtype == torch.int64
    assert images.is_contiguous()
    torch.testing.assert_close(labels, torch.from_numpy(split.labels))


def test_channels_first_and_scale_01():
    split = _split()
    images, _ = split_to_tensors(split, "scale_01")
    expected = torch.from_numpy(split.images.astype(np.float32) / 255.0).permute(0, 3, 1, 2)
    torch.testing.assert_close(images, expected)
    assert images[2, 1, 3, 0] == pytest.approx(split.images[2, 3, 0, 1] / 255.0)
    assert images.min() >= 0.0 and images.max() <= 1.0


def test_none_keeps_pixel_values():
    split = _split()
    images, _ = split_to_tensors(split, "none")
    torch.testing.assert_close(images.permute(0, 2, 3, 1), torch.from_numpy(split.images.astype(np.float32)))


def test_per_image_standardisation_mean_0_std_1():
    split = _split(num=20, height=28, width=28, channels=1)
    images, _ = split_to_tensors(split, "per_image_standardisation")
    flat = images.reshape(20, -1).double()
    zeros, ones = torch.zeros(20, dtype=torch.float64), torch.ones(20, dtype=torch.float64)
    torch.testing.assert_close(flat.mean(dim=1), zeros, atol=1e-5, rtol=0)
    torch.testing.assert_close(flat.std(dim=1, unbiased=False), ones, atol=1e-5, rtol=0)
    reference = torch.from_numpy(_reference_standardisation(split.images))
    torch.testing.assert_close(images.permute(0, 2, 3, 1).double(), reference, atol=1e-5, rtol=0)


def test_per_image_standardisation_constant_and_nearly_constant_images():
    images = np.full((3, 4, 4, 1), 128, dtype=np.uint8)
    images[0] = 0  # constant black
    images[2, 0, 0, 0] = 129  # std in [0, 1] units far below the floor 1/sqrt(16)
    split = ImageSplit(images=images, labels=np.zeros(3, np.int64), attrs={})
    result, _ = split_to_tensors(split, "per_image_standardisation")
    assert torch.isfinite(result).all()
    assert torch.equal(result[:2], torch.zeros_like(result[:2]))
    # The floor applies to [0, 1] pixel values: the deviation is (1/255)(1 - 1/16) * sqrt(16).
    assert result[2, 0, 0, 0].item() == pytest.approx((1 / 255) * (15 / 16) * 4, rel=1e-5)
    torch.testing.assert_close(result.permute(0, 2, 3, 1).double(),
                               torch.from_numpy(_reference_standardisation(images)), atol=1e-6, rtol=0)


def test_standardisation_statistics_span_all_channels():
    x = torch.tensor([0.0, 2.0, 0.0, 2.0]).reshape(1, 4, 1, 1)  # one image, 4 channels of 1 pixel
    expected = torch.tensor([-1.0, 1.0, -1.0, 1.0]).reshape(1, 4, 1, 1)
    torch.testing.assert_close(per_image_standardisation(x), expected)
    # 2 values: std 0.5 is under the floor 1/sqrt(2), which then divides.
    y = torch.tensor([0.0, 1.0]).reshape(1, 2, 1, 1)
    torch.testing.assert_close(per_image_standardisation(y).flatten(), torch.tensor([-0.5, 0.5]) * 2**0.5)


def test_labels_are_a_copy():
    split = _split()
    _, labels = split_to_tensors(split, "none")
    labels[0] = 99
    assert split.labels[0] == 0


def test_read_only_arrays_are_accepted_without_warning(recwarn):
    split = _split()
    split.images.flags.writeable = False
    images, _ = split_to_tensors(split, "scale_01")
    assert images.shape == (6, 3, 5, 4)
    assert not [w for w in recwarn if "not writable" in str(w.message)]


def test_unknown_normalisation_lists_choices():
    with pytest.raises(ValueError, match="per_image_standardisation, scale_01, none"):
        split_to_tensors(_split(), "zca")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    split = _split(num=8, height=28, width=28, channels=1)
    cpu, _ = split_to_tensors(split, "per_image_standardisation")
    gpu, labels = split_to_tensors(split, "per_image_standardisation", device="cuda")
    assert gpu.device.type == "cuda" and labels.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=0)
