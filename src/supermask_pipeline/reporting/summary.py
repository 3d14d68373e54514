"""Statistics over seeds per (architecture, dataset, method), joined with the published numbers."""

from __future__ import annotations

import pandas as pd

from supermask_pipeline.reporting.runs import sort_key

KEYS = ["architecture", "dataset", "method"]
STATISTICS = ("test_accuracy", "remaining_weights", "epochs", "wall_time_s")
SUMMARY_COLUMNS = (
    *KEYS, "seeds",
    *(f"{metric}_{stat}" for metric in STATISTICS for stat in ("mean", "std")),
    "published_test_accuracy", "published_remaining_weights", "test_accuracy_difference",
)


def _require(frame: pd.DataFrame, columns: list[str] | tuple[str, ...], what: str) -> None:
    missing = sorted(set(columns) - set(frame.columns))
    if missing:
        raise ValueError(f"{what} lacks columns {missing} (has {sorted(map(str, frame.columns))}).")


def summarise(points: pd.DataFrame, published: pd.DataFrame | None = None) -> pd.DataFrame:
    """Mean and spread over seeds of each (architecture, dataset, method), next to the published numbers.

    Args:
        points: :attr:`GridRuns.points <supermask_pipeline.reporting.runs.GridRuns>` (one row per
            seed): columns ``architecture, dataset, method, seed, test_accuracy`` (fraction),
            ``remaining_weights`` (fraction), ``epochs``, ``wall_time_s`` (s).
        published: :func:`~supermask_pipeline.reporting.published.published_results` or a table
            with columns ``architecture, dataset, method, test_accuracy, remaining_weights``
            (fractions); None leaves the published columns NaN.

    Returns:
        One row per (architecture, dataset, method), sorted by architecture (fcn, conv2 … conv8)
        then method (:func:`~supermask_pipeline.reporting.runs.sort_key`), columns
        ``architecture, dataset, method, seeds`` (number of rows = seeds), ``<metric>_mean`` and
        ``<metric>_std`` (sample standard deviation, ddof=1; NaN with one seed) for
        ``test_accuracy``, ``remaining_weights`` (fractions), ``epochs``, ``wall_time_s`` (s),
        then ``published_test_accuracy``, ``published_remaining_weights`` (fractions) and
        ``test_accuracy_difference`` = ``test_accuracy_mean`` − ``published_test_accuracy``
        (fraction; NaN where nothing is published).

    Raises:
        ValueError: ``points`` is empty or lacks a column; ``published`` lacks a column or
            holds a (architecture, dataset, method) twice.
    """
    _require(points, [*KEYS, "seed", *STATISTICS], "points")
    if points.empty:
        raise ValueError("Nothing to summarise: points is empty (no finished grid points).")
    grouped = points.groupby(KEYS, sort=False)
    stats = grouped[list(STATISTICS)].agg(["mean", "std"])  # pandas' std is the sample std (ddof=1)
    stats.columns = [f"{metric}_{stat}" for metric, stat in stats.columns]
    summary = grouped.size().rename("seeds").to_frame().join(stats).reset_index()

    if published is None:
        reference = pd.DataFrame(columns=[*KEYS, "published_test_accuracy", "published_remaining_weights"])
    else:
        _require(published, [*KEYS, "test_accuracy", "remaining_weights"], "published")
        if published.duplicated(KEYS).any():
            twice = published.loc[published.duplicated(KEYS, keep=False), KEYS].drop_duplicates()
            raise ValueError(f"published holds these (architecture, dataset, method) twice: "
                             f"{twice.to_dict('records')}.")
        reference = published[[*KEYS, "test_accuracy", "remaining_weights"]].rename(
            columns={"test_accuracy": "published_test_accuracy",
                     "remaining_weights": "published_remaining_weights"})
    reference = reference.astype({"published_test_accuracy": "float64", "published_remaining_weights": "float64"})
    summary = summary.merge(reference, on=KEYS, how="left", validate="one_to_one")
    summary["test_accuracy_difference"] = summary["test_accuracy_mean"] - summary["published_test_accuracy"]
    summary = summary.sort_values(KEYS, key=sort_key, ignore_index=True)
    return summary[list(SUMMARY_COLUMNS)]


def _mean_std(mean: float, std: float, scale: float, decimals: int) -> str:
    if pd.isna(mean):
        return "–"
    spread = "–" if pd.isna(std) else f"{scale * std:.{decimals}f}"
    return f"{scale * mean:.{decimals}f} ± {spread}"


def _value(value: float, scale: float, decimals: int, sign: bool = False) -> str:
    if pd.isna(value):
        return "–"
    return f"{scale * value:+.{decimals}f}" if sign else f"{scale * value:.{decimals}f}"


def summary_markdown(summary: pd.DataFrame) -> str:
    """The summary as a GitHub Markdown table.

    Args:
        summary: :func:`summarise` output.

    Returns:
        A Markdown table, one line per row of ``summary`` in its order: architecture, dataset,
        method, seeds, test accuracy and remaining weights in % ("mean ± std", 2 decimals),
        the published ones in % (2 decimals), the accuracy difference in percentage points with
        its sign (``+0.12``, ``-0.40``), epochs and wall time in s ("mean ± std", 1 decimal).
        "–" marks NaN (nothing published; the std of a single seed).

    Raises:
        ValueError: ``summary`` is empty or lacks a column of :func:`summarise`'s output.
    """
    _require(summary, SUMMARY_COLUMNS, "summary")
    if summary.empty:
        raise ValueError("Nothing to tabulate: summary is empty.")
    header = ["architecture", "dataset", "method", "seeds", "test accuracy (%)", "published accuracy (%)",
              "difference (pp)", "remaining weights (%)", "published remaining (%)", "epochs", "wall time (s)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * (len(header) - 3)) + "|"]
    for row in summary.itertuples(index=False):
        cells = [
            row.architecture, row.dataset, str(row.method).replace("|", "\\|"), str(int(row.seeds)),
            _mean_std(row.test_accuracy_mean, row.test_accuracy_std, 100, 2),
            _value(row.published_test_accuracy, 100, 2),
            _value(row.test_accuracy_difference, 100, 2, sign=True),
            _mean_std(row.remaining_weights_mean, row.remaining_weights_std, 100, 2),
            _value(row.published_remaining_weights, 100, 2),
            _mean_std(row.epochs_mean, row.epochs_std, 1, 1),
            _mean_std(row.wall_time_s_mean, row.wall_time_s_std, 1, 1),
        ]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines) + "\n"
