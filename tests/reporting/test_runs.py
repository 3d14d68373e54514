"""load_grid_runs / latest_grid_id against the synthetic store of conftest.py."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from supermask_pipeline.reporting.runs import (
    CURVE_COLUMNS,
    PER_LAYER_COLUMNS,
    POINT_COLUMNS,
    GridRuns,
    latest_grid_id,
    load_grid_runs,
)


@pytest.fixture(scope="module")
def runs(grid_store) -> GridRuns:
    return load_grid_runs(grid_store.tracking_uri, grid_store.experiment, grid_store.grid_id)


def _by(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return frame.sort_values(keys).reset_index(drop=True)


def test_points_hold_one_row_per_point_with_the_logged_values(runs, grid_store):
    assert list(runs.points.columns) == list(POINT_COLUMNS)
    assert runs.grid_id == grid_store.grid_id
    expected = grid_store.data.points()
    got = runs.points.drop(columns="run_id")[expected.columns]
    pd.testing.assert_frame_equal(_by(got, ["grid_point"]), _by(expected, ["grid_point"]), check_dtype=False)
    assert runs.points["seed"].dtype.kind == "i"
    assert runs.points["grid_point"].is_unique


def test_latest_finished_run_of_a_point_counts_and_failed_running_stale_runs_do_not(runs, grid_store):
    kept = dict(zip(runs.points["grid_point"], runs.points["run_id"]))
    assert kept == grid_store.run_ids
    assert not set(runs.points["run_id"]) & grid_store.ignored_run_ids
    stale = grid_store.data.stale
    row = runs.points.set_index("grid_point").loc[stale.grid_point]
    assert row["test_accuracy"] != stale.final["test_accuracy"]


def test_per_layer_and_curves_are_long_frames_of_the_logged_values(runs, grid_store):
    assert list(runs.per_layer.columns) == list(PER_LAYER_COLUMNS)
    assert list(runs.curves.columns) == list(CURVE_COLUMNS)
    keys = ["grid_point", "layer"]
    pd.testing.assert_frame_equal(_by(runs.per_layer, keys), _by(grid_store.data.per_layer(), keys), check_dtype=False)
    keys = ["grid_point", "metric", "epoch"]
    # fcn.dense.seed_2 logged epoch 2 twice: the later value (the one in the expectation) counts
    pd.testing.assert_frame_equal(_by(runs.curves, keys), _by(grid_store.data.curves(), keys), check_dtype=False)
    assert set(runs.curves["metric"]) == {"train_loss", "train_accuracy", "val_loss", "val_accuracy",
                                          "remaining_weights"}


def test_frames_are_sorted_by_architecture_order_then_method(runs):
    assert list(pd.unique(runs.points["architecture"])) == ["fcn", "conv2"]
    fcn = runs.points[runs.points["architecture"] == "fcn"]
    assert list(pd.unique(fcn["method"])) == ["dense", "signed_supermask", "lottery.large_final.none.mask"]
    conv2_layers = runs.per_layer[runs.per_layer["grid_point"] == "conv2.dense.seed_0"]["layer"]
    assert list(conv2_layers) == ["conv1", "conv2", "fc1", "fc2", "fc3"]


def test_no_grid_id_loads_the_latest_grid(grid_store):
    assert latest_grid_id(grid_store.tracking_uri, grid_store.experiment) == grid_store.grid_id
    latest = load_grid_runs(grid_store.tracking_uri, grid_store.experiment)
    assert latest.grid_id == grid_store.grid_id
    assert set(latest.points["grid_point"]) == set(grid_store.run_ids)


def test_an_older_grid_loads_alone_and_does_not_leak(grid_store, runs):
    old = load_grid_runs(grid_store.tracking_uri, grid_store.experiment, grid_store.old_grid_id)
    assert set(old.points["grid_id"]) == {grid_store.old_grid_id}
    expected = grid_store.data.points(grid_store.old_grid_id)
    pd.testing.assert_frame_equal(_by(old.points[expected.columns], ["grid_point"]), _by(expected, ["grid_point"]),
                                  check_dtype=False)
    assert "edge_popup" not in set(runs.points["method"])
    assert set(runs.points["grid_id"]) == {grid_store.grid_id}


def test_unknown_grid_id_lists_the_known_ones(grid_store):
    with pytest.raises(ValueError, match="Unknown grid_id 'nope'") as error:
        load_grid_runs(grid_store.tracking_uri, grid_store.experiment, "nope")
    assert grid_store.grid_id in str(error.value) and grid_store.old_grid_id in str(error.value)


def test_missing_experiment_names_the_known_ones(grid_store):
    with pytest.raises(ValueError, match="experiment 'missing' not found.*supermask_pipeline"):
        load_grid_runs(grid_store.tracking_uri, "missing")


def test_experiment_without_grid_runs_says_to_run_the_grid(grid_store):
    with pytest.raises(ValueError, match="no finished grid points.*kedro run --pipeline grid"):
        load_grid_runs(grid_store.tracking_uri, "no_grids")
    with pytest.raises(ValueError, match="no finished grid points"):
        latest_grid_id(grid_store.tracking_uri, "no_grids")


def test_a_missing_sqlite_file_is_an_error_and_is_not_created(tmp_path: Path):
    store = tmp_path / "absent.db"
    with pytest.raises(ValueError, match="No MLflow store"):
        load_grid_runs(f"sqlite:///{store}", "supermask_pipeline")
    assert not store.exists()
