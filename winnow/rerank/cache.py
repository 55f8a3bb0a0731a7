"""Rerank score cache: (model id, max_length, query, passage hash) -> score, bounded, least recently used
out first.

A RAG app asks the same questions again and again, and a cross-encoder's score for a (query, passage)
pair never changes: the second time, the rerank stage is a few dictionary lookups. Passages are keyed by
a 16-byte BLAKE2 hash (not their text), so memory per entry stays small (~200 bytes). Thread-safe.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from winnow.errors import InvalidArgumentError

DEFAULT_MAX_ENTRIES = 65_536


@dataclass(frozen=True)
class CacheStats:
    entries: int
    max_entries: int
    hits: int
    misses: int


def passage_key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class ScoreCache:
    """An LRU map from (model id, max_length, query, passage hash) to a float score."""

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise InvalidArgumentError(f"max_entries must be a positive integer, got {max_entries!r}")
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple, float] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def stats(self) -> CacheStats:
        return CacheStats(len(self._entries), self.max_entries, self.hits, self.misses)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def keys_for(self, model: str, max_length: int | None, query: str, texts: Sequence[str]) -> list[tuple]:
        return [(model, max_length, query, passage_key(t)) for t in texts]

    def get_many(self, keys: Sequence[tuple]) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, found)`` for ``keys``; found entries become the most recently used."""
        scores = np.zeros(len(keys), dtype=np.float32)
        found = np.zeros(len(keys), dtype=bool)
        entries = self._entries
        with self._lock:
            for i, key in enumerate(keys):
                value = entries.get(key)
                if value is not None:
                    entries.move_to_end(key)
                    scores[i] = value
                    found[i] = True
        hits = int(found.sum())
        self.hits += hits
        self.misses += len(keys) - hits
        return scores, found

    def put_many(self, keys: Sequence[tuple], scores: Sequence[float]) -> None:
        entries = self._entries
        with self._lock:
            for key, score in zip(keys, scores):
                entries[key] = float(score)
                entries.move_to_end(key)
            while len(entries) > self.max_entries:
                entries.popitem(last=False)
