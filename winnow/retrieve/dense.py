"""Dense first stage: encode the query with the bi-encoder, search a vector index (exact or HNSW)."""

from __future__ import annotations

from typing import AbstractSet, Sequence

from winnow.retrieve.base import ChunkRetriever, KeyMap
from winnow.types import FirstStage


class DenseRetriever(ChunkRetriever):
    name = "dense"
    origin = FirstStage.DENSE

    def __init__(
        self, encoder, index, keymap: KeyMap, *, n_docs: int, allowed: AbstractSet[str] | None = None
    ) -> None:
        super().__init__(index, keymap, n_docs=n_docs, allowed=allowed)
        self.encoder = encoder

    def search_chunks(self, queries: Sequence[str], n: int):
        result = self.index.search(self.encoder.encode_queries(queries), n)
        return result.keys, result.scores
