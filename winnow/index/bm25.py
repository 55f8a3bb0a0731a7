"""BM25 over texts with bm25s, built whole.

bm25s cannot add documents to a built index, so the collection rebuilds this index whenever its
texts change; :meth:`BM25Index.remove` only masks rows out of results until that rebuild. Only
documents that match at least one query term (score > 0) are returned. On disk: bm25s's own files
(numpy arrays and JSON; the corpus is never saved) under ``bm25s/``, plus ``keys.npy``,
``removed.npy`` and ``index.json`` holding the tokenization settings.

Retrieval uses bm25s's numba backend when it works (the first search in a process pays a one-off
JIT compile of a few seconds), else numpy; ``backend`` picks one explicitly.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from winnow.errors import InvalidArgumentError, MissingDependencyError
from winnow.index.base import (
    IncompatibleIndexError,
    Index,
    SearchResult,
    as_keys,
    check_k,
    check_manifest,
    check_unique,
    empty_result,
    text_queries,
    load_array,
    save_array,
    write_manifest,
)

logger = logging.getLogger(__name__)

NUMBA_MIN_QUERIES = 200

METHODS = ("robertson", "lucene", "atire", "bm25l", "bm25+")
BACKENDS = ("auto", "numba", "numpy")
_SUBDIR = "bm25s"


def _bm25s():
    try:
        import bm25s
    except ImportError as exc:  # pragma: no cover - bm25s is a core dependency
        raise MissingDependencyError("BM25Index needs bm25s: pip install bm25s PyStemmer") from exc
    return bm25s


def _has_numba() -> bool:
    import importlib.util

    return importlib.util.find_spec("numba") is not None


def _stemmer(name: str | None):
    if name is None:
        return None
    try:
        import Stemmer
    except ImportError as exc:  # pragma: no cover
        raise MissingDependencyError("stemming needs PyStemmer: pip install PyStemmer") from exc
    known = Stemmer.algorithms()
    if name not in known:
        raise InvalidArgumentError(f"unknown stemmer {name!r}; use None or one of {sorted(known)}")
    return Stemmer.Stemmer(name)


def _check_stopwords(stopwords: str | Sequence[str] | None) -> str | list[str] | None:
    if stopwords is None or isinstance(stopwords, str):
        if isinstance(stopwords, str):
            from bm25s.tokenization import _infer_stopwords

            try:
                _infer_stopwords(stopwords)
            except ValueError as exc:
                raise InvalidArgumentError(f"unknown stopwords {stopwords!r}: {exc}") from exc
        return stopwords
    return [str(word) for word in stopwords]


class BM25Index(Index):
    """BM25 (bm25s) under int64 keys; build with :meth:`build`, search with a list of query strings."""

    kind = "bm25"
    format_version = 1

    def __init__(self, retriever, keys: np.ndarray, settings: dict, removed: np.ndarray | None = None):
        """Wrap a built ``bm25s.BM25``; use :meth:`build` or :meth:`load` rather than this."""
        self._retriever = retriever
        self._keys = keys
        self._removed = np.zeros(keys.size, dtype=bool) if removed is None else removed
        self.settings = settings
        self._stem = _stemmer(settings["stemmer"])
        self._backend = settings["backend"]

    @classmethod
    def build(
        cls,
        keys: Any,
        texts: Sequence[str],
        *,
        stemmer: str | None = "english",
        stopwords: str | Sequence[str] | None = "en",
        k1: float = 1.5,
        b: float = 0.75,
        method: str = "lucene",
        backend: str = "auto",
    ) -> "BM25Index":
        """Index ``texts`` under ``keys``. ``stemmer`` is a PyStemmer language or None; ``stopwords``
        a bm25s language code ("en"), a list of words, or None."""
        keys = as_keys(keys)
        if isinstance(texts, str):
            raise InvalidArgumentError("texts must be a sequence of strings, got one string")
        texts = list(texts)
        if keys.size != len(texts):
            raise InvalidArgumentError(f"{keys.size} keys for {len(texts)} texts")
        if not texts:
            raise InvalidArgumentError("BM25Index.build needs at least one text")
        check_unique(keys, np.empty(0, dtype=np.int64))
        if method not in METHODS:
            raise InvalidArgumentError(f"unknown BM25 method {method!r}; use one of {list(METHODS)}")
        if backend not in BACKENDS:
            raise InvalidArgumentError(f"unknown backend {backend!r}; use one of {list(BACKENDS)}")
        settings = {
            "stemmer": stemmer,
            "stopwords": _check_stopwords(stopwords),
            "k1": float(k1),
            "b": float(b),
            "method": method,
            "backend": backend,
        }
        bm25s = _bm25s()
        tokens = _tokenize(texts, settings, _stemmer(stemmer))
        if not any(tokens):  # bm25s cannot index an empty vocabulary; " " is a term no query tokenizes to
            tokens = [[" "], *tokens[1:]]
        retriever = bm25s.BM25(k1=float(k1), b=float(b), method=method, backend="numpy")
        retriever.index(tokens, show_progress=False)
        logger.info("built BM25 index over %d texts (%d terms)", len(texts), len(retriever.vocab_dict))
        return cls(retriever, keys, settings)

    def __len__(self) -> int:
        return int(self._keys.size - np.count_nonzero(self._removed))

    @property
    def keys(self) -> np.ndarray:
        """Keys of the live rows, in build order."""
        return self._keys[~self._removed]

    def remove(self, keys: Any) -> int:
        """Mask rows out of results (the index itself is unchanged until the collection rebuilds)."""
        hit = np.isin(self._keys, as_keys(keys)) & ~self._removed
        self._removed = self._removed | hit
        return int(np.count_nonzero(hit))

    def search(self, queries: Sequence[str] | str, k: int) -> SearchResult:
        """Best ``k`` matching rows per query; one string counts as one query."""
        k = check_k(k)
        queries = text_queries(queries)
        result = empty_result(len(queries), k)
        if not queries or len(self) == 0:
            return result
        ids = self._token_ids(queries)
        rows = [row for row, query in enumerate(ids) if query]  # no known term: no match
        if not rows:
            return result
        # Masked (removed) rows score 0, below every match, so k rows from bm25s are enough.
        mask = (~self._removed).astype(np.float32) if self._removed.any() else None
        positions, scores = self._retrieve([ids[row] for row in rows], min(k, self._keys.size), mask)
        for i, row in enumerate(rows):
            keep = (scores[i] > 0) & ~self._removed[positions[i]]
            hits = positions[i][keep][:k]
            result.keys[row, : hits.size] = self._keys[hits]
            result.scores[row, : hits.size] = scores[i][keep][:k]
        return result

    def _token_ids(self, queries: list[str]) -> list[list[int]]:
        """Vocabulary ids of each query's terms; terms the corpus lacks are dropped."""
        n_terms = len(self._retriever.scores["indptr"]) - 1  # excludes bm25s's "" placeholder
        vocab = self._retriever.vocab_dict
        tokens = _tokenize(queries, self.settings, self._stem)
        return [[vocab[t] for t in query if t in vocab and vocab[t] < n_terms] for query in tokens]

    def _retrieve(self, ids: list[list[int]], k: int, mask: np.ndarray | None):
        """bm25s top-k positions and scores. Backend "auto" uses numba for batches of at least
        NUMBA_MIN_QUERIES queries (its ~7 s compile per process pays off there) and numpy otherwise,
        so a one-shot CLI search stays fast."""
        if self._backend == "numba" and not _has_numba():
            raise MissingDependencyError("BM25 backend 'numba' needs numba: pip install numba (or use backend 'numpy')")
        use_numba = self._backend == "numba" or (
            self._backend == "auto" and len(ids) >= NUMBA_MIN_QUERIES and _has_numba()
        )
        self._retriever.backend = "numba" if use_numba else "numpy"
        try:
            out = self._call_retrieve(ids, k, mask)
        except Exception as exc:
            if self._backend != "auto" or self._retriever.backend != "numba":
                raise
            logger.warning("bm25s numba retrieval failed (%s); BM25 retrieval falls back to numpy", exc)
            self._backend = self._retriever.backend = "numpy"
            out = self._call_retrieve(ids, k, mask)
        return np.asarray(out.documents, dtype=np.int64), np.asarray(out.scores, dtype=np.float32)

    def _call_retrieve(self, ids: list[list[int]], k: int, mask: np.ndarray | None):
        return self._retriever.retrieve(
            ids,
            k=k,
            show_progress=False,
            n_threads=1 if self._retriever.backend == "numba" else 0,  # 0: numpy in this thread
            weight_mask=mask,
            backend_selection=self._retriever.backend,
        )

    def save(self, directory: Path) -> None:
        """Write bm25s's files into a temporary folder, then move each into ``bm25s/``."""
        directory = Path(directory)
        target = directory / _SUBDIR
        staging = directory / f".{_SUBDIR}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        target.mkdir(parents=True, exist_ok=True)
        try:
            self._retriever.save(staging, corpus=None, show_progress=False)
            for path in staging.iterdir():
                path.replace(target / path.name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        save_array(directory / "keys.npy", self._keys)
        save_array(directory / "removed.npy", self._removed)
        params = {**self.settings, "count": len(self), "bm25s_files": _SUBDIR}
        write_manifest(directory, self.kind, self.format_version, params)

    @classmethod
    def load(cls, directory: Path, mmap: bool = True) -> "BM25Index":
        """Read a saved index; with ``mmap`` bm25s's score arrays stay on disk, memory-mapped."""
        directory = Path(directory)
        manifest = check_manifest(directory, cls.kind, cls.format_version)
        settings = {name: manifest[name] for name in ("stemmer", "stopwords", "k1", "b", "method", "backend")}
        retriever = _bm25s().BM25.load(directory / _SUBDIR, mmap=mmap, load_corpus=False, backend="numpy")
        keys = np.array(load_array(directory / "keys.npy", mmap=False), dtype=np.int64)
        removed = np.array(load_array(directory / "removed.npy", mmap=False), dtype=bool)
        if not (retriever.scores["num_docs"] == keys.size == removed.size):
            raise IncompatibleIndexError(
                f"{directory}: bm25s holds {retriever.scores['num_docs']} documents, keys.npy "
                f"{keys.size}, removed.npy {removed.size}"
            )
        return cls(retriever, keys, settings, removed)


def _tokenize(texts: list[str], settings: dict, stemmer) -> list[list[str]]:
    return _bm25s().tokenize(
        texts,
        stopwords=settings["stopwords"],
        stemmer=stemmer,
        return_ids=False,
        show_progress=False,
    )
