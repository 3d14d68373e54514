"""Errors of the compact network format: each says what is wrong with which file.

All derive from :class:`CompactFormatError` (a ``ValueError``), so a caller can catch one
class; the subclasses name the cause. Reading checks the magic, the format version, the
lengths and the checksum before decoding anything, so none of them leaves a half-loaded
network behind.
"""

from __future__ import annotations

__all__ = [
    "ChecksumError",
    "CompactFormatError",
    "CorruptPayloadError",
    "FormatVersionError",
    "NotACompactNetworkError",
    "RegeneratedWeightsError",
    "TruncatedFileError",
]


class CompactFormatError(ValueError):
    """A compact network file that cannot be read; the message names the file and the cause."""


class NotACompactNetworkError(CompactFormatError):
    """The file does not start with the format's magic bytes (another kind of file)."""


class FormatVersionError(CompactFormatError):
    """The file's format version is not one this reader knows."""


class TruncatedFileError(CompactFormatError):
    """The file is shorter (or longer) than its header says: cut off while copying or writing."""


class ChecksumError(CompactFormatError):
    """The file's SHA-256 does not match its trailer: a flipped or edited byte."""


class CorruptPayloadError(CompactFormatError):
    """The checksum matched but a stream does not decode as its header says (a writer bug, or a
    file edited and re-checksummed)."""


class RegeneratedWeightsError(CompactFormatError):
    """The initial weights regenerated from the recorded seed differ from the exported ones
    (another random-number generator, e.g. a torch release that changed it)."""
