"""A grid point's record (point_record.json) and the GridRuns frames built from the records."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from supermask_pipeline.reporting.records import CURVES, failed_points, grid_runs_from_records, point_record
from supermask_pipeline.reporting.runs import CURVE_COLUMNS, PER_LAYER_COLUMNS, POINT_COLUMNS, GridRuns

LAYERS = {"fc1": 0.25, "fc2": 0.5, "fc3": 0.75}


def own(architecture: str = "fcn", method: str = "dense", seed: int = 0) -> dict:
    """A point's own parameters, as GridPoint.own_parameters() gives them."""
    name = f"{architecture}.{method}.seed_{seed}"
    return {"name": name, "architecture": architecture, "method": method, "seed": seed,
            "dataset": "mnist" if architecture == "fcn" else "cifar10", "model": {"architecture": architecture},
            "recipe": {}, "fingerprint": f"fp-{name}"}


def summary(accuracy: float = 0.9, layers: dict[str, float] = LAYERS) -> dict:
    """An evaluation summary: the values, per_layer rows with the total row last."""
    rows = [{"layer": layer, "num_weights": 100, "remaining": int(100 * value), "positive": int(100 * value),
             "negative": 0, "remaining_weights": value} for layer, value in layers.items()]
    rows.append({"layer": "total", "num_weights": 100 * len(rows), "remaining": 0, "positive": 0, "negative": 0,
                 "remaining_weights": 0.5})
    return {"test_accuracy": accuracy, "test_loss": 0.3, "remaining_weights": 0.5, "remaining_weight_count": 150.0,
            "method": "dense", "architecture": "fcn", "per_layer": rows}


def history(epochs: int = 3, offset: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame({
        "epoch": list(range(1, epochs + 1)),
        "train_loss": [2.0 - e / 10 - offset for e in range(epochs)],
        "train_accuracy": [0.1 * (e + 1) + offset for e in range(epochs)],
        "val_loss": [2.5 - e / 10 - offset for e in range(epochs)],
        "val_accuracy": [0.05 * (e + 1) + offset for e in range(epochs)],
        "remaining_weights": [1.0 - 0.1 * e - offset for e in range(epochs)],
        "learning_rate": [0.1] * epochs,
        "weight_decay": [0.0] * epochs,
        "epoch_time_s": [1.5 + e for e in range(epochs)],
    })


def test_a_record_holds_the_point_its_final_figures_layers_and_curves():
    frame = history(3)
    record = point_record(own("fcn", "dense", 2), "tiny", "run-1", summary(0.91), frame)
    assert record == {
        "grid_id": "tiny",
        "grid_point": "fcn.dense.seed_2",
        "status": "FINISHED",
        "fingerprint": "fp-fcn.dense.seed_2",
        "run_id": "run-1",
        "architecture": "fcn",
        "dataset": "mnist",
        "method": "dense",
        "seed": 2,
        "test_accuracy": 0.91,
        "test_loss": 0.3,
        "remaining_weights": 0.5,
        "epochs": 3,
        "wall_time_s": 1.5 + 2.5 + 3.5,
        "per_layer": LAYERS,  # the total row is left out
        "curves": {name: [float(v) for v in frame[name]] for name in CURVES},
    }
    assert json.loads(json.dumps(record)) == record  # written as JSON
    assert set(record["curves"]) == {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "remaining_weights"}


def test_a_record_without_mlflow_has_no_run_id_and_keeps_only_the_curves_the_history_has():
    frame = history(2).drop(columns=["val_loss", "val_accuracy"])
    record = point_record(own(), "tiny", None, summary(), frame)
    assert record["run_id"] is None
    assert set(record["curves"]) == {"train_loss", "train_accuracy", "remaining_weights"}
    assert record["epochs"] == 2


def test_a_lottery_record_has_the_last_round_curves_and_every_round_epochs():
    rounds = []
    for r in range(3):
        frame = history(2, offset=r / 100)
        frame.insert(0, "round", r)
        frame.insert(0, "configuration", "large_final.none.mask")
        rounds.append(frame)
    frame = pd.concat(rounds, ignore_index=True)
    record = point_record(own(method="lottery.large_final.none.mask"), "tiny", None, summary(), frame)
    assert record["epochs"] == 6
    assert record["wall_time_s"] == pytest.approx(3 * (1.5 + 2.5))
    last = rounds[-1]
    assert record["curves"] == {name: [float(v) for v in last[name]] for name in CURVES}
    assert record["method"] == "lottery.large_final.none.mask"


def test_an_empty_history_is_refused():
    with pytest.raises(ValueError, match=r"grid point fcn\.dense\.seed_0: the training history is empty"):
        point_record(own(), "tiny", None, summary(), history(0))


def _records() -> list[dict]:
    points = [("conv2", "dense", 1), ("fcn", "signed_supermask", 0), ("fcn", "lottery.large_final.none.mask", 0),
              ("fcn", "dense", 1), ("fcn", "dense", 0)]
    return [point_record(own(a, m, s), "tiny", f"run-{i}", summary(0.5 + i / 10), history(2 + (i % 2)))
            for i, (a, m, s) in enumerate(points)]


def test_grid_runs_from_records_builds_the_frames_of_grid_runs():
    records = [json.loads(json.dumps(record)) for record in _records()]  # as read back from the files
    runs = grid_runs_from_records("tiny", records)
    assert isinstance(runs, GridRuns) and runs.grid_id == "tiny"
    assert list(runs.points.columns) == list(POINT_COLUMNS)
    assert list(runs.per_layer.columns) == list(PER_LAYER_COLUMNS)
    assert list(runs.curves.columns) == list(CURVE_COLUMNS)
    # Sorted as the MLflow loader sorts: architectures and methods in their order, then seeds.
    assert list(runs.points["grid_point"]) == [
        "fcn.dense.seed_0", "fcn.dense.seed_1", "fcn.signed_supermask.seed_0",
        "fcn.lottery.large_final.none.mask.seed_0", "conv2.dense.seed_1"]
    assert set(runs.points["grid_id"]) == {"tiny"}
    by_point = {record["grid_point"]: record for record in records}
    for row in runs.points.to_dict(orient="records"):
        record = by_point[row["grid_point"]]
        for key in ("run_id", "architecture", "dataset", "method", "seed", "test_accuracy", "test_loss",
                    "remaining_weights", "epochs", "wall_time_s"):
            assert row[key] == record[key], key
    assert runs.points["seed"].dtype.kind == "i"


def test_grid_runs_per_layer_and_curves_are_long_and_ordered():
    records = _records()
    runs = grid_runs_from_records("tiny", records)
    assert len(runs.per_layer) == len(records) * len(LAYERS)
    first = runs.per_layer[runs.per_layer["grid_point"] == "fcn.dense.seed_0"]
    assert list(first["layer"]) == ["fc1", "fc2", "fc3"] and list(first["remaining_weights"]) == list(LAYERS.values())
    assert len(runs.curves) == sum(len(CURVES) * record["epochs"] for record in records)
    assert runs.curves["epoch"].dtype == "int64" and runs.curves["value"].dtype == "float64"
    curve = runs.curves[(runs.curves["grid_point"] == "fcn.dense.seed_1") & (runs.curves["metric"] == "val_accuracy")]
    record = next(r for r in records if r["grid_point"] == "fcn.dense.seed_1")
    assert list(curve["epoch"]) == list(range(1, record["epochs"] + 1))  # epoch 1 first
    assert list(curve["value"]) == record["curves"]["val_accuracy"]


def test_layers_sort_as_in_the_network():
    layers = {"fc10": 0.1, "fc2": 0.2, "conv1": 0.3, "fc1": 0.4}
    record = point_record(own("conv2"), "tiny", None, summary(layers=layers), history(1))
    runs = grid_runs_from_records("tiny", [record])
    assert list(runs.per_layer["layer"]) == ["conv1", "fc1", "fc2", "fc10"]


def test_no_records_is_refused():
    with pytest.raises(ValueError, match=r"Grid 'tiny' has no point records: nothing to report"):
        grid_runs_from_records("tiny", [])
    with pytest.raises(ValueError, match="no point records"):
        grid_runs_from_records("tiny", iter(()))


def test_a_record_reads_the_per_layer_rows_of_the_evaluation_table():
    import torch

    from supermask_pipeline.masks import remaining_weights_table

    masks = {"fc1": torch.tensor([[1, 0], [0, 0]], dtype=torch.int8),
             "fc2": torch.tensor([1, -1, 0, 0, 0, 0, 0, 0], dtype=torch.int8)}
    table = remaining_weights_table(masks)
    evaluation = {"test_accuracy": 0.5, "test_loss": 1.0, "remaining_weights": float(table.iloc[-1]["remaining_weights"]),
                  "per_layer": table.to_dict(orient="records")}
    record = point_record(own(), "tiny", None, evaluation, history(1))
    assert record["per_layer"] == {"fc1": 0.25, "fc2": 0.25}
    assert record["remaining_weights"] == pytest.approx(3 / 12)
    assert json.loads(json.dumps(record)) == record


def test_failed_records_are_listed_and_left_out_of_the_figures():
    good = point_record(own("fcn", "dense", 0), "tiny", "run-1", summary(0.91), history(2))
    failed = {"grid_id": "tiny", "grid_point": "fcn.dense.seed_1", "status": "FAILED", "fingerprint": None,
              "run_id": "run-2", "architecture": "fcn", "dataset": "mnist", "method": "dense", "seed": 1,
              "error": "TrainingDivergedError: …"}
    assert failed_points([good, failed]) == ["fcn.dense.seed_1"]
    runs = grid_runs_from_records("tiny", [good, failed])
    assert list(runs.points["grid_point"]) == ["fcn.dense.seed_0"]
    with pytest.raises(ValueError, match="no point records"):
        grid_runs_from_records("tiny", [failed])

