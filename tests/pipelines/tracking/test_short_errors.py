"""A project error ends `kedro run` with its message (a few lines), the traceback on request."""

from __future__ import annotations

import os
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kedro.io.core import DatasetError

from supermask_pipeline.cli import project_error, traceback_wanted, unknown_pipeline
from supermask_pipeline.experiment import ParameterError

from ..conftest import REPO


def test_project_error_is_found_through_kedro_s_wrapping():
    try:
        try:
            raise ParameterError("dense.training.learning_rate must be positive")
        except ParameterError as inner:
            raise DatasetError("Failed while loading data") from inner
    except DatasetError as outer:
        assert isinstance(project_error(outer), ParameterError)
    assert project_error(ValueError("a bug")) is None
    try:
        try:
            raise ParameterError("bad")
        except ParameterError:
            raise KeyError("a bug while handling it")  # noqa: B904
    except KeyError as bug:
        assert project_error(bug) is None


def test_traceback_on_request(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("SUPERMASK_TRACEBACK", raising=False)
    assert not traceback_wanted() and traceback_wanted(verbose=True)
    monkeypatch.setenv("SUPERMASK_TRACEBACK", "1")
    assert traceback_wanted()


def test_unknown_pipeline_lists_the_registered_ones():
    error = unknown_pipeline(ValueError("Failed to find the pipeline named 'nosuch'. It needs to be generated"))
    assert "No pipeline named 'nosuch'. Pipelines: " in str(error)  # (outside a project: the registry command)
    assert "without --pipeline: dense and signed_supermask" in str(error)
    assert unknown_pipeline(ValueError("something else")) is None


def _kedro(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", **env}
    environment.pop("SUPERMASK_TRACEBACK", None) if "SUPERMASK_TRACEBACK" not in env else None
    return subprocess.run([sys.executable, "-m", "kedro", "run", *args], cwd=project, env=environment,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def cli_project(project: Path) -> Path:
    """The tiny project with the repository's conf/logging.yml, its store already created."""
    shutil.copy(REPO / "conf" / "logging.yml", project / "conf" / "logging.yml")
    _kedro(project, "--pipeline=nosuch")  # creates mlflow.db (its "Creating tables" lines are once per store)
    return project


def _files(project: Path) -> dict[str, str]:
    """Every path outside conf/ → sha256 of its bytes ("dir" for a folder): byte-for-byte state."""
    return {
        str(p.relative_to(project)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in project.rglob("*") if "conf" not in p.parts and p.name != "mlflow.db"
    }


@pytest.mark.slow
def test_bad_parameter_prints_its_message_in_a_few_lines_and_writes_nothing(cli_project: Path):
    before = _files(cli_project)
    result = _kedro(cli_project, "--pipeline=dense", "--params=dense.training.learning_rate=-1")
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert len(output.splitlines()) < 15, output
    assert "ParameterError: Parameters of method 'dense': dense.training.learning_rate must be a positive number" in output
    assert "Traceback" not in output
    assert _files(cli_project) == before  # no folder, no file, every byte unchanged (the store aside)

    for flags, env in ((("--verbose",), {}), ((), {"SUPERMASK_TRACEBACK": "1"})):
        result = _kedro(cli_project, *flags, "--pipeline=dense", "--params=dense.training.learning_rate=-1", **env)
        output = result.stdout + result.stderr
        assert result.returncode == 1 and "Traceback" in output and "run_config" in output, flags


@pytest.mark.slow
def test_unknown_pipeline_and_missing_raw_files_are_short_and_create_nothing(cli_project: Path):
    result = _kedro(cli_project, "--pipeline=nosuch")
    assert result.returncode == 1 and len((result.stdout + result.stderr).splitlines()) < 15
    assert "No pipeline named 'nosuch'. Pipelines: " in result.stderr and "signed_supermask" in result.stderr

    catalog = {"raw_images": {"type": "supermask_pipeline.datasets.RawImageDataset", "source": "cifar10",
                              "root": "data/01_raw/cifar10", "download": False}}
    (cli_project / "conf" / "local" / "catalog.yml").write_text(yaml.safe_dump(catalog))
    shutil.rmtree(cli_project / "data")
    result = _kedro(cli_project, "--pipeline=dense", "--params=model.architecture=conv6")
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "RawDataNotFoundError: Raw cifar10 files missing" in output, output
    assert "Downloading is switched off" in output and len(output.splitlines()) < 25  # the message lists 6 files
    assert not (cli_project / "data").exists()  # no initial conv6 tensors, no empty raw folder
