"""SafetensorsDataset: round trips, versioning, atomic save, validation on load, architecture checks."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import safetensors.torch
import torch
from fsspec.implementations.local import LocalFileOpener
from kedro.io import DataCatalog
from kedro.io.core import DatasetError, Version

from supermask_pipeline import atomic_write
from supermask_pipeline.datasets import SafetensorsDataset
from supermask_pipeline.models import LayerTensors, check_layer_tensors, get_architecture

FCN_SHAPES = {"fc1": (300, 784), "fc2": (100, 300), "fc3": (10, 100)}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _all_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _tensors(seed: int = 0, shapes: dict[str, tuple[int, ...]] | None = None) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.randn(shape, generator=generator) for name, shape in (shapes or {"a": (3, 4)}).items()}


def _assert_same(loaded, expected) -> None:
    assert sorted(loaded) == sorted(expected)
    for key, value in expected.items():
        assert loaded[key].dtype == value.dtype and torch.equal(loaded[key], value), key


# --- round trips ---------------------------------------------------------------------------------


def test_round_trip_dtypes_and_source(tmp_path):
    path = tmp_path / "sub" / "weights.safetensors"  # folder created on save
    data = {
        "w32": torch.randn(5, 7),
        "w64": torch.randn(2, 3, dtype=torch.float64),
        "bf16": torch.randn(4, dtype=torch.bfloat16),
        "mask": torch.tensor([[-1, 0, 1]], dtype=torch.int8),
        "scalar": torch.tensor(2.5),
    }
    dataset = SafetensorsDataset(filepath=str(path))
    assert not dataset.exists()
    dataset.save(data)
    assert dataset.exists()
    loaded = dataset.load()
    assert isinstance(loaded, LayerTensors) and isinstance(loaded, dict)
    assert loaded.source == str(path)
    _assert_same(loaded, data)
    assert _all_files(tmp_path) == ["sub/weights.safetensors"]
    # The file is plain safetensors, readable without this project.
    _assert_same(safetensors.torch.load_file(path), data)


def test_save_makes_tensors_contiguous_detached_and_unshared(tmp_path):
    base = torch.randn(6, 4, requires_grad=True)
    data = {"transposed": base.t(), "same_storage": base[:2].detach(), "again": base[2:4].detach()}
    assert not data["transposed"].is_contiguous()
    dataset = SafetensorsDataset(filepath=str(tmp_path / "w.safetensors"))
    dataset.save(data)
    _assert_same(dataset.load(), {k: v.detach().contiguous() for k, v in data.items()})
    assert base.grad is None


def test_versioned_save_and_load(tmp_path):
    path = tmp_path / "w.safetensors"
    SafetensorsDataset(filepath=str(path), version=Version(None, "2024-01-01T00.00.00.000Z")).save(_tensors(1))
    SafetensorsDataset(filepath=str(path), version=Version(None, "2024-01-02T00.00.00.000Z")).save(_tensors(2))
    assert _all_files(tmp_path) == [
        "w.safetensors/2024-01-01T00.00.00.000Z/w.safetensors",
        "w.safetensors/2024-01-02T00.00.00.000Z/w.safetensors",
    ]
    latest = SafetensorsDataset(filepath=str(path), version=Version(None, None)).load()
    _assert_same(latest, _tensors(2))
    assert latest.source == str(path / "2024-01-02T00.00.00.000Z" / "w.safetensors")
    pinned = SafetensorsDataset(filepath=str(path), version=Version("2024-01-01T00.00.00.000Z", None)).load()
    _assert_same(pinned, _tensors(1))


def test_catalog_entry(tmp_path):
    catalog = DataCatalog.from_config(
        {
            "dense.initial_weights": {
                "type": "supermask_pipeline.datasets.SafetensorsDataset",
                "filepath": str(tmp_path / "initial_weights.safetensors"),
                "versioned": True,
            }
        }
    )
    catalog.save("dense.initial_weights", _tensors(3))
    _assert_same(catalog.load("dense.initial_weights"), _tensors(3))
    assert "allow_empty=False" in str(catalog.get("dense.initial_weights"))


def test_empty_mapping(tmp_path):
    """The dense baseline saves no mask scores: allowed to save, read back only with allow_empty."""
    path = tmp_path / "scores.safetensors"
    SafetensorsDataset(filepath=str(path)).save({})
    with pytest.raises(DatasetError, match="contents expected at least one tensor, found none") as info:
        SafetensorsDataset(filepath=str(path)).load()
    assert str(path) in str(info.value)
    assert SafetensorsDataset(filepath=str(path), allow_empty=True).load() == {}


# --- save rejects what it cannot store -----------------------------------------------------------


@pytest.mark.parametrize(
    "data, expected",
    [
        ([torch.ones(2)], "saves a dict of layer name → torch.Tensor, got list"),
        ({1: torch.ones(2)}, "tensor names expected str, found int 1"),
        ({"a": [1.0, 2.0]}, "value of 'a' expected a torch.Tensor, found list"),
        ({"a": torch.ones(2, 2).to_sparse()}, "tensor 'a' expected a dense \\(strided\\) tensor"),
        ({"a": torch.tensor([1.0, float("nan"), float("inf")])},
         "tensor 'a' expected finite values, found 1 NaN and 1 infinite value\\(s\\) of 3; not written"),
    ],
    ids=["list", "int-key", "not-a-tensor", "sparse", "nan"],
)
def test_save_rejects(tmp_path, data, expected):
    path = tmp_path / "w.safetensors"
    with pytest.raises(DatasetError, match=expected) as info:
        SafetensorsDataset(filepath=str(path)).save(data)
    assert str(path) in str(info.value)
    assert list(tmp_path.iterdir()) == []


# --- failed saves leave the previous file --------------------------------------------------------


def test_save_failing_midway_keeps_previous(tmp_path, monkeypatch):
    path = tmp_path / "w.safetensors"
    dataset = SafetensorsDataset(filepath=str(path))
    dataset.save(_tensors(0))
    before = _digest(path)

    real_write = LocalFileOpener.write

    def half_then_fail(self, data):
        real_write(self, data[: len(data) // 2])
        raise OSError(28, "No space left on device (simulated)")

    monkeypatch.setattr(LocalFileOpener, "write", half_then_fail)
    with pytest.raises(DatasetError, match="No space left"):
        dataset.save(_tensors(1, {"a": (3, 4), "b": (50, 50)}))
    monkeypatch.undo()
    assert _digest(path) == before
    assert _all_files(tmp_path) == ["w.safetensors"]
    _assert_same(dataset.load(), _tensors(0))


def test_failed_rename_keeps_previous_version_folder_clean(tmp_path, monkeypatch):
    path = tmp_path / "w.safetensors"
    SafetensorsDataset(filepath=str(path), version=Version(None, "2024-01-01T00.00.00.000Z")).save(_tensors(0))
    before = _all_files(tmp_path)
    digest = _digest(tmp_path / before[0])

    def fail(src, dst):
        raise OSError(5, "Input/output error (simulated)")

    monkeypatch.setattr(atomic_write.os, "replace", fail)
    with pytest.raises(DatasetError, match="Input/output error"):
        SafetensorsDataset(filepath=str(path), version=Version(None, "2024-01-02T00.00.00.000Z")).save(_tensors(1))
    monkeypatch.undo()
    assert _all_files(tmp_path) == before
    assert sorted(p.name for p in path.iterdir()) == ["2024-01-01T00.00.00.000Z"]  # no empty version folder
    assert _digest(tmp_path / before[0]) == digest
    _assert_same(SafetensorsDataset(filepath=str(path), version=Version(None, None)).load(), _tensors(0))


# --- validation on load --------------------------------------------------------------------------


def _good_bytes() -> bytes:
    return safetensors.torch.save(_tensors(0, {"fc1": (4, 6), "fc2": (3, 4)}))


def _with(tensor: torch.Tensor) -> bytes:
    data = _tensors(0, {"fc1": (4, 6)})
    data["fc2"] = tensor
    return safetensors.torch.save(data)


_NAN = torch.tensor([[1.0, float("nan")], [float("nan"), 0.0]])
_INF = torch.tensor([float("inf"), -float("inf"), 1.0, float("inf")], dtype=torch.float64)


@pytest.mark.parametrize(
    "content, expected",
    [
        (lambda: _good_bytes()[: len(_good_bytes()) // 2],
         "could not be read as safetensors \\(truncated or corrupt\\?\\)"),
        (lambda: _good_bytes()[:-1], "could not be read as safetensors \\(truncated or corrupt\\?\\)"),
        (lambda: _good_bytes()[:5], "could not be read as safetensors"),
        (lambda: b"this is not a safetensors file, just text" * 3, "could not be read as safetensors"),
        (lambda: b"", "contents expected tensors, found an empty file \\(0 bytes\\)"),
        (lambda: safetensors.torch.save({}), "contents expected at least one tensor, found none"),
        (lambda: _with(_NAN), "tensor 'fc2' expected finite values, found 2 NaN and 0 infinite value\\(s\\) of 4"),
        (lambda: _with(_INF), "tensor 'fc2' expected finite values, found 0 NaN and 3 infinite value\\(s\\) of 4"),
        (lambda: _with(_NAN.to(torch.float16)), "tensor 'fc2' expected finite values, found 2 NaN"),
    ],
    ids=["truncated-half", "truncated-last-byte", "truncated-header", "garbage", "empty-file", "no-tensors",
         "nan", "inf", "nan-float16"],
)
def test_load_validation(tmp_path, content, expected):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content())
    before = _digest(path)
    with pytest.raises(DatasetError, match=expected) as info:
        SafetensorsDataset(filepath=str(path)).load()
    assert f"Safetensors file {path}" in str(info.value)
    assert _digest(path) == before
    assert _all_files(tmp_path) == ["bad.safetensors"]


def test_missing_file(tmp_path):
    path = tmp_path / "absent.safetensors"
    with pytest.raises(DatasetError, match="does not exist") as info:
        SafetensorsDataset(filepath=str(path)).load()
    assert str(path) in str(info.value)
    with pytest.raises(DatasetError, match="Did not find any versions"):
        SafetensorsDataset(filepath=str(path), version=Version(None, None)).load()


def test_loading_never_unpickles(tmp_path, monkeypatch):
    """Loading goes through safetensors' parser only, never torch.load / pickle."""
    import pickle

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle used on the load path")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    path = tmp_path / "w.safetensors"
    path.write_bytes(_good_bytes())
    assert sorted(SafetensorsDataset(filepath=str(path)).load()) == ["fc1", "fc2"]

    pickled = tmp_path / "pickled.safetensors"
    torch.save(_tensors(0), pickled)  # the zip/pickle format must be refused, not executed
    monkeypatch.undo()
    with pytest.raises(DatasetError, match="could not be read as safetensors"):
        SafetensorsDataset(filepath=str(pickled)).load()


# --- architecture checks name the file -----------------------------------------------------------


def _write_layers(path: Path, shapes: dict[str, tuple[int, ...]], dtype=torch.float32) -> None:
    safetensors.torch.save_file({k: torch.zeros(s, dtype=dtype) for k, s in shapes.items()}, path)


def test_wrong_shape_names_file_layer_and_shapes(tmp_path):
    path = tmp_path / "initial_weights.safetensors"
    _write_layers(path, {**FCN_SHAPES, "fc2": (100, 299)})
    before = _digest(path)
    tensors = SafetensorsDataset(filepath=str(path)).load()
    with pytest.raises(ValueError) as info:
        check_layer_tensors(get_architecture("fcn"), tensors, "initial weights")
    message = str(info.value)
    assert str(path) in message and "'fc2'" in message
    assert "(100, 299)" in message and "expected (100, 300)" in message
    assert _digest(path) == before


def test_missing_key_names_file_and_layers(tmp_path):
    path = tmp_path / "initial_weights.safetensors"
    _write_layers(path, {"fc1": FCN_SHAPES["fc1"], "fc3": FCN_SHAPES["fc3"]})
    tensors = SafetensorsDataset(filepath=str(path)).load()
    with pytest.raises(ValueError) as info:
        check_layer_tensors(get_architecture("fcn"), tensors, "initial weights")
    message = str(info.value)
    assert str(path) in message
    assert re.search(r"expected tensors \['fc1', 'fc2', 'fc3'\], found \['fc1', 'fc3'\] \(missing \['fc2'\]", message)


def test_wrong_dtype_names_file(tmp_path):
    path = tmp_path / "initial_weights.safetensors"
    _write_layers(path, FCN_SHAPES, dtype=torch.int32)
    tensors = SafetensorsDataset(filepath=str(path)).load()
    with pytest.raises(ValueError) as info:
        check_layer_tensors(get_architecture("fcn"), tensors, "initial weights")
    message = str(info.value)
    assert str(path) in message and "'fc1'" in message
    assert "dtype torch.int32" in message and "expected a floating dtype" in message


def test_int8_masks_load_and_fit(tmp_path):
    path = tmp_path / "masks.safetensors"
    masks = {k: torch.randint(-1, 2, s, dtype=torch.int8) for k, s in FCN_SHAPES.items()}
    SafetensorsDataset(filepath=str(path)).save(masks)
    loaded = SafetensorsDataset(filepath=str(path)).load()
    _assert_same(loaded, masks)
    check_layer_tensors(get_architecture("fcn"), loaded, "masks", floating=False)


def test_fitting_weights_pass(tmp_path):
    path = tmp_path / "initial_weights.safetensors"
    SafetensorsDataset(filepath=str(path)).save(_tensors(0, FCN_SHAPES))
    check_layer_tensors(get_architecture("fcn"), SafetensorsDataset(filepath=str(path)).load(), "initial weights")
