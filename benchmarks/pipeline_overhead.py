"""What the default signed-supermask run spends outside its training epochs, as a fraction of its wall time.

Usage (from the repository root, with real MNIST in ``data/01_raw/mnist`` and the splits made)::

    python benchmarks/pipeline_overhead.py [--epochs N] [-- extra kedro run arguments]

Runs ``kedro run --pipeline=signed_supermask`` (the default recipe: 100 epochs; ``--epochs``
shortens it) as a user does, with ``training.resume=false`` so that it trains from scratch
rather than resuming from the checkpoints of an earlier run, and times the whole process (Kedro
start, the data loading, initialisation, training, evaluation, sampled evaluation, plots,
export, MLflow logging and model, checkpoints). The training epochs are the sum of the run's
``epoch_time_s`` (``data/07_model_output/signed_supermask/<arch>/training_history.csv``: each
epoch's optimizer steps and its validation). Overhead = wall time − epochs; checkpoints are
written between epochs, outside ``epoch_time_s``, so they count as overhead.

The run is a child process, ``kedro``'s own CLI entry point called in it (what the ``kedro``
command does), with one addition for the breakdown: each node's wall time (its inputs' loading,
the node, its outputs' saving and the hooks around it) is recorded by wrapping Kedro's
``Task.execute``. The table then splits the overhead into the process start (interpreter, imports,
Kedro's CLI and plugins, the session and its hooks up to the first node), every node (the
``train`` node less its epochs) and the end (after the last node: the session's hooks, exit).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
HISTORY = ROOT / "data/07_model_output/signed_supermask/fcn/training_history.csv"


def _child(timings_path: str, kedro_args: list[str]) -> None:
    """``kedro <kedro_args>`` in this process, each node's start and end written to ``timings_path``."""
    import kedro.runner.task as task  # the module that runs every node (Kedro 1.x)

    events: list[tuple[str, str, float]] = []
    execute = task.Task.execute

    def timed(self, *args, **kwargs):
        events.append(("start", self.node.name, time.time()))
        try:
            return execute(self, *args, **kwargs)
        finally:
            events.append(("end", self.node.name, time.time()))
            Path(timings_path).write_text(json.dumps(events))

    task.Task.execute = timed
    from kedro.framework.cli.cli import main

    sys.argv = ["kedro", *kedro_args]
    try:
        main()
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            raise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's 100 epochs")
    parser.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args, extra = parser.parse_known_args()
    if args.child is not None:
        _child(args.child[0], args.child[1:])
        return
    params = ["signed_supermask.training.resume=false"]
    if args.epochs is not None:
        params.append(f"signed_supermask.training.epochs={args.epochs}")
    kedro_args = ["run", "--pipeline=signed_supermask", f"--params={','.join(params)}", *extra]
    print(f"load average at start (1/5/15 min): {' / '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("$ kedro", " ".join(kedro_args), flush=True)
    with tempfile.TemporaryDirectory() as folder:
        timings = Path(folder) / "nodes.json"
        start = time.time()
        result = subprocess.run([sys.executable, __file__, "--child", str(timings), *kedro_args],
                                cwd=ROOT, capture_output=True, text=True)
        end = time.time()
        if result.returncode != 0:
            sys.exit(f"kedro run failed ({result.returncode}):\n{result.stderr[-3000:]}")
        events = json.loads(timings.read_text())
    wall = end - start
    history = pd.read_csv(HISTORY)
    epochs = float(history["epoch_time_s"].sum())
    overhead = wall - epochs
    print()
    print("| run | epochs | wall time | training epochs | outside epochs | fraction |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    print(f"| signed_supermask (fcn, mnist) | {len(history)} | {wall:.1f} s | {epochs:.1f} s | {overhead:.1f} s | "
          f"**{overhead / wall:.1%}** |")

    starts = {name: t for kind, name, t in events if kind == "start"}
    ends = {name: t for kind, name, t in events if kind == "end"}
    rows = [("process start: interpreter, imports, Kedro CLI and plugins, session and hooks up to the first node",
             min(starts.values()) - start)]
    for name in sorted(starts, key=starts.get):
        seconds = ends[name] - starts[name]
        if name.endswith(".train"):
            rows.append((f"node `{name}` outside its epochs (loading, standardising, optimizer, checkpoints, "
                         "MLflow, saving)", seconds - epochs))
        else:
            rows.append((f"node `{name}`", seconds))
    rows.append(("end: after the last node (session hooks, MLflow run end, exit)", end - max(ends.values())))
    print("\n| outside the epochs | seconds | of the wall time |")
    print("| --- | ---: | ---: |")
    for label, seconds in rows:
        print(f"| {label} | {seconds:.2f} | {seconds / wall:.1%} |")
    print(f"| **total** | **{sum(s for _, s in rows):.2f}** | **{sum(s for _, s in rows) / wall:.1%}** |")
    print(f"\nload average at end (1/5/15 min): {' / '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
