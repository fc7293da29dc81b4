"""Topic creation through confluent-kafka's AdminClient; Kafka errors are mapped here."""

from __future__ import annotations

from schemas.topics import TopicSpec
from shadowline.errors import TransportError


def ensure_topics(bootstrap: str, specs: list[TopicSpec], partitions: int, timeout_s: float = 30.0) -> list[str]:
    """Create missing topics with their retention/compaction config; returns the names created."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        existing = set(admin.list_topics(timeout=timeout_s).topics)
    except KafkaException as exc:
        raise TransportError(f"kafka at {bootstrap} unreachable: {exc}") from exc
    wanted = [s for s in specs if s.name not in existing]
    if not wanted:
        return []
    futures = admin.create_topics(
        [NewTopic(s.name, s.partitions or partitions, 1, config=s.config()) for s in wanted],
        operation_timeout=timeout_s, request_timeout=timeout_s,
    )
    created = []
    for name, fut in futures.items():
        try:
            fut.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise TransportError(f"cannot create topic {name}: {exc}") from exc
    _wait_for_leaders(admin, [s.name for s in wanted], timeout_s)
    return created


def _wait_for_leaders(admin: object, names: list[str], timeout_s: float) -> None:
    """Creation returns before leaders are elected; until then produce and offset requests fail."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        meta = admin.list_topics(timeout=timeout_s)  # type: ignore[attr-defined]
        pending = [
            n for n in names
            if n not in meta.topics or not meta.topics[n].partitions
            or any(p.leader < 0 for p in meta.topics[n].partitions.values())
        ]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TransportError(f"no partition leader after {timeout_s:.0f}s for: {', '.join(pending[:5])}")
        time.sleep(0.1)


def list_topics(bootstrap: str, timeout_s: float = 10.0) -> dict[str, int]:
    """Topic name -> partition count (internal topics left out)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    try:
        meta = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise TransportError(f"kafka at {bootstrap} unreachable: {exc}") from exc
    return {n: len(t.partitions) for n, t in sorted(meta.topics.items()) if not n.startswith("__")}
