"""error_summary: the one line of a failed point's error that the report, the point record and
GridPointsFailedError show (CI once showed only SQLAlchemy's "(Background on this error at: …)")."""

from __future__ import annotations

import traceback

import pytest

from supermask_pipeline.runners import GridPointsFailedError, error_summary


def _formatted(error: BaseException) -> str:
    try:
        raise error
    except BaseException:  # noqa: BLE001
        return traceback.format_exc()


def test_a_multi_line_message_is_summarised_by_its_exception_line():
    text = _formatted(RuntimeError(
        "INTERNAL_ERROR: (psycopg2.errors.UniqueViolation) duplicate key value violates unique constraint\n"
        "DETAIL:  Key (experiment_id, name, digest)=(1, mnist/train, ab12) already exists.\n"
        "[SQL: INSERT INTO datasets ...]\n"
        "(Background on this error at: https://sqlalche.me/e/21/gkpj)"))
    assert error_summary(text) == (
        "RuntimeError: INTERNAL_ERROR: (psycopg2.errors.UniqueViolation) duplicate key value violates unique constraint")


def test_a_chained_error_is_summarised_by_the_last_exception():
    try:
        try:
            raise KeyError("seed")
        except KeyError as cause:
            raise ValueError("grid point has no seed; add grid.points.<name>.seed") from cause
    except ValueError:
        text = traceback.format_exc()
    assert error_summary(text) == "ValueError: grid point has no seed; add grid.points.<name>.seed"


@pytest.mark.parametrize("text, summary", [
    ("", ""),
    ("   \n", "   \n"),
    ("the worker died\n", "the worker died"),
    ("supermask_pipeline.images.SplitCorruptError: data/03_primary/mnist/test.h5 changed\n",
     "supermask_pipeline.images.SplitCorruptError: data/03_primary/mnist/test.h5 changed"),
])
def test_plain_texts(text, summary):
    assert error_summary(text) == summary


def test_grid_points_failed_error_lists_each_summary():
    text = _formatted(RuntimeError("duplicate key\n(Background on this error at: https://sqlalche.me/e/21/gkpj)"))
    message = str(GridPointsFailedError({"fcn.dense.seed_0": text}))
    assert message.splitlines()[-1] == "  fcn.dense.seed_0: RuntimeError: duplicate key"
