"""Knowledge selection on DSTC11 Track 5: does the KB index put a gold snippet in the top k?

Four query variants, because selection in this data set is entity-scoped (the question is "does it
have parking?", the entity is three turns back):

* ``last_user``: the last user turn, searched over the whole index (what the retrieve stage does);
* ``last_user+entity_names``: the same text plus the names of the entities the latest naming turn
  mentions (string matching, :class:`kb_index.dstc11.EntityMatcher`);
* ``entity_filter``: the last user turn, ranked only among the snippets of those entities (the whole
  index when none is named);
* ``oracle_entity_filter``: ranked among the gold entities' snippets. Not achievable at run time
  (it reads the label); it bounds what better entity tracking could give.

Scores are cosines from the index's own embedder; the filtered variants use the same vectors the
index holds, ranked in numpy, since KbIndex has no metadata filter.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

from kb_index.dstc11 import Dialogue, EntityMatcher, SnippetKey
from kb_index.index import KbIndex

__all__ = ["VARIANTS", "selection"]

VARIANTS = ("last_user", "last_user+entity_names", "entity_filter", "oracle_entity_filter")
K = 5


def _scores(ranked: list[list[str]], seeking: Sequence[Dialogue]) -> dict[str, Any]:
    """recall@k: share of turns with a gold snippet in the top k; coverage@5: share of gold snippets in the top 5."""
    gold = [{k.article_id for k in d.knowledge} for d in seeking]
    gold_entities = [set(d.entities) for d in seeking]

    def recall(k: int, rows: Sequence[int]) -> float:
        return round(float(np.mean([bool(set(ranked[i][:k]) & gold[i]) for i in rows])), 4) if rows else float("nan")

    everyone = range(len(seeking))
    faq = [i for i, d in enumerate(seeking) if any(k.doc_type == "faq" for k in d.knowledge)]
    reviews_only = [i for i in everyone if i not in set(faq)]
    return {
        "recall@1": recall(1, everyone), f"recall@{K}": recall(K, everyone),
        f"gold_coverage@{K}": round(float(np.mean([len(set(r[:K]) & g) / len(g) for r, g in zip(ranked, gold)])), 4),
        "top1_entity_correct": round(float(np.mean(
            [bool(r) and SnippetKey.parse(r[0]).entity in e for r, e in zip(ranked, gold_entities)])), 4),
        f"recall@{K}_faq_citing": recall(K, faq), f"recall@{K}_reviews_only": recall(K, reviews_only),
    }


def _top_articles(index: KbIndex, queries: list[str]) -> list[list[str]]:
    vectors = index.embedder.embed(queries)
    # One chunk per snippet article, but dedupe anyway so a split article cannot take two places.
    return [list(dict.fromkeys(h.article_id for h in hits))[:K] for hits in index.search_vectors(vectors, 2 * K)]


def _filtered(index: KbIndex, matrix: np.ndarray, queries: list[str],
              allowed: list[set[tuple[str, int]]]) -> list[list[str]]:
    """Top-k snippets of the allowed entities per query (all of them when none is allowed)."""
    entity_of = [SnippetKey.parse(c.article_id).entity for c in index.chunks]
    rows_of: dict[tuple[str, int], list[int]] = {}
    for i, e in enumerate(entity_of):
        rows_of.setdefault(e, []).append(i)
    everything = np.arange(len(index.chunks))
    out = []
    for q, ents in zip(index.embedder.embed(queries), allowed):
        rows = np.asarray(sorted(i for e in ents for i in rows_of.get(e, ()))) if ents else everything
        if not len(rows):
            rows = everything
        best = rows[np.argsort(-(matrix[rows] @ q), kind="stable")[: 2 * K]]
        out.append(list(dict.fromkeys(index.chunks[i].article_id for i in best))[:K])
    return out


def selection(seeking: Sequence[Dialogue], index: KbIndex, matcher: EntityMatcher) -> dict[str, Any]:
    started = time.perf_counter()
    found = [matcher.current(d.turns) for d in seeking]
    named = [{(e.domain, e.entity_id) for e in f} for f in found]
    queries = [d.last_user for d in seeking]
    with_names = [" ".join([q, *dict.fromkeys(e.name for e in f)]) for q, f in zip(queries, found)]
    matrix = index.embedder.embed([c.text for c in index.chunks])
    ranked = {
        "last_user": _top_articles(index, queries),
        "last_user+entity_names": _top_articles(index, with_names),
        "entity_filter": _filtered(index, matrix, queries, named),
        "oracle_entity_filter": _filtered(index, matrix, queries, [set(d.entities) for d in seeking]),
    }
    result: dict[str, Any] = {
        "turns": len(seeking),
        "turns_citing_faq": sum(any(k.doc_type == "faq" for k in d.knowledge) for d in seeking),
        "entity_matching": {
            "named_entity_is_gold": round(float(np.mean([bool(n & set(d.entities))
                                                         for n, d in zip(named, seeking)])), 4),
            "no_entity_named": sum(not n for n in named),
            "mean_entities_named": round(float(np.mean([len(n) for n in named])), 3),
        },
        "variants": {v: _scores(ranked[v], seeking) for v in VARIANTS},
        "seconds": round(time.perf_counter() - started, 2),
    }
    return result
