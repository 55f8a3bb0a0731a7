"""BM25 postings of one immutable segment, scored with collection-wide statistics at query time.

bm25s bakes each term's idf and the corpus's average length into the scores it stores, so an index
built per segment would score by that segment's statistics alone. These postings keep the raw
counts instead: per term the rows that hold it and how often (CSR: ``indptr``, ``rows``, ``tf``), and
per row its length in tokens. A search over several segments sums the document frequencies and
lengths of the *live* rows of all of them (tombstoned rows do not count), then scores each segment
with those global numbers, so a collection in ten segments with deletes scores exactly like one
rebuilt from its live documents (Lucene's BM25: ``idf = ln(1 + (N - df + 0.5) / (df + 0.5))``,
``tf / (tf + k1 (1 - b + b dl / avgdl))``, the formula bm25s calls "lucene").

Tokens come from bm25s's tokenizer (stemmer, stopwords) so queries and texts split the same way.
On disk: ``terms.json`` (the vocabulary in id order), ``indptr.npy``, ``rows.npy``, ``tf.npy``,
``lengths.npy`` and ``postings.json`` (settings and a format version); all arrays memory-map.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from winnow.index.base import check_manifest, load_array, save_array, write_manifest
from winnow.storage import write_json_atomic

KIND = "postings"
FORMAT_VERSION = 1
DEFAULT_SETTINGS = {"stemmer": "english", "stopwords": "en", "k1": 1.5, "b": 0.75}


def tokenize(texts: Sequence[str], settings: dict) -> list[list[str]]:
    """Each text's terms as bm25s splits them (lower-cased, stopwords dropped, stemmed)."""
    import bm25s

    from winnow.index.bm25 import _stemmer

    return bm25s.tokenize(
        list(texts), stopwords=settings["stopwords"], stemmer=_stemmer(settings["stemmer"]),
        return_ids=False, show_progress=False,
    )


@dataclass(frozen=True)
class Postings:
    """One segment's term statistics: ``rows[indptr[t]:indptr[t+1]]`` hold term ``terms[t]`` ``tf`` times."""

    terms: tuple[str, ...]
    indptr: np.ndarray  # (n_terms + 1,) int64
    rows: np.ndarray  # int32, ascending within a term
    tf: np.ndarray  # float32, aligned with rows
    lengths: np.ndarray  # (n_rows,) int32: tokens per row
    settings: dict

    @property
    def n_rows(self) -> int:
        return int(self.lengths.size)

    @classmethod
    def build(cls, texts: Sequence[str], settings: dict | None = None) -> "Postings":
        settings = dict(DEFAULT_SETTINGS if settings is None else settings)
        return cls.from_tokens(tokenize(texts, settings), settings)

    @classmethod
    def from_tokens(cls, tokens: Sequence[Sequence[str]], settings: dict) -> "Postings":
        vocab: dict[str, int] = {}
        term_ids: list[int] = []
        row_ids: list[int] = []
        lengths = np.zeros(len(tokens), dtype=np.int32)
        for row, terms in enumerate(tokens):
            lengths[row] = len(terms)
            for term in terms:
                term_ids.append(vocab.setdefault(term, len(vocab)))
                row_ids.append(row)
        return cls._from_pairs(
            tuple(vocab), np.asarray(term_ids, dtype=np.int64), np.asarray(row_ids, dtype=np.int64),
            np.ones(len(term_ids), dtype=np.float32), lengths, settings,
        )

    @classmethod
    def _from_pairs(cls, terms, term_ids, row_ids, counts, lengths, settings) -> "Postings":
        """CSR from (term, row, count) triples; repeated (term, row) pairs are summed."""
        n_terms = len(terms)
        if term_ids.size:
            pair = term_ids * max(1, lengths.size) + row_ids
            uniq, inverse = np.unique(pair, return_inverse=True)
            tf = np.bincount(inverse, weights=counts).astype(np.float32)
            t, r = np.divmod(uniq, max(1, lengths.size))
        else:
            t = r = np.zeros(0, dtype=np.int64)
            tf = np.zeros(0, dtype=np.float32)
        indptr = np.zeros(n_terms + 1, dtype=np.int64)
        np.cumsum(np.bincount(t, minlength=n_terms), out=indptr[1:])
        return cls(tuple(terms), indptr, r.astype(np.int32), tf, np.asarray(lengths, dtype=np.int32), dict(settings))

    @classmethod
    def merge(cls, parts: Sequence[tuple["Postings", np.ndarray]]) -> "Postings":
        """One postings over the kept rows of several: ``parts`` are (postings, kept-row mask); rows are
        renumbered in order (the first part's kept rows first)."""
        vocab: dict[str, int] = {}
        term_chunks, row_chunks, tf_chunks, length_chunks = [], [], [], []
        offset = 0
        for postings, keep in parts:
            new_row = np.cumsum(keep) - 1 + offset  # old row -> merged row (valid where kept)
            remap = np.asarray([vocab.setdefault(term, len(vocab)) for term in postings.terms], dtype=np.int64)
            counts = np.diff(postings.indptr)
            old_terms = np.repeat(np.arange(len(postings.terms)), counts)
            alive = keep[postings.rows]
            term_chunks.append(remap[old_terms[alive]] if remap.size else old_terms[alive])
            row_chunks.append(new_row[postings.rows[alive]])
            tf_chunks.append(postings.tf[alive])
            length_chunks.append(np.asarray(postings.lengths)[keep])
            offset += int(keep.sum())
        settings = parts[0][0].settings if parts else dict(DEFAULT_SETTINGS)
        cat = lambda chunks, dtype: np.concatenate(chunks).astype(dtype) if chunks else np.zeros(0, dtype)  # noqa: E731
        return cls._from_pairs(
            tuple(vocab), cat(term_chunks, np.int64), cat(row_chunks, np.int64), cat(tf_chunks, np.float32),
            cat(length_chunks, np.int32), settings,
        )

    def term_ids(self) -> dict[str, int]:
        return {term: i for i, term in enumerate(self.terms)}

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_json_atomic(directory / "terms.json", list(self.terms))
        for name in ("indptr", "rows", "tf", "lengths"):
            save_array(directory / f"{name}.npy", getattr(self, name))
        write_manifest(directory, KIND, FORMAT_VERSION, {**self.settings, "rows": self.n_rows, "terms": len(self.terms)})

    @classmethod
    def load(cls, directory: Path) -> "Postings":
        directory = Path(directory)
        manifest = check_manifest(directory, KIND, FORMAT_VERSION)
        terms = tuple(json.loads((directory / "terms.json").read_text(encoding="utf-8")))
        arrays = {name: load_array(directory / f"{name}.npy", mmap=True) for name in ("indptr", "rows", "tf", "lengths")}
        settings = {name: manifest[name] for name in DEFAULT_SETTINGS}
        return cls(terms, settings=settings, **arrays)


@dataclass(frozen=True)
class LiveStats:
    """Collection-wide BM25 statistics over the live rows of every segment."""

    n_rows: int
    avg_length: float


def live_stats(parts: Sequence[tuple[Postings, np.ndarray]]) -> LiveStats:
    """``parts``: (postings, live-row mask) for each segment."""
    n = sum(int(live.sum()) for _, live in parts)
    total = sum(float(np.asarray(p.lengths, dtype=np.float64)[live].sum()) for p, live in parts)
    return LiveStats(n, total / n if n else 0.0)


def score_segments(
    query_terms: Sequence[str], parts: Sequence[tuple[Postings, dict[str, int], np.ndarray]], stats: LiveStats,
) -> list[np.ndarray]:
    """BM25 of one query against every row of each segment (0 where no term matches; dead rows score 0).

    ``parts``: (postings, its term-id map, live-row mask). Document frequencies count live rows of all
    segments, so the scores do not depend on how the rows are split into segments."""
    out = [np.zeros(p.n_rows, dtype=np.float32) for p, _, _ in parts]
    if stats.n_rows == 0:
        return out
    settings = parts[0][0].settings
    k1, b = float(settings["k1"]), float(settings["b"])
    for term in query_terms:  # duplicates count twice, as bm25s counts them
        slices = []
        df = 0
        for postings, ids, live in parts:
            t = ids.get(term)
            if t is None:
                slices.append(None)
                continue
            lo, hi = int(postings.indptr[t]), int(postings.indptr[t + 1])
            rows = np.asarray(postings.rows[lo:hi])
            alive = live[rows]
            rows, tf = rows[alive], np.asarray(postings.tf[lo:hi])[alive]
            slices.append((rows, tf))
            df += rows.size
        if df == 0:
            continue
        idf = np.log(1.0 + (stats.n_rows - df + 0.5) / (df + 0.5))
        for (postings, _, _), hit, scores in zip(parts, slices, out):
            if hit is None or hit[0].size == 0:
                continue
            rows, tf = hit
            norm = k1 * ((1.0 - b) + b * np.asarray(postings.lengths[rows], dtype=np.float32) / np.float32(stats.avg_length))
            scores[rows] += np.float32(idf) * (tf / (norm + tf))
    return out
