"""Fixtures for the data tests: a tiny MNIST-format source and the real MNIST files."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from supermask_pipeline.images import ImageSplit, split_content_sha256
from supermask_pipeline.images.idx import encode_idx
from supermask_pipeline.images.sources import load_raw_images
from supermask_pipeline.images.specs import RAW_SOURCES, RawSourceSpec

_MNIST_CANDIDATES = (
    Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets" / "mnist",
    Path("/work/shared/datasets/mnist"),
)


def _real_mnist_root() -> Path | None:
    """Folder with the four official MNIST files, or None when this machine has none."""
    for candidate in _MNIST_CANDIDATES:
        spec = RAW_SOURCES["mnist"]
        if all((candidate / f"{f.name}.gz").is_file() or (candidate / f.name).is_file() for f in spec.files):
            return candidate.resolve()
    return None


def _sha256_of_files(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``folder`` (to prove nothing changed)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@dataclass
class TinySource:
    """A registered MNIST-format source of a few images with its own checksums."""

    spec: RawSourceSpec
    arrays: dict[str, np.ndarray]  # role -> array as stored in the idx file
    contents: dict[str, bytes]  # decompressed file name -> idx bytes

    @property
    def name(self) -> str:
        return self.spec.name

    def write(self, folder: Path, compressed: bool = True, only: tuple[str, ...] | None = None) -> Path:
        """Write the files (``<name>.gz`` or ``<name>``) into ``folder``; returns ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        for name, content in self.contents.items():
            if only is not None and name not in only:
                continue
            if compressed:
                (folder / f"{name}.gz").write_bytes(gzip.compress(content, mtime=0))
            else:
                (folder / name).write_bytes(content)
        return folder

    def assert_loaded(self, raw) -> None:
        """Assert that ``raw`` (a RawImageData) holds exactly this source's arrays and checksums."""
        assert raw.source == "tiny"
        assert raw.num_classes == 10
        assert raw.train_images.shape == (30, 28, 28, 1) and raw.train_images.dtype == np.uint8
        assert raw.test_images.shape == (12, 28, 28, 1) and raw.test_images.dtype == np.uint8
        assert raw.train_labels.shape == (30,) and raw.train_labels.dtype == np.int64
        assert raw.test_labels.shape == (12,) and raw.test_labels.dtype == np.int64
        np.testing.assert_array_equal(raw.train_images[..., 0], self.arrays["train_images"])
        np.testing.assert_array_equal(raw.test_images[..., 0], self.arrays["test_images"])
        np.testing.assert_array_equal(raw.train_labels, self.arrays["train_labels"])
        np.testing.assert_array_equal(raw.test_labels, self.arrays["test_labels"])
        assert raw.checksums == {f.name: f.sha256 for f in self.spec.files}


def make_images(num: int, rng: np.random.Generator, offset: int = 0) -> np.ndarray:
    """uint8 (num, 28, 28) random images, made unique by encoding their index in two pixels."""
    images = rng.integers(0, 256, size=(num, 28, 28), dtype=np.uint8)
    index = np.arange(num) + offset
    images[:, 0, 0] = index % 256
    images[:, 0, 1] = index // 256
    return images


def tiny_split(n: int, seed: int, name: str, source: str = "mine") -> ImageSplit:
    """A split of ``n`` random uint8 4×4×1 images with labels in 0..2, its attributes as the
    data processing writes them (source, split, raw_root, content_sha256)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 4, 4, 1), dtype=np.uint8)
    labels = rng.integers(0, 3, n).astype(np.int64)
    return ImageSplit(images, labels, {"source": source, "split": name, "raw_root": f"/data/01_raw/{source}",
                                       "content_sha256": split_content_sha256(images, labels)})


@pytest.fixture
def tiny_source(monkeypatch: pytest.MonkeyPatch) -> TinySource:
    """Source "tiny": 30 training and 12 test images in MNIST's idx format, registered in
    RAW_SOURCES (for this test only) with the sha256 of the generated files."""
    rng = np.random.default_rng(1234)
    arrays = {
        "train_images": make_images(30, rng),
        "train_labels": (np.arange(30) % 10).astype(np.uint8),
        "test_images": make_images(12, rng, offset=1000),
        "test_labels": (np.arange(12)[::-1] % 10).astype(np.uint8),
    }
    mnist = RAW_SOURCES["mnist"]
    contents = {f.name: encode_idx(arrays[f.role]) for f in mnist.files}
    files = tuple(
        dataclasses.replace(
            f,
            sha256=hashlib.sha256(contents[f.name]).hexdigest(),
            md5=hashlib.md5(contents[f.name]).hexdigest(),
            num_bytes=len(contents[f.name]),
        )
        for f in mnist.files
    )
    spec = dataclasses.replace(
        mnist, name="tiny", files=files, mirrors=("https://mirror-a.invalid/", "https://mirror-b.invalid/")
    )
    monkeypatch.setitem(RAW_SOURCES, "tiny", spec)
    return TinySource(spec=spec, arrays=arrays, contents=contents)


@pytest.fixture
def sha256_of_files():
    """Function: folder -> {relative path: sha256} of every file under it."""
    return _sha256_of_files


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    """Folder of the real MNIST files; skips where they are absent."""
    root = _real_mnist_root()
    if root is None:
        pytest.skip("official MNIST files not found in ../shared/datasets/mnist")
    return root


@pytest.fixture(scope="session")
def mnist_raw(mnist_root: Path):
    """The real MNIST (verified), loaded once per session."""
    return load_raw_images("mnist", mnist_root, download=False)


NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "compare_runs.ipynb"


@pytest.fixture
def run_notebook():
    """``run_notebook(tracking_uri, experiment, grid_id=None)``: execute notebooks/compare_runs.ipynb
    top to bottom with nbmake against that MLflow store (fails the test with nbmake's output)."""
    import os
    import subprocess
    import sys

    pytest.importorskip("nbmake", reason="nbmake is not installed (pip install 'nbmake>=1.5', the test extra)")

    def run(tracking_uri: str, experiment: str, grid_id: str | None = None) -> None:
        env = {key: value for key, value in os.environ.items() if not key.startswith("SUPERMASK_")}
        env.update(SUPERMASK_TRACKING_URI=tracking_uri, SUPERMASK_EXPERIMENT=experiment, MPLBACKEND="Agg")
        if grid_id is not None:
            env["SUPERMASK_GRID_ID"] = grid_id
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "--nbmake", "-p", "no:cacheprovider", str(NOTEBOOK)],
            env=env, capture_output=True, text=True, timeout=600,
        )
        assert result.returncode == 0, f"nbmake failed:\n{result.stdout}\n{result.stderr}"

    return run
