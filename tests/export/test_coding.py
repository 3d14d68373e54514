"""Position codes: exact round trips, and sizes against log2 C(n, k) on masks without structure."""

from __future__ import annotations

import numpy as np
import pytest

from supermask_pipeline.export import CorruptPayloadError, coding


@pytest.mark.parametrize("m", [1, 2, 3, 5, 7, 8, 13, 64, 1000])
def test_golomb_round_trip_for_every_parameter(m):
    rng = np.random.default_rng(m)
    gaps = np.concatenate([[0, 1, m - 1, m, m + 1, 5 * m], rng.geometric(0.05, size=500) - 1])
    data = coding.encode_golomb(gaps, m)
    np.testing.assert_array_equal(coding.decode_golomb(data, gaps.size, m), gaps)
    assert len(data) == -(-coding.golomb_cost(gaps, m) // 8)  # the cost formula is the stream's length


def test_varints_with_lzma_round_trip_large_values():
    gaps = np.array([0, 1, 127, 128, 16383, 16384, 2**40, 3, 0, 0])
    np.testing.assert_array_equal(coding.decode_lzma_varints(coding.encode_lzma_varints(gaps), gaps.size), gaps)


@pytest.mark.parametrize("density", [0.002, 0.034, 0.2, 0.5])
def test_golomb_size_on_uniform_masks_is_near_the_entropy_bound(density):
    n = 200_000
    rng = np.random.default_rng(7)
    positions = np.flatnonzero(rng.random(n) < density)
    codec, parameters, data = coding.encode_positions(positions)
    bound = coding.log2_binomial(n, positions.size) / 8
    assert bound <= len(data) <= 1.03 * bound + 2, (codec, len(data), bound)  # within 3 % of log2 C(n, k)
    np.testing.assert_array_equal(coding.decode_positions(codec, parameters, data, positions.size, n), positions)


def test_structured_masks_take_the_shorter_code():
    """A mask of whole kept blocks (like a unit's receptive field) is far below the uniform bound:
    LZMA of the gaps wins, and the header says so."""
    mask = np.zeros((300, 784), dtype=bool)
    mask[::4, 200:260] = True
    positions = np.flatnonzero(mask)
    codec, parameters, data = coding.encode_positions(positions)
    golomb = coding.encode_golomb(coding.gaps_from_positions(positions), coding.best_golomb_parameter(
        coding.gaps_from_positions(positions)))
    assert codec == "lzma" and len(data) < len(golomb) and len(data) < coding.log2_binomial(mask.size, positions.size) / 8
    np.testing.assert_array_equal(coding.decode_positions(codec, parameters, data, positions.size, mask.size), positions)


def test_empty_and_single_positions():
    for positions in (np.zeros(0, dtype=np.int64), np.array([0]), np.array([999])):
        codec, parameters, data = coding.encode_positions(positions)
        np.testing.assert_array_equal(coding.decode_positions(codec, parameters, data, positions.size, 1000), positions)


def test_a_short_or_unknown_stream_is_refused():
    gaps = np.array([3, 9, 27])
    data = coding.encode_golomb(gaps, 4)
    with pytest.raises(CorruptPayloadError, match="ends after"):
        coding.decode_golomb(data[:0], 3, 4)
    with pytest.raises(CorruptPayloadError, match="Unknown position codec 'zip'"):
        coding.decode_positions("zip", {}, data, 3, 100)
    with pytest.raises(CorruptPayloadError, match="outside the layer"):
        coding.decode_positions("golomb", {"m": 4}, data, 3, 30)
    with pytest.raises(CorruptPayloadError, match="does not decompress"):
        coding.decode_lzma_varints(b"\xffgarbage", 3)
