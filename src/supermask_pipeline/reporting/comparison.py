"""Figures that compare the methods of a grid over seeds (one panel per architecture).

Inputs are the frames of :func:`~supermask_pipeline.reporting.runs.load_grid_runs` (fractions);
the figures show percent. A method keeps its colour and marker in every figure: the methods of
:func:`~supermask_pipeline.reporting.runs.method_order` (the registry's) have fixed ones, ``lottery.*`` and other
methods take the next ones in sorted order. The log remaining-weights axis decreasing to the right
follows Zhou et al. 2019 (Deconstructing Lottery Tickets), as ``plots.plot_accuracy_vs_remaining``.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402

from supermask_pipeline.reporting.runs import layer_sort_key, method_order, sort_key  # noqa: E402

_MARKERS = "os^Dv<>pP*Xh"
_PUBLISHED = " (published)"


def _require(frame: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = sorted(set(columns) - set(frame.columns))
    if missing:
        raise ValueError(f"{what} lacks columns {missing} (has {sorted(map(str, frame.columns))}).")
    if frame.empty:
        raise ValueError(f"Nothing to plot: {what} is empty.")


def _ordered(values: pd.Series, name: str) -> list[str]:
    unique = pd.Series(pd.unique(values), name=name)
    return list(unique.sort_values(key=sort_key))


def method_styles(methods: list[str] | pd.Series) -> dict[str, dict[str, str]]:
    """Colour and marker of each method: ``{method: {"color": "C0", "marker": "o"}}``.

    The methods of the registry (:func:`~supermask_pipeline.reporting.runs.method_order`) keep
    fixed styles whatever else is plotted; the other methods (``lottery.*`` …) follow in sorted order.
    """
    order = method_order()
    others = [m for m in _ordered(pd.Series(methods), "method") if m not in order]
    index = {m: i for i, m in enumerate(order)} | {m: len(order) + i for i, m in enumerate(others)}
    return {m: {"color": f"C{i % 10}", "marker": _MARKERS[i % len(_MARKERS)]} for m, i in index.items()
            if m in set(methods)}


def _panels(architectures: pd.Series, width: float, height: float = 4.2) -> tuple[Figure, list[str], list[Axes]]:
    names = _ordered(architectures, "architecture")
    figure = Figure(figsize=(width * len(names) + 2.5, height), layout="constrained")
    axes = list(figure.subplots(1, len(names), squeeze=False)[0])
    return figure, names, axes


def _legend(figure: Figure, axes: list[Axes]) -> None:
    """One legend for the figure, right of the panels, each label once, in method order
    (a method's ``(published)`` entry right after it)."""
    handles: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    labels = pd.DataFrame({"label": list(handles)})
    labels["method"] = labels["label"].str.removesuffix(_PUBLISHED)
    labels["published"] = labels["label"].str.endswith(_PUBLISHED)
    order = labels.sort_values(["method", "published"], key=sort_key, kind="stable")["label"]
    figure.legend([handles[label] for label in order], list(order), loc="outside right upper", fontsize="small")


def _percent_log_axis(axis) -> None:
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(FuncFormatter(lambda value, _: ""))


def _mean_std(frame: pd.DataFrame, by: list[str], columns: list[str]) -> pd.DataFrame:
    """Mean and sample std (ddof=1) over seeds; a std of a single seed is 0 (no error bar)."""
    stats = frame.groupby(by)[columns].agg(["mean", "std"])
    stats.columns = [f"{column}_{stat}" for column, stat in stats.columns]
    return stats.fillna({f"{column}_std": 0.0 for column in columns})


def plot_accuracy_vs_remaining(points: pd.DataFrame, published: pd.DataFrame | None = None) -> Figure:
    """Test accuracy against remaining weights, mean ± std over seeds of each method.

    Args:
        points: :attr:`GridRuns.points <supermask_pipeline.reporting.runs.GridRuns>`: columns
            ``architecture, method, test_accuracy, remaining_weights`` (fractions), one row per seed;
            a ``dataset`` column, if present, goes into the panel titles.
        published: optional :func:`~supermask_pipeline.reporting.published.published_results`;
            the published numbers of the plotted (architecture, method) pairs are drawn as open
            markers, or as a dotted horizontal line where no remaining weights were published.

    Returns:
        One panel per architecture: an error bar (both axes, sample std; none for one seed) per
        method at its mean, x = remaining weights in % (log axis, decreasing to the right),
        y = test accuracy in %; one legend for the figure.

    Raises:
        ValueError: ``points`` is empty or lacks a column; ``published`` lacks a column.
    """
    _require(points, ["architecture", "method", "test_accuracy", "remaining_weights"], "points")
    if published is not None:
        _require(published, ["architecture", "method", "test_accuracy", "remaining_weights"], "published")
    stats = _mean_std(points, ["architecture", "method"], ["test_accuracy", "remaining_weights"])
    styles = method_styles(points["method"])
    figure, architectures, axes = _panels(points["architecture"], width=4.8)
    for architecture, ax in zip(architectures, axes):
        rows = stats.loc[architecture]
        for method in _ordered(pd.Series(rows.index), "method"):
            row, style = rows.loc[method], styles[method]
            ax.errorbar(100 * row["remaining_weights_mean"], 100 * row["test_accuracy_mean"],
                        xerr=100 * row["remaining_weights_std"], yerr=100 * row["test_accuracy_std"],
                        marker=style["marker"], color=style["color"], linestyle="none", capsize=3, label=method)
            if published is None:
                continue
            reference = published[(published["architecture"] == architecture) & (published["method"] == method)]
            for ref in reference.itertuples(index=False):
                label = f"{method}{_PUBLISHED}"
                if pd.isna(ref.remaining_weights):
                    ax.axhline(100 * ref.test_accuracy, color=style["color"], linestyle=":", label=label)
                else:
                    ax.plot(100 * ref.remaining_weights, 100 * ref.test_accuracy, marker=style["marker"],
                            markerfacecolor="none", markersize=9, color=style["color"], linestyle="none",
                            label=label)
        datasets = (", ".join(pd.unique(points.loc[points["architecture"] == architecture, "dataset"]))
                    if "dataset" in points else "")
        ax.set_xscale("log")
        low, _ = ax.get_xlim()
        ax.set_xlim(150, min(low, 50))  # decreasing to the right; nothing keeps more than 100 %
        _percent_log_axis(ax.xaxis)
        ax.set(xlabel="remaining weights (%)", ylabel="test accuracy (%)",
               title=f"{architecture} ({datasets})" if datasets else architecture)
        ax.grid(True, which="both", alpha=0.3)
    _legend(figure, axes)
    return figure


def plot_remaining_per_layer(per_layer: pd.DataFrame, log: bool = True) -> Figure:
    """Remaining weights of each masked layer, mean ± std over seeds, one bar per method.

    Args:
        per_layer: :attr:`GridRuns.per_layer <supermask_pipeline.reporting.runs.GridRuns>`: columns
            ``architecture, method, layer, remaining_weights`` (fraction), one row per (seed, layer).
        log: a log y axis (dense layers keep 100 %, supermasks a few %).

    Returns:
        One panel per architecture: grouped bars, layers on x in network order (conv before fc),
        one bar per method (height = mean in %, error bar = sample std; none for one seed),
        a method without a layer leaves a gap; one legend for the figure.

    Raises:
        ValueError: ``per_layer`` is empty or lacks a column.
    """
    _require(per_layer, ["architecture", "method", "layer", "remaining_weights"], "per_layer")
    stats = _mean_std(per_layer, ["architecture", "method", "layer"], ["remaining_weights"])
    styles = method_styles(per_layer["method"])
    most_layers = per_layer.groupby("architecture")["layer"].nunique().max()
    figure, architectures, axes = _panels(per_layer["architecture"], width=max(4.0, 0.9 * most_layers))
    for architecture, ax in zip(architectures, axes):
        rows = stats.loc[architecture]
        layers = list(pd.Series(pd.unique(rows.index.get_level_values("layer")), name="layer")
                      .sort_values(key=layer_sort_key))
        methods = _ordered(pd.Series(rows.index.get_level_values("method")), "method")
        width = 0.8 / len(methods)
        positions = np.arange(len(layers))
        for i, method in enumerate(methods):
            bars = rows.loc[method].reindex(layers)
            ax.bar(positions + (i - (len(methods) - 1) / 2) * width, 100 * bars["remaining_weights_mean"],
                   width, yerr=100 * bars["remaining_weights_std"], capsize=2,
                   color=styles[method]["color"], label=method)
        ax.set_xticks(positions, layers)
        ax.set(xlabel="layer", ylabel="remaining weights (%)", title=architecture)
        if log:
            ax.set_yscale("log")
            _percent_log_axis(ax.yaxis)
        ax.grid(axis="y", which="both", alpha=0.3)
    _legend(figure, axes)
    return figure


_CURVE_LABELS = {
    "train_loss": "training loss (nats)",
    "val_loss": "validation loss (nats)",
    "train_accuracy": "training accuracy (%)",
    "val_accuracy": "validation accuracy (%)",
    "remaining_weights": "remaining weights (%)",
}


def plot_training_curves(curves: pd.DataFrame, metric: str = "val_accuracy") -> Figure:
    """One per-epoch metric against epoch, mean over seeds with a ± std band, per method.

    Args:
        curves: :attr:`GridRuns.curves <supermask_pipeline.reporting.runs.GridRuns>`: columns
            ``architecture, method, metric, epoch, value`` (accuracies and remaining weights as
            fractions, losses in nats), one row per (seed, metric, epoch).
        metric: which curve: ``train_loss``, ``val_loss``, ``train_accuracy``, ``val_accuracy``
            or ``remaining_weights`` (without the ``epoch.`` prefix).

    Returns:
        One panel per architecture, one line per method (mean over the seeds that logged the
        epoch) with a shaded band of ± one sample std (zero width for one seed); accuracies and
        remaining weights in % (remaining weights on a log axis), losses in nats; one legend.

    Raises:
        ValueError: ``curves`` is empty or lacks a column; no row holds ``metric`` (the message
            lists the metrics present).
    """
    _require(curves, ["architecture", "method", "metric", "epoch", "value"], "curves")
    selected = curves[curves["metric"] == metric]
    if selected.empty:
        raise ValueError(f"No curve {metric!r}; the curves hold {sorted(pd.unique(curves['metric']))}.")
    scale = 100.0 if metric.endswith("accuracy") or metric == "remaining_weights" else 1.0
    stats = _mean_std(selected, ["architecture", "method", "epoch"], ["value"])
    styles = method_styles(selected["method"])
    figure, architectures, axes = _panels(selected["architecture"], width=4.8)
    for architecture, ax in zip(architectures, axes):
        rows = stats.loc[architecture]
        for method in _ordered(pd.Series(rows.index.get_level_values("method")), "method"):
            line = rows.loc[method].sort_index()
            epoch, mean, std = line.index.to_numpy(), scale * line["value_mean"], scale * line["value_std"]
            colour = styles[method]["color"]
            ax.plot(epoch, mean, color=colour, label=method)
            ax.fill_between(epoch, mean - std, mean + std, color=colour, alpha=0.2, linewidth=0)
        ax.set(xlabel="epoch", ylabel=_CURVE_LABELS.get(metric, metric), title=architecture)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if metric == "remaining_weights":
            ax.set_yscale("log")
            _percent_log_axis(ax.yaxis)
        ax.grid(True, alpha=0.3)
    _legend(figure, axes)
    return figure
