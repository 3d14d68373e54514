"""Errors of the raw image sources: one base class, one subclass per way a raw file can fail.

Every function of :mod:`supermask_pipeline.images` that locates, verifies or parses raw
files raises a :class:`RawDataError`; its message names the file, what was expected and
what to do about it.
"""

from __future__ import annotations

__all__ = [
    "RawDataChecksumError",
    "RawDataCorruptError",
    "RawDataError",
    "RawDataNotFoundError",
]


class RawDataError(Exception):
    """Base class of every error raised while locating, verifying or parsing raw files."""


class RawDataNotFoundError(RawDataError):
    """Raw files are neither in the root folder nor could be downloaded."""


class RawDataChecksumError(RawDataError):
    """A raw file's decompressed content (or an archive as served) does not have the
    published checksum."""


class RawDataCorruptError(RawDataError):
    """A raw file cannot be read, decompressed (e.g. truncated gzip), extracted or parsed,
    or a pickled batch names a global other than the numpy ones an array needs."""
