"""No usage telemetry leaves a run: MLflow's is off once the package is imported, Kedro's by the
project's ``.telemetry`` file (the project sends nothing to any address but its tracking server)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PROGRAM = """
import mlflow  # first, as kedro-mlflow's CLI plugin imports it before the project
from mlflow.telemetry.client import get_telemetry_client
before = get_telemetry_client() is not None
import supermask_pipeline, os
print(before, get_telemetry_client() is None, os.environ["MLFLOW_DISABLE_TELEMETRY"])
"""


def _user_environment() -> dict[str, str]:
    """This environment without what marks it as CI or a test run (MLflow turns telemetry off there itself)."""
    marks = ("PYTEST_CURRENT_TEST", "GITHUB_ACTIONS", "CI", "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK")
    return {key: value for key, value in os.environ.items() if key not in marks}


def test_importing_the_package_turns_mlflow_telemetry_off():
    result = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, check=True,
                            env=_user_environment(), cwd=ROOT)
    before, after, setting = result.stdout.split()
    if before != "True":
        pytest.skip("MLflow's telemetry is off in this environment whatever the project does")
    assert (after, setting) == ("True", "true")


def test_a_user_setting_wins():
    env = {**_user_environment(), "MLFLOW_DISABLE_TELEMETRY": "false"}
    result = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, check=True,
                            env=env, cwd=ROOT)
    assert result.stdout.split()[2] == "false"


def test_kedro_telemetry_has_no_consent_in_this_project(monkeypatch):
    from kedro_telemetry.plugin import _check_for_telemetry_consent

    for variable in ("KEDRO_DISABLE_TELEMETRY", "DO_NOT_TRACK"):  # the file alone must say no
        monkeypatch.delenv(variable, raising=False)
    assert (ROOT / ".telemetry").read_text().strip() == "consent: false"
    assert _check_for_telemetry_consent(ROOT) is False
