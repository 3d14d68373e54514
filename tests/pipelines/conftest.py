"""A throw-away Kedro project over the real conf/, with a tiny generated MNIST-format source."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import mlflow
import pytest
import yaml
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from supermask_pipeline.runners import GridRunner

REPO = Path(__file__).resolve().parents[2]

FAST_TRAINING = {"epochs": 2, "batch_size": 8, "show_progress": False, "device": "cpu"}


@pytest.fixture
def project(tmp_path: Path, tiny_source, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder: conf/base copied from the repo, conf/local pointing raw_images at the
    tiny source (download off), the tiny files in data/01_raw/tiny; cwd set to it."""
    monkeypatch.setenv("KEDRO_DISABLE_TELEMETRY", "true")
    shutil.copytree(REPO / "conf" / "base", tmp_path / "conf" / "base")
    (tmp_path / "conf" / "local").mkdir()
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "src").mkdir()  # the package itself is imported from the installed project
    local_catalog = {
        "raw_images": {
            "type": "supermask_pipeline.datasets.RawImageDataset",
            "source": "tiny",
            "root": "data/01_raw/tiny",
            "download": False,
        }
    }
    (tmp_path / "conf" / "local" / "catalog.yml").write_text(yaml.safe_dump(local_catalog))
    # An absolute URI: MLflow caches one store per URI string, so the base file's relative
    # sqlite:///mlflow.db would keep pointing at the first test's folder in this process.
    server = {"server": {"mlflow_tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}}
    (tmp_path / "conf" / "local" / "mlflow.yml").write_text(yaml.safe_dump(server))
    tiny_source.write(tmp_path / "data" / "01_raw" / "tiny")
    monkeypatch.chdir(tmp_path)
    bootstrap_project(tmp_path)
    _end_active_runs()
    yield tmp_path
    _end_active_runs()


def pytest_collection_modifyitems(config, items) -> None:
    """Every test that runs a Kedro session (``run_kedro``) is a whole-session test: ``slow``."""
    for item in items:
        if "run_kedro" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


def _end_active_runs() -> None:
    """MLflow's active run is process-global: never let one test's run leak into the next."""
    # kedro-mlflow reopens its run at every node; in one long-lived process (pytest) that
    # reopened run can outlive the session, which the CLI never sees since it exits.
    while mlflow.active_run() is not None:
        try:
            mlflow.end_run()
        except mlflow.exceptions.MlflowException:
            mlflow.tracking.fluent._active_run_stack.get().clear()  # run of a deleted tmp store


@pytest.fixture
def run_kedro(project: Path):
    """Run named pipelines in-process: ``run_kedro(pipeline, runtime_params, **run_kwargs)``."""

    def run(pipeline: str, runtime_params: dict | None = None, **kwargs):
        params = {"data_processing": {"num_val": 6}, **(runtime_params or {})}
        kwargs.setdefault("runner", GridRunner())  # the project CLI's default runner
        bootstrap_project(project)  # as every `kedro run` process does: the registry reads the files anew
        try:
            with KedroSession.create(project_path=project, runtime_params=params) as session:
                return session.run(pipeline_names=[pipeline], **kwargs)
        finally:
            _end_active_runs()

    return run


def versions(folder: Path) -> list[str]:
    """Version folders of a versioned dataset."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def mtimes(folder: Path) -> dict[str, int]:
    """Relative path → modification time (ns) of every file under folder."""
    return {str(p.relative_to(folder)): os.stat(p).st_mtime_ns for p in folder.rglob("*") if p.is_file()}
