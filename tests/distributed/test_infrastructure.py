"""The services of the cluster tests themselves: ``mlflow server`` keeps runs in PostgreSQL and
artifacts under its artifacts destination, the Ray head runs tasks in worker processes and
retries one whose worker was SIGKILLed, and nothing of it listens beyond 127.0.0.1."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest

from .conftest import MlflowService, RayHead, TrackingStore, psycopg2_dsn

pytestmark = pytest.mark.slow


def test_the_server_stores_runs_in_postgresql(tracking_store: TrackingStore):
    import psycopg2
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_store.tracking_uri)
    run = client.create_run(tracking_store.experiment_id, run_name="stored")
    client.log_metric(run.info.run_id, "test_accuracy", 0.9765, step=3)
    client.set_terminated(run.info.run_id)

    back = client.get_run(run.info.run_id)
    assert back.data.metrics["test_accuracy"] == 0.9765
    assert back.info.status == "FINISHED"
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "test_accuracy")] == [(3, 0.9765)]

    with psycopg2.connect(psycopg2_dsn(tracking_store.backend_store_uri)) as connection, connection.cursor() as cur:
        cur.execute(
            "SELECT e.name, r.name, r.status, m.value, m.step FROM runs r"
            " JOIN experiments e ON e.experiment_id = r.experiment_id"
            " JOIN metrics m ON m.run_uuid = r.run_uuid AND m.key = 'test_accuracy'"
            " WHERE r.run_uuid = %s",
            (run.info.run_id,),
        )
        rows = cur.fetchall()
    connection.close()
    assert rows == [(tracking_store.experiment_name, "stored", "FINISHED", 0.9765, 3)]


def test_an_artifact_logged_over_http_lands_under_the_artifacts_destination(
    tracking_store: TrackingStore, tmp_path: Path
):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_store.tracking_uri)
    run = client.create_run(tracking_store.experiment_id)
    assert run.info.artifact_uri.startswith("mlflow-artifacts:"), run.info.artifact_uri  # proxied by the server
    client.log_text(run.info.run_id, "kept 3.4 % of the weights\n", "reports/summary.md")

    stored = [p for p in tracking_store.artifacts.rglob("summary.md") if run.info.run_id in p.parts]
    assert len(stored) == 1, sorted(tracking_store.artifacts.rglob("*"))
    assert stored[0].read_text() == "kept 3.4 % of the weights\n"
    assert stored[0].relative_to(tracking_store.artifacts).parts[:2] == (tracking_store.experiment_id, run.info.run_id)
    downloaded = client.download_artifacts(run.info.run_id, "reports/summary.md", str(tmp_path))
    assert Path(downloaded).read_text() == "kept 3.4 % of the weights\n"


@pytest.fixture
def ray_driver(ray_cluster: str):
    """This process connected to the session's head as a driver, disconnected afterwards."""
    import ray

    ray.init(address=ray_cluster, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def _square_with_pid(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


def _die_on_first_attempt(marker: str) -> int:
    """SIGKILL its own worker on the first attempt (noted in ``marker``); return the pid on a retry."""
    path = Path(marker)
    if not path.exists():
        path.write_text(str(os.getpid()))
        os.kill(os.getpid(), 9)
    return os.getpid()


def test_a_ray_task_returns_its_result_from_another_process(ray_driver, ray_head: RayHead):
    ray = ray_driver
    assert ray.cluster_resources().get("CPU") == 2.0
    (node,) = [n for n in ray.nodes() if n["Alive"]]
    assert node["NodeManagerAddress"] == "127.0.0.1"
    result, pid = ray.get(ray.remote(_square_with_pid).remote(12), timeout=120)
    assert result == 144
    assert pid != os.getpid()
    assert pid in ray_head.processes()  # a worker of the session's head


def test_a_task_whose_worker_is_sigkilled_is_retried(ray_driver, tmp_path: Path):
    ray = ray_driver
    marker = tmp_path / "first_attempt_pid"
    task = ray.remote(max_retries=1)(_die_on_first_attempt)
    retried_pid = ray.get(task.remote(str(marker)), timeout=180)
    first_pid = int(marker.read_text())
    assert retried_pid != first_pid
    with pytest.raises(ProcessLookupError):
        os.kill(first_pid, 0)  # the first worker is dead


# --------------------------------------------------------------------------------------------
# Listening sockets


def _decode(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address of /proc/net/tcp{,6} (hex, 32-bit words in host order: little-endian here)."""
    raw = bytes.fromhex(address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    ip = ipaddress.ip_address(words)
    return ip.ipv4_mapped or ip if isinstance(ip, ipaddress.IPv6Address) else ip


def listening_sockets() -> list[tuple[str, int, int]]:
    """(local address, port, inode) of every listening TCP socket of this network namespace."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A":  # TCP_LISTEN
                host, port = fields[1].split(":")
                found.append((str(_decode(host)), int(port, 16), int(fields[9])))
    return found


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:[") : -1]))
    return inodes


def test_nothing_listens_beyond_127_0_0_1(postgres_uri: str, mlflow_service: MlflowService, ray_head: RayHead):
    if not Path("/proc/net/tcp").exists():
        pytest.skip("no /proc/net/tcp (not Linux)")
    from sqlalchemy.engine import make_url

    sockets = listening_sockets()
    ray_inodes = set().union(*(socket_inodes(pid) for pid in ray_head.processes()))
    ray_listening = [(host, port) for host, port, inode in sockets if inode in ray_inodes]
    gcs_port = int(ray_head.address.rsplit(":", 1)[1])
    assert gcs_port in {port for _, port in ray_listening}, (ray_head.address, ray_listening)
    mlflow_port = int(mlflow_service.url.rsplit(":", 1)[1])
    mlflow_listening = [(host, port) for host, port, _ in sockets if port == mlflow_port]
    assert mlflow_listening
    postgres = make_url(postgres_uri)
    postgres_listening = []
    if postgres.host in ("127.0.0.1", "localhost"):  # ours (or CI's), not a remote server
        postgres_listening = [(host, port) for host, port, _ in sockets if port == (postgres.port or 5432)]
        assert postgres_listening
    wider = [(host, port) for host, port in ray_listening + mlflow_listening + postgres_listening if host != "127.0.0.1"]
    assert not wider, f"listening beyond 127.0.0.1: {wider}"
