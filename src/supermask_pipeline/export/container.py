"""The container of a compact network file: fixed prefix, JSON header, payload, SHA-256 trailer.

Layout (all integers little-endian)::

    offset  size  field
    0       5     magic b"SMNET"
    5       1     format version (uint8, :data:`FORMAT_VERSION`)
    6       4     header length H in bytes (uint32)
    10      4     payload length P in bytes (uint32)
    14      H     header: UTF-8 JSON (architecture, layer shapes and codecs, scales, seed …)
    14+H    P     payload: the layers' streams, in header order
    14+H+P  32    SHA-256 of bytes [0, 14+H+P)

Reading checks, in this order and before decoding anything: the magic, the version, that
the file is exactly 46 + H + P bytes, the checksum, then that the header is JSON.
"""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any

from supermask_pipeline.export.errors import (
    ChecksumError,
    CompactFormatError,
    FormatVersionError,
    NotACompactNetworkError,
    TruncatedFileError,
)

__all__ = ["FORMAT_VERSION", "MAGIC", "pack", "unpack", "PREFIX_BYTES", "TRAILER_BYTES"]

MAGIC = b"SMNET"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<5sBII")
PREFIX_BYTES = _PREFIX.size  # 14
TRAILER_BYTES = 32


def pack(header: dict[str, Any], payload: bytes) -> bytes:
    """The file's bytes for ``header`` (JSON-serialisable) and ``payload``."""
    text = json.dumps(header, separators=(",", ":"), sort_keys=False, allow_nan=False).encode("utf-8")
    body = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(text), len(payload)) + text + payload
    return body + hashlib.sha256(body).digest()


def unpack(data: bytes, source: str = "the file") -> tuple[dict[str, Any], bytes]:
    """(header, payload) of a file's bytes, verified.

    Args:
        data: the whole file.
        source: how to name the file in messages (its path).

    Raises:
        NotACompactNetworkError: no magic bytes.
        FormatVersionError: a version other than :data:`FORMAT_VERSION`.
        TruncatedFileError: fewer or more bytes than the prefix announces.
        ChecksumError: the SHA-256 trailer does not match (a flipped or edited byte).
        CompactFormatError: a header that is not a JSON object.
    """
    data = bytes(data)
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        if MAGIC.startswith(data[: len(MAGIC)]) and len(data) < PREFIX_BYTES + TRAILER_BYTES:
            raise TruncatedFileError(
                f"{source} is {len(data)} bytes, shorter than the {PREFIX_BYTES + TRAILER_BYTES} bytes of an empty "
                "compact network: it was cut off."
            )
        raise NotACompactNetworkError(
            f"{source} is not a compact network file: it starts with {data[:8]!r}, not {MAGIC!r}."
        )
    if len(data) < PREFIX_BYTES:
        raise TruncatedFileError(f"{source} is {len(data)} bytes: cut off inside its {PREFIX_BYTES}-byte prefix.")
    _, version, header_bytes, payload_bytes = _PREFIX.unpack_from(data)
    if version != FORMAT_VERSION:
        raise FormatVersionError(
            f"{source} has compact format version {version}; this reader knows version {FORMAT_VERSION}. "
            "Read it with the release of supermask_pipeline that wrote it, or export the network again."
        )
    expected = PREFIX_BYTES + header_bytes + payload_bytes + TRAILER_BYTES
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "followed by extra bytes"
        raise TruncatedFileError(
            f"{source} is {len(data)} bytes but its prefix announces {expected} "
            f"({header_bytes} of header, {payload_bytes} of payload): the file is {what}."
        )
    body, trailer = data[:-TRAILER_BYTES], data[-TRAILER_BYTES:]
    digest = hashlib.sha256(body).digest()
    if digest != trailer:
        raise ChecksumError(
            f"{source}: SHA-256 mismatch (stored {trailer.hex()[:16]}…, computed {digest.hex()[:16]}…): "
            "a byte of the file was changed. Nothing was loaded; export the network again."
        )
    try:
        header = json.loads(data[PREFIX_BYTES : PREFIX_BYTES + header_bytes].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CompactFormatError(f"{source}: the header is not UTF-8 JSON ({err}).") from None
    if not isinstance(header, dict):
        raise CompactFormatError(f"{source}: the header is a JSON {type(header).__name__}, not an object.")
    return header, data[PREFIX_BYTES + header_bytes : -TRAILER_BYTES]
