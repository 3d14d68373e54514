"""Plots and tables of results (no Kedro)."""

from supermask_pipeline.reporting.plots import plot_remaining_weights, plot_training_curves

__all__ = ["plot_remaining_weights", "plot_training_curves"]
