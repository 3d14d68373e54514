"""Shared pieces of the browser tests: Debian's ``chromium`` (driven by Playwright, no browser
download) and servers started in their own process group on a free local port.

The ``chromium`` fixture skips a test where ``playwright`` is not importable or no ``chromium`` is
on PATH; CI installs both (``.ci/run``). Request it first so that a test is skipped before its
other fixtures start a server.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium")
# Below Linux's ephemeral range (32768-60999): no outgoing connection is given one of these
# ports between the probe and the server's bind, and kedro-viz refuses ports above 49151.
_PORT_RANGE = (20000, 32767)


@pytest.fixture
def chromium() -> str:
    """Path of the ``chromium`` executable Playwright launches (``executable_path``)."""
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')")
    if CHROMIUM is None:
        pytest.skip("no `chromium` on PATH (Debian: apt-get install chromium)")
    return CHROMIUM


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on now."""
    for _ in range(200):
        port = random.randint(*_PORT_RANGE)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free port on {host} in {_PORT_RANGE}")


def log_tail(log: Path, chars: int = 4000) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    return text[-chars:] or "(no output)"


def start_in_own_group(command: list[str], *, cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    """``command`` in a new session (its pid is the process group id), output appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - a process we may not signal still holds the id
        return True
    return True


def stop_group(proc: subprocess.Popen, grace_s: float = 20.0) -> None:
    """SIGTERM the whole process group of ``proc`` (started by :func:`start_in_own_group`), then
    SIGKILL what is left after ``grace_s``; returns once the group is gone (or both tries ran out)."""
    pgid = proc.pid
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            continue
        deadline = time.monotonic() + grace_s  # the leader is gone; wait for its children
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not group_alive(pgid):
            return
