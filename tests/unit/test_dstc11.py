"""DSTC11 Track 5 adapters (kb_index/dstc11.py) and the benchmark's parts, on an inline fixture and,
when /work/shared/data/dstc11-track5 is present, on the real knowledge base and validation split."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from agents.guardrail import DEFAULT_THRESHOLD
from bench import dstc11 as bench
from bench.disk_embeddings import DiskCachedEmbedder
from bench.dstc11_guardrail import closing_questions, guardrail_calibration, pair_other_entity, threshold_for_budget
from kb_index.chunker import chunk_articles
from kb_index.dstc11 import (Entity, EntityMatcher, SnippetKey, Utterance, dialogue_id, load_dialogues,
                             load_entities, load_knowledge, to_conversation)
from kb_index.embedder import HashingEmbedder
from kb_index.index import KbIndex
from shadowline.conversations import items_from_conversation
from shadowline.errors import ComponentError

DATA = Path(os.environ.get("SHADOWLINE_DATA", "/work/shared/data")) / "dstc11-track5"
needs_data = pytest.mark.skipif(not (DATA / "knowledge.json").is_file() or not (DATA / "val" / "labels.json").is_file(),
                                reason=f"DSTC11 Track 5 data not under {DATA}")

KNOWLEDGE = {
    "hotel": {
        "1": {"name": "ACORN GUEST HOUSE",
              "faqs": {"0": {"question": "Is parking free?", "answer": "Yes, parking is free for guests."},
                       "1": {"question": "Are pets allowed?", "answer": "No, pets are not allowed."}},
              "reviews": {"0": {"traveler_type": "Couples", "sentences": {
                  "0": "The room was quiet and clean.", "1": "Breakfast was served until ten."}}}},
        "2": {"name": "WORTH HOUSE",
              "faqs": {"0": {"question": "Is there wifi?", "answer": "Free wifi is available in all rooms."}},
              "reviews": {"0": {"sentences": {"0": "The street outside was noisy at night.", "1": ""}}}},
        "3": {"name": "WARKWORTH HOUSE",
              "faqs": {"0": {"question": "Is there a gym?", "answer": "There is no gym on site."}},
              "reviews": {}},
    },
    "restaurant": {
        "7": {"name": "NANDOS", "faqs": {"0": {"question": "Do they deliver?", "answer": "Delivery is available."}},
              "reviews": {}},
        "8": {"name": "NANDOS CITY CENTRE",
              "faqs": {"0": {"question": "Is it halal?", "answer": "Yes, the chicken is halal."}},
              "reviews": {"2": {"sentences": {"4": "The chicken was spicy and the staff were friendly."}}}},
    },
}


def _ref(domain: str, entity: int, doc_type: str, doc: int, sent: int | None = None) -> dict:
    return {"domain": domain, "entity_id": entity, "doc_type": doc_type, "doc_id": doc,
            **({} if sent is None else {"sent_id": sent})}


def _conversation(opening: str, place: str) -> list[list[dict]]:
    """Two instances of one conversation: a booking turn (not seeking) and a knowledge question."""
    start = [{"speaker": "U", "text": opening}, {"speaker": "S", "text": f"How about {place}?"}]
    return [start + [{"speaker": "U", "text": "Please book it for two nights from Friday."}],
            start + [{"speaker": "U", "text": "Is the place quiet at night, and is parking free?"}]]


def _labels(refs: list[dict], response: str) -> list[dict]:
    return [{"target": False}, {"target": True, "knowledge": refs, "response": response}]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dstc11")
    (root / "val").mkdir()
    (root / "knowledge.json").write_text(json.dumps(KNOWLEDGE))
    logs, labels = [], []
    for opening, place, refs, response in [
        ("I need a guesthouse in the north.", "the Acorn guesthouse",
         [_ref("hotel", 1, "review", 0, 0), _ref("hotel", 1, "faq", 0)],
         "Guests say the room was quiet and clean, and parking is free. Shall I book it?"),
        ("Find me a cheap hotel please.", "Worth House", [_ref("hotel", 2, "review", 0, 0)],
         "One guest found the street outside noisy at night."),
        ("Somewhere to stay in the east.", "Warkworth House", [_ref("hotel", 3, "faq", 0)],
         "There is no gym on site."),
        ("Any chicken places in town?", "Nandos City Centre", [_ref("restaurant", 8, "faq", 0)],
         "Yes, the chicken at Nandos City Centre is halal."),
    ]:
        logs += _conversation(opening, place)
        labels += _labels(refs, response)
    (root / "val" / "logs.json").write_text(json.dumps(logs))
    (root / "val" / "labels.json").write_text(json.dumps(labels))
    return root


# -- knowledge ---------------------------------------------------------------------------------

def test_load_knowledge_one_article_per_snippet_with_recoverable_keys(tiny: Path) -> None:
    articles = load_knowledge(tiny)  # the folder works, so does the file
    assert [a.article_id for a in articles] == [a.article_id for a in load_knowledge(tiny / "knowledge.json")]
    by_id = {a.article_id: a for a in articles}
    assert len(articles) == 10  # 6 FAQs + 4 non-empty review sentences; the empty one is skipped
    faq = by_id["hotel-1-faq-0"]
    assert (faq.title, faq.body, faq.topic) == (
        "ACORN GUEST HOUSE: Is parking free?", "Yes, parking is free for guests.", "hotel")
    review = by_id["restaurant-8-review-2-4"]
    assert review.title == "NANDOS CITY CENTRE review" and review.body.startswith("The chicken was spicy")
    assert SnippetKey.parse("restaurant-8-review-2-4") == SnippetKey("restaurant", 8, "review", 2, 4)
    assert all(SnippetKey.parse(a.article_id).article_id == a.article_id for a in articles)
    for bad in ("kb-refunds-001", "hotel-x-faq-1", "hotel-1-faq-1-2"):
        with pytest.raises(ComponentError):
            SnippetKey.parse(bad)
    chunks = chunk_articles(articles)
    assert [c.article_id for c in chunks] == [a.article_id for a in articles]  # exactly one chunk per snippet
    index = KbIndex.build(articles, HashingEmbedder())
    assert index.search("Are pets allowed at the Acorn guest house?", k=1)[0].article_id == "hotel-1-faq-1"
    assert [(e.domain, e.entity_id, e.name) for e in load_entities(tiny)][:2] == [
        ("hotel", 1, "ACORN GUEST HOUSE"), ("hotel", 2, "WORTH HOUSE")]


@pytest.mark.parametrize("content, message", [
    ("[1, 2]", "expected an object keyed by domain"),
    ('{"hotel": {"1": {"faqs": {}}}}', "entity needs a name"),
    ('{"hotel": {"x": {"name": "A"}}}', "entity id is not a number"),
    ('{"hotel": {"1": {"name": "A", "faqs": {"0": {"question": "Q?"}}}}}', "faq 0 needs a question and an answer"),
    ('{"hotel": {"1": {"name": "A", "reviews": {"0": {"traveler_type": "x"}}}}}', "review 0 has no sentences"),
    ('{"hotel": {"1": {"name": "A"}}}', "no FAQs or review sentences"),
    ("{not json", "invalid JSON"),
])
def test_load_knowledge_errors_name_the_file(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "knowledge.json"
    path.write_text(content)
    with pytest.raises(ComponentError, match=message) as err:
        load_knowledge(path)
    assert str(path) in str(err.value)


# -- dialogues ---------------------------------------------------------------------------------

def test_load_dialogues_groups_instances_by_conversation(tiny: Path) -> None:
    ds = load_dialogues(tiny / "val")
    assert len(ds) == 8 and [d.target for d in ds] == [False, True] * 4
    assert ds[0].dialogue_id == ds[1].dialogue_id != ds[2].dialogue_id
    assert dialogue_id([Utterance("U", "  I need a GUESTHOUSE in the north. ")]) == ds[0].dialogue_id
    seeking = ds[1]
    assert seeking.last_user == "Is the place quiet at night, and is parking free?"
    assert seeking.knowledge == (SnippetKey("hotel", 1, "review", 0, 0), SnippetKey("hotel", 1, "faq", 0))
    assert seeking.entities == (("hotel", 1),) and ds[0].knowledge == () and ds[0].response == ""


def test_load_dialogues_rejects_inconsistent_files(tmp_path: Path) -> None:
    (tmp_path / "logs.json").write_text(json.dumps([[{"speaker": "U", "text": "hi"}]]))
    (tmp_path / "labels.json").write_text(json.dumps([]))
    with pytest.raises(ComponentError, match="same length"):
        load_dialogues(tmp_path)
    (tmp_path / "labels.json").write_text(json.dumps([{"target": True, "knowledge": [], "response": "x"}]))
    with pytest.raises(ComponentError, match="must cite knowledge"):
        load_dialogues(tmp_path)
    (tmp_path / "labels.json").write_text(json.dumps([{"target": True, "knowledge": [_ref("hotel", 1, "review", 0)]}]))
    with pytest.raises(ComponentError, match="a review needs sent_id"):
        load_dialogues(tmp_path)


def test_to_conversation_replays_as_events_with_feedback_for_the_reference(tiny: Path) -> None:
    d = load_dialogues(tiny / "val")[1]
    conv = to_conversation(d)
    items = list(items_from_conversation(conv, base_ms=1_000))
    assert [i.event.role for i in items] == ["customer", "agent", "customer", "agent"]
    assert items[-1].event.text == d.response and items[-1].feedback["event_id"] == items[2].event.event_id
    assert items[0].event.locale == "en" and items[0].event.metadata["knowledge_seeking"] == "true"
    assert len(to_conversation(d, with_response=False)["turns"]) == 3


# -- entity mentions -----------------------------------------------------------------------------

def test_entity_matcher_prefers_the_longest_name_and_whole_words(tiny: Path) -> None:
    m = EntityMatcher(load_entities(tiny))
    names = lambda text: [e.name for e in m.find(text)]  # noqa: E731
    assert names("Book the Acorn Guesthouse, or acorn guest house?") == ["ACORN GUEST HOUSE"]
    assert names("I liked Warkworth House more than Worth house.") == ["WARKWORTH HOUSE", "WORTH HOUSE"]
    assert names("nandos city centre, not the other nandos") == ["NANDOS CITY CENTRE", "NANDOS"]
    assert names("a house with parking") == []
    turns = (Utterance("S", "Try the Acorn."), Utterance("U", "What about Worth House?"),
             Utterance("U", "Is it quiet?"))
    assert m.current(turns) == [Entity("hotel", 2, "WORTH HOUSE")] and m.current(turns[2:]) == []


# -- benchmark parts ---------------------------------------------------------------------------

def test_closing_questions_and_budget_threshold() -> None:
    assert closing_questions("It is quiet. Parking is free. Shall I book it? Anything else?") == (
        "Shall I book it?", "Anything else?")
    assert closing_questions("Is it quiet? Yes, very quiet.") == ()
    neg = np.asarray([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    t = threshold_for_budget(neg, 0.10)
    assert t == 0.2 and np.mean(neg < t) == 0.1  # one of ten escalated, never two
    assert threshold_for_budget(neg, 0.0) == 0.1 and threshold_for_budget(neg, 1.0) > 1.0


def test_pairing_and_guardrail_calibration_on_the_fixture(tiny: Path) -> None:
    seeking = [d for d in load_dialogues(tiny / "val") if d.target]
    partner = pair_other_entity(seeking, seed=0)
    for i, j in enumerate(partner):
        assert j is not None and not set(seeking[i].entities) & set(seeking[j].entities)
        if seeking[i].knowledge[0].domain == "hotel":  # hotels have other hotels to pair with
            assert seeking[j].knowledge[0].domain == "hotel"
    chunks = {c.article_id: c for c in chunk_articles(load_knowledge(tiny))}
    result = guardrail_calibration(seeking, chunks, HashingEmbedder())
    assert result["pairs"] == 4 and result["responses_with_closing_question"] == 1
    for variant in result["variants"].values():
        at = variant["at_default_threshold"]
        assert at["threshold"] == DEFAULT_THRESHOLD and 0 <= at["false_escalation_rate"] <= at["catch_rate"] <= 1
        assert 0.5 <= variant["sweep"]["auc"] <= 1.0  # own evidence supports better than another entity's
        assert len(variant["sweep"]["roc"]) == 51 and set(variant["sweep"]["budgets"]) == {
            "fpr<=0.05", "fpr<=0.10", "fpr<=0.20"}


def test_disk_cached_embedder_reuses_saved_vectors(tmp_path: Path) -> None:
    first = DiskCachedEmbedder(HashingEmbedder(dim=64), tmp_path, "t")
    vecs = first.embed(["quiet room", "free parking", "quiet room"])
    assert first.computed == 2 and np.array_equal(vecs[0], vecs[2])
    first.save()
    again = DiskCachedEmbedder(HashingEmbedder(dim=64), tmp_path, "t")
    assert len(again) == 2 and np.array_equal(again.embed(["free parking"])[0], vecs[1]) and again.computed == 0
    assert again.config == HashingEmbedder(dim=64).config  # an index built through it is the same index
    other = DiskCachedEmbedder(HashingEmbedder(dim=32), tmp_path, "t")
    assert len(other) == 0  # another config never reads these vectors


def test_bench_runs_on_the_fixture_and_skips_without_data(tiny: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--data", str(tmp_path / "absent"), "--quick"]) == 0
    assert "skipped: no DSTC11" in capsys.readouterr().out
    out = tmp_path / "tiny.json"
    assert bench.main(["--data", str(tiny), "--quick", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    det = result["detection"]
    assert det["instances"] == 8 and det["dialogues"] == 4 and det["folds"] == 3
    assert set(det["models"]) == {"tfidf-logreg", "hashing-embeddings+logreg"}
    sel = result["embedders"]["hashing"]["selection"]
    assert sel["turns"] == 4 and sel["variants"]["oracle_entity_filter"]["top1_entity_correct"] == 1.0
    assert sel["entity_matching"]["named_entity_is_gold"] == 1.0


# -- the real data -----------------------------------------------------------------------------

@needs_data
def test_real_knowledge_counts_match_source_md() -> None:
    articles = load_knowledge(DATA)
    count: dict[tuple[str, str], int] = {}
    for a in articles:
        key = (a.topic, SnippetKey.parse(a.article_id).doc_type)
        count[key] = count.get(key, 0) + 1
    assert count == {("hotel", "faq"): 1219, ("hotel", "review"): 1676,
                     ("restaurant", "faq"): 1650, ("restaurant", "review"): 6337}
    reviews = {(a.topic, k.entity_id, k.doc_id) for a in articles
               for k in [SnippetKey.parse(a.article_id)] if k.doc_type == "review"}
    assert sum(d == "hotel" for d, _, _ in reviews) == 330 and sum(d == "restaurant" for d, _, _ in reviews) == 1100
    entities = load_entities(DATA)
    assert sum(e.domain == "hotel" for e in entities) == 33 and sum(e.domain == "restaurant" for e in entities) == 110
    assert len(chunk_articles(articles)) == len(articles)  # one chunk per snippet: recall is scored per snippet


@needs_data
def test_real_val_counts_and_every_citation_resolves() -> None:
    ds = load_dialogues(DATA / "val")
    seeking = [d for d in ds if d.target]
    assert len(ds) == 2070 and len(seeking) == 1065
    # SOURCE.md says 367 cite an FAQ; the labels themselves say 178 (230 FAQ citations, 4,133 review ones).
    assert sum(any(k.doc_type == "faq" for k in d.knowledge) for d in seeking) == 178
    ids = {a.article_id for a in load_knowledge(DATA)}
    assert all(k.article_id in ids for d in seeking for k in d.knowledge)
    assert all(d.response.strip() for d in seeking) and not any(d.knowledge for d in ds if not d.target)
    assert 900 < len({d.dialogue_id for d in ds}) < 1100  # ~2 instances per conversation
    matcher = EntityMatcher(load_entities(DATA))
    named = [{(e.domain, e.entity_id) for e in matcher.current(d.turns)} for d in seeking]
    assert np.mean([bool(n & set(d.entities)) for n, d in zip(named, seeking)]) > 0.95


@needs_data
def test_bench_quick_on_real_data(tmp_path: Path) -> None:
    out = tmp_path / "quick.json"
    assert bench.main(["--quick", "--limit", "120", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["args"]["quick"] and result["detection"]["instances"] == 120
    assert result["detection"]["models"]["tfidf-logreg"]["f1"] > result["detection"]["baseline_always_seeking"]["f1"]
    run = result["embedders"]["hashing"]
    assert run["index"]["chunks"] == 10882
    variants = run["selection"]["variants"]
    assert variants["oracle_entity_filter"]["recall@5"] >= variants["last_user"]["recall@5"]
    for g in run["guardrail"]["variants"].values():
        assert g["sweep"]["auc"] > 0.6
