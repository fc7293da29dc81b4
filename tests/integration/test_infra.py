"""The local infra really runs: a KRaft broker that takes produce/consume, a Redis that answers, and
start/status/stop behaving as `shadowline infra` promises."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import redis
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from shadowline.config import Settings, get_settings
from shadowline.localinfra import KafkaNode, RedisNode, free_port, status


def _create_topic(bootstrap: str, partitions: int = 3) -> str:
    name = f"test-{uuid.uuid4().hex[:12]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    futures[name].result(timeout=30)
    return name


def _consume(bootstrap: str, topic: str, count: int, timeout_s: float = 30.0) -> list[bytes]:
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"g-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest",
    })
    consumer.subscribe([topic])
    values: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(values) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            values.append(message.value())
    finally:
        consumer.close()
    return values


def test_broker_creates_produces_and_consumes(kafka_bootstrap: str) -> None:
    topic = _create_topic(kafka_bootstrap)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all"})
    sent = [f"message-{i}".encode() for i in range(5)]
    for i, value in enumerate(sent):
        producer.produce(topic, value=value, key=str(i).encode())
    assert producer.flush(15) == 0

    assert sorted(_consume(kafka_bootstrap, topic, len(sent))) == sorted(sent)


def test_topics_are_auto_created_with_three_partitions(kafka_bootstrap: str) -> None:
    topic = f"auto-{uuid.uuid4().hex[:12]}"
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topic, value=b"x")
    assert producer.flush(15) == 0
    metadata = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(topic, timeout=10)
    assert len(metadata.topics[topic].partitions) == 3


def test_redis_answers_ping_set_and_get(redis_client: redis.Redis) -> None:
    assert redis_client.ping() is True
    redis_client.set("greeting", "hello")
    assert redis_client.get("greeting") == b"hello"


def test_redis_client_fixture_flushes_between_tests(redis_client: redis.Redis) -> None:
    assert redis_client.get("greeting") is None


def test_second_start_on_running_broker_is_a_noop(kafka_node: KafkaNode) -> None:
    pid = kafka_node.pid()
    began = time.monotonic()
    kafka_node.start()
    assert kafka_node.pid() == pid
    assert time.monotonic() - began < 5
    # A fresh object for the same data dir (what a second `infra up` builds) sees the same process.
    again = KafkaNode(kafka_node.home, kafka_node.port, kafka_node.controller_port,
                      kafka_node.data_dir)
    again.start()
    assert again.pid() == pid


def test_status_reports_both_services(
    kafka_node: KafkaNode, redis_node: RedisNode, infra_home: Path
) -> None:
    topic = _create_topic(kafka_node.bootstrap, partitions=1)
    settings = Settings(home=infra_home, kafka_bootstrap=kafka_node.bootstrap,
                        kafka_controller_port=kafka_node.controller_port, redis_url=redis_node.url)

    report = status(settings)

    assert report["kafka"] == {"reachable": True, "address": kafka_node.bootstrap,
                               "pid": kafka_node.pid(), "topics": report["kafka"]["topics"]}
    assert topic in report["kafka"]["topics"]
    assert report["redis"] == {"reachable": True, "address": f"127.0.0.1:{redis_node.port}",
                               "pid": redis_node.pid()}


def test_stopped_broker_restarts_on_its_storage_and_keeps_topics(tmp_path: Path) -> None:
    node = KafkaNode(get_settings().home, free_port(), free_port(), tmp_path / "kafka" / "data")
    try:
        node.start()
        topic = _create_topic(node.bootstrap, partitions=1)
        node.stop()
        assert not node.is_running()
        assert not node.pid_file.exists()

        node.start()
        topics = AdminClient({"bootstrap.servers": node.bootstrap}).list_topics(timeout=10).topics
        assert topic in topics
    finally:
        node.stop()
    assert not node.is_running()


def test_redis_stop_frees_the_port(tmp_path: Path) -> None:
    node = RedisNode(get_settings().home, free_port(), tmp_path / "redis" / "data")
    try:
        node.start()
        assert node.is_running()
    finally:
        node.stop()
    assert not node.is_running()
    assert status(Settings(home=tmp_path, redis_url=node.url,
                           kafka_bootstrap=f"127.0.0.1:{free_port()}"))["redis"]["reachable"] is False
