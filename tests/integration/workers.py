"""Real worker processes against the session's Kafka and Redis (the shared implementation lives in
shadowline.processes, which the demo and the benchmarks use too)."""

from shadowline.processes import WorkerProcess, stop_all, worker_env

__all__ = ["WorkerProcess", "stop_all", "worker_env"]
