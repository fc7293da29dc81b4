"""Pipeline config validation and conversation files: clear one-line errors, deterministic ids."""

import json

import pytest

from agents.base import ComponentSpec
from shadowline.conversations import items_from_conversation, items_from_file
from shadowline.errors import ConfigError
from streams.pipeline import load_pipeline, parse_pipeline


def test_default_pipeline_names_every_stage():
    cfg = load_pipeline()
    assert list(cfg.active) == ["context", "validate", "classify", "retrieve", "generate", "tone", "guardrail"]


@pytest.mark.parametrize(
    "data, message",
    [
        ({}, "top-level 'stages'"),
        ({"stages": {"nope": {}}}, "unknown stage(s) nope"),
        ({"stages": {"context": {"active": {"name": "x"}}}}, "no component for stage(s) validate"),
    ],
)
def test_bad_pipeline_config_is_one_clear_error(data, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_pipeline(data)


def test_missing_and_invalid_config_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_pipeline(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_pipeline(bad)


def test_component_refs():
    spec = ComponentSpec.parse("classify:tfidf-logreg@2")
    assert (spec.stage, spec.name, spec.version, spec.ref) == ("classify", "tfidf-logreg", "2", "classify:tfidf-logreg@2")
    with pytest.raises(ConfigError):
        ComponentSpec.parse("no-stage")


def test_conversation_becomes_events_and_feedback():
    conv = {"conversation_id": "c7", "locale": "en", "turns": [
        {"role": "customer", "text": "Where is my order?"},
        {"role": "agent", "text": "It arrives today.", "action": "accepted"},
        {"role": "customer", "text": "thanks"},
    ]}
    items = list(items_from_conversation(conv, base_ms=1000))
    assert [i.event.event_id for i in items] == ["c7-t0", "c7-t1", "c7-t2"]
    assert [i.event.ts_ms for i in items] == [1000, 2000, 3000]
    assert items[0].feedback is None
    fb = items[1].feedback
    assert fb["event_id"] == "c7-t0" and fb["suggestion_id"] == "sug-c7-t0" and fb["action"] == "accepted"


def test_bad_conversation_file_names_the_line(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"conversation_id": "a", "turns": []}) + "\n{oops\n")
    with pytest.raises(ConfigError, match=r"c.jsonl:2: not JSON"):
        items_from_file(path)
    path.write_text(json.dumps({"conversation_id": "a", "turns": [{"role": "bot", "text": "x"}]}) + "\n")
    with pytest.raises(ConfigError, match="line 1: turn 0 needs role"):
        items_from_file(path)
