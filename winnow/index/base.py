"""The small base every first-stage index shares, plus the on-disk helpers they all use.

An index holds rows under caller-chosen int64 **keys** (>= 0; -1 pads results). On disk an index
is a directory of numpy arrays (or a library's own non-pickle files) plus ``index.json``:
``{"kind", "format_version", ...params}``. Every file is written to a temporary name and moved
into place with ``os.replace``; the manifest is written last.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from winnow.errors import InvalidArgumentError, WinnowError
from winnow.storage import atomic_write_bytes

MANIFEST = "index.json"


class IncompatibleIndexError(WinnowError):
    """A directory holds no index, another kind of index, or an unknown format version."""


@dataclass(frozen=True)
class SearchResult:
    """Per query the best ``k`` keys and scores, best first.

    ``keys`` is (n_queries, k) int64 padded with -1 where fewer than ``k`` rows match;
    ``scores`` is (n_queries, k) float32 padded with -inf.
    """

    keys: np.ndarray
    scores: np.ndarray


class Index(ABC):
    """Rows under int64 keys: search, remove, save, load."""

    kind: ClassVar[str]
    format_version: ClassVar[int] = 1

    @abstractmethod
    def __len__(self) -> int:
        """Number of live (searchable) rows."""

    @abstractmethod
    def search(self, queries: Any, k: int) -> SearchResult:
        """Best ``k`` rows for each query; ``k >= 1``."""

    @abstractmethod
    def remove(self, keys: Any) -> int:
        """Remove rows by key; unknown keys are ignored. Returns how many rows were removed."""

    @abstractmethod
    def save(self, directory: Path) -> None:
        """Write the index into ``directory`` (created if missing)."""

    @classmethod
    @abstractmethod
    def load(cls, directory: Path, mmap: bool = True) -> "Index":
        """Read an index written by :meth:`save`."""


# --- argument checks -------------------------------------------------------------------------


def check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidArgumentError(f"k must be an integer >= 1, got {k!r}")
    return int(k)


def as_keys(keys: Any) -> np.ndarray:
    """Keys as a 1-d int64 array; rejects negative keys (-1 marks padding)."""
    arr = np.asarray(keys)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise InvalidArgumentError(f"keys must be 1-d, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise InvalidArgumentError(f"keys must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and arr.min() < 0:
        raise InvalidArgumentError(f"keys must be >= 0 (-1 pads results), got {int(arr.min())}")
    return arr


def check_unique(new_keys: np.ndarray, existing: np.ndarray) -> None:
    """Raise if ``new_keys`` repeat among themselves or hit a key already present."""
    uniq, counts = np.unique(new_keys, return_counts=True)
    if uniq.size != new_keys.size:
        raise InvalidArgumentError(f"duplicate keys in one add: {uniq[counts > 1][:5].tolist()}")
    clash = new_keys[np.isin(new_keys, existing)]
    if clash.size:
        raise InvalidArgumentError(
            f"keys already in the index: {clash[:5].tolist()}; remove them first to replace rows"
        )


def as_vectors(vectors: Any, dim: int, what: str = "vectors") -> np.ndarray:
    """A (n, dim) C-contiguous float32 array; a 1-d vector counts as one row."""
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise InvalidArgumentError(f"{what} must have shape (n, {dim}), got {np.shape(vectors)}")
    return np.ascontiguousarray(arr)


def text_queries(queries) -> list[str]:
    """Queries of a lexical index as a list; one string counts as one query."""
    return [queries] if isinstance(queries, str) else list(queries)


def empty_result(n_queries: int, k: int) -> SearchResult:
    return SearchResult(
        keys=np.full((n_queries, k), -1, dtype=np.int64),
        scores=np.full((n_queries, k), -np.inf, dtype=np.float32),
    )


# --- files -----------------------------------------------------------------------------------


def save_array(path: Path, array: np.ndarray) -> None:
    atomic_write_bytes(path, lambda f: np.save(f, np.asarray(array), allow_pickle=False))


def load_array(path: Path, mmap: bool) -> np.ndarray:
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)


def write_manifest(directory: Path, kind: str, format_version: int, params: dict) -> None:
    body = {"kind": kind, "format_version": format_version, **params}
    text = json.dumps(body, indent=2, sort_keys=True).encode("utf-8")
    atomic_write_bytes(Path(directory) / MANIFEST, lambda f: f.write(text))


def read_manifest(directory: Path) -> dict:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise IncompatibleIndexError(f"{directory} holds no index: {MANIFEST} is missing")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IncompatibleIndexError(f"{path} could not be read as JSON: {exc}") from exc
    if not isinstance(manifest, dict) or "kind" not in manifest:
        raise IncompatibleIndexError(f"{path} has no 'kind' field")
    return manifest


def check_manifest(directory: Path, kind: str, format_version: int) -> dict:
    """Read the manifest and check it is ``kind`` at ``format_version``."""
    manifest = read_manifest(directory)
    if manifest["kind"] != kind:
        raise IncompatibleIndexError(
            f"{directory} holds a {manifest['kind']!r} index, not {kind!r}; "
            "use winnow.index.load_index to open any kind"
        )
    found = manifest.get("format_version")
    if found != format_version:
        raise IncompatibleIndexError(
            f"{directory} is a {kind!r} index at format version {found!r}; this winnow reads "
            f"version {format_version}: rebuild the index"
        )
    return manifest
