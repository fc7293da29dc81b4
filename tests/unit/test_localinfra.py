"""Fast checks of the local-infra helpers: no Java, no Maven, no servers."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest

from shadowline import localinfra
from shadowline.config import REPO_ROOT, Settings
from shadowline.errors import InfraError
from shadowline.localinfra import (
    KAFKA_VERSION,
    KafkaNode,
    RedisNode,
    ensure_kafka_jars,
    free_port,
    kafka_node,
    redis_node,
    render_server_properties,
    status,
)


def _properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return dict(pairs)


def test_free_port_can_be_bound_on_loopback() -> None:
    port = free_port()
    assert 1024 <= port <= 65535
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_server_properties_describe_a_single_kraft_node(tmp_path: Path) -> None:
    props = _properties(render_server_properties(29092, 29093, tmp_path / "data"))

    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:29092"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:29093"
    assert props["log.dirs"] == str(tmp_path / "data")
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["num.partitions"] == "3"
    assert props["auto.create.topics.enable"] == "true"


def test_kafka_version_matches_the_pom() -> None:
    pom = (REPO_ROOT / "infra" / "kafka" / "pom.xml").read_text()
    assert re.search(rf"<kafka.version>{re.escape(KAFKA_VERSION)}</kafka.version>", pom)


def test_cluster_id_has_kafka_uuid_form() -> None:
    for _ in range(50):
        cluster_id = localinfra._new_cluster_id()
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster_id)
        assert not cluster_id.startswith("-")


def test_missing_java_or_mvn_says_how_to_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    with pytest.raises(InfraError, match="not found on PATH") as info:
        ensure_kafka_jars(tmp_path)
    assert "docker-compose.yml" in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_redis_server_says_how_to_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    node = RedisNode(tmp_path, free_port(), tmp_path / "redis" / "data")
    with pytest.raises(InfraError) as info:
        node.start()
    message = str(info.value)
    assert "redis-server not found" in message
    assert "Debian's redis-server" in message
    assert "docker-compose.yml" in message


def test_cached_jars_need_no_maven(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    libs = tmp_path / "kafka" / "libs"
    libs.mkdir(parents=True)
    (libs / ".kafka-version").write_text(KAFKA_VERSION + "\n")
    monkeypatch.setenv("PATH", "")
    assert ensure_kafka_jars(tmp_path) == libs


def test_a_reused_pid_is_not_mistaken_for_the_broker(tmp_path: Path) -> None:
    node = KafkaNode(tmp_path, free_port(), free_port(), tmp_path / "kafka" / "data")
    node.pid_file.parent.mkdir(parents=True)
    node.pid_file.write_text(f"{os.getpid()}\n")  # alive, but it is pytest, not kafka.Kafka
    assert node.pid() is None
    assert not node.is_running()


def test_nodes_follow_the_ports_and_home_in_settings(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, kafka_bootstrap="localhost:29092", kafka_controller_port=29093,
                        redis_url="redis://127.0.0.1:26379/0")
    kafka, redis_ = kafka_node(settings), redis_node(settings)
    assert (kafka.port, kafka.controller_port) == (29092, 29093)
    assert kafka.data_dir == tmp_path / "kafka" / "data"
    assert kafka.pid_file == tmp_path / "kafka" / "kafka.pid"
    assert redis_.port == 26379
    assert redis_.pid_file == tmp_path / "redis" / "redis.pid"


def test_remote_addresses_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InfraError, match="loopback"):
        kafka_node(Settings(home=tmp_path, kafka_bootstrap="broker.example:9092"))
    with pytest.raises(InfraError, match="loopback"):
        redis_node(Settings(home=tmp_path, redis_url="redis://cache.example:6379/0"))


def test_status_of_nothing_running_is_all_down(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, kafka_bootstrap=f"127.0.0.1:{free_port()}",
                        redis_url=f"redis://127.0.0.1:{free_port()}/0")
    report = status(settings)
    assert report["kafka"]["reachable"] is False
    assert report["kafka"]["pid"] is None
    assert report["kafka"]["topics"] == []
    assert report["redis"]["reachable"] is False
    assert report["redis"]["pid"] is None
