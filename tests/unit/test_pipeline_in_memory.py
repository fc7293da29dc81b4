"""The whole pipeline in memory (streams.testing), on the sample conversations: fast and broker-free."""

import pytest

from schemas.topics import STAGES
from shadowline.conversations import items_from_file
from shadowline.config import get_settings
from streams.testing import InMemoryPipeline


@pytest.fixture(scope="module")
def replayed():
    pipe = InMemoryPipeline()
    items = items_from_file(get_settings().samples_dir / "conversations.jsonl")
    for item in items:
        pipe.publish(item.event)
        pipe.run()
    return pipe, items


def test_every_customer_turn_gets_exactly_one_result(replayed):
    pipe, items = replayed
    customer = [i.event.event_id for i in items if i.event.role == "customer"]
    results = [r["event_id"] for r in pipe.suggestions + pipe.escalations]
    assert sorted(results) == sorted(customer)
    assert pipe.deadletters == []


def test_suggestions_carry_every_stage_in_order_and_cite_retrieved_articles(replayed):
    pipe, _ = replayed
    assert len(pipe.suggestions) >= len(pipe.escalations) // 2  # most answerable turns get a draft
    for s in pipe.suggestions:
        assert [r["stage"] for r in s["turn"]["trace"]] == list(STAGES)
        retrieved = {h["article_id"] for h in s["turn"]["retrieve"]["hits"]}
        assert s["sources"] and {x["article_id"] for x in s["sources"]} <= retrieved
        assert s["turn"]["guardrail"]["verdict"] == "pass"


def test_escalations_name_the_stage_and_stop_there(replayed):
    pipe, _ = replayed
    for e in pipe.escalations:
        trace = e["turn"]["trace"]
        assert trace[-1]["stage"] == e["stage"] and trace[-1]["status"] in ("rejected", "error")
        assert e["reason"]


def test_known_cases_route_as_a_support_team_expects(replayed):
    pipe, items = replayed
    by_text = {r["turn"]["event"]["text"]: r for r in pipe.suggestions + pipe.escalations}
    assert by_text["can you recommend a good laptop for college? budget around 800"]["stage"] == "validate"
    courier = by_text["your courier's scooter just hit my parked car and he rode off. I have a photo of the bag on his back"]
    assert "needs_human" in courier["reason"]
    declined = by_text["Hi, my card keeps getting declined when I try to pay. It worked fine last week."]
    assert declined["topic"] == "payments" and declined["sources"][0]["article_id"].startswith("kb-payments")


def test_malformed_input_is_deadlettered_in_memory():
    pipe = InMemoryPipeline()
    pipe.publish_raw(b"k", b"\xc3\x01" + b"\x00" * 8)
    pipe.run()
    [dead] = pipe.deadletters
    assert dead["reason"] == "unknown_schema" and dead["stage"] == "context"
