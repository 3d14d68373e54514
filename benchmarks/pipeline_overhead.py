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
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
HISTORY = ROOT / "data/07_model_output/signed_supermask/fcn/training_history.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's 100 epochs")
    args, extra = parser.parse_known_args()
    params = ["signed_supermask.training.resume=false"]
    if args.epochs is not None:
        params.append(f"signed_supermask.training.epochs={args.epochs}")
    command = ["kedro", "run", "--pipeline=signed_supermask", f"--params={','.join(params)}", *extra]
    print(f"load average at start (1/5/15 min): {' / '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("$", " ".join(command), flush=True)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"kedro run failed ({result.returncode}):\n{result.stderr[-3000:]}")
    history = pd.read_csv(HISTORY)
    epochs = float(history["epoch_time_s"].sum())
    overhead = wall - epochs
    print()
    print("| run | epochs | wall time | training epochs | outside epochs | fraction |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    print(f"| signed_supermask (fcn, mnist) | {len(history)} | {wall:.1f} s | {epochs:.1f} s | {overhead:.1f} s | "
          f"**{overhead / wall:.1%}** |")
    print(f"\nload average at end (1/5/15 min): {' / '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
