"""Session services of the cluster tests: PostgreSQL, a real ``mlflow server`` on it, one local Ray head.

Fixtures (every test that requests one is marked ``slow``, see ``pytest_collection_modifyitems``):

- ``postgres_uri`` (session): SQLAlchemy URI ``postgresql+psycopg2://postgres@127.0.0.1:<port>/<db>``.
  ``$SUPERMASK_TEST_POSTGRES_URI`` when set (``.ci/run`` starts a server and sets it); else, where
  PostgreSQL's binaries exist (Debian: ``/usr/lib/postgresql/<version>/bin``), a private server:
  ``initdb`` in a temporary directory, run as the ``postgres`` user (as the current user when not
  root), listening on 127.0.0.1 only on a free port, trust auth, database ``supermask_test``;
  stopped by its pid at the end of the session. Else the tests skip.
- ``mlflow_service`` (session): :class:`MlflowService`, a ``mlflow server --backend-store-uri
  <postgres_uri> --artifacts-destination <tmp> --host 127.0.0.1 --port <free> --workers 1`` in its
  own process group, up once ``/health`` answers; its process group is killed at the end.
  ``mlflow_server`` is its URL, ``http://127.0.0.1:<port>``.
- ``tracking_store`` (function): :class:`TrackingStore`, a new experiment of a unique name on that
  server, and ``MLFLOW_TRACKING_URI`` set to the server for the test. Tests share the server and
  its database, so **every test uses an experiment name of its own** (this fixture's, or one with a
  uuid): a server serves one database, and a fresh database per test would mean a fresh server
  per test (CREATE DATABASE 0.1 s and MLflow's migration of an empty database ~1.2 s, but
  ``mlflow server`` itself takes 6-11 s to answer).
- ``ray_head`` (session): :class:`RayHead`, ONE local Ray head for the session, ``ray start --head
  --block --node-ip-address=127.0.0.1 --port=<free> --num-cpus=2 --include-dashboard=false
  --disable-usage-stats --temp-dir=/tmp/ray_<random>`` in its own session; ``ray_cluster`` is its
  address ``127.0.0.1:<port>``, with ``RAY_ADDRESS`` set to it for the session. At the end the
  head is stopped by its pid (SIGTERM: Ray drains the node and stops its processes), whatever is
  left of its session is SIGKILLed by pid, and the teardown fails if a process survives.

Ray 2.60 on Linux turns ``--node-ip-address=127.0.0.1`` (and a driver's ``address="127.0.0.1:…"``)
into the machine's address (``services.resolve_ip_for_localhost``), and its GCS, raylet and
worker gRPC servers then listen on every interface. ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (Ray's
single-machine mode, the default on Windows and macOS) keeps 127.0.0.1: every server of the head
listens on 127.0.0.1 only (``test_infrastructure.py`` checks it). It is set for the head and, for
the session, in this process, so that every driver (``ray.init(address=...)``, RayRunner, a
``kedro run`` subprocess) connects to 127.0.0.1 too. No other machine can join such a head.

Token authentication: ``ray start`` turns it on by itself when ``~/.ray/auth_token`` exists (any
local ``ray.init()`` writes one), a driver given an address does not, and then it cannot connect
(``InvalidAuthToken``). The head gets a token of its own in its temp dir: ``RAY_AUTH_MODE=token``
and ``RAY_AUTH_TOKEN_PATH`` are set for the head and, for the session, in this process.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.ui.conftest import free_port, group_alive, log_tail, start_in_own_group, stop_group

POSTGRES_URI_ENV = "SUPERMASK_TEST_POSTGRES_URI"
SESSION_DATABASE = "supermask_test"
START_TIMEOUT_S = 120  # a cold `mlflow server` or Ray head takes 6-11 s on a busy machine
STOP_TIMEOUT_S = 45  # Ray drains the node for up to 30 s on SIGTERM (2 s when idle)
MLFLOW_QUIET_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    # No job runner (huey) of GenAI jobs: extra processes that nothing here needs.
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
}
# Ray keeps 127.0.0.1 as the node address only in its single-machine mode (see the module docstring).
RAY_LOCAL_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
SERVICE_FIXTURES = frozenset(
    {"postgres_uri", "mlflow_service", "mlflow_server", "tracking_store", "ray_head", "ray_cluster"}
)
#: Seconds each service took to start in this session (printed in pytest's terminal summary).
STARTUP_S: dict[str, float] = {}


def pytest_collection_modifyitems(config, items) -> None:
    """A test that starts a server or a Ray head is a ``slow`` test."""
    for item in items:
        if SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def pytest_terminal_summary(terminalreporter) -> None:
    if STARTUP_S:
        times = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in STARTUP_S.items())
        terminalreporter.write_line(f"tests/distributed services started in: {times}")


# --------------------------------------------------------------------------------------------
# PostgreSQL


def postgres_bin_dir() -> Path | None:
    """Folder of ``initdb``/``postgres``: Debian's newest ``/usr/lib/postgresql/<version>/bin``, else PATH."""

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.parent.name)) or (0,)

    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=version)
    if debian:
        return debian[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def psycopg2_dsn(uri: str) -> str:
    """libpq form (``postgresql://…``) of a SQLAlchemy URI (``postgresql+psycopg2://…``)."""
    from sqlalchemy.engine import make_url

    return make_url(uri).set(drivername="postgresql").render_as_string(hide_password=False)


def _server_user() -> dict:
    """``subprocess`` arguments that run PostgreSQL as ``postgres`` when we are root (it refuses root)."""
    if os.geteuid() != 0:
        return {}
    try:
        account = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root and there is no `postgres` user to run PostgreSQL as")
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def _wait_for_postgres(proc: subprocess.Popen, port: int, log: Path) -> bool:
    """True once the server accepts connections; False if it exited (e.g. its port was taken)."""
    import psycopg2

    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", connect_timeout=2).close()
            return True
        except psycopg2.OperationalError:
            time.sleep(0.1)
    raise AssertionError(f"PostgreSQL did not accept connections in {START_TIMEOUT_S} s:\n{log_tail(log)}")


def _stop_postgres(proc: subprocess.Popen, log: Path) -> None:
    """Fast shutdown (SIGINT) of the postmaster by its pid; SIGKILL to its process group after 30 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    deadline = time.monotonic() + 10  # its backends leave with it
    while group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not group_alive(proc.pid), f"PostgreSQL processes of group {proc.pid} survived:\n{log_tail(log)}"


@contextmanager
def private_postgres(bin_dir: Path) -> Iterator[str]:
    """A throw-away server of ``bin_dir``'s PostgreSQL; yields the URI of its database ``supermask_test``."""
    import psycopg2

    user = _server_user()
    # Not a pytest tmp dir: those are private to the current user, and the server runs as
    # postgres. Short, too: the server's Unix socket lives here (paths < 108 characters).
    folder = Path(tempfile.mkdtemp(prefix="supermask_pg_", dir="/tmp"))
    try:
        if user:
            os.chown(folder, user["user"], user["group"])
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}
        data = folder / "data"
        began = time.monotonic()
        initdb = subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale"],
            cwd=folder, env=env, capture_output=True, text=True, timeout=START_TIMEOUT_S, **user,
        )  # fmt: skip
        assert initdb.returncode == 0, f"initdb failed:\n{initdb.stdout}\n{initdb.stderr}"
        STARTUP_S["postgres initdb"] = time.monotonic() - began
        log = folder / "postgres.log"
        for _attempt in range(3):  # the free port can be taken between the probe and the bind
            port = free_port()
            started = time.monotonic()
            with log.open("ab") as out:
                proc = subprocess.Popen(
                    [str(bin_dir / "postgres"), "-D", str(data), "-c", "listen_addresses=127.0.0.1",
                     "-p", str(port), "-k", str(folder)],
                    cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True, **user,
                )  # fmt: skip
            try:
                if _wait_for_postgres(proc, port, log):
                    STARTUP_S["postgres start"] = time.monotonic() - started
                    break
            except BaseException:
                _stop_postgres(proc, log)
                raise
        else:
            raise AssertionError(f"PostgreSQL did not start on a free port:\n{log_tail(log)}")
        try:
            # Not `with connection`: psycopg2 2.9 opens a transaction there even in autocommit mode.
            connection = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
            try:
                connection.autocommit = True
                with connection.cursor() as cursor:
                    cursor.execute(f"CREATE DATABASE {SESSION_DATABASE}")
            finally:
                connection.close()
            yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/{SESSION_DATABASE}"
        finally:
            _stop_postgres(proc, log)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_uri() -> Iterator[str]:
    """SQLAlchemy URI of a PostgreSQL database for the session (see the module docstring)."""
    pytest.importorskip("psycopg2", reason='psycopg2 is not installed (pip install -e ".[distributed]")')
    given = os.environ.get(POSTGRES_URI_ENV)
    if given:
        yield given
        return
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip(
            f"no PostgreSQL: set {POSTGRES_URI_ENV} or install its binaries (Debian: apt-get install postgresql)"
        )
    with private_postgres(bin_dir) as uri:
        yield uri


# --------------------------------------------------------------------------------------------
# mlflow server


@dataclass(frozen=True)
class MlflowService:
    url: str  # http://127.0.0.1:<port>, the tracking URI of clients
    backend_store_uri: str  # the PostgreSQL database behind it
    artifacts: Path  # --artifacts-destination: artifacts logged over HTTP are written here
    pid: int  # its process group
    log: Path


def _wait_for_health(proc: subprocess.Popen, url: str) -> bool:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    return False


@pytest.fixture(scope="session")
def mlflow_service(postgres_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowService]:
    """A real ``mlflow server`` on ``postgres_uri`` for the session, on 127.0.0.1."""
    workdir = tmp_path_factory.mktemp("mlflow_server")
    artifacts = workdir / "mlartifacts"
    log = workdir / "mlflow_server.log"
    env = {**os.environ, **MLFLOW_QUIET_ENV}
    env.pop("MLFLOW_TRACKING_URI", None)
    for attempt in range(3):  # the free port can be taken between the probe and the bind
        port = free_port()
        command = [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", postgres_uri,
            "--artifacts-destination", str(artifacts),
            "--host", "127.0.0.1",
            "--port", str(port),
            "--workers", "1",
        ]  # fmt: skip
        started = time.monotonic()
        proc = start_in_own_group(command, cwd=workdir, env=env, log=log)
        url = f"http://127.0.0.1:{port}"
        try:
            healthy = _wait_for_health(proc, url)
        except BaseException:
            stop_group(proc)
            raise
        if healthy:
            STARTUP_S["mlflow server"] = time.monotonic() - started
            break
        exited = proc.poll()
        stop_group(proc)
        if exited is not None and "address already in use" in log_tail(log).lower() and attempt < 2:
            continue
        what = f"exited with code {exited}" if exited is not None else f"no answer in {START_TIMEOUT_S} s"
        raise AssertionError(f"`mlflow server` never answered {url}/health ({what}):\n{log_tail(log)}")
    try:
        yield MlflowService(url=url, backend_store_uri=postgres_uri, artifacts=artifacts, pid=proc.pid, log=log)
    finally:
        stop_group(proc)
        assert not group_alive(proc.pid), f"mlflow server processes of group {proc.pid} survived:\n{log_tail(log)}"


@pytest.fixture(scope="session")
def mlflow_server(mlflow_service: MlflowService) -> str:
    """URL of the session's ``mlflow server`` (``http://127.0.0.1:<port>``), a tracking URI."""
    return mlflow_service.url


@dataclass(frozen=True)
class TrackingStore:
    tracking_uri: str  # the session's server
    experiment_name: str  # unique to the test
    experiment_id: str
    backend_store_uri: str  # the PostgreSQL database behind the server
    artifacts: Path  # the server's --artifacts-destination

    def mlflow_yml(self) -> dict:
        """kedro-mlflow's ``mlflow.yml`` pointing a project at this server and experiment."""
        return {
            "server": {"mlflow_tracking_uri": self.tracking_uri},
            "tracking": {"experiment": {"name": self.experiment_name}},
        }


@pytest.fixture
def tracking_store(
    mlflow_service: MlflowService, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> TrackingStore:
    """A new experiment on the session's server for this test, and MLFLOW_TRACKING_URI set to it."""
    from mlflow import MlflowClient

    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)[:60]
    name = f"{base}-{uuid.uuid4().hex[:8]}"
    experiment_id = MlflowClient(tracking_uri=mlflow_service.url).create_experiment(name)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_service.url)
    return TrackingStore(
        tracking_uri=mlflow_service.url, experiment_name=name, experiment_id=experiment_id,
        backend_store_uri=mlflow_service.backend_store_uri, artifacts=mlflow_service.artifacts,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# Ray


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, session id) of a process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) ": state ppid pgrp session …
    return fields[0], int(fields[3])


def session_processes(sid: int) -> list[int]:
    """Live (not zombie) processes of session ``sid``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat is not None and stat[1] == sid and stat[0] != "Z":
                pids.append(int(entry.name))
    return sorted(pids)


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text`` (a Ray temp dir)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            stat = _proc_stat(int(entry.name))
            if text in cmdline and stat is not None and stat[0] != "Z":
                pids.append(int(entry.name))
    return sorted(pids)


@dataclass(frozen=True)
class RayHead:
    address: str  # 127.0.0.1:<port>, the GCS
    pid: int  # `ray start --block`, leader of the session of every process of the head
    temp_dir: Path
    log: Path

    def processes(self) -> list[int]:
        """The head's live processes: its session (workers have process groups of their own in it)."""
        return session_processes(self.pid)


def _ray_cli() -> str | None:
    beside = Path(sys.executable).with_name("ray")
    return str(beside) if beside.is_file() else shutil.which("ray")


def _wait_for_ray_head(proc: subprocess.Popen, log: Path) -> bool:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if "Ray runtime started" in log_tail(log, 100_000):
            return True
        time.sleep(0.2)
    return False


def _stop_ray_head(proc: subprocess.Popen, temp_dir: Path, log: Path) -> None:
    """SIGTERM to the head's pid (Ray drains the node and stops its processes), then SIGKILL by pid
    to whatever is left of its session or names its temp dir; fails if anything survives."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass
    for _ in range(2):
        # Only processes that are Ray's now: still in its session, or naming its temp dir.
        left = (set(session_processes(proc.pid)) | set(processes_mentioning(str(temp_dir)))) - {os.getpid()}
        for pid in sorted(left):
            stat = _proc_stat(pid)
            if stat is not None and stat[0] != "Z":
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (session_processes(proc.pid) or processes_mentioning(str(temp_dir))):
            time.sleep(0.2)
    survivors = sorted(set(session_processes(proc.pid)) | set(processes_mentioning(str(temp_dir))))
    assert not survivors, f"Ray processes {survivors} of the head {proc.pid} survived SIGTERM and SIGKILL:\n{log_tail(log)}"


def _refresh_imported_ray(patch: pytest.MonkeyPatch) -> None:
    """Where this process imported Ray already, make it see the variables just set."""
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is None:
        return
    patch.setattr(constants, "ENABLE_RAY_CLUSTER", False)  # read when Ray is imported
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")  # the cached RAY_AUTH_MODE
    AuthenticationTokenLoader.instance().reset_cache()


@pytest.fixture(scope="session")
def ray_head() -> Iterator[RayHead]:
    """ONE local Ray head (2 CPUs, no dashboard) on 127.0.0.1 for the whole session."""
    # Not imported here: Ray reads RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER when it is imported.
    if importlib.util.find_spec("ray") is None:
        pytest.skip('ray is not installed (pip install -e ".[distributed]")')
    cli = _ray_cli()
    if cli is None:
        pytest.skip("no `ray` command beside this Python or on PATH")
    # Short: Ray's Unix sockets live under it (< 108 characters).
    temp_dir = Path(tempfile.mkdtemp(prefix="ray_", dir="/tmp"))
    log = temp_dir / "ray_start.log"
    # A token of its own: `ray start` turns token auth on by itself when ~/.ray/auth_token exists
    # (any local `ray.init()` writes one) while a driver given an address does not: pin both.
    token = temp_dir / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    ray_env = {**RAY_LOCAL_ENV, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    env = {**os.environ, **ray_env, "KEDRO_DISABLE_TELEMETRY": "true", "MPLBACKEND": "Agg"}
    env.pop("RAY_ADDRESS", None)
    env.pop("RAY_AUTH_TOKEN", None)
    proc = None
    try:
        for attempt in range(3):  # the free port can be taken between the probe and the bind
            port = free_port()
            command = [
                cli, "start", "--head", "--block",
                "--node-ip-address=127.0.0.1", f"--port={port}",
                "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats",
                f"--temp-dir={temp_dir}",
            ]  # fmt: skip
            started = time.monotonic()
            proc = start_in_own_group(command, cwd=temp_dir, env=env, log=log)
            try:
                ready = _wait_for_ray_head(proc, log)
            except BaseException:
                _stop_ray_head(proc, temp_dir, log)
                raise
            if ready:
                STARTUP_S["ray head"] = time.monotonic() - started
                break
            exited = proc.poll()
            _stop_ray_head(proc, temp_dir, log)
            if exited is not None and "already in use" in log_tail(log).lower() and attempt < 2:
                continue
            what = f"exited with code {exited}" if exited is not None else f"not started in {START_TIMEOUT_S} s"
            raise AssertionError(f"`ray start --head` failed ({what}): {' '.join(command)}\n{log_tail(log)}")
        head = RayHead(address=f"127.0.0.1:{port}", pid=proc.pid, temp_dir=temp_dir, log=log)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("RAY_ADDRESS", head.address)
            patch.delenv("RAY_AUTH_TOKEN", raising=False)
            for key, value in ray_env.items():
                patch.setenv(key, value)
            _refresh_imported_ray(patch)
            try:
                yield head
            finally:
                _stop_ray_head(proc, temp_dir, log)
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_cluster(ray_head: RayHead) -> str:
    """Address of the session's Ray head, ``127.0.0.1:<port>`` (also ``RAY_ADDRESS`` meanwhile)."""
    return ray_head.address
