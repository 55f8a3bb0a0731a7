"""What every first-stage retriever shares: ``search(query, k) -> Ranking`` over whole documents.

Indexes hold chunks under int64 keys; a retriever maps keys back to documents and keeps each
document's best chunk (max over chunks), over-fetching chunks until ``k`` documents are found.
Hits come back without text: the collection fills text in for the few hits that need it.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import AbstractSet, Callable, Mapping, Sequence

import numpy as np

from winnow.errors import InvalidArgumentError
from winnow.types import ChunkRef, FirstStage, Hit, Ranking

# key -> (document id, chunk index)
KeyMap = Mapping[int, tuple[str, int]]
# (queries, number of chunks) -> per query (keys, scores)
ChunkSearch = Callable[[Sequence[str], int], tuple[np.ndarray, np.ndarray]]


class Retriever(ABC):
    name: str = "retriever"
    origin: FirstStage | None = None  # which fitted reranker mix fits this stage's scores (None: none does)

    def search(self, query: str, k: int) -> Ranking:
        return self.search_many([query], k)[0]

    @abstractmethod
    def search_many(self, queries: Sequence[str], k: int) -> list[Ranking]:
        """Best ``k`` documents for each query, in the queries' order."""


class ChunkRetriever(Retriever):
    """A retriever over one chunk index: subclasses say how to search chunks, this collapses to documents.

    With ``allowed`` (a set of document ids, e.g. those a metadata filter matched) only those documents
    are returned, and the search reaches deeper until ``k`` of them are found or every chunk was read.
    """

    def __init__(self, index, keymap: KeyMap, *, n_docs: int, allowed: AbstractSet[str] | None = None) -> None:
        self.index = index
        self.keymap = keymap
        self.n_docs = n_docs if allowed is None else len(allowed)
        self.allowed = allowed

    @abstractmethod
    def search_chunks(self, queries: Sequence[str], n: int) -> tuple[np.ndarray, np.ndarray]:
        """Best ``n`` chunk keys and scores per query, best first."""

    def search_many(self, queries: Sequence[str], k: int) -> list[Ranking]:
        return search_documents(
            queries,
            k,
            search_chunks=self.search_chunks,
            keymap=self.keymap,
            n_chunks=len(self.index),
            n_docs=self.n_docs,
            stage=self.name,
            allowed=self.allowed,
        )


def check_k(k: int) -> None:
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidArgumentError(f"k must be an integer >= 1, got {k!r}")


def collapse(
    keys: np.ndarray, scores: np.ndarray, keymap: KeyMap, k: int, allowed: AbstractSet[str] | None = None
) -> tuple[Hit, ...]:
    """Chunk hits (sorted best first) -> the first ``k`` distinct documents (of ``allowed``, when given),
    each at its best chunk. Documents with exactly equal scores are ordered by id, so a ranking does not
    depend on where the index happened to store them (a collection rebuilt from the same documents ranks
    the same)."""
    found: list[tuple[str, float, int]] = []
    seen: set[str] = set()
    for ref, score in zip(resolve(keymap, keys), scores.tolist()):
        if ref is None:
            continue
        doc_id, index = ref
        if doc_id in seen or (allowed is not None and doc_id not in allowed):
            continue
        seen.add(doc_id)
        found.append((doc_id, float(score), index))
        if len(found) == k:
            break
    found.sort(key=lambda f: (-f[1], f[0]))
    return tuple(
        Hit(doc_id=doc_id, score=score, rank=rank, chunk=ChunkRef(doc_id, index))
        for rank, (doc_id, score, index) in enumerate(found, start=1)
    )


def resolve(keymap: KeyMap, keys: np.ndarray) -> list[tuple[str, int] | None]:
    """Each key's (document id, chunk index), None where unknown or padding; at once where the map can
    (a collection's segment key map resolves a whole array in numpy)."""
    many = getattr(keymap, "resolve", None)
    if many is not None:
        return many(keys)
    return [keymap.get(k) if k >= 0 else None for k in np.asarray(keys).tolist()]


def search_documents(
    queries: Sequence[str],
    k: int,
    *,
    search_chunks: ChunkSearch,
    keymap: KeyMap,
    n_chunks: int,
    n_docs: int,
    stage: str,
    allowed: AbstractSet[str] | None = None,
) -> list[Ranking]:
    """Run a chunk-level search and collapse to documents, fetching more chunks where too few docs came back.

    ``n_docs`` is the number of documents that can be returned (``len(allowed)`` when ``allowed`` is given).
    """
    check_k(k)
    start = time.perf_counter()
    want = min(k, n_docs)
    if want == 0:
        return [Ranking(q, (), {stage: 0.0}) for q in queries]
    fetch = min(n_chunks, k if n_chunks == n_docs else k * 4)
    if allowed is not None:  # expect about n_chunks / n_docs chunks read per allowed document found
        fetch = min(n_chunks, max(fetch, -(-k * n_chunks // n_docs)))
    results: list[tuple[Hit, ...] | None] = [None] * len(queries)
    todo = list(range(len(queries)))
    while todo:
        keys, scores = search_chunks([queries[i] for i in todo], max(fetch, 1))
        retry = []
        for row, i in enumerate(todo):
            hits = collapse(keys[row], scores[row], keymap, k, allowed)
            results[i] = hits
            exhausted = bool((keys[row] < 0).any())  # the index padded: it holds no further match
            if len(hits) < want and fetch < n_chunks and not exhausted:
                retry.append(i)
        todo = retry
        fetch = min(n_chunks, fetch * 4)
    per_query_ms = (time.perf_counter() - start) * 1000.0 / max(1, len(queries))
    return [Ranking(q, hits or (), {stage: per_query_ms}) for q, hits in zip(queries, results)]
