"""Lossless codes for the kept positions of a mask: Golomb-coded gaps and LZMA-compressed varint gaps.

A layer's kept positions (flat, row-major indices of the weight tensor) are coded as the
gaps between them: ``g_i = p_i − p_{i−1} − 1`` with ``p_{−1} = −1``. For a mask drawn
uniformly among the masks of its size the gaps are nearly geometric, and the Golomb code
with the best parameter m is the optimal prefix code of a geometric distribution
(Golomb 1966; Gallager & van Voorhis 1975); its cost is within a few percent of
log2 C(n, k). Masks found by training are not uniform (whole units pruned, receptive
fields of neighbouring pixels kept together), and a general-purpose compressor of the gap
sequence (LEB128 varints, raw LZMA2) exploits that; :func:`encode_positions` keeps the
shorter of the two per layer, and the header says which.

Both codes are vectorised with numpy (no per-gap Python loop), so a conv net's millions of
positions code in well under a second.

Golomb layout (one bit stream, MSB first, zero-padded to a byte): all K unary quotients
(q ones then a zero each), then the K truncated-binary prefixes of b − 1 bits, then one
extra bit for each prefix ≥ u, where b = ceil(log2 m) and u = 2^b − m. The prefix of a
remainder r is r when r < u, else (r + u) >> 1; its extra bit is (r + u) & 1. This is the
truncated binary code of r split into three runs, so its length is exactly that of the
textbook Golomb code, and every run decodes with array operations.
"""

from __future__ import annotations

import lzma
import math

import numpy as np

from supermask_pipeline.export.errors import CorruptPayloadError

__all__ = [
    "CODECS",
    "decode_golomb",
    "decode_lzma_varints",
    "encode_golomb",
    "encode_lzma_varints",
    "encode_positions",
    "decode_positions",
    "gaps_from_positions",
    "golomb_cost",
    "log2_binomial",
    "positions_from_gaps",
]

#: Position codecs, as named in the header.
CODECS = ("golomb", "lzma")
#: Raw LZMA2 stream (no .xz container: its 60 bytes of framing would cost more than a small layer).
LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]


def log2_binomial(n: int, k: int) -> float:
    """log2 C(n, k) in bits (0 for k in {0, n}): the information in the choice of k of n positions."""
    if not 0 <= k <= n:
        raise ValueError(f"log2_binomial needs 0 ≤ k ≤ n, got n={n}, k={k}.")
    return (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)) / math.log(2)


def gaps_from_positions(positions: np.ndarray) -> np.ndarray:
    """Strictly increasing flat indices (int64) → gaps ``p_i − p_{i−1} − 1`` (int64 ≥ 0)."""
    positions = np.asarray(positions, dtype=np.int64)
    return np.diff(positions, prepend=-1) - 1


def positions_from_gaps(gaps: np.ndarray) -> np.ndarray:
    """The inverse of :func:`gaps_from_positions`."""
    return np.cumsum(np.asarray(gaps, dtype=np.int64) + 1) - 1


def _bits_of(values: np.ndarray, width: int) -> np.ndarray:
    """(K,) int64 → (K·width,) uint8 bits, MSB first per value."""
    if width == 0 or values.size == 0:
        return np.zeros(0, dtype=np.uint8)
    shifts = np.arange(width - 1, -1, -1, dtype=np.int64)
    return ((values[:, None] >> shifts) & 1).astype(np.uint8).ravel()


def _values_of(bits: np.ndarray, width: int, count: int) -> np.ndarray:
    """(count·width,) bits → (count,) int64, MSB first."""
    if width == 0:
        return np.zeros(count, dtype=np.int64)
    weights = np.int64(1) << np.arange(width - 1, -1, -1, dtype=np.int64)
    return bits.reshape(-1, width).astype(np.int64) @ weights


def _golomb_split(gaps: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Quotients, truncated-binary prefixes, extra-bit flags/values and the prefix width b − 1."""
    q, r = np.divmod(gaps, m)
    b = max(0, math.ceil(math.log2(m))) if m > 1 else 0
    if b == 0:
        return q, np.zeros_like(r), np.zeros(0, dtype=np.int64), 0
    u = (1 << b) - m
    long = r >= u
    shifted = r + u
    prefix = np.where(long, shifted >> 1, r)
    extras = (shifted[long] & 1).astype(np.int64)
    return q, prefix, extras, b - 1


def golomb_cost(gaps: np.ndarray, m: int) -> int:
    """Bits of the Golomb code of ``gaps`` with parameter ``m`` ≥ 1 (before byte padding)."""
    q, _, extras, width = _golomb_split(np.asarray(gaps, dtype=np.int64), m)
    return int(q.sum()) + q.size + q.size * width + extras.size


def best_golomb_parameter(gaps: np.ndarray) -> int:
    """The m ≥ 1 that minimises :func:`golomb_cost` (exact search around the geometric optimum)."""
    gaps = np.asarray(gaps, dtype=np.int64)
    if gaps.size == 0:
        return 1
    mean = float(gaps.mean())
    if mean <= 0:
        return 1
    # Geometric optimum m ≈ ln 2 · mean for a sparse mask; search a generous window around it,
    # on a geometric grid first, then every m near the best grid point.
    guess = max(1, round(math.log(2) * (mean + 1)))
    grid = sorted({max(1, round(guess * 2 ** (e / 8))) for e in range(-24, 25)} | {1, 2})
    best = min(grid, key=lambda m: (golomb_cost(gaps, m), m))
    low, high = max(1, round(best / 1.1) - 1), round(best * 1.1) + 2
    return min(range(low, high + 1), key=lambda m: (golomb_cost(gaps, m), m))


def encode_golomb(gaps: np.ndarray, m: int) -> bytes:
    """The Golomb code of ``gaps`` (int ≥ 0) with parameter ``m`` (layout: module docstring)."""
    gaps = np.asarray(gaps, dtype=np.int64)
    q, prefix, extras, width = _golomb_split(gaps, m)
    unary = np.ones(int(q.sum()) + q.size, dtype=np.uint8)
    unary[np.cumsum(q + 1) - 1] = 0
    bits = np.concatenate([unary, _bits_of(prefix, width), extras.astype(np.uint8)])
    return np.packbits(bits).tobytes()


def decode_golomb(data: bytes, count: int, m: int) -> np.ndarray:
    """``count`` gaps from their Golomb code with parameter ``m``.

    Raises:
        CorruptPayloadError: the stream ends before ``count`` codes.
    """
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    stops = np.flatnonzero(bits == 0)
    if stops.size < count:
        raise CorruptPayloadError(f"Golomb stream ends after {stops.size} of {count} codes.")
    stops = stops[:count]
    q = np.diff(stops, prepend=-1) - 1
    at = int(stops[-1]) + 1
    b = max(0, math.ceil(math.log2(m))) if m > 1 else 0
    if b == 0:
        return q
    width, u = b - 1, (1 << b) - m
    prefix_bits = bits[at : at + count * width]
    if prefix_bits.size < count * width:
        raise CorruptPayloadError("Golomb stream ends inside the remainders.")
    prefix = _values_of(prefix_bits, width, count)
    at += count * width
    long = prefix >= u
    extras = bits[at : at + int(long.sum())].astype(np.int64)
    if extras.size < int(long.sum()):
        raise CorruptPayloadError("Golomb stream ends inside the remainders' extra bits.")
    r = prefix.copy()
    r[long] = (prefix[long] << 1) + extras - u
    return q * m + r


def _varints(values: np.ndarray) -> bytes:
    """LEB128 (7 bits a byte, high bit set on all but the last byte of a value), vectorised."""
    values = np.asarray(values, dtype=np.uint64)
    if values.size == 0:
        return b""
    lengths = np.ones(values.size, dtype=np.int64)
    for j in range(1, 10):
        lengths += values >= (np.uint64(1) << np.uint64(7 * j))
    starts = np.cumsum(lengths) - lengths
    out = np.zeros(int(lengths.sum()), dtype=np.uint8)
    for j in range(int(lengths.max())):
        has = lengths > j
        chunk = ((values[has] >> np.uint64(7 * j)) & np.uint64(0x7F)).astype(np.uint8)
        out[starts[has] + j] = chunk | np.where(lengths[has] > j + 1, 0x80, 0).astype(np.uint8)
    return out.tobytes()


def _from_varints(data: bytes, count: int) -> np.ndarray:
    raw = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(raw < 0x80)
    if ends.size != count or (count and ends[-1] != raw.size - 1):
        raise CorruptPayloadError(f"The varint stream holds {ends.size} values, expected {count}.")
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.concatenate([[0], ends[:-1] + 1])
    index_in_value = np.arange(raw.size) - np.repeat(starts, ends - starts + 1)
    parts = (raw & 0x7F).astype(np.uint64) << (np.uint64(7) * index_in_value.astype(np.uint64))
    return np.add.reduceat(parts, starts).astype(np.int64)  # the 7-bit groups do not overlap: sum = or


def encode_lzma_varints(gaps: np.ndarray) -> bytes:
    """``gaps`` as LEB128 varints, compressed with raw LZMA2 (:data:`LZMA_FILTERS`)."""
    return lzma.compress(_varints(gaps), format=lzma.FORMAT_RAW, filters=LZMA_FILTERS)


def decode_lzma_varints(data: bytes, count: int) -> np.ndarray:
    """``count`` gaps from :func:`encode_lzma_varints`.

    Raises:
        CorruptPayloadError: not an LZMA2 stream of ``count`` varints.
    """
    try:
        raw = lzma.decompress(data, format=lzma.FORMAT_RAW, filters=LZMA_FILTERS)
    except lzma.LZMAError as err:
        raise CorruptPayloadError(f"The LZMA2 stream of the positions does not decompress ({err}).") from None
    return _from_varints(raw, count)


def encode_positions(positions: np.ndarray) -> tuple[str, dict, bytes]:
    """The shorter code of ``positions`` (strictly increasing flat indices).

    Returns:
        (codec name, its parameters for the header (``{"m": …}`` for Golomb), the bytes).
    """
    gaps = gaps_from_positions(positions)
    m = best_golomb_parameter(gaps)
    golomb = encode_golomb(gaps, m)
    packed = encode_lzma_varints(gaps) if gaps.size else b""
    if gaps.size and len(packed) < len(golomb):
        return "lzma", {}, packed
    return "golomb", {"m": m}, golomb


def decode_positions(codec: str, parameters: dict, data: bytes, count: int, size: int) -> np.ndarray:
    """Flat indices (int64, strictly increasing, < ``size``) from :func:`encode_positions`' output.

    Raises:
        CorruptPayloadError: an unknown codec, a stream that does not decode to ``count``
            positions, or a position outside the layer.
    """
    if codec == "golomb":
        m = parameters.get("m")
        if not isinstance(m, int) or m < 1:
            raise CorruptPayloadError(f"Golomb parameter m must be an integer ≥ 1, got {m!r}.")
        gaps = decode_golomb(data, count, m)
    elif codec == "lzma":
        gaps = decode_lzma_varints(data, count) if count else np.zeros(0, dtype=np.int64)
    else:
        raise CorruptPayloadError(f"Unknown position codec {codec!r}; known: {', '.join(CODECS)}.")
    positions = positions_from_gaps(gaps)
    if count and (positions[-1] >= size or positions[0] < 0):
        raise CorruptPayloadError(f"A kept position ({int(positions[-1])}) lies outside the layer of {size} weights.")
    return positions
