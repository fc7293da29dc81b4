"""Local Kafka (single-node KRaft, jars from Maven Central) and Redis on loopback ports, without Docker.

Developers and CI get the broker the tests use: ``shadowline infra up`` runs it on the ports in settings
and the pytest fixtures run their own on free ports. Each process is detached (own session, pid file,
log file) so it outlives the CLI call that started it and a later ``down`` can find it again.
"""

from __future__ import annotations

import base64
import fcntl
import os
import shutil
import signal
import socket
import string
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from shadowline.config import REPO_ROOT, Settings
from shadowline.errors import InfraError

KAFKA_VERSION = "4.1.1"  # must match infra/kafka/pom.xml (a unit test checks)
KAFKA_INFRA_DIR = REPO_ROOT / "infra" / "kafka"
HOST = "127.0.0.1"
_LOOPBACK_NAMES = {"127.0.0.1", "localhost"}
_JARS_MARKER = ".kafka-version"


def free_port() -> int:
    """A port the OS just handed out on 127.0.0.1, so parallel test sessions do not pick the same one."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _port_open(port: int, timeout: float = 0.5) -> bool:
    """Cheap TCP probe first, so no client library logs connection-refused noise while we wait."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def _require(binary: str, why: str, install: str) -> str:
    """Resolve a binary on PATH or fail with the one line a user needs to fix it."""
    path = shutil.which(binary)
    if path is None:
        raise InfraError(f"{binary} not found on PATH ({why}): {install}, or use docker-compose.yml")
    return path


def _run(argv: list[str], what: str, timeout: float) -> None:
    """Run a short tool (mvn, the storage tool); failures carry the tail of its output."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InfraError(f"{what} failed: {exc}") from exc
    if done.returncode != 0:
        tail = _last_lines(done.stdout + done.stderr, 15)
        raise InfraError(f"{what} failed (exit {done.returncode}):\n{tail}")


def _last_lines(text: str, count: int) -> str:
    return "\n".join(text.strip().splitlines()[-count:])


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Serialise jar downloads when several processes (CLI, test sessions) start at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed
        yield


def _jars_ready(libs: Path) -> bool:
    marker = libs / _JARS_MARKER
    return marker.is_file() and marker.read_text().strip() == KAFKA_VERSION


def ensure_kafka_jars(home: Path) -> Path:
    """Fill ``home/kafka/libs`` with the broker jars once; later calls only read a marker file.

    Maven writes into a staging folder that is renamed at the end, so an interrupted download never
    leaves a half-filled classpath behind.
    """
    libs = Path(home) / "kafka" / "libs"
    if _jars_ready(libs):
        return libs
    _require("java", "needed to run the local Kafka broker", "install Java 17")
    mvn = _require("mvn", "needed to download the Kafka jars", "install Maven")
    with _file_lock(libs.parent / ".libs.lock"):
        if _jars_ready(libs):  # another process finished while we waited for the lock
            return libs
        staging = libs.with_name("libs.partial")
        shutil.rmtree(staging, ignore_errors=True)
        pom = KAFKA_INFRA_DIR / "pom.xml"
        if not pom.is_file():  # a non-editable install has no infra/ next to the package
            raise InfraError(f"{pom} not found: run from a source checkout (pip install -e .), "
                             "or use docker-compose.yml")
        argv = [mvn, "-B", "-q", "-f", str(pom), "dependency:copy-dependencies",
                f"-DoutputDirectory={staging}"]
        _run(argv, f"downloading Kafka {KAFKA_VERSION} jars with Maven", timeout=900)
        (staging / _JARS_MARKER).write_text(KAFKA_VERSION + "\n")
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
    return libs


def render_server_properties(port: int, controller_port: int, data_dir: Path) -> str:
    """server.properties of a single KRaft node; the template in infra/kafka says why each line."""
    template = string.Template((KAFKA_INFRA_DIR / "server.properties.template").read_text())
    return template.substitute(host=HOST, port=port, controller_port=controller_port,
                               data_dir=data_dir)


def _new_cluster_id() -> str:
    """Kafka's Uuid text form: 16 random bytes, URL-safe base64, unpadded, never starting with '-'."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


def _pid_alive(pid: int, marker: str) -> bool:
    """True if ``pid`` runs our daemon; the cmdline check guards against pids reused by the OS."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    proc = Path(f"/proc/{pid}")
    if not proc.exists():  # no procfs (macOS): trust the signal probe
        return True
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X") and marker in cmdline


def _check_ports_free(name: str, *ports: int) -> None:
    """Fail fast when something else owns our port, instead of a bind error deep in a log."""
    for port in ports:
        if _port_open(port):
            raise InfraError(f"cannot start {name}: {HOST}:{port} is already used by another process")


class _Node:
    """A detached server tracked by a pid file, so a later CLI call can find, probe and stop it.

    ``start`` is launch-if-not-running then wait-until-ready, which makes it idempotent.
    """

    name = ""
    marker = ""  # a word of the server's command line, to tell it from a reused pid
    grace_s = 10.0

    def __init__(self, run_dir: Path, start_timeout_s: float) -> None:
        self.pid_file = run_dir / f"{self.name}.pid"
        self.log_file = run_dir / f"{self.name}.log"
        self.start_timeout_s = start_timeout_s
        self._popen: subprocess.Popen[bytes] | None = None

    def pid(self) -> int | None:
        """The live pid from the pid file, or None (a stale pid file counts as not running)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if self._popen is not None and self._popen.pid == pid:
            # Our own child: poll() is authoritative (and reaps it). The cmdline check below would race
            # with exec(): just after fork, /proc/<pid>/cmdline still shows the Python parent.
            return pid if self._popen.poll() is None else None
        return pid if _pid_alive(pid, self.marker) else None

    def is_running(self) -> bool:
        return self.pid() is not None

    def start(self) -> None:
        if self.is_running():
            self._wait_ready()  # may still be booting from an earlier call
            return
        self._launch()
        try:
            self._wait_ready()
        except InfraError:
            self.stop()  # leave nothing half-started behind
            raise

    def stop(self) -> None:
        """SIGTERM, wait ``grace_s`` for a clean shutdown, then SIGKILL."""
        pid = self.pid()
        if pid is not None:
            self._signal(pid, signal.SIGTERM)
            if not self._wait_gone(self.grace_s):
                self._signal(pid, signal.SIGKILL)
                if not self._wait_gone(10.0):
                    raise InfraError(f"{self.name} (pid {pid}) still running after SIGKILL")
        self.pid_file.unlink(missing_ok=True)

    def _launch(self) -> None:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def _spawn(self, argv: list[str], cwd: Path) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            try:
                self._popen = subprocess.Popen(
                    argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True, close_fds=True,
                )
            except OSError as exc:
                raise InfraError(f"could not start {self.name}: {exc}") from exc
        self.pid_file.write_text(f"{self._popen.pid}\n")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if not self.is_running():
                raise InfraError(f"{self.name} exited during startup; {self._tail()}")
            if self._ready():
                return
            time.sleep(0.1)
        raise InfraError(f"{self.name} not ready after {self.start_timeout_s:.0f}s; {self._tail()}")

    def _signal(self, pid: int, sig: signal.Signals) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError as exc:
            raise InfraError(f"not allowed to stop {self.name} (pid {pid})") from exc

    def _wait_gone(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.pid() is not None:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def _tail(self, count: int = 20) -> str:
        try:
            text = _last_lines(self.log_file.read_text(errors="replace"), count)
        except OSError:
            text = "(no log)"
        return f"last lines of {self.log_file}:\n{text}"


class KafkaNode(_Node):
    """One KRaft broker+controller. ``home`` holds the shared jars; run files sit next to data_dir."""

    name = "kafka"
    marker = "kafka.Kafka"
    grace_s = 30.0  # a clean KRaft shutdown flushes the metadata log; a single node needs ~1 s

    def __init__(self, home: Path, port: int, controller_port: int, data_dir: Path, *,
                 heap: str = "512m", start_timeout_s: float = 90.0) -> None:
        self.home = Path(home)
        self.port = port
        self.controller_port = controller_port
        self.data_dir = Path(data_dir)
        self.properties_file = self.data_dir.parent / "server.properties"
        self.heap = heap
        super().__init__(self.data_dir.parent, start_timeout_s)

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    def _launch(self) -> None:
        _check_ports_free("Kafka", self.port, self.controller_port)
        libs = ensure_kafka_jars(self.home)
        java = _require("java", "needed to run the local Kafka broker", "install Java 17")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.properties_file.write_text(
            render_server_properties(self.port, self.controller_port, self.data_dir))
        if not (self.data_dir / "meta.properties").exists():
            self._format(java, libs)
        self._spawn([java, *self._jvm_options(libs), "kafka.Kafka", str(self.properties_file)],
                    cwd=self.data_dir.parent)

    def _jvm_options(self, libs: Path) -> list[str]:
        return [
            f"-Xmx{self.heap}", "-Xms128m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={KAFKA_INFRA_DIR / 'log4j2.xml'}",
            f"-Dkafka.logs.dir={self.data_dir.parent}", "-cp", str(libs / "*"),
        ]

    def _format(self, java: str, libs: Path) -> None:
        """First start only: KRaft refuses to run on storage without meta.properties."""
        argv = [java, *self._jvm_options(libs), "kafka.tools.StorageTool", "format",
                "-t", _new_cluster_id(), "-c", str(self.properties_file)]
        _run(argv, f"formatting Kafka storage in {self.data_dir}", timeout=120)

    def _ready(self) -> bool:
        return _port_open(self.port) and _kafka_topics(self.bootstrap, timeout_s=2.0) is not None


class RedisNode(_Node):
    """One redis-server without persistence; ``home`` is unused and kept for symmetry with Kafka."""

    name = "redis"
    marker = "redis-server"

    def __init__(self, home: Path, port: int, data_dir: Path, *, start_timeout_s: float = 20.0) -> None:
        self.home = Path(home)
        self.port = port
        self.data_dir = Path(data_dir)
        super().__init__(self.data_dir.parent, start_timeout_s)

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def _launch(self) -> None:
        _check_ports_free("Redis", self.port)
        binary = _require("redis-server", "needed to run the local Redis",
                          "install Debian's redis-server")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._spawn([binary, "--port", str(self.port), "--bind", HOST, "--save", "",
                     "--appendonly", "no", "--daemonize", "no", "--dir", str(self.data_dir)],
                    cwd=self.data_dir)

    def _ready(self) -> bool:
        return _redis_ping(self.port)


def _kafka_topics(bootstrap: str, timeout_s: float) -> list[str] | None:
    """Topic names (internal ``__`` ones left out), or None when the broker does not answer."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.connection.setup.timeout.ms": 1000,
                         "log_level": 0})
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException:
        return None
    return sorted(name for name in metadata.topics if not name.startswith("__"))


def _redis_ping(port: int) -> bool:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    if not _port_open(port):
        return False
    # No retries: redis-py's default backoff would turn one probe of a closed port into seconds.
    client = redis.Redis(host=HOST, port=port, socket_connect_timeout=0.5, socket_timeout=1.0,
                         retry=Retry(NoBackoff(), 0))
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _loopback_port(address: str, default_port: int, setting: str) -> int:
    """Local infra binds loopback only; any other host in settings is a remote cluster, not ours."""
    host, _, port = address.rpartition(":")
    if host not in _LOOPBACK_NAMES:
        raise InfraError(f"{setting}={address!r} is not on 127.0.0.1; local infra only runs on "
                         "loopback (point it at 127.0.0.1:PORT, or use docker-compose.yml)")
    try:
        return int(port) if port else default_port
    except ValueError as exc:
        raise InfraError(f"{setting}={address!r} has no valid port") from exc


def kafka_node(settings: Settings) -> KafkaNode:
    first = settings.kafka_bootstrap.split(",")[0].strip()
    port = _loopback_port(first, 9092, "kafka_bootstrap")
    kafka_dir = settings.home / "kafka"
    return KafkaNode(settings.home, port, settings.kafka_controller_port, kafka_dir / "data")


def redis_node(settings: Settings) -> RedisNode:
    parts = urlsplit(settings.redis_url)
    port = _loopback_port(f"{parts.hostname}:{parts.port or ''}", 6379, "redis_url")
    return RedisNode(settings.home, port, settings.home / "redis" / "data")


def up(settings: Settings, on_step: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Start Redis then Kafka (both idempotent) and return ``status``; ``on_step`` reports progress."""
    step = on_step or (lambda _message: None)
    redis_ = redis_node(settings)
    step(f"starting Redis on {HOST}:{redis_.port}")
    redis_.start()
    kafka = kafka_node(settings)
    if not _jars_ready(settings.home / "kafka" / "libs"):
        step(f"downloading Kafka {KAFKA_VERSION} jars with Maven (first run only)")
        ensure_kafka_jars(settings.home)
    step(f"starting Kafka on {kafka.bootstrap}")
    kafka.start()
    return status(settings)


def down(settings: Settings) -> None:
    """Stop both, even if one fails, and report every failure in one error."""
    failures = []
    for node in (kafka_node(settings), redis_node(settings)):
        try:
            node.stop()
        except InfraError as exc:
            failures.append(str(exc))
    if failures:
        raise InfraError("; ".join(failures))


def status(settings: Settings) -> dict[str, Any]:
    """Reachability, address, pid and (Kafka) topics, probed live rather than trusted from pid files."""
    kafka, redis_ = kafka_node(settings), redis_node(settings)
    topics = _kafka_topics(kafka.bootstrap, timeout_s=3.0) if _port_open(kafka.port) else None
    return {
        "kafka": {"reachable": topics is not None, "address": kafka.bootstrap, "pid": kafka.pid(),
                  "topics": topics or []},
        "redis": {"reachable": _redis_ping(redis_.port), "address": f"{HOST}:{redis_.port}",
                  "pid": redis_.pid()},
    }
