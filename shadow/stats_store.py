"""Running shadow statistics per (stage, candidate): counters and recent latencies.

Two stores with one interface: memory (tests, in-process comparator) and Redis (the comparator worker
writes, `shadow status`, gates and the dashboard read). The noise floor of a stage is the statistics
of its ``+replica`` run, read next to every candidate's.
"""

from __future__ import annotations

from collections import defaultdict, deque
from typing import Any

from shadow.stats import ShadowStats
from shadowline.errors import StoreError

LATENCY_KEEP = 5000
GRID = ("agree_match", "agree_miss", "diverge_match", "diverge_miss")
COUNTERS = ("samples", "agree", "missing_candidate", "missing_production", "candidate_errors",
            "prod_match", "prod_total", "cand_match", "cand_total", *GRID)


def _comparison_counts(status: str, agree: bool | None, candidate_error: bool) -> dict[str, int]:
    if status != "matched":
        return {status: 1}
    if candidate_error:
        return {"candidate_errors": 1}
    if agree is None:
        return {}  # production errored: no verdict either way
    return {"samples": 1, "agree": int(agree)}


def _outcome_counts(prod_match: bool, cand_match: bool | None, agree: bool) -> dict[str, int]:
    human = cand_match if cand_match is not None else prod_match
    counts = {"prod_total": 1, "prod_match": int(prod_match),
              f"{'agree' if agree else 'diverge'}_{'match' if human else 'miss'}": 1}
    if cand_match is not None:
        counts.update(cand_total=1, cand_match=int(cand_match))
    return counts


def replica_of(production: str) -> str:
    return f"{production}+replica"


class MemoryStats:
    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.production: dict[tuple[str, str], str] = {}
        self.latency: dict[tuple[str, str, str], deque[float]] = defaultdict(lambda: deque(maxlen=LATENCY_KEEP))

    def comparison(self, stage: str, production: str, candidate: str, status: str, agree: bool | None,
                   production_latency_ms: float | None, candidate_latency_ms: float | None, candidate_error: bool) -> None:
        key = (stage, candidate)
        for k, v in _comparison_counts(status, agree, candidate_error).items():
            self.counts[key][k] += v
        if production != "?":
            self.production[key] = production
        if status == "matched" and not candidate_error:
            self.latency[(stage, candidate, "prod")].append(production_latency_ms or 0.0)
            self.latency[(stage, candidate, "cand")].append(candidate_latency_ms or 0.0)

    def outcome(self, stage: str, candidate: str, prod_match: bool, cand_match: bool | None, agree: bool) -> None:
        for k, v in _outcome_counts(prod_match, cand_match, agree).items():
            self.counts[(stage, candidate)][k] += v

    def load(self, stage: str, candidate: str) -> ShadowStats:
        key = (stage, candidate)
        production = self.production.get(key, "?")
        c = self.counts.get(key, {})
        noise = self.counts.get((stage, replica_of(production)), {})
        return _build(stage, production, candidate, c, noise,
                      tuple(self.latency[(stage, candidate, "prod")]), tuple(self.latency[(stage, candidate, "cand")]))

    def candidates(self, stage: str) -> list[str]:
        return sorted(c for s, c in self.counts if s == stage)


def _build(stage: str, production: str, candidate: str, c: dict[str, int], noise: dict[str, int],
           prod_lat: tuple[float, ...], cand_lat: tuple[float, ...]) -> ShadowStats:
    return ShadowStats(
        stage=stage, production=production, candidate=candidate,
        **{k: int(c.get(k, 0)) for k in COUNTERS if k not in GRID},
        production_latency_ms=prod_lat, candidate_latency_ms=cand_lat,
        noise_samples=int(noise.get("samples", 0)), noise_agree=int(noise.get("agree", 0)),
        grid={k: int(c.get(k, 0)) for k in GRID},
    )


class RedisStats:
    """Keys: ``<ns>:stats:<stage>:<candidate>`` (hash of counters + production ref) and ``...:lat:prod|cand`` lists."""

    def __init__(self, url: str, namespace: str = "sl") -> None:
        import redis

        self._err = redis.RedisError
        self.r = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self.ns = namespace

    def _key(self, stage: str, candidate: str) -> str:
        return f"{self.ns}:stats:{stage}:{candidate}"

    def _run(self, what: str, fn: Any) -> Any:
        try:
            return fn()
        except self._err as exc:
            raise StoreError(f"stats: cannot {what}: {exc}") from exc

    def comparison(self, stage: str, production: str, candidate: str, status: str, agree: bool | None,
                   production_latency_ms: float | None, candidate_latency_ms: float | None, candidate_error: bool) -> None:
        key = self._key(stage, candidate)
        pipe = self.r.pipeline(transaction=False)
        for k, v in _comparison_counts(status, agree, candidate_error).items():
            pipe.hincrby(key, k, v)
        if production != "?":
            pipe.hset(key, "production", production)
        if status == "matched" and not candidate_error:
            for side, value in (("prod", production_latency_ms), ("cand", candidate_latency_ms)):
                pipe.lpush(f"{key}:lat:{side}", value or 0.0).ltrim(f"{key}:lat:{side}", 0, LATENCY_KEEP - 1)
        pipe.sadd(f"{self.ns}:stats:{stage}", candidate)
        self._run("record comparison", pipe.execute)

    def outcome(self, stage: str, candidate: str, prod_match: bool, cand_match: bool | None, agree: bool) -> None:
        key = self._key(stage, candidate)
        pipe = self.r.pipeline(transaction=False)
        for k, v in _outcome_counts(prod_match, cand_match, agree).items():
            pipe.hincrby(key, k, v)
        self._run("record outcome", pipe.execute)

    def load(self, stage: str, candidate: str) -> ShadowStats:
        key = self._key(stage, candidate)
        pipe = self.r.pipeline(transaction=False)
        pipe.hgetall(key).lrange(f"{key}:lat:prod", 0, -1).lrange(f"{key}:lat:cand", 0, -1)
        raw, prod_lat, cand_lat = self._run("load", pipe.execute)
        c = {k.decode(): v.decode() for k, v in raw.items()}
        production = c.pop("production", "?")
        noise_raw = self._run("load noise", lambda: self.r.hgetall(self._key(stage, replica_of(production))))
        noise = {k.decode(): v.decode() for k, v in noise_raw.items() if k != b"production"}
        return _build(stage, production, candidate, c, noise,
                      tuple(float(x) for x in reversed(prod_lat)), tuple(float(x) for x in reversed(cand_lat)))

    def candidates(self, stage: str) -> list[str]:
        return sorted(m.decode() for m in self._run("list", lambda: self.r.smembers(f"{self.ns}:stats:{stage}")))

    def reset(self, stage: str, candidate: str) -> None:
        key = self._key(stage, candidate)
        self._run("reset", lambda: self.r.delete(key, f"{key}:lat:prod", f"{key}:lat:cand"))


class MeteredStats:
    """A stats store that also feeds Prometheus: comparisons by status, verdicts, and the running
    agreement and match ratios per (stage, candidate), which the comparator worker serves on /metrics.

    The ratios start from the store's totals (read once per candidate), so they show the numbers
    ``shadow status`` and the gates use rather than restarting at zero with the process.
    """

    def __init__(self, inner: Any, metrics: Any) -> None:
        self.inner, self.metrics = inner, metrics
        self._counts: dict[tuple[str, str], dict[str, int]] = {}

    def comparison(self, stage: str, production: str, candidate: str, status: str, agree: bool | None,
                   production_latency_ms: float | None, candidate_latency_ms: float | None, candidate_error: bool) -> None:
        self.inner.comparison(stage, production, candidate, status, agree, production_latency_ms, candidate_latency_ms, candidate_error)
        self.metrics.compared(stage, candidate, "error" if candidate_error else status, agree)
        self._fold(stage, candidate, _comparison_counts(status, agree, candidate_error))

    def outcome(self, stage: str, candidate: str, prod_match: bool, cand_match: bool | None, agree: bool) -> None:
        self.inner.outcome(stage, candidate, prod_match, cand_match, agree)
        self._fold(stage, candidate, _outcome_counts(prod_match, cand_match, agree))

    def load(self, stage: str, candidate: str) -> ShadowStats:
        return self.inner.load(stage, candidate)

    def candidates(self, stage: str) -> list[str]:
        return self.inner.candidates(stage)

    def _fold(self, stage: str, candidate: str, delta: dict[str, int]) -> None:
        counts = self._counts.get((stage, candidate))
        if counts is None:
            counts = self._counts[(stage, candidate)] = self._totals(stage, candidate, delta)
        else:
            for k, v in delta.items():
                counts[k] = counts.get(k, 0) + v
        rate = lambda part, whole: counts.get(part, 0) / counts[whole] if counts.get(whole) else None
        self.metrics.shadow_ratios(stage, candidate, rate("agree", "samples"), rate("prod_match", "prod_total"), rate("cand_match", "cand_total"))

    def _totals(self, stage: str, candidate: str, delta: dict[str, int]) -> dict[str, int]:
        """The store's totals, which already include ``delta`` (just written); ``delta`` alone if unreadable."""
        try:
            s = self.inner.load(stage, candidate)
        except StoreError:
            return dict(delta)
        return {k: getattr(s, k) for k in ("samples", "agree", "prod_match", "prod_total", "cand_match", "cand_total")}
