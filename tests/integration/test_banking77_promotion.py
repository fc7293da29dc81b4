"""Train -> register -> shadow -> promote for a classifier trained on BANKING77 (issue 5's done-when).

A banking support team runs a topic classifier trained on part of BANKING77 (b1, 30 examples per
intent) and retrains it on more labels (b2, 80 per intent). Both come out of `shadowline train`;
b2 is registered as a candidate in the real Redis registry, runs in shadow on held-out BANKING77
questions (the in-memory harness runs the same mirror, candidate runner and comparator handlers as
the shadow workers), and the promoter's gates decide. The Parcelpay regression suite does not apply to
a banking deployment's label space, so no suite gate is passed in here.
"""

from __future__ import annotations

import csv
import json
import uuid
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import pytest

from agents.base import ComponentSpec
from shadow.promotion import Promoter
from shadow.registry import Registry
from shadow.testing import ShadowHarness
from shadowline.cli.main import main as cli
from shadowline.config import get_settings
from streams.pipeline import PipelineConfig, load_pipeline
from streams.testing import InMemoryPipeline

pytestmark = pytest.mark.integration

BANKING77 = Path(__file__).resolve().parents[3] / "shared" / "data" / "banking77" / "train.csv"
GATES = {"classify": {"min_samples": 150, "min_agreement_lower": 0.80, "max_latency_ratio": 3.0, "latency_floor_ms": 20.0}}


def _subsets(tmp: Path) -> tuple[Path, Path, list[str]]:
    by_label: dict[str, list[str]] = defaultdict(list)
    with open(BANKING77, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            by_label[row["category"]].append(row["text"])
    paths = []
    for name, n in (("b1", 30), ("b2", 80)):
        path = tmp / f"{name}.csv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["text", "category"])
            w.writerows((t, label) for label, texts in sorted(by_label.items()) for t in texts[:n])
        paths.append(path)
    held_out = [t for _, texts in sorted(by_label.items()) for t in texts[90:94]]  # never trained on
    return paths[0], paths[1], held_out


@pytest.fixture()
def registry(redis_url: str) -> Registry:
    return Registry(redis_url, namespace=f"b77-{uuid.uuid4().hex[:8]}")  # a keyspace of its own: nothing seeded


@pytest.mark.skipif(not BANKING77.exists(), reason="BANKING77 not in ../shared/data")
def test_banking77_classifier_trains_registers_shadows_and_promotes(tmp_path: Path, registry: Registry, capsys) -> None:
    b1_csv, b2_csv, questions = _subsets(tmp_path)
    models = {}
    for name, data in (("b1", b1_csv), ("b2", b2_csv)):
        out = tmp_path / name
        assert cli(["train", "classify", "--data", str(data), "--out", str(out), "--version", name]) == 0
        printed = capsys.readouterr().out
        assert f"classify:tfidf-logreg@{name}" in printed  # the register command it prints
        models[name] = ComponentSpec("classify", "tfidf-logreg", name, {"model_dir": str(out.resolve())})
        assert json.loads((out / "meta.json").read_text())["labels"] and len(json.loads((out / "meta.json").read_text())["labels"]) == 77

    base = load_pipeline(get_settings().pipeline_config)
    pipeline = replace(base, active={**base.active, "classify": models["b1"]})
    registry.seed(pipeline.active)
    registry.add_candidate(models["b2"])
    assert [c.ref for c in registry.candidates("classify")] == ["classify:tfidf-logreg@b2"]

    pipe = InMemoryPipeline(pipeline, get_settings().model_copy(update={"home": tmp_path / "home"}))
    harness = ShadowHarness(pipe, "classify", registry.candidates("classify")[0], timeout_s=30.0)
    for i, text in enumerate(questions):
        pipe.converse(f"b77-{i}", [("customer", text)])
    pipe.run()
    stats = harness.result()
    assert stats.samples >= GATES["classify"]["min_samples"], stats

    promotions: list[dict] = []
    promoter = Promoter(registry, harness.stats, promotions.append, GATES, actor="test")
    decision = promoter.promote("classify", "tfidf-logreg@b2")
    assert decision.passed, decision.explain()
    assert registry.active("classify").ref == "classify:tfidf-logreg@b2"
    assert promotions[-1]["to_component"]["version"] == "b2" and promotions[-1]["from_component"]["version"] == "b1"

    # The promoted model now serves: a fresh pipeline from the registry classifies with b2.
    served = InMemoryPipeline(PipelineConfig(active=registry.actives()), pipe.settings)
    served.converse("b77-after", [("customer", questions[0])])
    served.run()
    turn = (served.suggestions + served.escalations)[0]["turn"]
    run = next(r for r in turn["trace"] if r["stage"] == "classify")
    assert (run["component"], run["version"]) == ("tfidf-logreg", "b2")
