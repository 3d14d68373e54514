"""Figures of comparison.py: panels, artists, labels and plotted values (no pixels)."""

from __future__ import annotations

import statistics

import pandas as pd
import pytest
from matplotlib.container import BarContainer, ErrorbarContainer
from matplotlib.figure import Figure

from supermask_pipeline.reporting.comparison import (
    plot_accuracy_vs_remaining,
    plot_remaining_per_layer,
    plot_training_curves,
)
from supermask_pipeline.reporting.published import published_results

LOTTERY = "lottery.large_final.none.mask"


def _methods(grid_data, architecture: str) -> list[str]:
    return list(dict.fromkeys(p.method for p in grid_data.kept if p.architecture == architecture))


def _legend_texts(figure: Figure) -> list[str]:
    assert len(figure.legends) == 1
    return [text.get_text() for text in figure.legends[0].get_texts()]


def test_accuracy_vs_remaining_has_a_panel_per_architecture_and_a_marker_per_method(grid_data):
    figure = plot_accuracy_vs_remaining(grid_data.points())
    assert isinstance(figure, Figure)
    fcn, conv2 = figure.axes
    assert fcn.get_title() == "fcn (mnist)" and conv2.get_title() == "conv2 (cifar10)"
    for ax, architecture in ((fcn, "fcn"), (conv2, "conv2")):
        bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
        assert [c.get_label() for c in bars] == _methods(grid_data, architecture)
        assert ax.get_xscale() == "log"
        assert ax.get_xlabel() == "remaining weights (%)" and ax.get_ylabel() == "test accuracy (%)"
        assert ax.xaxis_inverted()
    signed = [p for p in grid_data.kept if p.architecture == "fcn" and p.method == "signed_supermask"]
    container = next(c for c in fcn.containers if c.get_label() == "signed_supermask")
    x, y = (values[0] for values in container.lines[0].get_data())
    assert x == pytest.approx(100 * statistics.fmean(p.final["remaining_weights"] for p in signed))
    assert y == pytest.approx(100 * statistics.fmean(p.final["test_accuracy"] for p in signed))
    assert _legend_texts(figure) == ["dense", "signed_supermask", LOTTERY]


def test_accuracy_vs_remaining_draws_the_published_numbers(grid_data):
    published = published_results()
    bernoulli = grid_data.points().assign(method="bernoulli")
    points = pd.concat([grid_data.points(), bernoulli[bernoulli["architecture"] == "fcn"]])
    figure = plot_accuracy_vs_remaining(points, published)
    fcn, conv2 = figure.axes
    labels = [line.get_label() for line in fcn.lines if line.get_label().endswith("(published)")]
    assert labels == ["dense (published)", "signed_supermask (published)", "bernoulli (published)"]
    signed = next(line for line in fcn.lines if line.get_label() == "signed_supermask (published)")
    assert list(signed.get_xdata()) == pytest.approx([3.77])
    assert list(signed.get_ydata()) == pytest.approx([97.48])
    bernoulli_line = next(line for line in fcn.lines if line.get_label() == "bernoulli (published)")
    assert list(bernoulli_line.get_ydata()) == pytest.approx([95.3, 95.3])  # a horizontal line
    assert _legend_texts(figure) == ["dense", "dense (published)", "signed_supermask", "signed_supermask (published)",
                                     "bernoulli", "bernoulli (published)", LOTTERY]


def test_remaining_per_layer_groups_bars_by_layer(grid_data):
    per_layer = grid_data.per_layer()
    figure = plot_remaining_per_layer(per_layer)
    fcn, conv2 = figure.axes
    assert [t.get_text() for t in conv2.get_xticklabels()] == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    assert [t.get_text() for t in fcn.get_xticklabels()] == ["fc1", "fc2", "fc3"]
    for ax, architecture, layers in ((fcn, "fcn", 3), (conv2, "conv2", 5)):
        bars = [c for c in ax.containers if isinstance(c, BarContainer)]
        assert [c.get_label() for c in bars] == _methods(grid_data, architecture)
        assert all(len(c.patches) == layers for c in bars)
        assert ax.get_ylabel() == "remaining weights (%)" and ax.get_yscale() == "log"
    signed = next(c for c in conv2.containers if isinstance(c, BarContainer) and c.get_label() == "signed_supermask")
    points = [p for p in grid_data.kept if p.architecture == "conv2" and p.method == "signed_supermask"]
    expected = [100 * statistics.fmean(p.layers[layer] for p in points) for layer in ("conv1", "conv2", "fc1", "fc2", "fc3")]
    assert [bar.get_height() for bar in signed.patches] == pytest.approx(expected)
    assert _legend_texts(figure) == ["dense", "signed_supermask", LOTTERY]


def test_training_curves_mean_line_and_band_per_method(grid_data):
    curves = grid_data.curves()
    figure = plot_training_curves(curves)
    fcn, conv2 = figure.axes
    for ax, architecture in ((fcn, "fcn"), (conv2, "conv2")):
        methods = _methods(grid_data, architecture)
        assert [line.get_label() for line in ax.lines] == methods
        assert len(ax.collections) == len(methods)  # one ± std band each
        assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "validation accuracy (%)"
    dense = [p for p in grid_data.kept if p.architecture == "fcn" and p.method == "dense"]
    line = next(line for line in fcn.lines if line.get_label() == "dense")
    assert list(line.get_xdata()) == [1, 2, 3]
    expected = [100 * statistics.fmean(values) for values in zip(*(p.curves["val_accuracy"] for p in dense))]
    assert list(line.get_ydata()) == pytest.approx(expected)


def test_training_curves_of_a_loss_stay_in_nats(grid_data):
    figure = plot_training_curves(grid_data.curves(), metric="train_loss")
    fcn = figure.axes[0]
    dense = [p for p in grid_data.kept if p.architecture == "fcn" and p.method == "dense"]
    line = next(line for line in fcn.lines if line.get_label() == "dense")
    expected = [statistics.fmean(values) for values in zip(*(p.curves["train_loss"] for p in dense))]
    assert list(line.get_ydata()) == pytest.approx(expected)
    assert fcn.get_ylabel() == "training loss (nats)"


def test_bad_input_is_a_value_error(grid_data):
    with pytest.raises(ValueError, match="No curve 'test_accuracy'.*val_accuracy"):
        plot_training_curves(grid_data.curves(), metric="test_accuracy")
    with pytest.raises(ValueError, match="empty"):
        plot_accuracy_vs_remaining(grid_data.points().iloc[0:0])
    with pytest.raises(ValueError, match="layer"):
        plot_remaining_per_layer(grid_data.per_layer().drop(columns="layer"))
