"""Late-interaction first stage: the query's ColBERT token vectors against a collection's stored token
vectors (:class:`~winnow.index.late.LateView`: PLAID-style candidates from the centroids, exact MaxSim)."""

from __future__ import annotations

from typing import AbstractSet, Sequence

import numpy as np

from winnow.retrieve.base import ChunkRetriever, KeyMap


class LateRetriever(ChunkRetriever):
    name = "late"
    origin = None  # no reranker mix is fitted on MaxSim scores

    def __init__(self, encoder, view, keymap: KeyMap, *, n_docs: int, allowed: AbstractSet[str] | None = None) -> None:
        super().__init__(view, keymap, n_docs=n_docs, allowed=allowed)
        self.encoder = encoder

    def search_chunks(self, queries: Sequence[str], n: int):
        matrices = self.encoder.encode_queries(list(queries))
        results = [self.index.search(m, n) for m in matrices]
        return np.concatenate([r.keys for r in results]), np.concatenate([r.scores for r in results])
