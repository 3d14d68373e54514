"""Sources that come as one archive (CIFAR-10): verify the archive, extract it safely.

A source whose spec names a :class:`~supermask_pipeline.images.specs.RawArchiveSpec` has
its files in ``<root>/<archive folder>`` (``cifar-10-batches-py/``, the layout torchvision
uses). Where any is missing, :func:`unpack_archive` takes the archive from ``root``
(downloading it first, with its published md5, if absent and allowed), checks its md5 as
served and extracts it with tarfile's ``"data"`` filter; every extracted file is verified
against its own published checksum before it is moved into place. Files already there
are kept.
"""

from __future__ import annotations

import platform
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path

from supermask_pipeline.images.download import (
    download_verified,
    find_raw_file,
    read_verified,
    verify_archive,
)
from supermask_pipeline.images.errors import RawDataCorruptError, RawDataError
from supermask_pipeline.images.specs import RawSourceSpec

__all__ = ["unpack_archive"]


def _extract_archive(spec: RawSourceSpec, path: Path, root: Path) -> None:
    """Extract ``spec.archive`` (already md5-checked) at ``path`` into ``root/<folder>``.

    The archive is unpacked with tarfile's ``"data"`` filter (no absolute paths, no links
    or files outside the target, no devices) into a temporary folder inside ``root``; the
    spec's files are verified there, then the folder is renamed into place in one step (or,
    if ``root/<folder>`` exists already, only its missing files are moved in). A crash
    leaves at most a hidden ``.extract-*`` folder, never a partly written official file.
    """
    archive = spec.archive
    assert archive is not None
    if not hasattr(tarfile, "data_filter"):
        raise RawDataError(
            f"Extracting {path} safely needs tarfile's extraction filters (Python >= 3.10.12 "
            f"or >= 3.11.4), this is Python {platform.python_version()}. Extract it yourself "
            f"into {root} (it creates {archive.folder}/)."
        )
    staging = Path(tempfile.mkdtemp(prefix=f".extract-{archive.name}-", dir=root))
    try:
        try:
            with tarfile.open(path, "r:*") as tar:
                tar.extractall(staging, filter="data")
        except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
            raise RawDataCorruptError(
                f"Raw archive {path} could not be extracted: {type(exc).__name__}: {exc}. "
                f"Delete it and load again to re-download it, or replace it with a good copy."
            ) from exc
        extracted = staging / archive.folder
        for file in spec.files:
            member = find_raw_file(extracted, file)
            if member is None:
                raise RawDataCorruptError(
                    f"Raw archive {path} has no member {archive.folder}/{file.name}. "
                    f"Delete it and load again to re-download it, or replace it with a good copy."
                )
            read_verified(member, file, shown=f"{archive.folder}/{member.name} in {path}")
        target = root / archive.folder
        if not target.exists():
            try:
                extracted.rename(target)
                return
            except OSError:
                if not target.is_dir():  # not a folder created meanwhile by another loader
                    raise
        for file in spec.files:
            if find_raw_file(target, file) is None:
                member = find_raw_file(extracted, file)
                assert member is not None
                member.replace(target / member.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def unpack_archive(spec: RawSourceSpec, root: Path, download: bool) -> list[str]:
    """Extract the source's archive from ``root``, downloading it first if absent and allowed.

    Args:
        spec: a source with an ``archive``.
        root: folder holding (or receiving) the archive; its files go to ``root/<folder>``.
        download: whether an absent archive may be downloaded (with its published md5).

    Returns:
        One line per failed download attempt (empty if none was needed or one worked); an
        archive neither present nor downloaded is not an error here (the caller reports
        the files still missing).

    Raises:
        RawDataChecksumError: the archive in ``root`` is not the published one (its md5),
            or a file in it is not (its checksum); the archive is left as it is.
        RawDataCorruptError: the archive cannot be read or extracted, or lacks a file.
        RawDataError: this Python's tarfile has no extraction filters.
    """
    archive = spec.archive
    assert archive is not None
    path = root / archive.name
    failures: list[str] = []
    if not path.is_file():
        if not download:
            return failures
        root.mkdir(parents=True, exist_ok=True)
        downloaded, failures = download_verified(
            spec,
            archive.name,
            root,
            lambda staged: verify_archive(staged, archive),
            lambda: path if path.is_file() else None,
            md5=archive.md5,
        )
        if downloaded is None:
            return failures
    verify_archive(path, archive)
    _extract_archive(spec, path, root)
    return failures
