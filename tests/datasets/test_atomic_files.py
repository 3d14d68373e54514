"""Atomic CSV / JSON / matplotlib datasets: round trips, versioning, failed saves, kedro-mlflow."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from kedro.io import DataCatalog  # noqa: E402
from kedro.io.core import DatasetError, Version  # noqa: E402
from kedro_mlflow.io.artifacts import MlflowArtifactDataset  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from supermask_pipeline import atomic_write  # noqa: E402
from supermask_pipeline.datasets import (  # noqa: E402
    AtomicCSVDataset,
    AtomicJSONDataset,
    AtomicMatplotlibDataset,
    AtomicSaveMixin,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _all_files(folder: Path) -> list[str]:
    """Every file under ``folder`` (temporary files are hidden dot-files: listed too)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _frame(n: int = 3) -> pd.DataFrame:
    return pd.DataFrame({"epoch": list(range(n)), "loss": [1.0 / (i + 1) for i in range(n)]})


def _figure():
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    return fig


# --- round trips ---------------------------------------------------------------------------------


def test_csv_round_trip(tmp_path):
    path = tmp_path / "out" / "history.csv"  # folder created on save
    dataset = AtomicCSVDataset(filepath=str(path), save_args={"index": False})
    assert isinstance(dataset, AtomicSaveMixin)
    assert not dataset.exists()
    dataset.save(_frame())
    assert dataset.exists()
    pd.testing.assert_frame_equal(dataset.load(), _frame())
    assert _all_files(tmp_path) == ["out/history.csv"]


def test_json_round_trip_and_overwrite(tmp_path):
    path = tmp_path / "summary.json"
    dataset = AtomicJSONDataset(filepath=str(path))
    dataset.save({"accuracy": 0.5, "layers": [1, 2]})
    dataset.save({"accuracy": 0.75})
    assert dataset.load() == {"accuracy": 0.75}
    assert _all_files(tmp_path) == ["summary.json"]


def test_matplotlib_round_trip(tmp_path):
    path = tmp_path / "plot.png"
    AtomicMatplotlibDataset(filepath=str(path), save_args={"dpi": 50}).save(_figure())
    assert path.read_bytes().startswith(PNG_MAGIC)
    assert _all_files(tmp_path) == ["plot.png"]


@pytest.mark.parametrize("data, found", [([None], "a list/dict of figures"), ({"a.png": None}, "a list/dict"),
                                         ("text", "got str")])
def test_matplotlib_rejects_several_figures(tmp_path, data, found):
    if isinstance(data, list):
        data = [_figure(), _figure()]
    elif isinstance(data, dict):
        data = {"a.png": _figure()}
    path = tmp_path / "plot.png"
    with pytest.raises(DatasetError, match="saves one matplotlib Figure") as info:
        AtomicMatplotlibDataset(filepath=str(path)).save(data)
    assert found in str(info.value) and str(path) in str(info.value)
    assert not path.exists()
    plt.close("all")


def test_catalog_types(tmp_path):
    catalog = DataCatalog.from_config(
        {
            "table": {"type": "supermask_pipeline.datasets.AtomicCSVDataset", "filepath": str(tmp_path / "t.csv"),
                      "versioned": True},
            "summary": {"type": "supermask_pipeline.datasets.AtomicJSONDataset",
                        "filepath": str(tmp_path / "s.json")},
        }
    )
    catalog.save("table", _frame())
    catalog.save("summary", {"a": 1})
    pd.testing.assert_frame_equal(catalog.load("table"), _frame())
    assert catalog.load("summary") == {"a": 1}


# --- versioning ----------------------------------------------------------------------------------


def test_versioned_saves_and_loads(tmp_path):
    path = tmp_path / "history.csv"
    AtomicCSVDataset(filepath=str(path), version=Version(None, "2024-01-01T00.00.00.000Z")).save(_frame(2))
    AtomicCSVDataset(filepath=str(path), version=Version(None, "2024-01-02T00.00.00.000Z")).save(_frame(4))
    assert _all_files(tmp_path) == [
        "history.csv/2024-01-01T00.00.00.000Z/history.csv",
        "history.csv/2024-01-02T00.00.00.000Z/history.csv",
    ]
    pd.testing.assert_frame_equal(AtomicCSVDataset(filepath=str(path), version=Version(None, None)).load(), _frame(4))
    old = AtomicCSVDataset(filepath=str(path), version=Version("2024-01-01T00.00.00.000Z", None))
    pd.testing.assert_frame_equal(old.load(), _frame(2))


def test_versioned_existing_version_is_refused_and_kept(tmp_path):
    path = tmp_path / "history.csv"
    version = Version(None, "2024-01-01T00.00.00.000Z")
    AtomicCSVDataset(filepath=str(path), version=version).save(_frame(2))
    saved = path / "2024-01-01T00.00.00.000Z" / "history.csv"
    before = _digest(saved)
    with pytest.raises(DatasetError, match="must not exist if versioning is enabled"):
        AtomicCSVDataset(filepath=str(path), version=version).save(_frame(5))
    assert _digest(saved) == before
    assert _all_files(tmp_path) == ["history.csv/2024-01-01T00.00.00.000Z/history.csv"]


def test_auto_version_save_then_load(tmp_path):
    dataset = AtomicJSONDataset(filepath=str(tmp_path / "s.json"), version=Version(None, None))
    dataset.save({"run": 1})
    assert dataset.load() == {"run": 1}
    (version_dir,) = (tmp_path / "s.json").iterdir()
    assert [p.name for p in version_dir.iterdir()] == ["s.json"]


# --- failed saves leave the previous file --------------------------------------------------------


def _half_written_csv(monkeypatch):
    """Make DataFrame.to_csv write the header, then fail (a full disk, say)."""

    def to_csv(self, path_or_buf=None, **kwargs):
        path_or_buf.write("epoch,loss\n0,")
        raise OSError(28, "No space left on device (simulated)")

    monkeypatch.setattr(pd.DataFrame, "to_csv", to_csv)


@pytest.mark.parametrize("versioned", [False, True])
def test_csv_failed_midway_keeps_previous(tmp_path, monkeypatch, versioned):
    path = tmp_path / "history.csv"
    version = Version(None, None) if versioned else None
    AtomicCSVDataset(filepath=str(path), version=version).save(_frame())
    files = _all_files(tmp_path)
    digests = {name: _digest(tmp_path / name) for name in files}

    _half_written_csv(monkeypatch)
    with pytest.raises(DatasetError, match="No space left"):
        AtomicCSVDataset(filepath=str(path), version=version).save(_frame(7))
    monkeypatch.undo()
    assert _all_files(tmp_path) == files  # no temporary file, no new version folder
    assert {name: _digest(tmp_path / name) for name in files} == digests
    pd.testing.assert_frame_equal(AtomicCSVDataset(filepath=str(path), version=version).load(), _frame())


def test_json_unserialisable_value_keeps_previous(tmp_path):
    """json.dump streams: it has written part of the object when it meets the bad value."""
    path = tmp_path / "summary.json"
    dataset = AtomicJSONDataset(filepath=str(path))
    dataset.save({"accuracy": 0.5})
    before = _digest(path)
    with pytest.raises(DatasetError, match="not JSON serializable"):
        dataset.save({"accuracy": 0.9, "model": object()})
    assert _digest(path) == before
    assert _all_files(tmp_path) == ["summary.json"]


def test_failed_first_save_leaves_nothing(tmp_path, monkeypatch):
    _half_written_csv(monkeypatch)
    with pytest.raises(DatasetError):
        AtomicCSVDataset(filepath=str(tmp_path / "a" / "h.csv"), version=Version(None, None)).save(_frame())
    assert list(tmp_path.iterdir()) == []  # neither temp file nor the folders this save made


def test_failed_rename_keeps_previous(tmp_path, monkeypatch):
    path = tmp_path / "plot.png"
    dataset = AtomicMatplotlibDataset(filepath=str(path))
    dataset.save(_figure())
    before = _digest(path)

    def fail(src, dst):
        raise OSError(5, "Input/output error (simulated)")

    monkeypatch.setattr(atomic_write.os, "replace", fail)
    with pytest.raises(DatasetError, match="Input/output error"):
        dataset.save(_figure())
    assert _digest(path) == before
    assert _all_files(tmp_path) == ["plot.png"]


def test_rename_moves_a_complete_file(tmp_path, monkeypatch):
    """While the inner save runs it writes a hidden sibling; os.replace moves the finished file."""
    path = tmp_path / "summary.json"
    seen = []
    real_replace = atomic_write.os.replace

    def spy(src, dst):
        seen.append((Path(src).name, Path(dst), json.loads(Path(src).read_text())))
        real_replace(src, dst)

    monkeypatch.setattr(atomic_write.os, "replace", spy)
    AtomicJSONDataset(filepath=str(path)).save({"a": [1, 2, 3]})
    ((src_name, dst, content),) = seen
    assert src_name.startswith(".summary.json.") and src_name.endswith(".tmp")
    assert dst == path and content == {"a": [1, 2, 3]}


def test_get_save_path_outside_a_save_is_the_real_path(tmp_path):
    dataset = AtomicCSVDataset(filepath=str(tmp_path / "h.csv"))
    assert str(dataset._get_save_path()) == (tmp_path / "h.csv").as_posix()


def test_other_protocols_delegate(monkeypatch):
    """memory:// (like s3://) writes whole objects: the wrapped save runs unchanged."""

    def no_local_rename(target):
        raise AssertionError("atomic_path must not be used for a remote protocol")

    monkeypatch.setattr("supermask_pipeline.datasets.atomic_files.atomic_path", no_local_rename)
    dataset = AtomicJSONDataset(filepath="memory://supermask-test/summary.json")
    dataset.save({"remote": True})
    assert dataset.load() == {"remote": True}


# --- inside kedro-mlflow's MlflowArtifactDataset -------------------------------------------------


@pytest.fixture
def mlflow_run(tmp_path, monkeypatch):
    """An active MLflow run on a throw-away sqlite store; tracking state restored afterwards."""
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # restored by monkeypatch after the block below
    with _use_tracking_uri(uri):
        experiment = mlflow.create_experiment("atomic-datasets", artifact_location=(tmp_path / "artifacts").as_uri())
        run = mlflow.start_run(experiment_id=experiment)
        try:
            yield run
        finally:
            while mlflow.active_run() is not None:
                mlflow.end_run()


def _artifacts(run_id: str, folder: str) -> dict[str, int]:
    return {Path(a.path).name: a.file_size for a in MlflowClient().list_artifacts(run_id, folder)}


def test_mlflow_artifact_dataset_logs_the_final_file(tmp_path, mlflow_run, monkeypatch):
    data = tmp_path / "data"
    history = MlflowArtifactDataset(
        dataset={"type": "supermask_pipeline.datasets.AtomicCSVDataset", "filepath": str(data / "history.csv"),
                 "save_args": {"index": False}, "versioned": True},
        artifact_path="dense",
    )
    summary = MlflowArtifactDataset(
        dataset={"type": "supermask_pipeline.datasets.AtomicJSONDataset", "filepath": str(data / "summary.json")},
        artifact_path="dense",
    )
    plot = MlflowArtifactDataset(
        dataset={"type": "supermask_pipeline.datasets.AtomicMatplotlibDataset", "filepath": str(data / "plot.png"),
                 "save_args": {"dpi": 40}},
        artifact_path="dense",
    )
    assert isinstance(history, AtomicCSVDataset) and isinstance(plot, AtomicMatplotlibDataset)

    history.save(_frame())
    summary.save({"accuracy": 0.5})
    plot.save(_figure())

    (version_dir,) = (data / "history.csv").iterdir()
    local = {"history.csv": version_dir / "history.csv", "summary.json": data / "summary.json",
             "plot.png": data / "plot.png"}
    assert _all_files(data) == sorted(str(p.relative_to(data)) for p in local.values())
    logged = _artifacts(mlflow_run.info.run_id, "dense")
    assert logged == {name: p.stat().st_size for name, p in local.items()}
    artifact_dir = tmp_path / "artifacts" / mlflow_run.info.run_id / "artifacts" / "dense"
    for name, p in local.items():
        assert _digest(artifact_dir / name) == _digest(p)
    pd.testing.assert_frame_equal(history.load(), _frame())

    # A failed save inside the wrapper: previous file untouched, nothing new logged.
    before = _digest(data / "summary.json")
    with pytest.raises(DatasetError, match="not JSON serializable"):
        summary.save({"accuracy": object()})
    assert _digest(data / "summary.json") == before
    assert _digest(artifact_dir / "summary.json") == before
    assert _all_files(data) == sorted(str(p.relative_to(data)) for p in local.values())


def test_binary_dataset_round_trips_bytes_and_refuses_other_data(tmp_path):
    from supermask_pipeline.datasets import AtomicBinaryDataset

    path = tmp_path / "models" / "network.smnet"
    dataset = AtomicBinaryDataset(filepath=str(path))
    payload = bytes(range(256)) * 3
    dataset.save(payload)
    assert path.read_bytes() == payload and dataset.load() == payload
    assert [p.name for p in path.parent.iterdir()] == ["network.smnet"]  # no temporary file left
    with pytest.raises(DatasetError, match="saves bytes, got str"):
        dataset.save("text")
    assert path.read_bytes() == payload  # the previous file, unchanged
