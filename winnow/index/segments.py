"""A collection's searchable state at one generation: its segments and tombstones, searched as one index.

Each search fans out over the segments and merges their top-k. Tombstones (the keys of chunks that a
later write replaced or deleted) and metadata filters become one live-row mask per segment, applied
inside each segment's search before its top-k, so a dead or filtered row never takes a slot:

- dense, exact: every segment's rows scored with numpy, masked, top-k, merged: equal to one exact
  search over all live rows;
- dense, HNSW: segments that carry a graph are walked with the mask as a FAISS selector, the others
  searched exactly;
- BM25: collection-wide statistics over the live rows (:mod:`winnow.index.postings`), so scores do
  not depend on how rows are split into segments.

The views here have the small interface the retrievers use: ``len()`` (live rows) and
``search(queries, k) -> SearchResult`` with chunk keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from functools import cached_property
from typing import Iterator, Sequence

import numpy as np

from winnow.index.base import SearchResult, as_vectors, check_k, empty_result, text_queries
from winnow.index.flat import _BLOCK, top_k
from winnow.index.postings import live_stats, score_segments, tokenize
from winnow.index.segment import Segment


class DenseMode(str, Enum):
    """How dense search reads the segments: AUTO walks graphs where segments have them (large ones),
    EXACT scores every row."""

    AUTO = "auto"
    EXACT = "exact"
    HNSW = "hnsw"  # same as AUTO: a segment without a graph is small enough to search exactly


@dataclass(frozen=True)
class Tombstones:
    """Keys of dead chunks (sorted int64)."""

    keys: np.ndarray

    @classmethod
    def of(cls, keys) -> "Tombstones":
        return cls(np.unique(np.asarray(keys, dtype=np.int64)))

    def __len__(self) -> int:
        return int(self.keys.size)

    def union(self, keys) -> "Tombstones":
        return Tombstones.of(np.concatenate([self.keys, np.asarray(keys, dtype=np.int64)]))

    def within(self, segments: Sequence[Segment]) -> "Tombstones":
        """Only the tombstones of rows these segments hold (the rest were purged by a merge)."""
        if not segments:
            return Tombstones.of([])
        held = np.concatenate([s.keys for s in segments])
        return Tombstones(self.keys[np.isin(self.keys, held)])


class SegmentSet:
    """The segments of one generation with their tombstones applied."""

    def __init__(self, segments: Sequence[Segment], tombstones: Tombstones) -> None:
        self.segments = tuple(segments)
        self.tombstones = tombstones
        self.live = tuple(
            ~np.isin(s.keys, tombstones.keys) if len(tombstones) else np.ones(s.rows, dtype=bool) for s in self.segments
        )

    def __len__(self) -> int:
        return int(sum(int(m.sum()) for m in self.live))

    @cached_property
    def keymap(self) -> "SegmentKeyMap":
        return SegmentKeyMap(self)

    def masks(self, allowed: frozenset[str] | None) -> tuple[np.ndarray, ...]:
        """Per segment the rows a search may return: live, and of an allowed document where given."""
        if allowed is None:
            return self.live
        return tuple(live & seg.rows_of_documents(allowed) for seg, live in zip(self.segments, self.live))

    def dense(self, mode: DenseMode = DenseMode.AUTO, allowed: frozenset[str] | None = None, where=None) -> "DenseView":
        """``allowed``: the documents a filter matched (``where``, the filter itself, is for stores that
        filter by expression; segments mask by ``allowed``)."""
        return DenseView(self, self.masks(allowed), DenseMode(mode))

    def lexical(self, allowed: frozenset[str] | None = None, where=None) -> "LexicalView":
        return LexicalView(self, self.masks(allowed))

    def uses_graphs(self) -> bool:
        return any(s.has_hnsw for s in self.segments)

    def vectors_of(self, doc_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Each document's live chunk vectors (rows, dim), for exact similarities."""
        wanted = frozenset(doc_ids)
        out: dict[str, list[np.ndarray]] = {}
        for seg, live in zip(self.segments, self.live):
            rows = np.flatnonzero(live & seg.rows_of_documents(wanted))
            for row in rows.tolist():
                out.setdefault(seg.doc_id(row), []).append(np.asarray(seg.vectors[row]))
        return {d: np.stack(v) for d, v in out.items()}

    def live_keys(self) -> np.ndarray:
        parts = [seg.keys[live] for seg, live in zip(self.segments, self.live)]
        return np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)


class SegmentKeyMap(Mapping):
    """key -> (document id, chunk index) over every live row, read from the segments' arrays (no
    per-row Python objects: a reader's memory does not grow with the collection)."""

    def __init__(self, segments: SegmentSet) -> None:
        self._set = segments
        keys, where_seg, where_row = [], [], []
        for i, (seg, live) in enumerate(zip(segments.segments, segments.live)):
            rows = np.flatnonzero(live)
            keys.append(seg.keys[rows])
            where_seg.append(np.full(rows.size, i, dtype=np.int32))
            where_row.append(rows.astype(np.int64))
        cat = lambda parts, dtype: np.concatenate(parts) if parts else np.zeros(0, dtype)  # noqa: E731
        all_keys = cat(keys, np.int64)
        order = np.argsort(all_keys, kind="stable")
        self._keys = all_keys[order]
        self._seg = cat(where_seg, np.int32)[order]
        self._row = cat(where_row, np.int64)[order]

    def _find(self, key) -> int:
        i = int(np.searchsorted(self._keys, key))
        return i if i < self._keys.size and self._keys[i] == key else -1

    def __getitem__(self, key) -> tuple[str, int]:
        i = self._find(key)
        if i < 0:
            raise KeyError(key)
        seg = self._set.segments[int(self._seg[i])]
        row = int(self._row[i])
        return seg.doc_id(row), int(seg.chunk_idx[row])

    def __contains__(self, key) -> bool:
        return self._find(key) >= 0

    def resolve(self, keys: np.ndarray) -> list[tuple[str, int] | None]:
        """(document id, chunk index) for each key at once; None for a padding (-1) or unknown key."""
        keys = np.asarray(keys, dtype=np.int64)
        out: list[tuple[str, int] | None] = [None] * keys.size
        if not self._keys.size or not keys.size:
            return out
        idx = np.minimum(np.searchsorted(self._keys, keys), self._keys.size - 1)
        found = (self._keys[idx] == keys) & (keys >= 0)
        hits = np.flatnonzero(found)
        segs, rows = self._seg[idx[hits]], self._row[idx[hits]]
        for s in np.unique(segs).tolist():
            seg = self._set.segments[s]
            mine = segs == s
            where, seg_rows = hits[mine], rows[mine]
            names = seg.doc_ids[np.asarray(seg.doc_of)[seg_rows]]
            chunks = np.asarray(seg.chunk_idx)[seg_rows]
            for i, name, chunk in zip(where.tolist(), names.tolist(), chunks.tolist()):
                out[i] = (name.decode("utf-8"), chunk)
        return out

    def __iter__(self) -> Iterator[int]:
        return iter(self._keys.tolist())

    def __len__(self) -> int:
        return int(self._keys.size)


class _View:
    def __init__(self, segments: SegmentSet, masks: tuple[np.ndarray, ...]) -> None:
        self.segments = segments
        self.masks = masks
        self._n = int(sum(int(m.sum()) for m in masks))

    def __len__(self) -> int:
        return self._n


def _merge(parts: list[SearchResult], n_queries: int, k: int) -> SearchResult:
    """The best ``k`` of several per-segment results (keys -1 / scores -inf pad)."""
    if not parts:
        return empty_result(n_queries, k)
    if len(parts) == 1:
        return parts[0]
    keys = np.concatenate([p.keys for p in parts], axis=1)
    scores = np.concatenate([p.scores for p in parts], axis=1)
    idx, values = top_k(scores, min(k, scores.shape[1]))
    out = empty_result(n_queries, k)
    out.keys[:, : idx.shape[1]] = np.take_along_axis(keys, idx, axis=1)
    out.scores[:, : idx.shape[1]] = values
    out.keys[~np.isfinite(out.scores)] = -1
    return out


def exact_scores_top_k(queries: np.ndarray, vectors: np.ndarray, keys: np.ndarray, live: np.ndarray, k: int) -> SearchResult:
    """Exact inner-product top ``k`` over the rows where ``live`` holds (scored in blocks)."""
    result = empty_result(queries.shape[0], k)
    n_live = int(live.sum())
    if n_live == 0:
        return result
    k_eff = min(k, n_live)
    all_live = n_live == live.size
    step = max(1, _BLOCK // max(1, vectors.shape[0]))
    for start in range(0, queries.shape[0], step):
        scores = queries[start : start + step] @ np.asarray(vectors).T
        if not all_live:
            scores[:, ~live] = -np.inf
        idx, values = top_k(scores, k_eff)
        result.keys[start : start + step, :k_eff] = keys[idx]
        result.scores[start : start + step, :k_eff] = values
    return result


class DenseView(_View):
    """Dense search over every segment (see the module's notes)."""

    def __init__(self, segments: SegmentSet, masks, mode: DenseMode) -> None:
        super().__init__(segments, masks)
        self.mode = mode

    def search(self, queries, k: int) -> SearchResult:
        k = check_k(k)
        segs = self.segments.segments
        if not segs:
            return empty_result(np.atleast_2d(queries).shape[0], k)
        queries = as_vectors(queries, segs[0].dim, "queries")
        parts = []
        for seg, mask in zip(segs, self.masks):
            if not mask.any():
                continue
            if self.mode is not DenseMode.EXACT and seg.has_hnsw:
                parts.append(seg.hnsw.search(queries, k, live=mask))
            else:
                parts.append(exact_scores_top_k(queries, seg.vectors, seg.keys, mask, k))
        return _merge(parts, queries.shape[0], k)


class LexicalView(_View):
    """BM25 over every segment with collection-wide statistics; only rows matching a query term return.

    The statistics (document frequencies, average length) count every live row, filtered or not, as
    Lucene's do: a filter chooses which documents come back, not how they score."""

    @cached_property
    def _stats(self):
        return live_stats([(seg.postings, live) for seg, live in zip(self.segments.segments, self.segments.live)])

    def search(self, queries: Sequence[str] | str, k: int) -> SearchResult:
        k = check_k(k)
        queries = text_queries(queries)
        result = empty_result(len(queries), k)
        segs = self.segments.segments
        if not queries or not segs or self._n == 0:
            return result
        parts = [(seg.postings, seg.term_ids, live) for seg, live in zip(segs, self.segments.live)]
        for qi, terms in enumerate(tokenize(queries, segs[0].postings.settings)):
            per_segment = score_segments(terms, parts, self._stats)
            found = []
            for seg, scores, mask in zip(segs, per_segment, self.masks):
                hit = np.flatnonzero((scores > 0) & mask)  # a filtered-out row never takes a slot
                if hit.size > 4 * k:  # keep the best k (and ties at the edge roughly) before sorting
                    hit = hit[np.argpartition(-scores[hit], k - 1)[:k]]
                if hit.size:
                    order = np.lexsort((seg.keys[hit], -scores[hit]))[:k]
                    found.append((seg.keys[hit[order]], scores[hit[order]]))
            if not found:
                continue
            keys = np.concatenate([f[0] for f in found])
            scores = np.concatenate([f[1] for f in found])
            order = np.lexsort((keys, -scores))[:k]
            result.keys[qi, : order.size] = keys[order]
            result.scores[qi, : order.size] = scores[order]
        return result
