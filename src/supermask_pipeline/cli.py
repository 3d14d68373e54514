"""Project CLI: Kedro's own ``kedro run`` with the project's :class:`~supermask_pipeline.runners.GridRunner`
as its default runner, so that a grid's points run one by one, each in its own MLflow run, and a
failing point stops nothing else. Every option of ``kedro run`` is unchanged
(``--runner=supermask_pipeline.runners.RayRunner`` for Ray, ``--runner=SequentialRunner`` for Kedro's).

Errors of the project (a bad parameter, missing raw files, a corrupt split …: exceptions whose
class the project defines) end the command with their message alone, exit status 1; so does an
unknown ``--pipeline``, with the list of the pipelines that exist. ``kedro run --verbose`` (``-v``)
or the environment variable ``SUPERMASK_TRACEBACK=1`` shows the full traceback instead; any
other exception (a bug) always shows it.
"""

from __future__ import annotations

import atexit
import copy
import functools
import gc
import os

import click
from kedro.framework.cli.project import run as kedro_run

from supermask_pipeline.hooks import quiet_library_warnings

quiet_library_warnings()

DEFAULT_RUNNER = "supermask_pipeline.runners.GridRunner"
#: Set to 1 (or true, yes) for the full traceback of a project error.
TRACEBACK_VARIABLE = "SUPERMASK_TRACEBACK"


class UnknownPipelineError(ValueError):
    """``--pipeline`` names no registered pipeline; the message lists the ones that exist."""


def project_error(error: BaseException) -> BaseException | None:
    """The first exception in ``error``'s chain whose class the project defines, or None: itself,
    then what it was raised from, and what a Kedro error was raised while handling (Kedro wraps
    a dataset's error in its own DatasetError). A bug raised while handling a project error is
    not one: its traceback is shown."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        module = type(error).__module__.split(".")[0]
        if module == "supermask_pipeline":
            return error
        error = error.__cause__ or (error.__context__ if module == "kedro" else None)
    return None


def unknown_pipeline(error: BaseException) -> UnknownPipelineError | None:
    """Kedro's error for an unknown pipeline name, as one that lists every registered pipeline."""
    text = str(error)
    if not (isinstance(error, ValueError) and text.startswith("Failed to find the pipeline named '")):
        return None
    from kedro.framework.project import pipelines

    from supermask_pipeline.experiment.methods import METHODS

    name = text.split("'")[1]
    known = ", ".join(sorted(key for key in pipelines.keys() if key != "__default__")) or "see `kedro registry list`"
    default = " and ".join(key for key, row in METHODS.items() if row.default)
    return UnknownPipelineError(
        f"No pipeline named {name!r}. Pipelines: {known} (and __default__, the one `kedro run` runs "
        f"without --pipeline: {default})."
    )


@functools.cache
def freeze_at_exit() -> None:
    """At interpreter exit, :func:`gc.freeze` every object before Python's final collection (registered once).

    A ``kedro run`` ends with a heap of torch, MLflow and Kedro objects, and the interpreter's
    shutdown collected it for 2.0 s after the last node of the default signed-supermask run
    (0.45 s for ``import torch`` alone); with the objects frozen it takes 0.3 s
    (``benchmarks/pipeline_overhead.py``). Nothing is skipped that a run needs: the MLflow run
    and every file are closed by then, and Python does not promise ``__del__`` for objects alive
    at exit anyway. Registered with :mod:`atexit`, so a process that runs several commands (a
    test session) is frozen only when it ends.
    """
    atexit.register(gc.freeze)


def traceback_wanted(verbose: bool = False) -> bool:
    """Whether a project error shows its traceback: ``--verbose`` or ``SUPERMASK_TRACEBACK``."""
    return verbose or os.environ.get(TRACEBACK_VARIABLE, "").strip().lower() in ("1", "true", "yes")


@click.group(name="supermask_pipeline")
def cli() -> None:
    """Project commands."""


run = copy.deepcopy(kedro_run)
for _option in run.params:
    if _option.name == "runner":
        _option.default = DEFAULT_RUNNER
        _option.help = f"Runner class (default: {DEFAULT_RUNNER}, a sequential runner that isolates grid points)."
run.params.append(click.Option(
    ["--verbose", "-v"], is_flag=True, default=False,
    help=f"Show the full traceback of a project error (or set {TRACEBACK_VARIABLE}=1).",
))
_kedro_callback = run.callback


def _run(verbose: bool = False, **kwargs):
    """Kedro's ``run``; a project error or an unknown pipeline ends it with its message alone."""
    freeze_at_exit()
    try:
        return _kedro_callback(**kwargs)
    except Exception as error:
        short = project_error(error) or unknown_pipeline(error)
        if short is None or traceback_wanted(verbose):
            raise
        click.secho(f"{type(short).__name__}: {short}", err=True, fg="red")
        click.secho(f"(The full traceback: kedro run --verbose, or {TRACEBACK_VARIABLE}=1.)", err=True, dim=True)
        raise SystemExit(1) from None


run.callback = _run
run.help = (run.help or "") + f" A project error prints its message; --verbose or {TRACEBACK_VARIABLE}=1 the traceback."
cli.add_command(run, "run")
