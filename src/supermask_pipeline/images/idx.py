"""The idx file format of MNIST (LeCun et al., http://yann.lecun.com/exdb/mnist/): parse, encode.

An idx file is a 4-byte magic number ``0x00 0x00 <type> <ndim>``, ``ndim`` big-endian
uint32 dimension sizes, then the elements in C order, big-endian. :func:`parse_idx` reads
the decompressed bytes of one file; :func:`encode_idx` is its inverse (used to write
test sources in the official format).
"""

from __future__ import annotations

import numpy as np

from supermask_pipeline.images.errors import RawDataCorruptError

__all__ = ["encode_idx", "parse_idx"]

# Third byte of the magic number -> element type; all multi-byte values are big-endian.
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def parse_idx(data: bytes | bytearray, name: str = "<idx>") -> np.ndarray:
    """Parse the bytes of one idx file into an array.

    Format (LeCun et al., MNIST database): a 4-byte magic number ``0x00 0x00
    <type> <ndim>``, then ``ndim`` big-endian uint32 dimension sizes, then the
    elements in C order. Type 0x08 is unsigned byte (images and labels of MNIST).

    Args:
        data: the decompressed file content.
        name: file name used in error messages.

    Returns:
        Array of shape given by the header, native byte order; for type 0x08 a
        uint8 view on ``data`` (writable if ``data`` is a bytearray).

    Raises:
        RawDataCorruptError: bad magic number, unknown type, or a size that does
            not match the header.
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise RawDataCorruptError(
            f"{name}: not an idx file (expected magic number 0x0000<type><ndim>, "
            f"found {bytes(data[:4]).hex() or 'an empty file'})."
        )
    type_code, ndim = data[2], data[3]
    if type_code not in _IDX_DTYPES:
        raise RawDataCorruptError(
            f"{name}: unknown idx element type 0x{type_code:02x} "
            f"(known: {', '.join(f'0x{c:02x}' for c in _IDX_DTYPES)})."
        )
    header_bytes = 4 + 4 * ndim
    if len(data) < header_bytes:
        raise RawDataCorruptError(
            f"{name}: header of {ndim} dimensions needs {header_bytes} bytes, file has {len(data)}."
        )
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[type_code]
    expected = header_bytes + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise RawDataCorruptError(
            f"{name}: header says shape {shape} of {dtype} ({expected} bytes in all), "
            f"file has {len(data)} bytes."
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_bytes).reshape(shape)
    return array if dtype.byteorder in ("=", "|") else array.astype(dtype.newbyteorder("="))


def encode_idx(array: np.ndarray) -> bytes:
    """Encode an array as an idx file (inverse of :func:`parse_idx`).

    Args:
        array: any shape (at most 255 dimensions) of dtype uint8, int8, int16,
            int32, float32 or float64.

    Returns:
        The idx bytes (magic number, big-endian uint32 dimensions, big-endian data).

    Raises:
        ValueError: unsupported dtype or too many dimensions.
    """
    array = np.asarray(array)
    for code, dtype in _IDX_DTYPES.items():
        if array.dtype.kind == dtype.kind and array.dtype.itemsize == dtype.itemsize:
            break
    else:
        raise ValueError(f"idx cannot store dtype {array.dtype}.")
    if array.ndim > 255:
        raise ValueError(f"idx stores at most 255 dimensions, got {array.ndim}.")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array, dtype=dtype).tobytes()
