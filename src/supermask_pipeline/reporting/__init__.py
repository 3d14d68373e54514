"""Plots and tables of results (no Kedro)."""

from supermask_pipeline.reporting.plots import plot_accuracy_vs_remaining, plot_remaining_weights, plot_training_curves

__all__ = ["plot_accuracy_vs_remaining", "plot_remaining_weights", "plot_training_curves"]
