"""Exact inner-product search with numpy: the reference every approximate index is measured against."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from winnow.errors import InvalidArgumentError
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

# Score at most this many query x row products at once (float32: 64 MB).
_BLOCK = 16_000_000


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices and values of the ``k`` largest scores per row, best first (k <= n_cols)."""
    if k < scores.shape[1]:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    values = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(values, order, axis=1)


class FlatIndex(Index):
    """Exact search over float32 vectors by inner product (cosine for L2-normalized vectors)."""

    kind = "flat"
    format_version = 1

    def __init__(self, dim: int) -> None:
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise InvalidArgumentError(f"dim must be an integer >= 1, got {dim!r}")
        self.dim = int(dim)
        self._keys = np.empty(0, dtype=np.int64)
        self._vectors = np.empty((0, self.dim), dtype=np.float32)

    def __len__(self) -> int:
        return int(self._keys.size)

    @property
    def keys(self) -> np.ndarray:
        """Keys of the rows, in storage order (read-only view)."""
        view = self._keys.view()
        view.flags.writeable = False
        return view

    def add(self, keys: Any, vectors: Any) -> None:
        """Append rows; a key already present (or repeated) raises InvalidArgumentError."""
        keys = as_keys(keys)
        vectors = as_vectors(vectors, self.dim)
        if keys.size != vectors.shape[0]:
            raise InvalidArgumentError(f"{keys.size} keys for {vectors.shape[0]} vectors")
        check_unique(keys, self._keys)
        self._keys = np.concatenate([self._keys, keys])
        self._vectors = np.concatenate([self._vectors, vectors])

    def remove(self, keys: Any) -> int:
        hit = np.isin(self._keys, as_keys(keys))
        removed = int(hit.sum())
        if removed:
            self._keys = self._keys[~hit]
            self._vectors = self._vectors[~hit]
        return removed

    def search(self, queries: Any, k: int) -> SearchResult:
        """Exact top ``k`` by inner product; queries are (n, dim) or one (dim,) vector."""
        k = check_k(k)
        queries = as_vectors(queries, self.dim, "queries")
        result = empty_result(queries.shape[0], k)
        n = len(self)
        if n == 0:
            return result
        k_eff = min(k, n)
        step = max(1, _BLOCK // n)
        for start in range(0, queries.shape[0], step):
            scores = queries[start : start + step] @ self._vectors.T
            idx, values = top_k(scores, k_eff)
            result.keys[start : start + step, :k_eff] = self._keys[idx]
            result.scores[start : start + step, :k_eff] = values
        return result

    @property
    def vectors(self) -> np.ndarray:
        """The stored vectors, aligned with :attr:`keys` (read-only view)."""
        view = self._vectors.view()
        view.flags.writeable = False
        return view

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_array(directory / "vectors.npy", self._vectors)
        save_array(directory / "keys.npy", self._keys)
        write_manifest(directory, self.kind, self.format_version, {"dim": self.dim, "count": len(self)})

    @classmethod
    def load(cls, directory: Path, mmap: bool = True) -> "FlatIndex":
        """Read a saved index; with ``mmap`` the vectors stay on disk, memory-mapped read-only."""
        directory = Path(directory)
        manifest = check_manifest(directory, cls.kind, cls.format_version)
        index = cls(int(manifest["dim"]))
        index._vectors = load_array(directory / "vectors.npy", mmap)
        index._keys = np.asarray(load_array(directory / "keys.npy", mmap=False), dtype=np.int64)
        if index._vectors.shape != (index._keys.size, index.dim):
            raise IncompatibleIndexError(
                f"{directory}: vectors.npy has shape {index._vectors.shape}, expected "
                f"({index._keys.size}, {index.dim})"
            )
        return index
