"""Training checkpoints: the full state of a run, written atomically, found again by fingerprint.

A checkpoint is two files in ``<root>/<fingerprint>/``:

- ``epoch_NNNN.safetensors``: every tensor of the state: the model's ``state_dict``
  (``model.<name>``: weights, mask scores, buffers), the optimizer's tensor state
  (``optimizer.<param index>.<key>``: momentum buffers, Adam moments and step), the
  random-number-generator states (``rng.batch_order``, ``rng.augmentation``,
  ``rng.mask_sampling`` of a masked network, ``rng.torch``,
  ``rng.cuda.<i>``, ``rng.numpy``) and, with ``restore_best``, the model state of the
  best epoch so far (``best.model.<name>``), uint8/int64/float32.
- ``epoch_NNNN.json``: the rest (format version, fingerprint, the identity it was
  computed from, epoch, optimizer hyperparameters, scheduler state, the metric
  history so far, Python's and NumPy's generator positions) and the sha256 of the
  tensor file. It is written second and is the commit record: a checkpoint counts
  only when its JSON exists and the tensor file matches its checksum.

Both files are replaced atomically (temporary file beside the target, fsync, rename;
:mod:`supermask_pipeline.atomic_write`), so a run killed at any instant leaves the previous
checkpoint intact. Nothing is read with pickle: tensors come from safetensors,
everything else from JSON.

The fingerprint is the sha256 of the run's identity (hyperparameters that change the
result, the initial model state, the data, the code of the training packages), so a
rerun with the same inputs finds its checkpoints and a rerun with changed inputs gets a
fresh folder; the old one is never deleted.

:func:`capture_state` builds a :class:`TrainingState` from the live training objects and
:func:`restore_state` loads one back; :class:`Checkpointing` is what a caller of the
engine passes (the store and the run's identity).
"""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import json
import logging
import math
import os
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
from safetensors import SafetensorError
from torch import nn

from supermask_pipeline.atomic_write import atomic_write_bytes

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
_EPOCH_FILE = re.compile(r"^epoch_(\d{4,})\.json$")
_EPOCH_TENSORS = re.compile(r"^epoch_(\d{4,})\.safetensors$")
_TEMPORARY = re.compile(r"^\.epoch_\d{4,}\.(?:json|safetensors)\.(\d+)\.[0-9a-f]+\.tmp$")


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or is unreadable/inconsistent (the message names the file)."""


@dataclass
class TrainingState:
    """Everything needed to continue a run exactly where it stopped.

    Attributes:
        epoch: epochs completed (≥ 0).
        tensors: name → tensor (see the module docstring for the names).
        meta: JSON-serialisable rest (scheduler, optimizer hyperparameters, history, RNG positions).
    """

    epoch: int
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)


def fingerprint(identity: Mapping[str, Any]) -> str:
    """sha256 (hex, 64 characters) of the canonical JSON of ``identity``.

    Raises:
        TypeError: a value JSON cannot encode (convert it to str, int, float, list or dict first).
    """
    return hashlib.sha256(_canonical_json(identity).encode("utf-8")).hexdigest()


def tensors_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and bytes of ``tensors`` (sorted by name), e.g. an initial state."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def array_sha256(*arrays: np.ndarray) -> str:
    """sha256 over dtypes, shapes and bytes of numpy arrays (e.g. a split's images and labels)."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype}|{array.shape}|".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


@functools.lru_cache(maxsize=None)
def code_sha256(*packages: str) -> str:
    """sha256 of the ``.py`` sources of the named packages or modules (the code that decides
    what training computes): every file under a package's folder, or a module's one file.

    Read once per process and cached: the hash describes the code this process runs,
    even if the files are edited while a long run is under way.

    Raises:
        ModuleNotFoundError: an unknown package or module name.
    """
    import importlib

    digest = hashlib.sha256()
    for name in packages:
        module = importlib.import_module(name)
        source = Path(module.__file__)
        folder = source.parent
        paths = sorted(folder.rglob("*.py")) if hasattr(module, "__path__") else [source]
        for path in paths:
            digest.update(str(path.relative_to(folder)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


class CheckpointStore:
    """A folder of checkpoints, one subfolder per run fingerprint.

    Args:
        root: the folder (created on the first save), e.g. ``data/06_models/<method>/checkpoints``.
        keep: regular checkpoints kept per fingerprint (the newest; older ones are deleted
            after a newer one is committed). The divergence checkpoint is kept apart.

    Raises:
        ValueError: ``keep`` < 1.
    """

    def __init__(self, root: str | Path, keep: int = 1) -> None:
        if keep < 1:
            raise ValueError(f"CheckpointStore keep must be ≥ 1, got {keep}.")
        self.root = Path(root)
        self.keep = keep

    def __repr__(self) -> str:
        return f"CheckpointStore({str(self.root)!r}, keep={self.keep})"

    def folder(self, run_fingerprint: str) -> Path:
        """Where the checkpoints of one fingerprint live."""
        return self.root / run_fingerprint[:16]

    def save(self, run_fingerprint: str, state: TrainingState, *, name: str | None = None) -> Path:
        """Write ``state`` atomically; returns the JSON path. ``name`` (default ``epoch_NNNN``) sets the file stem.

        Raises:
            CheckpointError: the state cannot be serialised or written (earlier checkpoints are untouched).
        """
        folder = self.folder(run_fingerprint)
        stem = name or f"epoch_{state.epoch:04d}"
        try:
            payload = safetensors.torch.save(
                {key: value.detach().to("cpu").contiguous() for key, value in state.tensors.items()}
            )
            record = {
                "format_version": FORMAT_VERSION,
                "fingerprint": run_fingerprint,
                "epoch": state.epoch,
                "tensors_file": f"{stem}.safetensors",
                "tensors_sha256": hashlib.sha256(payload).hexdigest(),
                **state.meta,
            }
            text = _canonical_json(record, indent=1)
            atomic_write_bytes(folder / f"{stem}.safetensors", payload)
            atomic_write_bytes(folder / f"{stem}.json", text.encode("utf-8"))
        except (OSError, TypeError, ValueError, SafetensorError) as err:
            raise CheckpointError(f"Could not write checkpoint {folder / stem}.*: {err}") from err
        if name is None:
            self._prune(folder)
        return folder / f"{stem}.json"

    def latest(self, run_fingerprint: str) -> TrainingState | None:
        """The newest valid regular checkpoint of ``run_fingerprint``, or None.

        A checkpoint that fails its checks (unreadable JSON, checksum mismatch) is skipped
        with a warning naming the file, and the next older one is tried; none is deleted.
        """
        folder = self.folder(run_fingerprint)
        for json_path in sorted(self._epoch_records(folder), reverse=True):
            try:
                return self.read(json_path, run_fingerprint)
            except CheckpointError as err:
                logger.warning("Skipping checkpoint: %s", err)
        return None

    def read(self, json_path: Path, run_fingerprint: str | None = None) -> TrainingState:
        """Read and verify one checkpoint from its JSON record.

        Raises:
            CheckpointError: unreadable JSON, another format version or fingerprint, a
                missing or changed tensor file (sha256), or a tensor file safetensors rejects.
        """
        try:
            record = json.loads(json_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise CheckpointError(f"{json_path} is not a readable checkpoint record: {err}") from err
        if not isinstance(record, dict) or record.get("format_version") != FORMAT_VERSION:
            found = record.get("format_version") if isinstance(record, dict) else type(record).__name__
            raise CheckpointError(f"{json_path}: expected format_version {FORMAT_VERSION}, found {found!r}.")
        if run_fingerprint is not None and record.get("fingerprint") != run_fingerprint:
            raise CheckpointError(
                f"{json_path}: expected fingerprint {run_fingerprint}, found {record.get('fingerprint')!r}."
            )
        tensor_path = json_path.with_name(str(record.get("tensors_file", "")))
        try:
            payload = tensor_path.read_bytes()
        except OSError as err:
            raise CheckpointError(f"{json_path}: its tensor file {tensor_path} cannot be read: {err}") from err
        found = hashlib.sha256(payload).hexdigest()
        if found != record.get("tensors_sha256"):
            raise CheckpointError(
                f"{tensor_path}: expected sha256 {record.get('tensors_sha256')}, found {found} (changed or truncated)."
            )
        try:
            tensors = safetensors.torch.load(payload)
        except SafetensorError as err:
            raise CheckpointError(f"{tensor_path} is not a valid safetensors file: {err}") from err
        meta = {k: v for k, v in record.items() if k not in ("epoch", "tensors_file", "tensors_sha256")}
        return TrainingState(epoch=int(record["epoch"]), tensors=tensors, meta=meta)

    def other_runs(self, run_fingerprint: str) -> list[dict[str, Any]]:
        """Records of the newest checkpoint of every *other* fingerprint under ``root``, newest first.

        Returns:
            The parsed JSON records (dicts), each with ``_path`` (str) and ``_mtime``
            (seconds since the epoch) added; unreadable records are skipped.
        """
        records = []
        if not self.root.is_dir():
            return records
        for folder in self.root.iterdir():
            if not folder.is_dir() or folder.name == run_fingerprint[:16]:
                continue
            paths = sorted(self._epoch_records(folder))
            if not paths:
                continue
            try:
                record = json.loads(paths[-1].read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            record["_path"] = str(paths[-1])
            record["_mtime"] = paths[-1].stat().st_mtime
            records.append(record)
        return sorted(records, key=lambda r: r["_mtime"], reverse=True)

    @staticmethod
    def _epoch_records(folder: Path) -> list[Path]:
        if not folder.is_dir():
            return []
        return [p for p in folder.iterdir() if _EPOCH_FILE.match(p.name)]

    def _prune(self, folder: Path) -> None:
        """Delete checkpoints beyond ``keep``, tensor files without a record older than the
        newest record, and temporary files of writers that no longer run (e.g. SIGKILLed)."""
        records = sorted(self._epoch_records(folder))
        for json_path in records[: -self.keep]:
            json_path.unlink(missing_ok=True)  # the record first: a half-pruned checkpoint is simply invalid
            json_path.with_suffix(".safetensors").unlink(missing_ok=True)
        kept = {p.with_suffix(".safetensors").name for p in records[-self.keep :]}
        newest = records[-1].name if records else ""
        for path in folder.iterdir():
            if _EPOCH_TENSORS.match(path.name) and path.name not in kept and path.with_suffix(".json").name < newest:
                path.unlink(missing_ok=True)
            elif (found := _TEMPORARY.match(path.name)) and not _process_alive(int(found.group(1))):
                path.unlink(missing_ok=True)


class CheckpointWriter:
    """Writes one run's checkpoints on a background thread, one at a time and in order, so that
    the next epoch trains while the previous state is serialised, hashed, written and fsynced.

    The state handed to :meth:`submit` is a capture (:func:`capture_state` clones every live
    tensor), so training may change the model meanwhile. At most one write is in flight: the
    next :meth:`submit`, :meth:`wait` and :meth:`close` wait for it and raise its error, so a
    failed write stops the run at most one epoch later and every checkpoint the run reports is
    on disk. Files are written exactly as :meth:`CheckpointStore.save` writes them (atomically).

    Args:
        store: where to write.
        run_fingerprint: the run's fingerprint (its folder in ``store``).
    """

    def __init__(self, store: CheckpointStore, run_fingerprint: str) -> None:
        self.store, self.run_fingerprint = store, run_fingerprint
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending: tuple[int, concurrent.futures.Future[Path]] | None = None
        self.saved: tuple[int, Path] | None = None  # (epoch, JSON record) of the newest written checkpoint

    def submit(self, state: TrainingState) -> None:
        """Start writing ``state`` (after the write in flight has ended).

        Raises:
            CheckpointError: the previous write failed (this one is then not started).
        """
        self.wait()
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="checkpoint-writer")
        self._pending = (state.epoch, self._pool.submit(self.store.save, self.run_fingerprint, state))

    def wait(self) -> tuple[int, Path] | None:
        """Wait for the write in flight; returns (epoch, JSON record) of the newest checkpoint written.

        Raises:
            CheckpointError: the write failed (earlier checkpoints are untouched).
        """
        if self._pending is not None:
            epoch, future = self._pending
            self._pending = None
            self.saved = (epoch, future.result())
        return self.saved

    def close(self) -> None:
        """Wait for the write in flight and end the thread; a failed write is logged, not raised
        (for cleanup while another error propagates: call :meth:`wait` first to see it)."""
        try:
            self.wait()
        except CheckpointError as err:
            logger.error("%s", err)
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but not ours, or the platform cannot tell: leave its files alone
        return True
    return True


def identity_changes(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Human-readable differences between two identities (nested dicts), sorted by dotted key.

    A 64-character string on both sides (a sha256) is reported as "(content changed)".

    Returns:
        e.g. ``["data.train_split (content changed)", "training.learning_rate: 0.05 → 0.1"]``;
        empty when they are equal.
    """
    changes = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            changes += identity_changes(a, b, f"{prefix}{key}.")
        elif a != b:
            if isinstance(a, str) and isinstance(b, str) and len(a) == len(b) == 64:
                changes.append(f"{prefix}{key} (content changed)")
            else:
                changes.append(f"{prefix}{key}: {a!r} → {b!r}")
    return changes


@dataclass(frozen=True)
class Checkpointing:
    """Where and under which identity a run checkpoints.

    Attributes:
        store: the checkpoint folder.
        identity: JSON-serialisable description of the run's inputs that the engine cannot
            see itself: the method and its options, the data (e.g. split checksums), the
            architecture. The engine adds the result-relevant training hyperparameters,
            a checksum of the model's initial state and of the training code. An optional
            ``"series"`` entry names a family of runs (e.g. ``"lottery round 3"``): when a
            run starts over, the changed inputs are explained against the newest run of
            the same series only.
    """

    store: CheckpointStore
    identity: Mapping[str, Any] = field(default_factory=dict)


def capture_state(
    epoch: int,
    rows: list[dict[str, float]],
    identity: Mapping[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    generators: Mapping[str, torch.Generator],
    best_state: Mapping[str, torch.Tensor] | None = None,
) -> TrainingState:
    """The complete training state after ``epoch`` (tensors cloned, so later steps do not change it).

    Args:
        epoch: epochs completed (≥ 0; 0 is the initial state).
        rows: the history rows so far (JSON-serialisable floats; NaN allowed).
        identity: the run's identity (the fingerprint's input), stored for explanations.
        model, optimizer, scheduler: the live training objects.
        generators: stream name → generator, stored as ``rng.<name>`` (uint8 state):
            ``batch_order``, ``augmentation`` and, for a network with a mask-sampling
            stream, ``mask_sampling``.
        best_state: the model state of the best epoch so far (``best.model.<name>``), or None.

    Returns:
        A :class:`TrainingState` with the tensor names of the module docstring; the
        global generators (torch, CUDA, NumPy, Python) are captured too.
    """
    tensors = {f"model.{name}": value.detach().clone() for name, value in model.state_dict().items()}
    optimizer_state = optimizer.state_dict()
    other_state: dict[str, dict[str, Any]] = {}
    for index, entries in optimizer_state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{key}"] = value.detach().clone()
            else:
                other_state.setdefault(str(index), {})[key] = value
    tensors.update({f"rng.{name}": generator.get_state() for name, generator in generators.items()})
    if best_state is not None:
        tensors.update({f"best.model.{name}": value for name, value in best_state.items()})
    rng_tensors, rng_meta = capture_rng()
    tensors.update(rng_tensors)
    meta = {
        "identity": dict(identity),
        "history": [dict(row) for row in rows],
        "optimizer": {"param_groups": optimizer_state["param_groups"], "other_state": other_state},
        "scheduler": scheduler.state_dict(),
        **rng_meta,
    }
    return TrainingState(epoch=epoch, tensors=tensors, meta=meta)


def restore_state(
    state: TrainingState,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    generators: Mapping[str, torch.Generator],
) -> tuple[list[dict[str, float]], dict[str, torch.Tensor] | None]:
    """Load ``state`` (from :func:`capture_state`) into the live objects and the global generators.

    Args:
        state: a checkpoint of the same run (same fingerprint).
        model, optimizer, scheduler: the live objects, built as for a fresh start.
        generators: stream name → generator to set from ``rng.<name>``.

    Returns:
        (the history rows of the epochs done, NaN restored; the best model state so far or None).

    Raises:
        CheckpointError: a generator of ``generators`` has no state in the checkpoint.
        KeyError, RuntimeError, ValueError: a state of another format (see :func:`restore_rng`).
    """
    tensors, meta = state.tensors, state.meta
    missing = sorted(f"rng.{name}" for name in generators if f"rng.{name}" not in tensors)
    if missing:
        raise CheckpointError(
            f"The checkpoint of epoch {state.epoch} has no state for {missing}; it was not written by this run."
        )
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    optimizer_state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            optimizer_state.setdefault(int(index), {})[name] = value
    for index, entries in meta["optimizer"]["other_state"].items():
        optimizer_state.setdefault(int(index), {}).update(entries)
    optimizer.load_state_dict({"state": optimizer_state, "param_groups": meta["optimizer"]["param_groups"]})
    scheduler.load_state_dict(meta["scheduler"])
    for name, generator in generators.items():
        generator.set_state(tensors[f"rng.{name}"])
    restore_rng(tensors, meta)
    best = {k[len("best.model."):]: v for k, v in tensors.items() if k.startswith("best.model.")}
    rows = [{k: json_float(v) for k, v in row.items()} for row in meta["history"]]
    return rows, best or None


def capture_rng() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The global generators' states, for a checkpoint.

    Returns:
        (tensors, meta): tensors ``rng.torch`` (uint8, torch's CPU state), ``rng.cuda.<i>``
        (uint8, one per initialised CUDA device) and ``rng.numpy`` (int64 (624,), the
        MT19937 key); meta, JSON-serialisable: NumPy's position and Gaussian cache, and
        Python's ``random`` state.
    """
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(keys.astype(np.int64))
    version, internal, gauss = random.getstate()
    meta = {
        "numpy_rng": {"kind": kind, "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python_rng": {"version": version, "internal": list(internal), "gauss": gauss},
    }
    return tensors, meta


def restore_rng(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
    """Set the global generators from :func:`capture_rng`'s output (CUDA states only where
    CUDA is available, for as many devices as there are).

    Raises:
        KeyError: a state missing from ``tensors`` or ``meta`` (not a checkpoint of this format).
        RuntimeError, ValueError: a state of the wrong size or type (from torch / NumPy / random).
    """
    torch.set_rng_state(tensors["rng.torch"])
    cuda = sorted(k for k in tensors if k.startswith("rng.cuda."))
    if cuda and torch.cuda.is_available():
        states = [tensors[k] for k in cuda][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(states)
    n = meta["numpy_rng"]
    np.random.set_state(
        (n["kind"], tensors["rng.numpy"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    p = meta["python_rng"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))


def _canonical_json(value: Any, indent: int | None = None) -> str:
    return json.dumps(_json_safe(value), sort_keys=True, indent=indent, allow_nan=False, ensure_ascii=False)


def _json_safe(value: Any) -> Any:
    """NaN/inf floats → the strings "nan"/"inf"/"-inf" (strict JSON); tuples → lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.integer, np.floating)):
        return _json_safe(value.item())
    return value


def json_float(value: Any) -> Any:
    """Inverse of the NaN/inf encoding of checkpoint JSON for one value."""
    if isinstance(value, str) and value in ("nan", "inf", "-inf"):
        return float(value)
    return value
