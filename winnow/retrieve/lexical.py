"""Lexical first stage: BM25 over the chunks' title and text."""

from __future__ import annotations

from typing import Sequence

from winnow.retrieve.base import ChunkRetriever
from winnow.types import FirstStage


class BM25Retriever(ChunkRetriever):
    name = "bm25"
    origin = FirstStage.BM25

    def search_chunks(self, queries: Sequence[str], n: int):
        result = self.index.search(list(queries), n)
        return result.keys, result.scores
