"""An embedder wrapper that keeps every vector it computed in a ``.npy`` file, for benchmark reruns.

MiniLM costs ~5-40 ms a text on this 2-core box (more when others are busy), and a benchmark over
a knowledge base embeds the same ~11k snippets and the same guardrail sentences every run. Vectors
are keyed by the SHA-1 of the text, so any mix of texts (index build, queries, the guardrail's own
calls) hits the cache; the file name carries a fingerprint of the embedder's config, so another
model or option set never reads these vectors. Without a directory it is an in-process memo only.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from kb_index.embedder import Embedder
from shadowline.errors import ConfigError

__all__ = ["DiskCachedEmbedder"]


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


class DiskCachedEmbedder:
    """Same ``name``, ``dim`` and ``config`` as ``inner``, so a KbIndex built through it is the same index."""

    def __init__(self, inner: Embedder, directory: Path | None = None, label: str = "bench") -> None:
        self.inner = inner
        self.name, self.dim = inner.name, inner.dim
        self.computed = 0  # texts embedded by ``inner`` in this process
        ident = json.dumps({"config": self.config, "version": getattr(inner, "version", None)}, sort_keys=True)
        tag = f"{label}-{inner.name}-{hashlib.sha256(ident.encode()).hexdigest()[:12]}"
        self.path = Path(directory) / f"{tag}.npy" if directory else None
        self._rows: dict[str, int] = {}
        self._blocks: list[np.ndarray] = []
        self._saved = 0
        self._load()

    @property
    def config(self) -> dict[str, Any]:
        return dict(getattr(self.inner, "config", None) or {"name": self.name, "dim": self.dim})

    def __len__(self) -> int:
        return len(self._rows)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            texts = [texts]
        keys = [_digest(t) for t in texts]
        new = {k: t for k, t in zip(keys, texts) if k not in self._rows}
        if new:
            vectors = np.asarray(self.inner.embed(list(new.values())), dtype=np.float32)
            base = len(self._rows)
            self._rows.update((k, base + i) for i, k in enumerate(new))
            self._blocks.append(vectors)
            self.computed += len(new)
        if not keys:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._matrix()[[self._rows[k] for k in keys]]

    def _matrix(self) -> np.ndarray:
        if len(self._blocks) > 1:
            self._blocks = [np.concatenate(self._blocks)]
        return self._blocks[0]

    def save(self) -> None:
        """Write the vectors and their text digests (atomically, each) when anything new was computed."""
        if self.path is None or len(self._rows) == self._saved:
            return
        keys_path = self.path.with_suffix(".keys.json")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.stem}.{os.getpid()}.tmp.npy")
            np.save(tmp, self._matrix())
            os.replace(tmp, self.path)
            tmp_keys = keys_path.with_name(f".{keys_path.name}.{os.getpid()}.tmp")
            tmp_keys.write_text(json.dumps({"config": self.config, "keys": list(self._rows)}), encoding="utf-8")
            os.replace(tmp_keys, keys_path)
        except OSError as exc:
            raise ConfigError(f"{self.path}: cannot write embedding cache: {exc}") from exc
        self._saved = len(self._rows)

    def _load(self) -> None:
        if self.path is None or not self.path.is_file():
            return
        try:
            vectors = np.load(self.path)
            keys = json.loads(self.path.with_suffix(".keys.json").read_text(encoding="utf-8"))["keys"]
        except (OSError, ValueError, KeyError):
            return  # missing or damaged: start empty, the next save replaces it
        if vectors.ndim != 2 or vectors.shape != (len(keys), self.dim):
            return  # the two files are from different saves
        self._rows = {k: i for i, k in enumerate(keys)}
        self._blocks = [vectors.astype(np.float32, copy=False)]
        self._saved = len(keys)
