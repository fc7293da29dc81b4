"""The component registry in Redis: per stage the active version, its history and its candidates.

Workers read the active version from here (seeded once from pipeline.yaml, so a promotion survives a
restart) and watch ``epoch``, which every change increments, to swap versions hot.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from typing import Any, Iterator

from agents.base import ComponentSpec
from schemas.topics import STAGES
from shadowline.errors import ConfigError, ShadowlineError, StoreError


class PromotionLocked(ShadowlineError):
    """Another promotion or rollback holds the sequential-promotion lock."""


def _dump(spec: ComponentSpec) -> str:
    return json.dumps({"name": spec.name, "version": spec.version, "config": spec.config}, sort_keys=True)


def _load(stage: str, raw: bytes | str) -> ComponentSpec:
    d = json.loads(raw)
    return ComponentSpec(stage, d["name"], d["version"], d.get("config") or {})


class Registry:
    def __init__(self, url: str, namespace: str = "sl") -> None:
        import redis

        self._err = redis.RedisError
        self.r = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self.ns = namespace

    def _k(self, *parts: str) -> str:
        return ":".join((self.ns, "reg", *parts))

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except self._err as exc:
            raise StoreError(f"registry: cannot {what}: {exc}") from exc

    # -- reading -------------------------------------------------------------------------------
    def epoch(self) -> int:
        return int(self._call("read epoch", self.r.get, self._k("epoch")) or 0)

    def active(self, stage: str) -> ComponentSpec | None:
        raw = self._call("read active", self.r.get, self._k(stage, "active"))
        return _load(stage, raw) if raw else None

    def actives(self) -> dict[str, ComponentSpec]:
        keys = [self._k(s, "active") for s in STAGES]
        raws = self._call("read actives", self.r.mget, keys)
        return {s: _load(s, raw) for s, raw in zip(STAGES, raws) if raw}

    def candidates(self, stage: str) -> list[ComponentSpec]:
        raw = self._call("read candidates", self.r.hgetall, self._k(stage, "candidates"))
        return sorted((_load(stage, v) for v in raw.values()), key=lambda s: s.ref)

    def history(self, stage: str) -> list[ComponentSpec]:
        """Previous active versions, most recent first (what rollback restores)."""
        return [_load(stage, v) for v in self._call("read history", self.r.lrange, self._k(stage, "history"), 0, -1)]

    def mirror_rate(self, stage: str) -> float:
        raw = self._call("read mirror rate", self.r.get, self._k(stage, "mirror_rate"))
        return float(raw) if raw is not None else 0.0

    # -- writing -------------------------------------------------------------------------------
    def seed(self, active: dict[str, ComponentSpec], candidates: dict[str, list[ComponentSpec]] | None = None) -> None:
        """Fill an empty registry from the pipeline config. Afterwards the registry is the source of truth:
        a promotion, rollback or withdrawn candidate is never undone by the next process that starts."""
        first = bool(self._call("seed", self.r.set, self._k("seeded"), "1", None, None, True))
        changed = False
        for stage, spec in active.items():  # a stage new to the config still gets its active version
            changed |= bool(self._call("seed", self.r.set, self._k(stage, "active"), _dump(spec), None, None, True))
        for stage, specs in (candidates or {}).items() if first else ():
            for spec in specs:
                changed |= bool(self._call("seed", self.r.hsetnx, self._k(stage, "candidates"), spec.ref, _dump(spec)))
        if changed:
            self._call("bump epoch", self.r.incr, self._k("epoch"))

    def add_candidate(self, spec: ComponentSpec) -> None:
        if spec.stage not in STAGES:
            raise ConfigError(f"unknown stage {spec.stage}")
        pipe = self.r.pipeline()
        pipe.hset(self._k(spec.stage, "candidates"), spec.ref, _dump(spec)).incr(self._k("epoch"))
        self._call("add candidate", pipe.execute)

    def remove_candidate(self, stage: str, ref: str) -> bool:
        pipe = self.r.pipeline()
        pipe.hdel(self._k(stage, "candidates"), ref).incr(self._k("epoch"))
        return bool(self._call("remove candidate", pipe.execute)[0])

    def set_mirror_rate(self, stage: str, rate: float) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ConfigError(f"mirror rate must be within [0, 1], not {rate}")
        self._call("set mirror rate", self.r.set, self._k(stage, "mirror_rate"), str(rate))

    def activate(self, spec: ComponentSpec) -> ComponentSpec | None:
        """Make ``spec`` active; the old active goes onto the history. Returns the old active."""
        previous = self.active(spec.stage)
        pipe = self.r.pipeline(transaction=True)
        if previous is not None:
            pipe.lpush(self._k(spec.stage, "history"), _dump(previous))
        pipe.set(self._k(spec.stage, "active"), _dump(spec))
        pipe.hdel(self._k(spec.stage, "candidates"), spec.ref)
        pipe.incr(self._k("epoch"))
        self._call("activate", pipe.execute)
        return previous

    def rollback(self, stage: str) -> tuple[ComponentSpec, ComponentSpec]:
        """Restore the previous active version. Returns (replaced, restored)."""
        current = self.active(stage)
        raw = self._call("pop history", self.r.lpop, self._k(stage, "history"))
        if current is None or raw is None:
            raise ConfigError(f"stage {stage} has no previous version to roll back to")
        restored = _load(stage, raw)
        pipe = self.r.pipeline(transaction=True)
        pipe.set(self._k(stage, "active"), _dump(restored)).incr(self._k("epoch"))
        self._call("rollback", pipe.execute)
        return current, restored

    @contextmanager
    def lock(self, stage: str, actor: str, ttl_s: int = 120) -> Iterator[None]:
        """The sequential-promotion lock: one stage in promotion at a time, cluster-wide."""
        key = self._k("lock")
        token = f"{stage}:{actor}:{time.time()}"
        if not self._call("take lock", self.r.set, key, token, ttl_s, None, True):
            holder = self._call("read lock", self.r.get, key)
            raise PromotionLocked(f"promotion lock held by {holder.decode() if holder else 'someone'}; one stage at a time")
        try:
            yield
        finally:
            # Release only our own lock (it may have expired and been taken by someone else).
            if self._call("read lock", self.r.get, key) == token.encode():
                self._call("release lock", self.r.delete, key)
