"""notebooks/compare_runs.ipynb runs top to bottom (nbmake) against the synthetic store of conftest.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "compare_runs.ipynb"


def test_committed_notebook_has_no_outputs():
    notebook = json.loads(NOTEBOOK.read_text())
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert code
    assert all(not cell.get("outputs") and cell.get("execution_count") is None for cell in code)


def test_notebook_runs_against_a_grid_store(grid_store):
    pytest.importorskip("nbmake", reason="nbmake is not installed (pip install 'nbmake>=1.5', the test extra)")
    env = {key: value for key, value in os.environ.items() if not key.startswith("SUPERMASK_")}
    env.update(SUPERMASK_TRACKING_URI=grid_store.tracking_uri, SUPERMASK_EXPERIMENT=grid_store.experiment,
               MPLBACKEND="Agg")  # SUPERMASK_GRID_ID unset: the notebook loads the latest grid
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbmake", "-p", "no:cacheprovider", str(NOTEBOOK)],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, f"nbmake failed:\n{result.stdout}\n{result.stderr}"
