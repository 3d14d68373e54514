"""Wall time of a 6-point FCN grid, sequential (GridRunner) against Ray with 2 workers of 1 torch
thread each (RayRunner on a local cluster bound to 127.0.0.1), measured in one run.

The grid: dense and signed supermask × seeds 0, 1, 2, 2 epochs each, on the real MNIST files of
``data/01_raw/mnist`` (the benchmark stops with the fix when they are missing). The runs
start from the same split files in fresh project folders; each logs to its own ``mlflow server``
(SQLite backend, 127.0.0.1) so that concurrent points never write one SQLite file directly.
The sequential grid runs with 1 torch thread per point too (``grid.resources.num_cpus: 1``), so
the ratio is the parallel speed-up of the same work; a second sequential figure with 2 threads
is printed for reference.

    python benchmarks/grid_scaling.py
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
TRAINING = {"epochs": 2, "show_progress": False, "device": "cpu", "checkpoint_every": 1}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _project(root: Path, raw: Path, threads: int) -> Path:
    shutil.copytree(REPO / "conf" / "base", root / "conf" / "base")
    (root / "conf" / "local").mkdir()
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    (root / "src").mkdir()
    shutil.copytree(raw, root / "data" / "01_raw" / "mnist")
    local = {
        "grid": {"id": "scaling", "architectures": ["fcn"], "methods": ["dense", "signed_supermask"],
                 "seeds": [0, 1, 2], "resources": {"num_cpus": threads}},
        "dense": {"training": TRAINING}, "signed_supermask": {"training": TRAINING},
    }
    (root / "conf" / "local" / "parameters_grid.yml").write_text(yaml.safe_dump(local))
    return root


def _server(root: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "mlartifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            urllib.request.urlopen(f"{url}/health", timeout=1)
            return process, url
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("mlflow server did not start")


def _ray_head(env: dict[str, str]) -> tuple[subprocess.Popen, str, float]:
    """A Ray head with 2 CPUs on 127.0.0.1 (started before the timed run, as on a cluster)."""
    port = _free_port()
    start = time.perf_counter()
    process = subprocess.Popen(
        ["ray", "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
         "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={tempfile.mkdtemp(prefix='/tmp/rayb_')}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    for _ in range(600):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    time.sleep(2)  # the raylet registers after the GCS answers
    return process, f"127.0.0.1:{port}", time.perf_counter() - start


def _run(root: Path, runner: str, env: dict[str, str]) -> float:
    process, url = _server(root)
    (root / "conf" / "local" / "mlflow.yml").write_text(yaml.safe_dump({"server": {"mlflow_tracking_uri": url}}))
    try:
        # The splits first (shared, not timed): both runs then time the points and the report only.
        subprocess.run([sys.executable, "-m", "kedro", "run", "--pipeline=data_processing"], cwd=root, env=env,
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        start = time.perf_counter()
        log = root / "kedro_run.log"
        with log.open("w") as out:
            done = subprocess.run([sys.executable, "-m", "kedro", "run", "--pipeline=grid", f"--runner={runner}"],
                                  cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
        if done.returncode:
            sys.exit(f"kedro run --runner={runner} failed:\n" + "\n".join(log.read_text().splitlines()[-60:]))
        return time.perf_counter() - start
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _raw() -> Path:
    real = REPO / "data" / "01_raw" / "mnist"
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    if not all((real / f"{name}.gz").is_file() or (real / name).is_file() for name in names):
        sys.exit(f"MNIST's four idx files are not in {real}: copy them there (README, Data) and run again.")
    return real


def main() -> None:
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "MPLBACKEND": "Agg", "PYTHONHASHSEED": "0",
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    with tempfile.TemporaryDirectory(prefix="grid_scaling_") as tmp:
        tmp = Path(tmp)
        raw = _raw()
        timings = {}
        for label, runner, threads in (
            ("sequential, 1 thread a point", "supermask_pipeline.runners.GridRunner", 1),
            ("Ray, 2 workers of 1 thread", "supermask_pipeline.runners.RayRunner", 1),
            ("sequential, 2 threads a point", "supermask_pipeline.runners.GridRunner", 2),
        ):
            folder = _project(tmp / label.split(",")[0].replace(" ", "_") / str(threads), raw, threads)
            if "Ray" in label:
                head, address, head_start = _ray_head(env)
                try:
                    timings[label] = _run(folder, runner, {**env, "RAY_ADDRESS": address})
                finally:
                    os.killpg(head.pid, signal.SIGKILL)
                    head.wait()
            else:
                timings[label] = _run(folder, runner, env)
    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}; "
          f"torch {torch.__version__}; load average {os.getloadavg()[0]:.2f}")
    print("data: real MNIST (55,000 training images); 6 points (dense, signed supermask × seeds 0-2), 2 epochs each;"
          f" each time includes Kedro's start and the report; the Ray head (started in {head_start:.1f} s) was up before")
    for label, seconds in timings.items():
        print(f"  {label:32s} {seconds:7.1f} s")
    ray = timings["Ray, 2 workers of 1 thread"]
    print(f"  Ray / sequential (1 thread):     {ray / timings['sequential, 1 thread a point']:.2f}")
    print(f"  Ray / sequential (2 threads):    {ray / timings['sequential, 2 threads a point']:.2f}")


if __name__ == "__main__":
    main()
