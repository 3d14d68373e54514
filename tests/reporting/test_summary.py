"""summarise, summary_markdown and published_results, checked against values computed here."""

from __future__ import annotations

import math
import re
import statistics
from pathlib import Path

import pandas as pd
import pytest

from supermask_pipeline.reporting.published import published_results
from supermask_pipeline.reporting.summary import summarise, summary_markdown

METRICS = ("test_accuracy", "remaining_weights", "epochs", "wall_time_s")
METHODS_MD = Path(__file__).resolve().parents[2] / ".." / "shared" / "METHODS.md"


def _expected_by_group(grid_data) -> dict[tuple[str, str, str], dict[str, float]]:
    """Mean and sample std per (architecture, dataset, method) with the statistics module."""
    groups: dict[tuple[str, str, str], list] = {}
    for point in grid_data.kept:
        groups.setdefault((point.architecture, point.dataset, point.method), []).append(point)
    expected = {}
    for key, points in groups.items():
        row = {"seeds": len(points)}
        for metric in METRICS:
            values = [p.final[metric] for p in points]
            row[f"{metric}_mean"] = statistics.fmean(values)
            row[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else math.nan
        expected[key] = row
    return expected


def test_means_and_sample_stds_over_seeds(grid_data):
    summary = summarise(grid_data.points())
    expected = _expected_by_group(grid_data)
    assert len(summary) == len(expected)
    for row in summary.to_dict("records"):
        want = expected[(row["architecture"], row["dataset"], row["method"])]
        assert row["seeds"] == want["seeds"]
        for column, value in want.items():
            if math.isnan(value):
                assert math.isnan(row[column]), column
            else:
                assert row[column] == pytest.approx(value, rel=1e-12), column
    single = summary[summary["seeds"] == 1]
    assert len(single) == 1 and single["test_accuracy_std"].isna().all()
    assert summary[["published_test_accuracy", "published_remaining_weights",
                    "test_accuracy_difference"]].isna().all().all()


def test_rows_sorted_by_architecture_then_method(grid_data):
    summary = summarise(grid_data.points().sample(frac=1.0, random_state=3))
    assert list(zip(summary["architecture"], summary["method"])) == [
        ("fcn", "dense"), ("fcn", "signed_supermask"), ("fcn", "lottery.large_final.none.mask"),
        ("conv2", "dense"), ("conv2", "signed_supermask"), ("conv2", "lottery.large_final.none.mask"),
    ]


def test_published_join_and_difference(grid_data):
    published = published_results()
    summary = summarise(grid_data.points(), published)
    expected = _expected_by_group(grid_data)
    reference = {(r.architecture, r.dataset, r.method): r for r in published.itertuples(index=False)}
    for row in summary.to_dict("records"):
        key = (row["architecture"], row["dataset"], row["method"])
        if key in reference:
            assert row["published_test_accuracy"] == reference[key].test_accuracy
            assert row["test_accuracy_difference"] == pytest.approx(
                expected[key]["test_accuracy_mean"] - reference[key].test_accuracy)
        else:
            assert math.isnan(row["published_test_accuracy"]) and math.isnan(row["test_accuracy_difference"])
    fcn_signed = summary.set_index(["architecture", "method"]).loc[("fcn", "signed_supermask")]
    assert fcn_signed["published_test_accuracy"] == pytest.approx(0.9748)
    assert fcn_signed["published_remaining_weights"] == pytest.approx(0.0377)


def test_markdown_table_in_percent_with_signed_differences(grid_data):
    summary = summarise(grid_data.points(), published_results())
    text = summary_markdown(summary)
    lines = text.strip().splitlines()
    assert lines[0].startswith("| architecture | dataset | method | seeds |")
    assert len(lines) == 2 + len(summary)
    rows = {(cells[0], cells[2]): cells for cells in
            ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:])}
    expected = _expected_by_group(grid_data)

    dense = expected[("fcn", "mnist", "dense")]
    cells = rows[("fcn", "dense")]
    assert cells[3] == "3"
    assert cells[4] == f"{100 * dense['test_accuracy_mean']:.2f} ± {100 * dense['test_accuracy_std']:.2f}"
    assert cells[5] == "97.42"
    difference = 100 * dense["test_accuracy_mean"] - 97.42
    assert cells[6] == ("+" if difference >= 0 else "-") + f"{abs(difference):.2f}"
    assert cells[7] == "100.00 ± 0.00"
    assert cells[10] == f"{dense['wall_time_s_mean']:.1f} ± {dense['wall_time_s_std']:.1f}"

    lottery = rows[("conv2", "lottery.large_final.none.mask")]
    single = expected[("conv2", "cifar10", "lottery.large_final.none.mask")]
    assert lottery[3] == "1"
    assert lottery[4] == f"{100 * single['test_accuracy_mean']:.2f} ± –"
    assert lottery[5] == lottery[6] == lottery[8] == "–"


def test_bad_input_is_a_value_error(grid_data):
    points = grid_data.points()
    with pytest.raises(ValueError, match="wall_time_s"):
        summarise(points.drop(columns="wall_time_s"))
    with pytest.raises(ValueError, match="empty"):
        summarise(points.iloc[0:0])
    with pytest.raises(ValueError, match="remaining_weights"):
        summarise(points, published_results().drop(columns="remaining_weights"))
    with pytest.raises(ValueError, match="twice"):
        summarise(points, pd.concat([published_results()] * 2))
    summary = summarise(points)
    with pytest.raises(ValueError, match="seeds"):
        summary_markdown(summary.drop(columns="seeds"))
    with pytest.raises(ValueError, match="empty"):
        summary_markdown(summary.iloc[0:0])


def test_published_results_shape_and_sources():
    published = published_results()
    assert list(published.columns) == ["architecture", "dataset", "method", "test_accuracy", "remaining_weights",
                                       "source"]
    assert not published.duplicated(["architecture", "dataset", "method"]).any()
    assert published["test_accuracy"].between(0, 1).all()
    koster = published[published["method"].isin(["dense", "signed_supermask"])]
    assert set(koster["architecture"]) == {"fcn", "conv2", "conv4", "conv6", "conv8"}
    bernoulli = published[published["method"] == "bernoulli"]
    assert set(bernoulli["architecture"]) == {"fcn", "conv2", "conv4", "conv6"}
    assert bernoulli["source"].str.contains("secondary source").all()
    assert bernoulli["remaining_weights"].isna().all()
    assert set(published["dataset"]) == {"mnist", "cifar10"}


def test_published_results_match_methods_md():
    """Every number against the tables and text of ../shared/METHODS.md, parsed here."""
    if not METHODS_MD.is_file():
        pytest.skip(f"{METHODS_MD} not found")
    text = METHODS_MD.read_text()
    published = published_results().set_index(["architecture", "method"])
    koster = re.findall(r"^\| (\w+) / (MNIST|CIFAR-10) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) % \|$", text, re.M)
    assert len(koster) == 5
    for architecture, _, dense, signed, remaining in koster:
        assert published.loc[(architecture, "dense"), "test_accuracy"] == pytest.approx(float(dense) / 100)
        assert published.loc[(architecture, "signed_supermask"), "test_accuracy"] == pytest.approx(float(signed) / 100)
        assert published.loc[(architecture, "signed_supermask"), "remaining_weights"] == pytest.approx(
            float(remaining) / 100)
    flat = " ".join(text.split())
    match = re.search(r"Reported \(secondary sources\): ([\d.]+) % MNIST; conv2/4/6 ([\d.]+)/([\d.]+)/([\d.]+) %", flat)
    assert match
    for architecture, value in zip(("fcn", "conv2", "conv4", "conv6"), match.groups()):
        assert published.loc[(architecture, "bernoulli"), "test_accuracy"] == pytest.approx(float(value) / 100)
