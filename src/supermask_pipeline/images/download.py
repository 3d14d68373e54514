"""Raw files on disk: local lookup, checksum verification and verified download.

Helpers of :func:`~supermask_pipeline.images.sources.load_raw_images` (the package
re-exports none of them):

- :func:`find_raw_file`: the local copy of an official file (``<name>`` or ``<name>.gz``);
- :func:`read_verified`: its decompressed bytes, checked against the published sha256
  (or md5 where only that is published), hashed as they stream;
- :func:`verify_archive`: an archive's md5 as served;
- :func:`download_verified`, :func:`download_raw_file`: each mirror in turn, into a
  private temporary folder, renamed under the official name only once verified.

torchvision is imported only when a download is attempted (:func:`_download_url`).
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

from supermask_pipeline.images.errors import RawDataChecksumError, RawDataCorruptError
from supermask_pipeline.images.specs import RawArchiveSpec, RawFileSpec, RawSourceSpec

__all__ = [
    "download_raw_file",
    "download_verified",
    "find_raw_file",
    "read_verified",
    "verify_archive",
]

_CHUNK_BYTES = 1 << 20


def find_raw_file(folder: Path, file: RawFileSpec) -> Path | None:
    """The local copy of ``file`` in ``folder``: uncompressed name first, then ``.gz``.

    Args:
        folder: where to look (a source's root, or its archive folder).
        file: the official file; ``<name>``, ``<name>.gz`` and its ``download_name``
            are tried in that order.

    Returns:
        The first of those that is a file, or None. Presence only; the content is
        verified by :func:`read_verified`.
    """
    candidates = [folder / file.name, folder / f"{file.name}.gz"]
    if file.download_name:
        candidates.append(folder / file.download_name)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None


#: ``diagnose(content) -> (well_formed, description)``: whether a file whose checksum differs
#: still parses as a file of its dataset's format (:func:`~supermask_pipeline.images.formats.describe_content`).
Diagnose = Callable[[bytes | bytearray], tuple[bool, str]]

ANOTHER_DATASET_FIX = (
    "It is most likely another dataset in the same format, not a damaged copy: add it as its own "
    "dataset entry (conf/local/datasets.yml or conf/base/datasets.yml, see README \"Your own dataset\"), "
    "point that dataset's raw folder at it and select it with --params=dataset=<name>."
)
DAMAGED_FIX = (
    "It is most likely a damaged copy (truncated or interrupted download or copy): replace it with a "
    "good copy, or move it out of the folder and load again to re-download it."
)


def _mismatch_message(shown: str, file: RawFileSpec, what: str, diagnosis: tuple[bool, str] | None,
                      basis: str = "published") -> str:
    """The checksum message, by evidence: a file that parses and fits is another dataset."""
    if diagnosis is None:
        fix = ("Replace it with a good copy, or move it out of the folder and load again to re-download it; "
               "if it is another dataset in the same format, add it as its own dataset entry "
               "(README \"Your own dataset\").")
    elif diagnosis[0]:
        fix = f"The file is {diagnosis[1]}. {ANOTHER_DATASET_FIX}"
    else:
        fix = f"The file does not parse as {file.name}: {diagnosis[1]} {DAMAGED_FIX}"
    return (f"Raw file {shown} does not have the {basis} content of {file.name}: {what}. {fix} "
            f"The file was left as it is.")


def read_verified(
    path: Path,
    file: RawFileSpec,
    shown: str | None = None,
    *,
    recorded: str | None = None,
    diagnose: Diagnose | None = None,
) -> tuple[bytearray, str]:
    """Read (and gunzip if ``.gz``) ``path``, hashing the decompressed bytes as they stream.

    What the content is checked against, first that applies: the published sha256 of the
    decompressed bytes, their published md5, the published md5 of the file as served
    (``download_md5``, when ``path`` is that download), the sha256 ``recorded`` on first use
    (``checksums.json``); with none of these the content is returned unchecked (the caller
    records it: trust on first use).

    Args:
        path: the local copy of ``file``, compressed (``.gz``) or not.
        file: the official file whose published checksum the content must have.
        shown: what to call the file in messages instead of ``path`` (e.g. an archive member).
        recorded: sha256 recorded for the file on first use, or None.
        diagnose: tells a well-formed file of the format from a damaged one, for the message.

    Returns:
        ``(content, sha256)``: the decompressed bytes and the sha256 hex digest of them.

    Raises:
        RawDataCorruptError: the file cannot be read or decompressed (truncated gzip): a damaged copy.
        RawDataChecksumError: the checksum differs; the message says, from whether the content
            parses and fits the dataset, whether it is most likely another dataset or a damaged copy.
    """
    shown = shown or str(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    digest = hashlib.sha256()
    md5 = None if file.sha256 or not file.md5 else hashlib.md5(usedforsecurity=False)
    content = bytearray()
    try:
        with opener(path, "rb") as stream:
            while chunk := stream.read(_CHUNK_BYTES):
                digest.update(chunk)
                if md5 is not None:
                    md5.update(chunk)
                content += chunk
    except (EOFError, OSError, zlib.error) as exc:
        kind = "decompressed (truncated or corrupt gzip)" if opener is gzip.open else "read"
        raise RawDataCorruptError(
            f"Raw file {shown} could not be {kind}: {type(exc).__name__}: {exc}. {DAMAGED_FIX} "
            f"The file was left as it is."
        ) from exc
    found = digest.hexdigest()
    size = f"{len(content)} bytes" + (f", expected {file.num_bytes}" if file.num_bytes else "")
    if file.sha256 or file.md5:
        algorithm, expected, seen = ("sha256", file.sha256, found) if md5 is None else (
            "md5", file.md5, md5.hexdigest())
        what = f"{algorithm} of its decompressed bytes is {seen} ({size}), the published one {expected}"
    elif file.download_md5 and path.name == file.download_name:
        with open(path, "rb") as stream:
            seen = hashlib.file_digest(stream, lambda: hashlib.md5(usedforsecurity=False)).hexdigest()
        expected = file.download_md5
        what = f"md5 of the file as served is {seen}, the published one {expected} ({len(content)} bytes decompressed)"
    elif recorded:
        seen, expected = found, recorded
        what = (f"sha256 of its decompressed bytes is {seen} ({size}), the one recorded on first use "
                f"(checksums.json) {expected}")
    else:
        return content, found
    if seen != expected:
        diagnosis = diagnose(content) if diagnose is not None else None
        basis = "published" if file.published else "recorded"
        raise RawDataChecksumError(_mismatch_message(shown, file, what, diagnosis, basis))
    return content, found


def verify_archive(path: Path, archive: RawArchiveSpec) -> None:
    """Check the md5 of ``path`` as it is (not decompressed) against the published one.

    Raises:
        RawDataCorruptError: ``path`` cannot be read.
        RawDataChecksumError: its md5 differs from ``archive.md5`` (nothing is checked where
            the entry publishes none: its files are then verified one by one).
    """
    if not archive.md5:
        return
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    try:
        with open(path, "rb") as stream:
            while chunk := stream.read(_CHUNK_BYTES):
                digest.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise RawDataCorruptError(
            f"Raw archive {path} could not be read: {type(exc).__name__}: {exc}."
        ) from exc
    if digest.hexdigest() != archive.md5:
        raise RawDataChecksumError(
            f"Raw archive {path} does not have the published content of {archive.name}: "
            f"md5 of its bytes is {digest.hexdigest()} ({size} bytes), expected {archive.md5} "
            f"({archive.num_bytes or '?'} bytes). {DAMAGED_FIX} The file was left as it is."
        )


def _download_url(url: str, folder: Path, filename: str, md5: str | None = None) -> None:
    """Download ``url`` to ``folder/filename`` with torchvision (imported only here).

    With ``md5``, torchvision also checks the download against it.
    """
    from torchvision.datasets.utils import download_url

    if md5 is None:
        download_url(url, str(folder), filename=filename)
    else:
        download_url(url, str(folder), filename=filename, md5=md5)


def download_verified(
    spec: RawSourceSpec,
    download_name: str,
    root: Path,
    verify: Callable[[Path], object],
    present: Callable[[], Path | None],
    md5: str | None = None,
) -> tuple[Path | None, list[str]]:
    """Try each mirror for ``download_name``; it lands in ``root`` only once ``verify`` passes.

    Each attempt writes into a private temporary folder inside ``root`` (removed afterwards),
    so a failed or corrupt download never leaves a file under an official name; a file that
    ``present()`` finds meanwhile is never overwritten.

    Args:
        spec: the source, whose ``mirrors`` are tried in turn (URL ``mirror + download_name``).
        download_name: file name on the mirrors and in ``root``.
        root: existing folder receiving the file.
        verify: called with the downloaded file; raises if it is not the published one.
        present: returns the file if it is in ``root`` by now (put there by another loader).
        md5: passed to torchvision's download to check the bytes as served, if given.

    Returns:
        ``(path, failures)``: the final path (or None if every mirror failed) and one line
        ``"<url>: <error type>: <message>"`` per failed attempt. Nothing is raised for a
        failed attempt.
    """
    failures = []
    target = root / download_name
    for mirror in spec.mirrors:
        url = f"{mirror}{download_name}"
        staging = Path(tempfile.mkdtemp(prefix=f".download-{download_name}-", dir=root))
        try:
            if md5 is None:
                _download_url(url, staging, download_name)
            else:
                _download_url(url, staging, download_name, md5=md5)
            verify(staging / download_name)
            if (existing := present()) is not None:
                return existing, failures
            (staging / download_name).replace(target)
            return target, failures
        except Exception as exc:  # noqa: BLE001 -- any failure means: try the next mirror
            failures.append(f"{url}: {type(exc).__name__}: {exc}")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return None, failures


def download_raw_file(
    spec: RawSourceSpec, file: RawFileSpec, root: Path
) -> tuple[Path | None, list[str]]:
    """Download one official file into ``root``, verified; see :func:`download_verified`.

    Returns:
        ``(path, failures)`` as :func:`download_verified` does.
    """
    return download_verified(
        spec,
        file.download_name,
        root,
        lambda path: read_verified(path, file),
        lambda: find_raw_file(root, file),
    )
