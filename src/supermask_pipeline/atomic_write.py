"""Atomic file replacement: write beside the target, fsync, rename (no Kedro).

Every file this project writes (splits, weights, checkpoints, tables, plots) goes
through :func:`atomic_path`, so a crash at any moment leaves either the previous
file or the complete new one, never half of one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "fsync_directory", "fsync_path", "temporary_sibling"]


def temporary_sibling(target: Path) -> Path:
    """A unique hidden name in ``target``'s folder (same file system, so a rename is atomic)."""
    return target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")


@contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on a clean exit, fsync it and rename it onto ``target``.

    The caller writes the whole file to the yielded path (which does not exist yet).
    On any exception, including ``KeyboardInterrupt``, the temporary file is removed and
    ``target`` is left exactly as it was. The folder is created if needed and fsynced
    after the rename where the platform allows it.

    Raises:
        FileNotFoundError: the body did not create the temporary file.
        OSError: from the file system (the target is then unchanged).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(target)
    try:
        yield tmp
        if not tmp.is_file():
            raise FileNotFoundError(f"Nothing was written to {tmp} for {target}; the target is unchanged.")
        fsync_path(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(target.parent)


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes) -> None:
    """Replace ``target`` by ``data`` atomically (see :func:`atomic_path`)."""
    with atomic_path(target) as tmp:
        with open(tmp, "xb") as handle:
            handle.write(data)


def fsync_path(path: Path) -> None:
    """Flush a written file's data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_directory(directory: Path) -> None:
    """Persist a rename in ``directory``; best effort (not possible on every platform, e.g. Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
