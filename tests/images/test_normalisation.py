"""Splits as tensors: layout, dtypes and normalisations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from supermask_pipeline.images.splitting import ImageSplit
from supermask_pipeline.images.normalisation import (
    NORMALISATIONS,
    channel_statistics,
    per_image_standardisation,
    split_to_tensors,
)


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


# --- per-channel standardisation -------------------------------------------------------------

def _handmade_train() -> ImageSplit:
    """2 images of 2 x 2 pixels, 3 channels, with statistics of x / 255 known by hand:
    channel 0 alternates 0 / 255 (mean 0.5, std 0.5), channel 1 alternates 51 / 102
    (0.2 / 0.4: mean 0.3, std 0.1), channel 2 is 17 * k for k = 0..7 (k / 15: mean 3.5 / 15,
    std sqrt(5.25) / 15)."""
    pixels = np.stack(
        [np.tile([0, 255], 4), np.tile([51, 102], 4), 17 * np.arange(8)], axis=1
    ).astype(np.uint8)  # (8 pixels, 3 channels)
    return ImageSplit(images=pixels.reshape(2, 2, 2, 3), labels=np.array([0, 1], np.int64), attrs={})


HANDMADE_MEAN = np.array([0.5, 0.3, 3.5 / 15])
HANDMADE_STD = np.array([0.5, 0.1, np.sqrt(5.25) / 15])


def test_channel_statistics_handmade_and_against_numpy():
    mean, std = channel_statistics(_handmade_train())
    assert mean.dtype == np.float64 and std.dtype == np.float64 and mean.shape == std.shape == (3,)
    np.testing.assert_allclose(mean, HANDMADE_MEAN, rtol=1e-14, atol=0)
    np.testing.assert_allclose(std, HANDMADE_STD, rtol=1e-14, atol=0)
    split = _split(num=7, height=5, width=3, channels=4, seed=3)
    x = split.images.astype(np.float64) / 255.0
    mean, std = channel_statistics(split)
    np.testing.assert_allclose(mean, x.mean(axis=(0, 1, 2)), rtol=1e-12)
    np.testing.assert_allclose(std, x.std(axis=(0, 1, 2)), rtol=1e-12)


def test_per_channel_standardisation_of_train_has_mean_0_std_1():
    for split in (_handmade_train(), _split(num=9, height=6, width=5, channels=3, seed=1)):
        images, _ = split_to_tensors(split, "per_channel_standardisation")
        assert images.dtype == torch.float32 and images.shape[1] == 3
        per_channel = images.double().transpose(0, 1).reshape(3, -1)
        torch.testing.assert_close(per_channel.mean(dim=1), torch.zeros(3, dtype=torch.float64), atol=1e-6, rtol=0)
        torch.testing.assert_close(
            per_channel.std(dim=1, unbiased=False), torch.ones(3, dtype=torch.float64), atol=1e-6, rtol=0
        )
    # Own statistics are the default: reference=split gives the same tensor.
    train = _handmade_train()
    torch.testing.assert_close(
        split_to_tensors(train, "per_channel_standardisation")[0],
        split_to_tensors(train, "per_channel_standardisation", reference=train)[0],
        rtol=0, atol=0,
    )


def test_per_channel_standardisation_uses_the_reference_statistics():
    train = _handmade_train()
    val_pixels = np.zeros((2, 2, 2, 3), dtype=np.uint8)
    val_pixels[0, 0, 0] = [51, 255, 34]
    val_pixels[1, 1, 0] = [153, 0, 255]
    val = ImageSplit(images=val_pixels, labels=np.array([3, 4], np.int64), attrs={})
    images, labels = split_to_tensors(val, "per_channel_standardisation", reference=train)
    assert images.shape == (2, 3, 2, 2) and labels.tolist() == [3, 4]
    # By hand: channel 0 (0.2 - 0.5) / 0.5, channel 1 (1.0 - 0.3) / 0.1, channel 2 (2/15 - 3.5/15) / (sqrt(5.25)/15).
    assert images[0, :, 0, 0].tolist() == pytest.approx([-0.6, 7.0, -1.5 / np.sqrt(5.25)], rel=1e-6)
    # (0.6 - 0.5) / 0.5, (0 - 0.3) / 0.1, (15/15 - 3.5/15) / (sqrt(5.25)/15)
    assert images[1, :, 1, 0].tolist() == pytest.approx([0.2, -3.0, 11.5 / np.sqrt(5.25)], rel=1e-6)
    expected = (val_pixels / 255.0 - HANDMADE_MEAN) / HANDMADE_STD  # all pixels, float64
    torch.testing.assert_close(images.permute(0, 2, 3, 1).double(), torch.from_numpy(expected), atol=1e-5, rtol=1e-6)
    # Without a reference the split's own statistics are used, which differ here.
    own, _ = split_to_tensors(val, "per_channel_standardisation")
    assert not torch.allclose(own, images)


def test_per_channel_standardisation_constant_channel_is_only_centred():
    images = np.full((2, 3, 3, 2), 200, dtype=np.uint8)
    images[..., 1] = np.arange(18, dtype=np.uint8).reshape(2, 3, 3)
    split = ImageSplit(images=images, labels=np.zeros(2, np.int64), attrs={})
    assert channel_statistics(split)[1][0] == 0.0
    result, _ = split_to_tensors(split, "per_channel_standardisation")
    assert torch.isfinite(result).all()
    assert torch.equal(result[:, 0], torch.zeros_like(result[:, 0]))


def test_reference_with_other_channel_count_is_rejected():
    train = _split(channels=3)
    gray = _split(channels=1)
    with pytest.raises(ValueError, match="reference split has 3 channels but the split has 1"):
        split_to_tensors(gray, "per_channel_standardisation", reference=train)


def test_reference_is_ignored_by_other_normalisations():
    val, train = _split(seed=1), _split(seed=2)
    for normalisation in ("per_image_standardisation", "scale_01", "none"):
        torch.testing.assert_close(
            split_to_tensors(val, normalisation, reference=train)[0], split_to_tensors(val, normalisation)[0],
            rtol=0, atol=0,
        )


def test_unknown_normalisation_lists_per_channel_standardisation():
    with pytest.raises(ValueError, match="per_channel_standardisation"):
        split_to_tensors(_split(), "per_pixel")


def test_channel_statistics_of_empty_split_is_rejected():
    empty = ImageSplit(images=np.zeros((0, 2, 2, 3), np.uint8), labels=np.zeros(0, np.int64), attrs={})
    with pytest.raises(ValueError, match="empty"):
        channel_statistics(empty)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_per_channel_cuda_matches_cpu():
    train, val = _split(num=8, height=8, width=8, channels=3, seed=4), _split(seed=5)
    cpu, _ = split_to_tensors(val, "per_channel_standardisation", reference=train)
    gpu, _ = split_to_tensors(val, "per_channel_standardisation", device="cuda", reference=train)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=0)
