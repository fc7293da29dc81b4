"""Worker processes (`python -m shadowline ...`) started and stopped as a group: used by the demo, the
integration tests and the benchmarks, so all three start workers the same way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from shadowline.config import REPO_ROOT


def worker_env(kafka_bootstrap: str, redis_url: str, home: Path, **extra: str) -> dict[str, str]:
    """The environment of a worker pointed at a given broker, Redis and home (tests, benchmarks)."""
    env = dict(os.environ)
    env.update({
        "SHADOWLINE_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "SHADOWLINE_REDIS_URL": redis_url,
        "SHADOWLINE_HOME": str(home),
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra)
    return env


# One BLAS/OpenMP thread per worker process (unless the caller set otherwise): workers scale by process and
# partition, and spinning BLAS/OpenMP threads collapse when the host is busy (MiniLM: 37 vs 498 ms per
# query, one exact faiss query over 10k vectors: 0.7 vs 30 ms, 1 vs 2 threads on the loaded 2-core box).
NUMERIC_THREADS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def single_threaded(env: dict[str, str] | None) -> dict[str, str]:
    out = dict(os.environ if env is None else env)
    for key, value in NUMERIC_THREADS.items():
        out.setdefault(key, value)
    return out


class WorkerProcess:
    """One `python -m shadowline ARGS` in its own process group, output to ``log``."""

    def __init__(self, args: list[str], env: dict[str, str] | None, log: Path) -> None:
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "shadowline", *args],
            env=single_threaded(env), cwd=REPO_ROOT, stdout=self._fh, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def terminate(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)

    def wait_or_kill(self, timeout_s: float = 20.0) -> None:
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._fh.close()

    def stop(self) -> None:
        self.terminate()
        self.wait_or_kill()


def stop_all(procs: list[WorkerProcess]) -> None:
    """Signal every process first, then wait: shutdowns overlap instead of adding up."""
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait_or_kill()
