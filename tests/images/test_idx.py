"""The idx codec: round trip of every element type, MNIST's header, malformed files."""

from __future__ import annotations

import numpy as np
import pytest

from supermask_pipeline.images.errors import RawDataCorruptError
from supermask_pipeline.images.idx import encode_idx, parse_idx


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip(dtype):
    array = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4)
    parsed = parse_idx(encode_idx(array))
    assert parsed.dtype == np.dtype(dtype).newbyteorder("=")
    np.testing.assert_array_equal(parsed, array)


def test_idx_header_is_big_endian_with_mnist_magic():
    data = encode_idx(np.zeros((60000, 28, 28), dtype=np.uint8))
    assert data[:4] == bytes([0, 0, 0x08, 3])  # magic 2051 of train-images-idx3-ubyte
    assert int.from_bytes(data[4:8], "big") == 60000
    assert int.from_bytes(data[8:12], "big") == 28
    assert len(data) == 16 + 60000 * 28 * 28


def test_idx_rejects_bad_magic_and_wrong_size():
    good = encode_idx(np.zeros((3, 2), dtype=np.uint8))
    with pytest.raises(RawDataCorruptError, match="not an idx file"):
        parse_idx(b"\x01" + good[1:], "x-idx")
    with pytest.raises(RawDataCorruptError, match="unknown idx element type 0x07"):
        parse_idx(good[:2] + b"\x07" + good[3:], "x-idx")
    with pytest.raises(RawDataCorruptError, match=r"x-idx: header says shape \(3, 2\)"):
        parse_idx(good[:-1], "x-idx")
