"""First-stage indexes: rows under int64 keys, one index kind per file behind :class:`Index`.

``flat`` (exact, numpy), ``hnsw`` (FAISS graph), ``bm25`` (bm25s). Each saves to a directory of
numpy/JSON files with an ``index.json`` manifest; :func:`load_index` opens any of them.
FAISS and bm25s are imported only when an index of that kind is built or loaded.
"""

from __future__ import annotations

from pathlib import Path

from winnow.index.base import IncompatibleIndexError, Index, SearchResult, read_manifest
from winnow.index.bm25 import BM25Index
from winnow.index.flat import FlatIndex
from winnow.index.hnsw import HNSWIndex

INDEX_KINDS: dict[str, type[Index]] = {cls.kind: cls for cls in (FlatIndex, HNSWIndex, BM25Index)}


def load_index(directory: str | Path, mmap: bool = True) -> Index:
    """Open the index saved in ``directory``, whatever its kind (read from ``index.json``)."""
    kind = read_manifest(Path(directory))["kind"]
    if kind not in INDEX_KINDS:
        raise IncompatibleIndexError(
            f"{directory} holds an index of unknown kind {kind!r}; known kinds: {sorted(INDEX_KINDS)}"
        )
    return INDEX_KINDS[kind].load(Path(directory), mmap=mmap)


__all__ = [
    "BM25Index",
    "FlatIndex",
    "HNSWIndex",
    "INDEX_KINDS",
    "IncompatibleIndexError",
    "Index",
    "SearchResult",
    "load_index",
]
