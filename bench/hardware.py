"""What a benchmark ran on, stored next to its numbers: without it a msg/s figure means little."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def _first(path: str, key: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def hardware() -> dict[str, Any]:
    mem_kb = _first("/proc/meminfo", "MemTotal")
    try:
        import confluent_kafka

        version, lib = confluent_kafka.version(), confluent_kafka.libversion()  # (str, int) tuples in some releases
        client = f"confluent-kafka {version[0] if isinstance(version, tuple) else version}, " \
                 f"librdkafka {lib[0] if isinstance(lib, tuple) else lib}"
    except ImportError:
        client = None
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _first("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
        "ram_gib": round(int(mem_kb.split()[0]) / 2**20, 1) if mem_kb else None,
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "kafka": "4.1.1 (local KRaft, single node, same machine)",
        "client": client,
    }


def pin(pid: int, cpus: set[int]) -> bool:
    """Pin a process and all its threads (a JVM's too) to ``cpus``; False where the OS refuses."""
    ok = True
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        tids = [pid]
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cpus)
        except OSError:
            ok = False
    return ok
