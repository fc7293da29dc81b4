"""KB index: embedder, article loaders, chunking, versioned save/load and search on the demo KB."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np
import pytest

from kb_index.ann import exact_top_k, perturbed_queries, recall_at_k
from kb_index.articles import Article, load_articles, load_json, load_jsonl, load_markdown_dir
from kb_index.chunker import chunk_article, chunk_sentences, split_header, split_sentences
from kb_index.embedder import Embedder, HashingEmbedder, get_embedder
from kb_index.index import IndexSpec, KbIndex, current_version, load_or_build
from shadowline.config import REPO_ROOT, Settings
from shadowline.errors import ComponentError, ConfigError

KB_DIR = REPO_ROOT / "samples" / "kb"


@pytest.fixture(scope="module")
def embedder() -> HashingEmbedder:
    return HashingEmbedder()


@pytest.fixture(scope="module")
def demo_articles() -> list[Article]:
    return load_articles(KB_DIR)


@pytest.fixture(scope="module")
def demo_index(demo_articles: list[Article], embedder: HashingEmbedder) -> KbIndex:
    return KbIndex.build(demo_articles, embedder)


def article(article_id: str, body: str, title: str = "Refunds", topic: str = "refunds") -> Article:
    return Article(article_id, title, topic, body, "2026-01-01")


# -- embedder ---------------------------------------------------------------------------------

def test_embedder_rows_are_unit_float32(embedder: HashingEmbedder) -> None:
    assert isinstance(embedder, Embedder)
    vecs = embedder.embed(["Refunds to a card take 5-10 business days.", "Reset your password", ""])
    assert vecs.dtype == np.float32 and vecs.shape == (3, embedder.dim)
    np.testing.assert_allclose(np.linalg.norm(vecs[:2], axis=1), 1.0, rtol=1e-5)
    assert not vecs[2].any()  # nothing to hash: a zero row, which scores 0 against everything


def test_paraphrases_score_clearly_above_unrelated_text(embedder: HashingEmbedder) -> None:
    q, para, other = embedder.embed([
        "I forgot my password and can't log in",
        "To reset your password, tap Forgot password on the login screen.",
        "Parcelpay Plus members get free delivery on orders over $15.",
    ])
    assert float(q @ para) > 0.4
    assert float(q @ other) < 0.15
    card, charge = embedder.embed(["my card was charged twice", "a duplicate charge on your card"])
    assert float(card @ charge) > 0.3  # charged/charge fold together


def test_embedder_is_identical_across_processes(embedder: HashingEmbedder) -> None:
    """Stable hashes, not hash(): another interpreter with another hash seed gets the same bytes."""
    text = "Refunds to a card take 5-10 business days"
    code = ("import sys; from kb_index.embedder import HashingEmbedder; "
            f"sys.stdout.write(HashingEmbedder().embed([{text!r}]).tobytes().hex())")
    env = dict(os.environ, PYTHONHASHSEED="12345", PYTHONPATH=str(REPO_ROOT))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert bytes.fromhex(out) == embedder.embed([text]).tobytes()


def test_get_embedder_by_name() -> None:
    e = get_embedder("hashing", dim=256)
    assert e.dim == 256 and e.embed(["x y z"]).shape == (1, 256)
    with pytest.raises(ConfigError, match="unknown embedder"):
        get_embedder("bert-large")


# -- articles -----------------------------------------------------------------------------------

def test_demo_kb_loads_with_front_matter(demo_articles: list[Article]) -> None:
    assert len(demo_articles) >= 24
    by_id = {a.article_id: a for a in demo_articles}
    refunds = by_id["kb-refunds-001"]
    assert refunds.topic == "refunds" and refunds.title == "How long does a refund take?"
    assert refunds.updated.startswith("20") and "## " in refunds.body and not refunds.body.startswith("---")
    assert {a.topic for a in demo_articles} == {"payments", "refunds", "delivery", "orders", "account",
                                                "subscriptions", "security", "promotions"}


def test_json_and_jsonl_loaders(tmp_path: Path) -> None:
    rows = [{"article_id": "a1", "title": "One", "topic": "t", "body": "Body one."},
            {"id": "a2", "title": "Two", "body": "Body two."}]
    (tmp_path / "kb.json").write_text(json.dumps(rows))
    (tmp_path / "kb.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    for loaded in (load_json(tmp_path / "kb.json"), load_jsonl(tmp_path / "kb.jsonl"),
                   load_articles(tmp_path / "kb.jsonl")):
        assert [a.article_id for a in loaded] == ["a1", "a2"]
        assert loaded[1].topic == "general"


@pytest.mark.parametrize("name, text, message", [
    ("broken.md", "---\nid: x\ntitle: [unclosed\n---\nBody", "invalid YAML"),
    ("open.md", "---\nid: x\ntitle: T\nBody without a closing fence", "never closed"),
    ("empty.md", "---\nid: x\n---\n\nJust text, no title or heading.", "missing title"),
])
def test_bad_markdown_names_the_file(tmp_path: Path, name: str, text: str, message: str) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(ComponentError, match=message) as err:
        load_markdown_dir(tmp_path)
    assert name in str(err.value)


def test_bad_json_and_duplicates_are_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text('{"id": "a", "title": "A", "body": "x"}\n{not json\n')
    with pytest.raises(ComponentError, match=r"bad\.jsonl:2"):
        load_jsonl(tmp_path / "bad.jsonl")
    (tmp_path / "dup.json").write_text(json.dumps([{"id": "a", "title": "A", "body": "x"}] * 2))
    with pytest.raises(ComponentError, match="duplicate article id 'a'"):
        load_json(tmp_path / "dup.json")
    with pytest.raises(ComponentError, match="unknown KB format"):
        (tmp_path / "kb.csv").write_text("x")
        load_articles(tmp_path / "kb.csv")


# -- chunking -----------------------------------------------------------------------------------

def test_chunks_follow_headings_and_describe_themselves() -> None:
    body = ("Intro line about refunds.\n\n## Timing\nRefunds take 5-10 business days. Wallet refunds are instant."
            "\n\n## Where it goes\nWe refund the original payment method.")
    chunks = chunk_article(article("kb-r1", body))
    assert [c.chunk_id for c in chunks] == ["kb-r1#0", "kb-r1#1", "kb-r1#2"]
    assert [c.heading for c in chunks] == ["", "Timing", "Where it goes"]
    assert chunks[1].text.startswith("# Refunds - Timing\n\n")
    assert split_header(chunks[1].text) == ("Refunds - Timing",
                                            "Refunds take 5-10 business days. Wallet refunds are instant.")
    assert split_sentences(chunks[1].text) == ["Refunds take 5-10 business days.", "Wallet refunds are instant."]


def test_long_sections_split_on_sentences_with_overlap() -> None:
    sentences = [f"Sentence number {i} talks about refund rule {i} in some detail here." for i in range(30)]
    chunks = chunk_article(article("long", "## Rules\n" + " ".join(sentences)), max_words=60, overlap_words=15)
    assert len(chunks) > 3
    bodies = [split_sentences(c.text) for c in chunks]
    assert all(len(" ".join(b).split()) <= 60 for b in bodies)
    assert all(s in sentences for b in bodies for s in b)  # no sentence cut in half
    for prev, nxt in zip(bodies, bodies[1:]):
        assert prev[-1] == nxt[0]  # one sentence (~11 words <= 15) repeated as overlap
    assert [s for s in sentences if not any(s in b for b in bodies)] == []


def test_sentence_splitter_keeps_abbreviations_and_prices() -> None:
    text = ('Plus costs $9.99 per month, e.g. for Express. See **Settings > Wallet**! (See "Fees.") Done?'
            "\n- Item one\n- Item two")
    assert split_sentences(text) == ["Plus costs $9.99 per month, e.g. for Express.", "See Settings > Wallet!",
                                     '(See "Fees.")', "Done?", "Item one", "Item two"]


def test_list_items_keep_their_lead_in() -> None:
    body = "## What we don't accept\n\n- Cash or checks\n- PayPal or Venmo\n\n## Steps\n\nTo pay:\n\n1. Open the app."
    chunks = chunk_article(article("pay", body, title="Payment methods"))
    assert [s.full for s in chunk_sentences(chunks[0].text, "Payment methods")] == [
        "What we don't accept: Cash or checks", "What we don't accept: PayPal or Venmo"]
    assert [s.full for s in chunk_sentences(chunks[1].text, "Payment methods")] == ["To pay:", "To pay: Open the app."]


# -- index --------------------------------------------------------------------------------------

def test_save_load_round_trip(tmp_path: Path, demo_index: KbIndex) -> None:
    version = demo_index.save(tmp_path)
    assert current_version(tmp_path) == version == demo_index.version
    assert {p.name for p in (tmp_path / version).iterdir()} == {"index.faiss", "chunks.jsonl", "meta.json"}
    meta = json.loads((tmp_path / version / "meta.json").read_text())
    assert meta["embedder"]["name"] == "hashing-v1" and meta["dim"] == demo_index.embedder.dim
    assert meta["articles"] == demo_index.meta["articles"] and meta["built_at"]
    loaded = KbIndex.load(tmp_path)  # no embedder given: rebuilt from meta.json
    assert loaded.version == version and loaded.chunks == demo_index.chunks
    query = "how long does a refund to my card take"
    assert loaded.search(query, 4) == demo_index.search(query, 4)
    assert loaded.stats()["chunks"] == len(demo_index.chunks)


def test_current_switches_atomically_and_old_versions_stay(tmp_path: Path, embedder: HashingEmbedder) -> None:
    assert current_version(tmp_path) is None
    with pytest.raises(ComponentError, match="CURRENT missing"):
        KbIndex.load(tmp_path)
    first = KbIndex.build([article("a", "## Refunds\nRefunds take 5-10 business days.")], embedder)
    v1 = first.save(tmp_path)
    second = KbIndex.build([article("b", "## Passwords\nReset your password from the login screen.")], embedder)
    v2 = second.save(tmp_path)
    assert v1 != v2 and current_version(tmp_path) == v2
    assert KbIndex.load(tmp_path).search("reset password", 1)[0].article_id == "b"
    assert KbIndex.load(tmp_path, version=v1).search("refund", 1)[0].article_id == "a"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left behind


def test_load_errors_are_component_errors(tmp_path: Path, demo_index: KbIndex) -> None:
    version = demo_index.save(tmp_path)
    with pytest.raises(ComponentError, match="built with"):
        KbIndex.load(tmp_path, embedder=HashingEmbedder(dim=256))
    meta_path = tmp_path / version / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps(dict(meta, embedder=dict(meta["embedder"], features="v0-older"))))
    with pytest.raises(ComponentError, match="rebuild the index"):  # same name, other stop list
        KbIndex.load(tmp_path)
    meta_path.write_text(json.dumps(meta))
    (tmp_path / version / "index.faiss").write_bytes(b"not a faiss index")
    with pytest.raises(ComponentError, match="cannot load KB index"):
        KbIndex.load(tmp_path)
    with pytest.raises(ComponentError, match="zero articles"):
        KbIndex.build([], HashingEmbedder())


@pytest.mark.parametrize("question, article_id", [
    ("how long does a refund take to show up", "kb-refunds-001"),
    ("my card keeps getting declined when I try to pay", "kb-payments-001"),
    ("my dinner showed up 40 minutes late", "kb-delivery-002"),
    ("I typed the wrong street number on my order, can I change the address?", "kb-delivery-003"),
    ("placed an order by accident 2 minutes ago, can I cancel it?", "kb-orders-001"),
    ("my grocery order was missing the chicken and a bag of rice", "kb-orders-002"),
    ("I clicked the reset password link and it says expired", "kb-account-001"),
    ("I'd like to delete my account", "kb-account-003"),
    ("how do i cancel plus", "kb-subscriptions-002"),
    ("promo code isn't working", "kb-promotions-001"),
    ("how long does it take to withdraw to my bank", "kb-payments-004"),
    ("I need invoices with my company name", "kb-orders-004"),
    ("do you take paypal", "kb-payments-002"),
    ("someone called saying they're from parcelpay and asked for the code", "kb-security-003"),
])
def test_search_finds_the_right_demo_article(demo_index: KbIndex, question: str, article_id: str) -> None:
    hits = demo_index.search(question, 4)
    assert hits[0].article_id == article_id, [(h.article_id, h.score) for h in hits]
    assert hits[0].score >= 0.15 and hits[0].chunk_id.startswith(article_id + "#")
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


@pytest.mark.parametrize("question", [
    "how long does a refund take", "how many business days does a card refund take?",
    "refund approved, how long till I see the money", "how long until a refund arrives on my credit card",
])
def test_refund_timing_questions_land_in_refund_articles(demo_index: KbIndex, question: str) -> None:
    hits = demo_index.search(question, 4)
    assert hits[0].article_id.startswith("kb-refunds-")
    assert "kb-refunds-001" in [h.article_id for h in hits]  # "How long does a refund take?"


def test_search_edge_cases(demo_index: KbIndex) -> None:
    assert demo_index.search("", 4) == [] and demo_index.search("refund", 0) == []
    assert len(demo_index.search("refund", 10_000)) == len(demo_index.chunks)
    assert demo_index.search("zxqv blorft", 1)[0].score < 0.15


def test_load_or_build_builds_once_then_rebuilds_when_the_kb_changes(tmp_path: Path) -> None:
    kb = tmp_path / "kb"
    shutil.copytree(KB_DIR, kb)
    settings = Settings(home=tmp_path / "home", kb_dir=kb)
    first = load_or_build(settings, HashingEmbedder())
    assert current_version(tmp_path / "home" / "kb") == first.version
    again = load_or_build(settings, HashingEmbedder())
    assert again.version == first.version and again.meta["digest"] == first.meta["digest"]
    (kb / "kb-new-001.md").write_text("---\nid: kb-new-001\ntitle: Gift wrapping\ntopic: orders\n---\n"
                                      "## Gift wrap\nGift wrapping costs $3 and is added at checkout.\n")
    rebuilt = load_or_build(settings, HashingEmbedder())
    assert rebuilt.meta["digest"] != first.meta["digest"]
    assert rebuilt.search("can you gift wrap my order", 1)[0].article_id == "kb-new-001"


# -- approximate index above the size threshold ----------------------------------------------------

def test_below_the_threshold_the_index_stays_exact(demo_index: KbIndex) -> None:
    assert len(demo_index.chunks) < IndexSpec().threshold
    assert demo_index.kind == "flat" and demo_index.meta["index"] == {"kind": "flat", "params": {}}
    assert isinstance(demo_index._index, faiss.IndexFlatIP)
    stats = demo_index.stats()
    assert stats["index"] == "flat" and stats["recall_at_10"] == 1.0


def test_above_the_threshold_hnsw_with_measured_recall_survives_save_and_load(
        tmp_path: Path, demo_articles: list[Article], embedder: HashingEmbedder, demo_index: KbIndex) -> None:
    spec = IndexSpec(threshold=50, ef_search=48)
    approx = KbIndex.build(demo_articles, embedder, spec=spec)
    described = approx.meta["index"]
    assert approx.kind == "hnsw" and described["params"] == {"m": 32, "ef_construction": 200, "ef_search": 48}
    assert described["recall_queries"] == len(approx.chunks)  # fewer chunks than the 200 asked for
    assert 0.95 <= described["recall_at_10"] <= 1.0
    for question in ("how long does a refund take to show up", "do you take paypal", "how do i cancel plus"):
        assert approx.search(question, 1)[0].chunk_id == demo_index.search(question, 1)[0].chunk_id
    version = approx.save(tmp_path)
    assert json.loads((tmp_path / version / "meta.json").read_text())["index"] == described
    loaded = KbIndex.load(tmp_path)
    assert loaded.kind == "hnsw" and loaded._index.hnsw.efSearch == 48
    assert loaded.stats()["index_params"] == described["params"]
    assert loaded.stats()["recall_at_10"] == described["recall_at_10"]
    assert loaded.search("promo code isn't working", 4) == approx.search("promo code isn't working", 4)


def test_ivf_restores_nprobe_and_poor_settings_show_in_recall(
        tmp_path: Path, demo_articles: list[Article], embedder: HashingEmbedder) -> None:
    full = KbIndex.build(demo_articles, embedder, spec=IndexSpec(kind="ivf", nlist=4, nprobe=4))
    assert full.meta["index"]["recall_at_10"] == 1.0  # every list scanned: exact, ties included
    one = KbIndex.build(demo_articles, embedder, spec=IndexSpec(kind="ivf", nlist=4, nprobe=1))
    assert one.meta["index"]["recall_at_10"] < 0.9  # a quarter of the lists: the loss is measured, not hidden
    one.save(tmp_path)
    assert faiss.extract_index_ivf(KbIndex.load(tmp_path)._index).nprobe == 1


def test_index_kind_is_checked_on_load_and_old_metas_read_as_exact(tmp_path: Path, demo_index: KbIndex) -> None:
    version = demo_index.save(tmp_path)
    meta_path = tmp_path / version / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({k: v for k, v in meta.items() if k != "index"}))  # saved by older code
    assert KbIndex.load(tmp_path).stats()["index"] == "flat"
    meta_path.write_text(json.dumps(dict(meta, index={"kind": "hnsw", "params": {"ef_search": 8}})))
    with pytest.raises(ComponentError, match="says a hnsw index, index.faiss holds flat"):
        KbIndex.load(tmp_path)


def test_load_or_build_rebuilds_when_another_index_kind_is_asked_for(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", kb_dir=KB_DIR)
    exact = load_or_build(settings, HashingEmbedder())
    assert load_or_build(settings, HashingEmbedder()).version == exact.version
    approx = load_or_build(settings, HashingEmbedder(), IndexSpec(threshold=10))
    assert approx.kind == "hnsw" and approx.version != exact.version
    assert load_or_build(settings, HashingEmbedder(), IndexSpec(threshold=10)).version == approx.version


@pytest.mark.parametrize("options, message", [
    ({"kind": "lsh"}, "index kind must be one of"),
    ({"approx": "flat"}, "hnsw or ivf"),
    ({"threshold": 0}, "threshold must be >= 1"),
    ({"nlist": 0}, "nlist must be >= 1"),
    ({"colour": "blue"}, "bad index options"),
])
def test_bad_index_options_are_config_errors(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        IndexSpec.from_dict(options)


def test_exact_top_k_and_tie_aware_recall() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(500, 32)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    queries = base[:20] + 0.1 * rng.normal(size=(20, 32)).astype(np.float32)
    flat = faiss.IndexFlatIP(32)
    flat.add(base)
    want_scores, want_ids = flat.search(queries, 10)
    scores, ids = exact_top_k(queries, base, 10, block=7)
    assert (ids == want_ids).all() and np.allclose(scores, want_scores, atol=1e-5)
    kth = scores[:, -1]
    assert recall_at_k(want_ids, queries, base, kth) == 1.0
    assert recall_at_k(np.concatenate([ids[:, :5], np.full((20, 5), -1)], axis=1), queries, base, kth) == 0.5
    twin = np.concatenate([base, base[:1]])  # an exact duplicate: either copy is a right answer
    assert recall_at_k(np.array([[500] + ids[0, 1:].tolist()]), queries[:1], twin, kth[:1]) == 1.0


def test_recall_queries_are_short_noisy_windows_of_the_chunks(demo_index: KbIndex) -> None:
    texts = [c.text for c in demo_index.chunks]
    queries = perturbed_queries(texts, 30, seed=3)
    assert queries == perturbed_queries(texts, 30, seed=3) and len(queries) == 30
    assert all(1 <= len(q.split()) <= 14 and not q.startswith("#") for q in queries)
    assert sum(any(q in t for t in texts) for q in queries) < 30  # words dropped: mostly not verbatim
