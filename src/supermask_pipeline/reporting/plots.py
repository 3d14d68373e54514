"""Figures of one training run: curves per epoch and remaining weights per layer."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402


def plot_training_curves(history: pd.DataFrame) -> Figure:
    """Loss, accuracy and remaining weights against epoch.

    Args:
        history: the engine's per-epoch table (columns ``epoch``, ``train_loss``,
            ``val_loss``, ``train_accuracy``, ``val_accuracy``, ``remaining_weights``).

    Returns:
        A figure with three panels (loss in nats, accuracy in %, remaining weights in %, log scale).

    Raises:
        ValueError: the history is empty or lacks a column.
    """
    needed = {"epoch", "train_loss", "val_loss", "train_accuracy", "val_accuracy", "remaining_weights"}
    missing = needed - set(history.columns)
    if history.empty or missing:
        raise ValueError(f"Cannot plot an empty history or one without columns {sorted(missing)}.")
    fig = Figure(figsize=(13, 3.8), layout="constrained")
    loss_ax, acc_ax, rem_ax = fig.subplots(1, 3)
    epoch = history["epoch"]
    loss_ax.plot(epoch, history["train_loss"], label="train")
    loss_ax.plot(epoch, history["val_loss"], label="validation")
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss")
    acc_ax.plot(epoch, 100 * history["train_accuracy"], label="train")
    acc_ax.plot(epoch, 100 * history["val_accuracy"], label="validation")
    acc_ax.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    rem_ax.plot(epoch, 100 * history["remaining_weights"], color="tab:green")
    rem_ax.set(xlabel="epoch", ylabel="remaining weights (%)", title="Remaining weights", yscale="log")
    rem_ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    rem_ax.yaxis.set_minor_formatter(FuncFormatter(lambda value, _: ""))
    for ax in (loss_ax, acc_ax, rem_ax):
        ax.grid(alpha=0.3)
    loss_ax.legend()
    acc_ax.legend()
    return fig


def plot_remaining_weights(table: pd.DataFrame) -> Figure:
    """Remaining weights per layer, split into +1 and −1 entries of the mask.

    Args:
        table: :func:`~supermask_pipeline.masks.remaining_weights_table` output
            (the ``total`` row is shown in the title, not as a bar).

    Returns:
        A stacked bar chart, percent of each layer's weights.
    """
    layers = table[table["layer"] != "total"]
    total = table[table["layer"] == "total"].iloc[0]
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    positive = 100 * layers["positive"] / layers["num_weights"]
    negative = 100 * layers["negative"] / layers["num_weights"]
    ax.bar(layers["layer"], positive, label="+1 (kept, sign kept)", color="tab:blue")
    ax.bar(layers["layer"], negative, bottom=positive, label="−1 (kept, sign flipped)", color="tab:orange")
    for x, (p, n) in enumerate(zip(positive, negative)):
        ax.annotate(f"{p + n:.2f}%", (x, p + n), ha="center", va="bottom", fontsize=9)
    ax.set(
        ylabel="remaining weights (%)",
        title=f"Remaining weights per layer (total {100 * total['remaining_weights']:.2f}%, "
        f"{int(total['remaining']):,} of {int(total['num_weights']):,})",
    )
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return fig


def plot_accuracy_vs_remaining(series: dict[str, pd.DataFrame], title: str = "") -> Figure:
    """Accuracy against remaining weights, one line per labelled series (log x axis, as Zhou et al.).

    Args:
        series: label → table with columns ``remaining_weights`` and ``test_accuracy``
            (fractions in [0, 1]); labels ending in ``(same sign)`` are drawn dashed in the
            colour of the label without that suffix.
        title: the figure title.

    Returns:
        One panel: test accuracy in % against remaining weights in %, decreasing to the right.

    Raises:
        ValueError: no series, or a table without those columns.
    """
    if not series:
        raise ValueError("Nothing to plot: no series given.")
    figure = Figure(figsize=(10, 5))
    ax = figure.add_subplot()
    suffix = " (same sign)"
    bases = list(dict.fromkeys(label.removesuffix(suffix) for label in series))
    colours = {base: f"C{i % 10}" if i < 10 else "black" for i, base in enumerate(bases)}
    for label, table in series.items():
        missing = {"remaining_weights", "test_accuracy"} - set(table.columns)
        if missing:
            raise ValueError(f"Series {label!r} lacks columns {sorted(missing)}.")
        style = "--" if label.endswith(suffix) else "-"
        ax.plot(100 * table["remaining_weights"], 100 * table["test_accuracy"], style, marker=".",
                color=colours[label.removesuffix(suffix)], label=label)
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("remaining weights (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="x-small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    figure.tight_layout()
    return figure
