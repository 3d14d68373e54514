"""Sizes and speed of the compact export on this checkout's trained runs, and what each position code gives.

Usage (from the repository root, after the runs: ``kedro run --pipeline=<method>``)::

    python benchmarks/export_sizes.py [--methods signed_supermask,edge_popup,lottery,dense]

For every method with a run in ``data/06_models/<method>/fcn/`` (the newest version of
``trained_weights`` and ``masks``, the recipe of ``conf/base``, seed 0) it exports the network
exactly as the template's ``export`` node does, and prints

- the README table: remaining weights, dense fp32 bytes, compact bytes, ratio, the entropy
  bound (log2 C(n, k) per layer + stored signs and values) and the test accuracy of the
  reloaded network on ``data/03_primary/mnist/test.h5``;
- per layer, the bytes of the kept positions under the Golomb code alone, varints + LZMA2
  alone, and the shorter of the two (what the format stores), against log2 C(n, k) / 8;
- the time to encode (with its verifying decode) and to decode.

Measured on this project's 2-core CPU machine (MNIST FCN, one torch thread), signed
supermask: positions fc1 Golomb 4,528 B, LZMA 2,664 B (uniform bound 4,710 B): the found fc1
mask has 211 dead units of 300 and keeps neighbouring pixels together, which LZMA of the gaps
exploits and a single Golomb parameter cannot; fc2 Golomb 1,624 B (LZMA 1,680 B); fc3 Golomb
91 B. Whole file 6,588 bytes; encode 0.2 s, decode 0.01 s.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import yaml
from safetensors.torch import load_file

from supermask_pipeline import export
from supermask_pipeline.datasets import HDF5SplitDataset
from supermask_pipeline.experiment.config import run_config
from supermask_pipeline.export import coding
from supermask_pipeline.export.runs import export_run

REPO = Path(__file__).resolve().parents[1]


def _latest(folder: Path) -> Path | None:
    files = sorted(folder.glob("*/*.safetensors"))
    return files[-1] if files else None


def _run(method: str):
    parameters = yaml.safe_load((REPO / "conf/base/parameters.yml").read_text())
    block = yaml.safe_load((REPO / f"conf/base/parameters_{method}.yml").read_text())[method]
    return run_config(method, block, parameters["defaults"], {"architecture": "fcn"}, "auto", 0)


def _position_codes(masks: dict) -> list[dict]:
    rows = []
    for name, mask in masks.items():
        flat = mask.reshape(-1).numpy() != 0
        kept = int(flat.sum())
        coded = np.flatnonzero(~flat if 2 * kept > flat.size else flat)
        gaps = coding.gaps_from_positions(coded)
        golomb = len(coding.encode_golomb(gaps, coding.best_golomb_parameter(gaps)))
        packed = len(coding.encode_lzma_varints(gaps)) if gaps.size else 0
        rows.append({"layer": name, "kept": kept, "golomb": golomb, "lzma": packed, "stored": min(golomb, packed),
                     "bound": coding.log2_binomial(flat.size, kept) / 8})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default="signed_supermask,edge_popup,lottery,dense")
    args = parser.parse_args()
    train = HDF5SplitDataset(str(REPO / "data/03_primary/mnist/train.h5")).load()
    test = HDF5SplitDataset(str(REPO / "data/03_primary/mnist/test.h5")).load()
    table = ["| method | remaining weights | dense fp32 bytes | compact bytes | ratio | entropy bound (bytes) "
             "| test accuracy, reloaded |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for method in args.methods.split(","):
        models = REPO / "data/06_models" / method / "fcn"
        weights_file, masks_file = _latest(models / "trained_weights.safetensors"), _latest(models / "masks.safetensors")
        if weights_file is None or masks_file is None:
            print(f"{method}: no run in {models}, skipped")
            continue
        weights, masks = load_file(weights_file), load_file(masks_file)
        run = _run(method)
        start = time.perf_counter()
        result = export_run(run, weights, masks, train, test)
        exported = time.perf_counter() - start
        start = time.perf_counter()
        export.decode(result.compact)
        decoded = time.perf_counter() - start
        s = result.summary
        table.append(f"| {method} | {100 * s['remaining_weight_count'] / s['total_weights']:.2f} % "
                     f"({s['remaining_weight_count']:,}) | {s['dense_fp32_bytes']:,} | {s['compact_bytes']:,} | "
                     f"{s['ratio']:.1f}× | {s['entropy_bound_bytes']:,.0f} | {100 * s['test_accuracy']:.2f} % |")
        print(f"{method}: export (encode, verify, test, ONNX) {exported:.2f} s, decode {decoded:.3f} s, "
              f"value modes {s['value_modes']}, weights identical: {s['weights_identical']}")
        for row in _position_codes(masks):
            print("   ", json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in row.items()}))
    print("\n".join(table))


if __name__ == "__main__":
    main()
