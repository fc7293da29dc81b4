"""Shared fixtures. Integration tests get a real Kafka broker and a real Redis, started once per session
on free ports (never mocks); unit tests need none of it and never trigger these fixtures.

If java, mvn or redis-server is missing the fixtures raise the InfraError that says how to install it:
a missing broker is a broken test environment, not a reason to skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from shadowline.config import get_settings
from shadowline.localinfra import KafkaNode, RedisNode, free_port

_INTEGRATION_DIR = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything under tests/integration is marked, so `-m "not integration"` runs the fast tier."""
    for item in items:
        if _INTEGRATION_DIR in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def infra_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run state (data, logs, pids) of this session's servers, laid out like settings.home."""
    return tmp_path_factory.mktemp("infra-home")


@pytest.fixture(scope="session")
def kafka_node(infra_home: Path) -> Iterator[KafkaNode]:
    port = free_port()
    controller_port = free_port()
    while controller_port == port:
        controller_port = free_port()
    # Jars are shared with `shadowline infra up` so they are downloaded once per machine.
    node = KafkaNode(get_settings().home, port, controller_port, infra_home / "kafka" / "data")
    try:
        node.start()
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_node: KafkaNode) -> str:
    """``127.0.0.1:PORT`` of this session's broker."""
    return kafka_node.bootstrap


@pytest.fixture(scope="session")
def redis_node(infra_home: Path) -> Iterator[RedisNode]:
    node = RedisNode(get_settings().home, free_port(), infra_home / "redis" / "data")
    try:
        node.start()
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="session")
def redis_url(redis_node: RedisNode) -> str:
    """``redis://127.0.0.1:PORT/0`` of this session's Redis."""
    return redis_node.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        client.flushdb()
        client.close()
