"""freeze_at_exit: the interpreter's final collection skips the run's heap (gc.freeze at exit)."""

from __future__ import annotations

import subprocess
import sys

PROGRAM = """
import atexit, gc
atexit.register(lambda: print("frozen at exit:", gc.get_freeze_count() > 0))  # runs after the later-registered
from supermask_pipeline.cli import freeze_at_exit
before = atexit._ncallbacks()
freeze_at_exit()
freeze_at_exit()
print("registered:", atexit._ncallbacks() - before)
print("frozen before exit:", gc.get_freeze_count() > 0)
"""


def test_objects_are_frozen_only_at_exit_and_the_handler_is_registered_once():
    result = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, check=True)
    assert result.stdout.splitlines() == ["registered: 1", "frozen before exit: False", "frozen at exit: True"]
