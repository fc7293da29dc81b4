"""The human review queue on a real Redis, and `shadowline review` driving it (scripted and interactive)."""

from __future__ import annotations

import io
import json

import pytest

from shadow.review import ReviewItem, ReviewQueue, UnknownItem
from shadowline.cli.main import main
from shadowline.config import get_settings

pytestmark = pytest.mark.integration


def item(n: int, **scores: float) -> ReviewItem:
    base = {"retrieval": 0.8, "accuracy": 0.9, "language": 1.0, "coherence": 0.3, "relevance": 0.6}
    return ReviewItem(f"rev-ev-{n}-rules-1", f"ev-{n}", f"conv-{n}", "rules@1", f"question {n}", f"answer {n}.",
                      f"summary {n}", ({"article_id": "kb-refunds-001", "title": "How long does a refund take?",
                                        "score": 0.31, "text": "Card refunds take 5-10 business days."},),
                      base | scores, "rationale", 1_000 + n)


@pytest.fixture
def queue(redis_url: str, redis_client) -> ReviewQueue:
    return ReviewQueue(redis_url)


def test_enqueue_is_idempotent_ordered_and_bounded(queue: ReviewQueue, redis_url: str) -> None:
    assert queue.enqueue(item(2)) and queue.enqueue(item(1))
    assert not queue.enqueue(item(1))  # a redelivered judgment does not queue twice
    assert [i.item_id for i in queue.next(5)] == ["rev-ev-1-rules-1", "rev-ev-2-rules-1"]  # oldest first
    assert queue.next(1)[0] == item(1) and queue.pending() == 2
    small = ReviewQueue(redis_url, max_pending=2)
    assert not small.enqueue(item(3)) and small.pending() == 2
    queue.label("rev-ev-1-rules-1", {"accuracy": 1})
    assert not queue.enqueue(item(1))  # labelled items never come back
    assert [i.item_id for i in queue.next(5)] == ["rev-ev-2-rules-1"]


def test_labels_take_items_off_the_queue_and_feed_calibration(queue: ReviewQueue) -> None:
    for n, (accuracy, coherence) in enumerate([(0.9, 0.3), (0.2, 0.8), (0.7, 0.1), (0.6, 0.9)]):
        queue.enqueue(item(n, accuracy=accuracy, coherence=coherence))
    humans = [{"accuracy": 1, "coherence": 0}, {"accuracy": 0, "coherence": 1}, {"accuracy": 1, "coherence": 1},
              {"accuracy": 0}]
    for n, labels in enumerate(humans):
        queue.label(f"rev-ev-{n}-rules-1", labels, reviewer="ana")
    assert queue.pending() == 0 and len(queue.labels()) == 4
    rows = {r.aspect: r for r in queue.calibration()}
    assert set(rows) == {"accuracy", "coherence"}
    # accuracy: judge 1,0,1,1 vs human 1,0,1,0 -> agreement 0.75, kappa 0.5 (see test_review.py).
    assert (rows["accuracy"].n, rows["accuracy"].agreement) == (4, 0.75) and rows["accuracy"].kappa == pytest.approx(0.5)
    # coherence: judge 0,1,0 vs human 0,1,1 -> agreement 2/3; p_e = (1/3*2/3 + 2/3*1/3) = 4/9; kappa = (2/3-4/9)/(5/9) = 0.4.
    assert rows["coherence"].n == 3 and rows["coherence"].kappa == pytest.approx(0.4)
    relabel = queue.label("rev-ev-3-rules-1", {"accuracy": 1}, reviewer="ben")
    assert relabel.reviewer == "ben" and len(queue.labels()) == 4  # replaced, not added
    with pytest.raises(UnknownItem, match="rev-nope"):
        queue.label("rev-nope", {"accuracy": 1})


@pytest.fixture
def cli(redis_url: str, redis_client, monkeypatch):
    monkeypatch.setenv("SHADOWLINE_REDIS_URL", redis_url)
    get_settings.cache_clear()
    yield ReviewQueue(redis_url)
    get_settings.cache_clear()


def test_review_cli_next_label_and_status(cli: ReviewQueue, capsys) -> None:
    assert main(["review", "next"]) == 0 and "no items waiting" in capsys.readouterr().out
    cli.enqueue(item(1, accuracy=0.9))
    cli.enqueue(item(2, accuracy=0.1))
    assert main(["review", "next", "-n", "2"]) == 0
    out = capsys.readouterr().out
    assert "rev-ev-1-rules-1" in out and "rev-ev-2-rules-1" in out and "question 1" in out and "accuracy 0.90" in out
    assert main(["review", "next", "--json"]) == 0
    assert [i["item_id"] for i in json.loads(capsys.readouterr().out)] == ["rev-ev-1-rules-1"]
    assert main(["review", "label", "rev-ev-1-rules-1", "--accuracy", "1", "--relevance", "0", "--reviewer", "ana"]) == 0
    assert "accuracy=1, relevance=0" in capsys.readouterr().out
    assert main(["review", "label", "rev-ev-2-rules-1", "--accuracy", "1"]) == 0
    capsys.readouterr()
    assert main(["review", "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["pending"] == 0 and status["threshold"] == 0.5
    acc = next(r for r in status["aspects"] if r["aspect"] == "accuracy")
    assert acc["n"] == 2 and acc["agreement"] == 0.5 and acc["kappa"] == 0.0  # humans said good both times: chance level
    assert main(["review", "status"]) == 0
    table = capsys.readouterr().out
    assert "accuracy" in table and "50%" in table and "relevance" in table
    assert main(["review", "label", "rev-missing", "--accuracy", "1"]) == 2
    assert "no review item 'rev-missing'" in capsys.readouterr().err


def test_interactive_review_prompts_per_aspect(cli: ReviewQueue, capsys, monkeypatch) -> None:
    cli.enqueue(item(1))
    cli.enqueue(item(2))
    # item 1: retrieval 1, accuracy 0, language skipped, coherence 1, relevance 1; item 2: quit at once.
    monkeypatch.setattr("sys.stdin", io.StringIO("1\n0\ns\n1\n1\nq\n"))
    assert main(["review", "--reviewer", "cli-test"]) == 0
    out = capsys.readouterr().out
    assert "question 1" in out and "stopped; labelled 1" in out
    [label] = cli.labels()
    assert label.item_id == "rev-ev-1-rules-1" and label.reviewer == "cli-test"
    assert label.labels == {"retrieval": 1, "accuracy": 0, "coherence": 1, "relevance": 1}
    assert [i.item_id for i in cli.next(5)] == ["rev-ev-2-rules-1"]
