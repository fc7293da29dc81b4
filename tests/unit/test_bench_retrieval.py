"""bench/retrieval.py --quick end to end on the real data sets (skipped when they are absent).

Tiny sizes and the hashing embedder, no Redis: it checks that the benchmark runs and that what it
writes is consistent (exact recall is 1, more search effort never loses recall, the synthetic rows
are counted), not the numbers themselves.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.retrieval import embed_cached, grow, main
from kb_index.embedder import HashingEmbedder

DATA = Path("/work/shared/data")


@pytest.fixture(scope="module")
def quick_result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    if not (DATA / "dstc11-track5" / "knowledge.json").exists():
        pytest.skip(f"data sets not at {DATA}")
    tmp = tmp_path_factory.mktemp("bench-retrieval")
    out = tmp / "retrieval.json"
    assert main(["--quick", "--no-redis", "--out", str(out), "--cache-dir", str(tmp / "cache")]) == 0
    return json.loads(out.read_text())


def test_quick_run_covers_every_index_kind_and_size(quick_result: dict) -> None:
    rows = quick_result["indexes"]
    assert quick_result["quick"] and quick_result["k"] == 10
    assert {r["n"] for r in rows} == {300, 1200}
    assert {(r["n"], r["kind"]) for r in rows} == {(n, k) for n in (300, 1200) for k in ("flat", "hnsw", "ivf")}
    for r in rows:
        assert r["p50_ms"] > 0 and r["p99_ms"] >= r["p50_ms"] and r["batch_qps"] > 0 and r["index_mb"] > 0
        assert 0.0 <= r["recall_at_10"] <= 1.0
        if r["kind"] == "flat":
            assert r["recall_at_10"] == 1.0


def test_more_search_effort_never_loses_recall(quick_result: dict) -> None:
    for kind, knob in (("hnsw", "ef_search"), ("ivf", "nprobe")):
        for n in (300, 1200):
            rows = sorted((r for r in quick_result["indexes"] if r["kind"] == kind and r["n"] == n),
                          key=lambda r: r["params"][knob])
            recalls = [r["recall_at_10"] for r in rows]
            assert len(rows) == 2 and recalls == sorted(recalls), (kind, n, recalls)


def test_growth_and_embedder_sections(quick_result: dict) -> None:
    growth = quick_result["data"]["growth"]
    assert growth["300"]["synthetic_rows"] == 0 and growth["1200"]["synthetic_rows"] == 800
    assert quick_result["data"]["source_counts"]["dstc11_faq"] > 1000
    hashing = quick_result["embedders"]["hashing"]
    assert hashing["single_texts_per_s"] > 0 and hashing["batched_texts_per_s"] > 0
    assert not quick_result["redis"] and "cache_cold_single_texts_per_s" not in hashing


def test_grown_rows_are_unit_norm_and_as_far_as_real_neighbours() -> None:
    rng = np.random.default_rng(1)
    real = rng.normal(size=(200, 48)).astype(np.float32)
    real /= np.linalg.norm(real, axis=1, keepdims=True)
    grown, info = grow(real, 1000, seed=0)
    assert grown.shape == (1000, 48) and np.allclose(np.linalg.norm(grown, axis=1), 1.0, atol=1e-5)
    assert (grown[:200] == real).all() and info["synthetic_rows"] == 800
    assert abs(info["copy_cosine_mean"] - info["median_nn_cosine"]) < 0.1


def test_embedded_vectors_are_cached_so_reruns_skip_the_model(tmp_path: Path) -> None:
    texts = [f"text number {i}" for i in range(25)]
    first = embed_cached(HashingEmbedder(dim=64), texts, tmp_path, part=10)
    assert [p.name.startswith("retrieval-hashing-v1-") for p in tmp_path.iterdir()] == [True]  # parts merged

    class Refusing(HashingEmbedder):
        def embed(self, texts):  # type: ignore[override]
            raise AssertionError("the cached vectors should have been used")

    assert (embed_cached(Refusing(dim=64), texts, tmp_path) == first).all()
    assert embed_cached(HashingEmbedder(dim=64), texts[:5], tmp_path).shape == (5, 64)  # other texts: new file
    assert len(list(tmp_path.iterdir())) == 2
