"""MiniLM in numpy: meaning over vocabulary, unit rows, determinism, batch invariance, clear config errors.

Skips when the weights package is not installed (it is installed by `make install`, with --no-deps).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kb_index.embedder import Embedder, get_embedder
from kb_index.minilm import MiniLMEmbedder, model_dir
from shadowline.errors import ConfigError


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    try:
        model_dir()
    except ConfigError as exc:
        pytest.skip(f"MiniLM weights not installed: {exc}")
    return get_embedder("minilm")


# Paraphrases that share few words (the hashing embedder's weak spot) against an unrelated text each.
PAIRS = [
    ("I forgot my password and can't sign in", "How do I reset my login credentials?",
     "The restaurant serves Italian food near the river."),
    ("my card was charged twice", "I see a duplicate payment on my statement",
     "Is there free parking at the hotel?"),
    ("when will my parcel arrive", "How long does delivery take?",
     "I would like to change my PIN."),
    ("Does the hotel have wifi?", "Is there internet access in the rooms?",
     "My refund has not shown up yet."),
]


def test_rows_are_unit_norm_float32_384(minilm: MiniLMEmbedder) -> None:
    assert isinstance(minilm, Embedder) and minilm.dim == 384
    vecs = minilm.embed(["Refunds to a card take 5-10 business days.", "hi", ""])
    assert vecs.dtype == np.float32 and vecs.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)
    assert minilm.embed([]).shape == (0, 384)


@pytest.mark.parametrize("query, paraphrase, unrelated", PAIRS)
def test_paraphrases_rank_above_unrelated_text(minilm: MiniLMEmbedder, query: str, paraphrase: str,
                                               unrelated: str) -> None:
    q, para, other = minilm.embed([query, paraphrase, unrelated])
    assert float(q @ para) > float(q @ other) + 0.2, (float(q @ para), float(q @ other))


def test_every_query_ranks_its_own_paraphrase_first(minilm: MiniLMEmbedder) -> None:
    queries = minilm.embed([p[0] for p in PAIRS])
    candidates = minilm.embed([p[1] for p in PAIRS] + [p[2] for p in PAIRS])
    assert (queries @ candidates.T).argmax(axis=1).tolist() == list(range(len(PAIRS)))


def test_deterministic(minilm: MiniLMEmbedder) -> None:
    texts = ["How long does a refund take?", "Is breakfast included at the guesthouse?"]
    assert minilm.embed(texts).tobytes() == minilm.embed(texts).tobytes()


def test_batch_invariant(minilm: MiniLMEmbedder) -> None:
    """A text alone equals the same text padded inside a batch of longer and shorter texts."""
    text = "my card was declined at checkout"
    alone = minilm.embed([text])[0]
    batch = ["ok", text, "I ordered a large pizza with extra cheese two hours ago and it still has not "
             "arrived, the tracking page says it is out for delivery but nobody has called me", "thanks a lot"]
    inside = minilm.embed(batch)
    np.testing.assert_allclose(inside[1], alone, atol=1e-5)
    np.testing.assert_allclose(inside[0], minilm.embed(["ok"])[0], atol=1e-5)


def test_long_text_is_truncated_not_rejected(minilm: MiniLMEmbedder) -> None:
    long = " ".join(["refund"] * 2000)
    assert np.isfinite(minilm.embed([long])).all()


def test_missing_model_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config.json is missing"):
        MiniLMEmbedder(tmp_path / "nowhere")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="tokenizer.json is missing"):
        get_embedder("minilm", path=str(tmp_path))


def test_bad_max_tokens_is_a_config_error(minilm: MiniLMEmbedder) -> None:
    with pytest.raises(ConfigError, match="max_tokens"):
        MiniLMEmbedder(max_tokens=4)
