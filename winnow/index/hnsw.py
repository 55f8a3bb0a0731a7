"""Approximate inner-product search with a FAISS HNSW graph, incremental adds and tombstoned removes.

FAISS labels rows 0..n-1 in the order they were added; ``_keys[label]`` is the caller's key and
``_dead[label]`` marks a removed row. Searches skip dead rows with an ``IDSelectorBitmap``; once
more than ``REBUILD_FRACTION`` of the rows are dead the graph is rebuilt from the live vectors.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from winnow.errors import InvalidArgumentError, MissingDependencyError
from winnow.index.base import (
    IncompatibleIndexError,
    Index,
    SearchResult,
    as_keys,
    as_vectors,
    check_k,
    check_manifest,
    check_unique,
    empty_result,
    load_array,
    save_array,
    write_manifest,
)
from winnow.storage import replacing

logger = logging.getLogger(__name__)

REBUILD_FRACTION = 0.2


def _faiss():
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - faiss-cpu is a core dependency
        raise MissingDependencyError("HNSWIndex needs faiss: pip install faiss-cpu") from exc
    return faiss


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidArgumentError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


class HNSWIndex(Index):
    """FAISS ``IndexHNSWFlat`` with inner-product metric; efSearch per search is ``max(ef_search, k)``."""

    kind = "hnsw"
    format_version = 1

    def __init__(self, dim: int, m: int = 32, ef_construction: int = 200, ef_search: int = 256) -> None:
        self.dim = _positive_int("dim", dim)
        self.m = _positive_int("m", m)
        self.ef_construction = _positive_int("ef_construction", ef_construction)
        self.ef_search = _positive_int("ef_search", ef_search)
        self._index = self._new_graph()
        self._keys = np.empty(0, dtype=np.int64)
        self._dead = np.empty(0, dtype=bool)

    @classmethod
    def from_vectors(cls, keys: Any, vectors: Any, **params: Any) -> "HNSWIndex":
        """Build an index over ``vectors`` (n, dim) under ``keys``; ``params`` as for the constructor."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2:
            raise InvalidArgumentError(f"vectors must be 2-d (n, dim), got shape {vectors.shape}")
        index = cls(vectors.shape[1], **params)
        index.add(keys, vectors)
        return index

    def _new_graph(self):
        faiss = _faiss()
        graph = faiss.IndexHNSWFlat(self.dim, self.m, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = self.ef_construction
        graph.hnsw.efSearch = self.ef_search
        return graph

    def __len__(self) -> int:
        return int(self._keys.size - np.count_nonzero(self._dead))

    @property
    def keys(self) -> np.ndarray:
        """Keys of the live rows, in insertion order."""
        return self._keys[~self._dead]

    @property
    def tombstones(self) -> int:
        """Number of removed rows still in the graph."""
        return int(np.count_nonzero(self._dead))

    def add(self, keys: Any, vectors: Any) -> None:
        """Insert rows into the graph; a live key already present (or repeated) raises."""
        keys = as_keys(keys)
        vectors = as_vectors(vectors, self.dim)
        if keys.size != vectors.shape[0]:
            raise InvalidArgumentError(f"{keys.size} keys for {vectors.shape[0]} vectors")
        check_unique(keys, self.keys)
        if keys.size == 0:
            return
        self._index.add(vectors)
        self._keys = np.concatenate([self._keys, keys])
        self._dead = np.concatenate([self._dead, np.zeros(keys.size, dtype=bool)])

    def remove(self, keys: Any) -> int:
        """Tombstone rows; rebuilds the graph when more than 20% of it is dead."""
        hit = np.isin(self._keys, as_keys(keys)) & ~self._dead
        removed = int(np.count_nonzero(hit))
        if removed:
            self._dead |= hit
            if self.tombstones > REBUILD_FRACTION * self._keys.size:
                self.rebuild()
        return removed

    def rebuild(self) -> None:
        """Build a fresh graph from the live rows, dropping every tombstone."""
        live = np.flatnonzero(~self._dead)
        logger.info("rebuilding HNSW graph: %d live rows, %d tombstones", live.size, self.tombstones)
        vectors = self._index.reconstruct_n(0, self._index.ntotal)[live] if live.size else None
        graph = self._new_graph()
        if vectors is not None:
            graph.add(np.ascontiguousarray(vectors))
        self._index = graph
        self._keys = self._keys[live]
        self._dead = np.zeros(live.size, dtype=bool)

    def search(self, queries: Any, k: int, *, live: np.ndarray | None = None) -> SearchResult:
        """Approximate top ``k`` by inner product; queries are (n, dim) or one (dim,) vector. ``live``: a
        bool mask over the rows in insertion order; rows it marks False are skipped inside the graph walk
        (a collection's tombstones and filters), so they never take a slot of the ``k``."""
        k = check_k(k)
        queries = as_vectors(queries, self.dim, "queries")
        result = empty_result(queries.shape[0], k)
        dead = self._dead if live is None else self._dead | ~np.asarray(live, dtype=bool)
        n_live = int(dead.size - np.count_nonzero(dead))
        if n_live == 0 or queries.shape[0] == 0:
            return result
        k_eff = min(k, n_live)
        rows = np.arange(queries.shape[0])
        ef = max(self.ef_search, k_eff)
        while rows.size:
            scores, labels = self._search_graph(queries[rows], k_eff, ef, dead)
            found = labels >= 0
            safe = np.where(found, labels, 0)
            result.keys[rows, :k_eff] = np.where(found, self._keys[safe], -1)
            result.scores[rows, :k_eff] = np.where(found, scores, -np.inf)
            short = found.sum(axis=1) < k_eff
            if ef >= self._keys.size or not short.any():
                break
            # A query that reached too few live rows past the tombstones: widen the beam.
            rows, ef = rows[short], min(ef * 4, self._keys.size)
        return result

    def _search_graph(self, queries: np.ndarray, k: int, ef: int, dead: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        faiss = _faiss()
        params = faiss.SearchParametersHNSW()
        params.efSearch = ef
        bitmap = None
        if dead.any():
            bitmap = np.packbits(~dead, bitorder="little")
            params.sel = faiss.IDSelectorBitmap(self._keys.size, faiss.swig_ptr(bitmap))
        scores, labels = self._index.search(queries, k, params=params)
        del bitmap  # the selector points into it: keep it alive until here
        return scores, labels

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with replacing(directory / "graph.faiss") as tmp:
            _faiss().write_index(self._index, str(tmp))
        save_array(directory / "keys.npy", self._keys)
        save_array(directory / "tombstones.npy", self._dead)
        params = {
            "dim": self.dim,
            "m": self.m,
            "ef_construction": self.ef_construction,
            "ef_search": self.ef_search,
            "count": len(self),
        }
        write_manifest(directory, self.kind, self.format_version, params)

    @classmethod
    def load(cls, directory: Path, mmap: bool = True) -> "HNSWIndex":
        """Read a saved index. The graph is always read into memory (``mmap`` is accepted for
        uniformity with the other kinds: the graph must be writable for later adds)."""
        directory = Path(directory)
        manifest = check_manifest(directory, cls.kind, cls.format_version)
        index = cls(manifest["dim"], manifest["m"], manifest["ef_construction"], manifest["ef_search"])
        index._index = _faiss().read_index(str(directory / "graph.faiss"))
        index._index.hnsw.efSearch = index.ef_search
        index._keys = np.array(load_array(directory / "keys.npy", mmap=False), dtype=np.int64)
        index._dead = np.array(load_array(directory / "tombstones.npy", mmap=False), dtype=bool)
        if not (index._index.ntotal == index._keys.size == index._dead.size and index._index.d == index.dim):
            raise IncompatibleIndexError(
                f"{directory}: graph has {index._index.ntotal} rows of dim {index._index.d}, keys.npy "
                f"{index._keys.size}, tombstones.npy {index._dead.size}; expected dim {index.dim}"
            )
        return index
