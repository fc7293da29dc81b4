"""LiveKbIndex (base + delta of article changes, hot CURRENT swaps) and the follower's record handling,
without a broker: the follower's Kafka loop is exercised in tests/integration/test_kb_live.py."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

from agents.base import Resources
from agents.retrieve import FaissRetriever, shared_index
from agents.records import ConversationEvent, Turn
from kb_index.articles import Article, load_articles
from kb_index.embedder import HashingEmbedder
from kb_index.follower import KbFollower
from kb_index.index import KbIndex, current_version
from kb_index.live import ArticleChange, LiveKbIndex, base_index
from schemas.codec import SingleObjectCodec
from shadowline.config import REPO_ROOT, Settings
from streams.testing import InMemoryPipeline

KB_DIR = REPO_ROOT / "samples" / "kb"
T2020, T2021, T2022 = 1577836800000, 1609459200000, 1640995200000  # Jan 1st, UTC
CODEC = SingleObjectCodec()
PASSWORD_Q = "I forgot my password, how do I reset it?"
GIFT_Q = "can I pay with a zorblax gift voucher"
GIFT = Article("kb-live-vouchers", "Zorblax gift vouchers", "payments",
               "## Paying with a voucher\nZorblax gift vouchers can pay for any order. Enter the zorblax voucher "
               "code at checkout; a voucher worth more than the order keeps its balance.")


@pytest.fixture(scope="module")
def articles() -> list[Article]:
    return load_articles(KB_DIR)


@pytest.fixture(scope="module")
def base(articles: list[Article]) -> KbIndex:
    return operators(KbIndex.build(articles, HashingEmbedder()), "2020-01-01T00:00:00+00:00")


def operators(index: KbIndex, built_at: str) -> KbIndex:
    """As `shadowline kb build` saves it (a source recorded), built at ``built_at``."""
    index.meta.update(built_at=built_at, source={"path": str(KB_DIR), "format": "auto"})
    return index


def saved(index: KbIndex, root: Path, built_at: str) -> str:
    return operators(index, built_at).save(root)


def test_without_changes_it_serves_the_base_exactly(base: KbIndex) -> None:
    live = LiveKbIndex(base)
    assert live.version == base.version
    assert live.search(PASSWORD_Q, 6) == base.search(PASSWORD_Q, 6)
    assert live.chunks == base.chunks and live.embedder is base.embedder


def test_upserted_new_article_is_found_and_the_version_says_so(base: KbIndex) -> None:
    live = LiveKbIndex(base)
    assert all(h.article_id != GIFT.article_id for h in live.search(GIFT_Q, 10))
    assert live.apply(ArticleChange.upsert(GIFT, T2022)) is True
    hits = live.search(GIFT_Q, 4)
    assert hits[0].article_id == GIFT.article_id and "keeps its balance" in hits[0].text
    assert live.version == f"{base.version}+d1"
    assert live.apply(ArticleChange.upsert(GIFT, T2022), position=41) and live.version == f"{base.version}+d41"
    assert all(h.article_id != GIFT.article_id for h in base.search(GIFT_Q, 10))  # the base is never modified


def test_update_replaces_the_old_text_everywhere(base: KbIndex) -> None:
    live = LiveKbIndex(base)
    old = [h for h in live.search(PASSWORD_Q, 20) if h.article_id == "kb-account-001"]
    assert old and any("30 minutes" in h.text for h in old)
    new = Article("kb-account-001", "Resetting your password", "account",
                  "## Reset\nTo reset your password, tap Forgot password. The reset link is valid for 2 hours.")
    live.apply(ArticleChange.upsert(new, T2022))
    hits = live.search(PASSWORD_Q, 20)
    mine = [h for h in hits if h.article_id == "kb-account-001"]
    assert len(mine) == 1 and "valid for 2 hours" in mine[0].text
    assert not any("30 minutes" in h.text and h.article_id == "kb-account-001" for h in hits)
    assert len({h.chunk_id for h in hits}) == len(hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    st = live.stats()
    assert st["articles"] == base.meta["articles"] and st["chunks"] == len(live.chunks)
    assert st["hidden_articles"] == 1 and st["live_changes"] == 1


def test_delete_removes_the_article_and_still_returns_k_hits(base: KbIndex) -> None:
    before = base.search(PASSWORD_Q, 4)
    assert any(h.article_id == "kb-account-001" for h in before)
    live = LiveKbIndex(base)
    live.apply(ArticleChange("kb-account-001", "delete", T2022))
    hits = live.search(PASSWORD_Q, 4)
    # Over-fetching makes up for the hidden chunks: exactly the base's ranking without the article.
    assert hits == [h for h in base.search(PASSWORD_Q, 500) if h.article_id != "kb-account-001"][:4]
    live.apply(ArticleChange.upsert(GIFT, T2022))
    live.apply(ArticleChange(GIFT.article_id, "delete", T2022))
    assert all(h.article_id != GIFT.article_id for h in live.search(GIFT_Q, 10))
    assert live.version == f"{base.version}+d3"


def test_changes_older_than_an_operators_build_are_kept_but_not_served(base: KbIndex, articles: list[Article]) -> None:
    live = LiveKbIndex(base)  # `kb build` at 2020-01-01
    assert live.apply(ArticleChange.upsert(GIFT, T2020 - 1)) is False
    assert live.version == base.version and all(h.article_id != GIFT.article_id for h in live.search(GIFT_Q, 10))
    # An index a worker made of kb_dir on its own (no source recorded) says nothing about kb.articles.
    auto = LiveKbIndex(KbIndex.build(articles, HashingEmbedder()))
    assert auto.apply(ArticleChange.upsert(GIFT, T2020 - 1)) is True
    assert auto.search(GIFT_Q, 1)[0].article_id == GIFT.article_id


def test_current_swap_reapplies_only_changes_newer_than_the_build(articles: list[Article], tmp_path: Path) -> None:
    root = tmp_path / "kb"
    embedder = HashingEmbedder()
    v1 = saved(KbIndex.build(articles, embedder), root, "2020-01-01T00:00:00+00:00")
    live = LiveKbIndex(KbIndex.load(root, embedder=embedder), root)
    assert live.refresh() is False  # CURRENT did not move
    reset = Article("kb-account-001", "Resetting your password", "account", "## Reset\nThe reset link is valid for 2 hours.")
    live.apply(ArticleChange.upsert(reset, (T2020 + T2021) // 2))  # folded into v2 below
    live.apply(ArticleChange.upsert(GIFT, T2022))  # newer than v2: re-applied on top of it
    # v2: the password article as the 2021 build has it, and without the delivery article kb-delivery-001.
    v2_articles = [reset if a.article_id == "kb-account-001" else a for a in articles if a.article_id != "kb-delivery-001"]
    v2 = saved(KbIndex.build(v2_articles, embedder, max_words=60), root, "2021-01-01T00:00:00+00:00")
    assert current_version(root) == v2 and live.base.version == v1

    assert live.refresh() is True
    assert live.version == f"{v2}+d2" and live.base.version == v2
    assert live.search(GIFT_Q, 1)[0].article_id == GIFT.article_id
    assert not any(c.article_id == "kb-delivery-001" for c in live.chunks)
    assert live.stats()["live_changes"] == 1 and live.stats()["hidden_articles"] == 0

    (root / "CURRENT").write_text(v1 + "\n")  # roll back: v1 lacks both changes, so both are live again
    assert live.refresh() is True
    assert live.version == f"{v1}+d2" and live.stats()["live_changes"] == 2
    assert any("valid for 2 hours" in h.text for h in live.search(PASSWORD_Q, 3))


def test_a_version_that_cannot_load_is_skipped_and_reported_once(base: KbIndex, tmp_path: Path, caplog) -> None:
    root = tmp_path / "kb"
    good = base.save(root)
    live = LiveKbIndex(KbIndex.load(root, embedder=base.embedder), root)
    (root / "broken").mkdir()
    (root / "broken" / "meta.json").write_text("{not json")
    (root / "CURRENT").write_text("broken\n")
    assert live.refresh() is False and live.refresh() is False
    assert live.version == good
    assert sum("broken not loaded" in r.getMessage() for r in caplog.records) == 1


def test_a_build_with_another_embedder_is_swapped_in_and_the_delta_reembedded(articles: list[Article], tmp_path: Path) -> None:
    root = tmp_path / "kb"
    saved(KbIndex.build(articles, HashingEmbedder()), root, "2020-01-01T00:00:00+00:00")
    live = LiveKbIndex(KbIndex.load(root, embedder=HashingEmbedder()), root)
    live.apply(ArticleChange.upsert(GIFT, T2022))
    v2 = saved(KbIndex.build(articles, HashingEmbedder(dim=512)), root, "2021-01-01T00:00:00+00:00")
    assert live.refresh() is True
    assert live.embedder.dim == 512 and live.base.version == v2
    hit = live.search(GIFT_Q, 1)[0]
    assert hit.article_id == GIFT.article_id and hit.score > 0.3


def test_searches_during_updates_always_see_one_consistent_state(base: KbIndex) -> None:
    live = LiveKbIndex(base)
    errors: list[BaseException] = []
    stop = threading.Event()

    def search_loop() -> None:
        try:
            while not stop.is_set():
                hits = live.search(GIFT_Q, 5)
                assert len(hits) == 5 and len({h.chunk_id for h in hits}) == 5
                assert sum(h.article_id == GIFT.article_id for h in hits) <= 1
        except BaseException as exc:  # surfaced by the main thread's assert below
            errors.append(exc)

    threads = [threading.Thread(target=search_loop) for _ in range(2)]
    for t in threads:
        t.start()
    for n in range(30):
        body = f"## Voucher\nZorblax gift vouchers revision {n} pay for any order."
        live.apply(ArticleChange.upsert(Article(GIFT.article_id, GIFT.title, "payments", body), T2022))
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert "revision 29" in live.search(GIFT_Q, 1)[0].text and live.version == f"{base.version}+d30"


# -- records and the follower's handling of them ---------------------------------------------

def test_article_change_round_trips_through_the_kb_article_schema() -> None:
    for change in (ArticleChange.upsert(GIFT, T2022), ArticleChange("kb-x", "delete", T2021)):
        decoded = CODEC.decode(CODEC.encode("KbArticle", change.to_record()), "KbArticle")
        assert ArticleChange.from_record(decoded) == change


def test_follower_applies_good_records_and_counts_bad_ones_without_raising(base: KbIndex) -> None:
    live = LiveKbIndex(base)
    follower = KbFollower(live, "127.0.0.1:1", "kb.articles", CODEC)  # never started: no broker touched
    upsert = CODEC.encode("KbArticle", ArticleChange.upsert(GIFT, T2022).to_record())
    no_body = CODEC.encode("KbArticle", {**ArticleChange.upsert(GIFT, T2022).to_record(), "body": None})
    wrong_record = CODEC.encode("ConversationEvent", ConversationEvent("e", "c", "customer", "hi", 1).to_record())

    assert follower.handle(b"garbage", b"\x00 not avro", T2022, 1) is False
    assert follower.handle(GIFT.article_id.encode(), no_body, T2022, 2) is False
    assert follower.handle(GIFT.article_id.encode(), wrong_record, T2022, 3) is False
    assert follower.handle(b"another-id", upsert, T2022, 4) is False  # the key must be the article id
    assert follower.bad == 4 and live.version == base.version

    assert follower.handle(GIFT.article_id.encode(), upsert, T2022, 5) is True
    assert live.search(GIFT_Q, 1)[0].article_id == GIFT.article_id and live.version == f"{base.version}+d5"
    assert follower.handle(GIFT.article_id.encode(), None, T2022, 6) is True  # a Kafka tombstone deletes too
    assert all(h.article_id != GIFT.article_id for h in live.search(GIFT_Q, 10))
    old = CODEC.encode("KbArticle", ArticleChange.upsert(GIFT, T2020 - 1).to_record())
    assert follower.handle(GIFT.article_id.encode(), old, T2020, 7) is True
    assert (follower.applied, follower.superseded, follower.bad) == (2, 1, 4)


# -- wiring -----------------------------------------------------------------------------------

def test_retriever_on_a_live_index_names_the_live_version(base: KbIndex) -> None:
    live = LiveKbIndex(base)
    retriever = FaissRetriever(live)
    turn = Turn.start(ConversationEvent("e1", "c1", "customer", GIFT_Q, 1), 1)
    assert retriever.process(turn).rejected or retriever.process(turn).output.hits[0].article_id != GIFT.article_id
    live.apply(ArticleChange.upsert(GIFT, T2022))
    out = retriever.process(turn)
    assert not out.rejected and out.output.hits[0].article_id == GIFT.article_id
    assert out.output.index_version == f"{base.version}+d1"


def test_in_memory_and_unfollowed_resources_get_a_plain_saved_index(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", kb_follow=False)
    index = shared_index(Resources(settings), HashingEmbedder())
    assert isinstance(index, KbIndex) and current_version(tmp_path / "home" / "kb") == index.version
    pipe = InMemoryPipeline(settings=Settings(home=tmp_path / "home"))  # kb_follow defaults to on
    assert pipe.settings.kb_follow is False
    assert isinstance(pipe.processors["retrieve"].component.index, KbIndex)


def test_an_explicit_build_is_served_as_is_instead_of_rebuilt_from_kb_dir(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for p in sorted(KB_DIR.glob("kb-account-*.md")):
        shutil.copy(p, source)
    root = tmp_path / "home" / "kb"
    built = KbIndex.build(load_articles(source), HashingEmbedder())
    built.meta["source"] = {"path": str(source), "format": "auto"}
    version = built.save(root)
    settings = Settings(home=tmp_path / "home", kb_follow=False)  # kb_dir: the 32-article demo KB
    served = base_index(settings, HashingEmbedder())
    assert served.version == version and served.meta["articles"] == 4
    assert current_version(root) == version
    # Without the mark, the index follows kb_dir as before: rebuilt from the demo KB.
    meta = json.loads((root / version / "meta.json").read_text())
    meta.pop("source")
    (root / version / "meta.json").write_text(json.dumps(meta))
    assert base_index(settings, HashingEmbedder()).meta["articles"] == 32
