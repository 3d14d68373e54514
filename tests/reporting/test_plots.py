import pandas as pd
import pytest
import torch

from supermask_pipeline.masks import remaining_weights_table
from supermask_pipeline.reporting import plot_remaining_weights, plot_training_curves


def test_training_curves_have_three_panels_with_the_data():
    history = pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "train_loss": [1.0, 0.5, 0.3],
            "val_loss": [1.1, 0.6, 0.4],
            "train_accuracy": [0.5, 0.8, 0.9],
            "val_accuracy": [0.4, 0.7, 0.85],
            "remaining_weights": [0.5, 0.1, 0.02],
        }
    )
    fig = plot_training_curves(history)
    loss_ax, acc_ax, rem_ax = fig.axes
    assert list(acc_ax.lines[1].get_ydata()) == pytest.approx([40.0, 70.0, 85.0])
    assert list(rem_ax.lines[0].get_ydata()) == pytest.approx([50.0, 10.0, 2.0])
    with pytest.raises(ValueError, match="val_loss"):
        plot_training_curves(history.drop(columns="val_loss"))


def test_remaining_weights_bars_split_plus_and_minus():
    table = remaining_weights_table(
        {"fc1": torch.tensor([1, -1, 0, 0], dtype=torch.int8), "fc2": torch.tensor([1, 1], dtype=torch.int8)}
    )
    fig = plot_remaining_weights(table)
    (ax,) = fig.axes
    heights = [bar.get_height() for bar in ax.patches]
    assert heights == pytest.approx([25.0, 100.0, 25.0, 0.0])  # +1 bars, then −1 bars
    assert "4 of 6" in ax.get_title()
