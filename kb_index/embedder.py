"""Text embedders for the KB index, retrieval, extractive answers and the guardrail.

The default is a feature-hashing embedder: no model download, no fitted state, identical vectors in
every process (stable hashes, never ``hash()``), so an index built by one worker is searchable by
another and a shadow candidate sees exactly the production vectors. It is lexical, so it rewards
paraphrases that share vocabulary. ``get_embedder`` is the seam where the others plug in without
touching callers: ``minilm`` (all-MiniLM-L6-v2 in numpy, kb_index/minilm.py).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from hashlib import blake2b
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from shadowline.errors import ConfigError

__all__ = ["Embedder", "HashingEmbedder", "get_embedder", "tokenize"]


@runtime_checkable
class Embedder(Protocol):
    """Maps texts to L2-normalised float32 rows, so inner product is cosine similarity."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")

# Function words and chat filler carry no topic; hashing them makes any two English texts look alike.
_STOP = frozenset(
    """a an the and or but if then than so of to in on at by for with from as into about over after
    before between through during is are was were be been being am do does did done have has had having
    i me my mine we us our ours you your yours he him his she her it its they them their this that these
    those there here what which who whom whose when where why how can could would should will shall may
    might must also just very too any some all each both more most other such only own same
    up down out off once please thanks thank hi hello hey i'm i've i'd you're you've we're we've it's
    that's there's let's get got im ive dont
    want wanted need like know going go make take see look way thing things lot really well yes okay ok
    tell said say ask one would how's what's where's who's""".split()
)
# Kept on purpose: not/no/never (negation) and still/again (a repeat contact) change what is asked.


# Changes whenever the stop list does, so an index built with other features is never reused.
FEATURES = "v1-" + blake2b(" ".join(sorted(_STOP)).encode(), digest_size=4).hexdigest()


def tokenize(text: str) -> list[str]:
    """Lowercased word tokens; curly apostrophes folded so "can’t" and "can't" agree."""
    return _TOKEN.findall(text.lower().replace("\u2019", "'"))


def _stem(word: str) -> str:
    """Light suffix folding (charged/charge/charging -> charg); 3-grams catch the rest."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    if len(word) > 5 and word.endswith("ing"):
        word = word[:-3]
    elif len(word) > 4 and word.endswith("ed"):
        word = word[:-2]
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeious" and (word[-1] != "l" or len(word) > 5):
        word = word[:-1]  # shipp -> ship, cancell -> cancel
    if len(word) > 3 and word.endswith("e"):
        word = word[:-1]
    return word


class HashingEmbedder:
    """Signed feature hashing of word unigrams, word bigrams and in-word character 3-grams.

    Each feature family is weighted by sublinear tf (1 + log tf), L2-normalised on its own and mixed
    with fixed weights, so long words' many 3-grams cannot drown the word-level signal. Expected cosine
    of unrelated texts is ~0 with spread ~1/sqrt(dim); 1024 rather than 512 dims because the
    collision noise cost two of 32 demo questions their right top article at 512.
    """

    version = "1"

    def __init__(self, dim: int = 1024, *, word_weight: float = 1.0, bigram_weight: float = 0.5,
                 char_weight: float = 0.6) -> None:
        if dim < 16:
            raise ConfigError(f"hashing embedder dim must be >= 16, got {dim}")
        self.dim = int(dim)
        self.name = "hashing-v1"
        self._weights = (word_weight, bigram_weight, char_weight)
        self._slots: dict[str, tuple[int, float]] = {}

    def __repr__(self) -> str:
        return f"HashingEmbedder(dim={self.dim})"

    @property
    def config(self) -> dict[str, Any]:
        """What an index stores so a loader can rebuild the same embedder (and spot a changed one)."""
        w, b, c = self._weights
        return {"name": self.name, "dim": self.dim, "word_weight": w, "bigram_weight": b, "char_weight": c,
                "features": FEATURES}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            texts = [texts]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            self._fill(out[row], text)
        return out

    def _slot(self, feature: str) -> tuple[int, float]:
        hit = self._slots.get(feature)
        if hit is None:
            h = int.from_bytes(blake2b(feature.encode(), digest_size=8).digest(), "little")
            hit = (h % self.dim, 1.0 if (h >> 63) else -1.0)
            if len(self._slots) < 500_000:  # bounded memo; hashing is the hot spot
                self._slots[feature] = hit
        return hit

    def _fill(self, out: np.ndarray, text: str) -> None:
        words = [_stem(w) for w in tokenize(text) if w not in _STOP]
        if not words:
            return
        unigrams = ["w:" + w for w in words]
        bigrams = [f"b:{a} {b}" for a, b in zip(words, words[1:])]
        chars: list[str] = []
        for w in words:
            padded = f"<{w}>"
            chars.extend("c:" + padded[i : i + 3] for i in range(len(padded) - 2))
        for weight, feats in zip(self._weights, (unigrams, bigrams, chars)):
            if not feats or not weight:
                continue
            group = np.zeros(self.dim, dtype=np.float32)
            for feat, tf in Counter(feats).items():
                idx, sign = self._slot(feat)
                group[idx] += sign * (1.0 + math.log(tf))
            norm = float(np.linalg.norm(group))
            if norm > 0:
                out += (weight / norm) * group
        norm = float(np.linalg.norm(out))
        if norm > 0:
            out /= norm


def get_embedder(name: str = "hashing", *, cache_url: str | None = None, **kw: Any) -> Embedder:
    """Build an embedder by name (as stored in an index's meta.json or a component config).

    ``openai`` is any OpenAI-compatible endpoint (kb_index/openai_embedder.py). ``cache_url`` (a Redis
    URL) puts the embedder behind the shared embedding cache (kb_index/embedding_cache.py); the cache
    is not part of the config, so an index built through it is the same index.
    """
    if cache_url:
        from kb_index.embedding_cache import cached

        return cached(get_embedder(name, **kw), cache_url)
    if name in ("hashing", "hashing-v1"):
        kw.pop("name", None)
        features = kw.pop("features", FEATURES)
        if features != FEATURES:
            raise ConfigError(f"hashing features {features} differ from this code's {FEATURES}: rebuild the index")
        return _construct(name, HashingEmbedder, kw)
    if name == "minilm":
        from kb_index.minilm import MiniLMEmbedder  # loads 90 MB of weights: only when asked for

        kw = {k: v for k, v in kw.items() if k in ("path", "max_tokens", "batch", "threads")}  # dim/model: the model's own
        return _construct(name, MiniLMEmbedder, kw)
    if name == "openai":
        from kb_index.openai_embedder import OpenAIEmbedder  # imports the openai client: only when asked for

        kw.pop("name", None)
        return _construct(name, OpenAIEmbedder, kw)
    raise ConfigError(f"unknown embedder {name!r} (known: hashing, minilm, openai)")


def _construct(name: str, cls: Any, kw: dict[str, Any]) -> Embedder:
    try:
        return cls(**kw)
    except TypeError as exc:
        raise ConfigError(f"bad options for embedder {name!r}: {exc}") from exc
