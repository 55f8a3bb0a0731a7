"""A collection's read side: the index files of its committed generation, loaded once and forgotten when
another writer commits a newer one, and the reads built on them (chunk map, metadata filters, exact
similarities, filling hits in from the store)."""

from __future__ import annotations

from functools import cached_property
from typing import Sequence

import numpy as np

from winnow.errors import InvalidArgumentError
from winnow.types import Ranking

EXACT_BELOW = 20_000  # "auto" searches exactly below this many chunks, through HNSW above


class ReadSnapshot:
    """The reading half of :class:`~winnow.collection.Collection` (a mixin: it uses the collection's path,
    store, generation and encoder)."""

    def _load_flat(self, gen: int):
        from winnow.index.flat import FlatIndex

        path = self._gen_dir(gen) / "flat"
        return FlatIndex.load(path) if path.is_dir() else None

    def load(self) -> "ReadSnapshot":
        """Load what searches read (chunk map, BM25, and the dense index ``dense_index="auto"`` uses) now,
        while this generation's files are certainly there; returns the collection."""
        self.keymap
        self.bm25_index
        self.hnsw_index if self._auto_uses_hnsw() else self.flat_index
        return self

    def warm_up(self, method: str = "hybrid") -> "ReadSnapshot":
        """:meth:`load`, and load the bi-encoder where ``method`` encodes queries (not for bm25)."""
        self.load()
        if method != "bm25":
            self.encoder.encode_queries(["load the bi-encoder now"])
        return self

    def _auto_uses_hnsw(self) -> bool:
        return len(self.keymap) >= EXACT_BELOW

    def similarities(self, queries: Sequence[str], doc_ids: Sequence[Sequence[str]]) -> list[list[float]]:
        """Exact dense similarity of each query with each of its documents (the best of the document's
        chunks), whether or not a search would rank them: ``out[i][j]`` is query i with ``doc_ids[i][j]``."""
        vectors = np.asarray(self.flat_index.vectors)
        rows = self._document_rows
        unknown = sorted({d for ids in doc_ids for d in ids} - rows.keys())
        if unknown:
            raise InvalidArgumentError(f"{len(unknown)} document id(s) not in collection {self.name!r}: {unknown[:5]}")
        q = self.encoder.encode_queries(list(queries))
        return [[float(np.max(vectors[rows[d]] @ q[i])) for d in ids] for i, ids in enumerate(doc_ids)]

    @cached_property
    def _document_rows(self) -> dict[str, list[int]]:
        """Each document's rows in the flat index (its chunks), built once per generation."""
        rows: dict[str, list[int]] = {}
        for row, key in enumerate(np.asarray(self.flat_index.keys).tolist()):
            rows.setdefault(self.keymap[int(key)][0], []).append(row)
        return rows

    def _forget_loaded(self) -> None:
        for attr in ("flat_index", "hnsw_index", "bm25_index", "keymap", "metadata_map", "_document_rows"):
            self.__dict__.pop(attr, None)

    @cached_property
    def flat_index(self):
        return self._load_flat(self.generation)

    @cached_property
    def hnsw_index(self):
        from winnow.index.hnsw import HNSWIndex

        path = self._gen_dir(self.generation) / "hnsw"
        return HNSWIndex.load(path) if path.is_dir() else None

    @cached_property
    def bm25_index(self):
        from winnow.index.bm25 import BM25Index

        path = self._gen_dir(self.generation) / "bm25"
        return BM25Index.load(path) if path.is_dir() else None

    @cached_property
    def keymap(self) -> dict[int, tuple[str, int]]:
        return {c.key: (c.doc_id, c.index) for c in self.store.live_chunks(self.generation)}

    @cached_property
    def metadata_map(self) -> dict[str, dict]:
        """Every live document's metadata by id (read once per generation, for filters)."""
        return self.store.live_metadata(self.generation)

    def matching_ids(self, filter: dict) -> frozenset[str]:
        """Ids of the documents whose metadata matches ``filter`` (see :mod:`winnow.retrieve.filters`)."""
        from winnow.retrieve.filters import check_filter, matches

        normal = check_filter(filter)
        return frozenset(doc_id for doc_id, md in self.metadata_map.items() if matches(normal, md))

    def hydrate(self, ranking: Ranking) -> Ranking:
        """Fill in each hit's title, metadata and best-chunk text from the store."""
        from dataclasses import replace

        ids = [h.doc_id for h in ranking.hits]
        docs = self.store.documents(self.generation, ids)
        spans = self.store.chunk_spans(self.generation, ids)
        hits = []
        for h in ranking.hits:
            doc = docs.get(h.doc_id)
            if doc is None:
                continue
            text = doc.text
            if h.chunk is not None:
                s, e = spans.get((h.doc_id, h.chunk.index), (0, len(doc.text)))
                text = doc.text[s:e]
            hits.append(replace(h, text=text, title=doc.title, metadata=doc.metadata))
        return Ranking(ranking.query, tuple(hits), ranking.timings_ms)

