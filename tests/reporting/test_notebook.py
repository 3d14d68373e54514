"""notebooks/compare_runs.ipynb runs top to bottom (nbmake) against the synthetic store of conftest.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "compare_runs.ipynb"


def test_committed_notebook_has_no_outputs():
    notebook = json.loads(NOTEBOOK.read_text())
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert code
    assert all(not cell.get("outputs") and cell.get("execution_count") is None for cell in code)


def test_notebook_runs_against_a_grid_store(grid_store, run_notebook):
    run_notebook(grid_store.tracking_uri, grid_store.experiment)  # no grid id: the notebook loads the latest grid
