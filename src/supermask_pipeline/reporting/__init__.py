"""Plots and tables of results (no Kedro).

``plots`` draws one training run; ``runs``, ``summary``, ``published`` and ``comparison`` read the
points of a grid back from MLflow and compare methods over seeds. ``comparison`` has its own
``plot_accuracy_vs_remaining`` and ``plot_training_curves`` (over seeds, one panel per
architecture): import them from ``supermask_pipeline.reporting.comparison``; the names exported
here are those of ``plots``.
"""

from supermask_pipeline.reporting.comparison import plot_remaining_per_layer
from supermask_pipeline.reporting.plots import plot_accuracy_vs_remaining, plot_remaining_weights, plot_training_curves
from supermask_pipeline.reporting.published import published_results
from supermask_pipeline.reporting.runs import GridRuns, latest_grid_id, load_grid_runs
from supermask_pipeline.reporting.summary import summarise, summary_markdown

__all__ = [
    "GridRuns",
    "latest_grid_id",
    "load_grid_runs",
    "plot_accuracy_vs_remaining",
    "plot_remaining_per_layer",
    "plot_remaining_weights",
    "plot_training_curves",
    "published_results",
    "summarise",
    "summary_markdown",
]
