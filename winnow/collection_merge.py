"""Merges: folding a collection's small segments together and purging their tombstones.

Every write adds one segment, so a collection written in many small batches would fan each search out
over many segments. The policy is tiered, like Lucene's: a segment's tier is how many times
``MERGE_FACTOR`` its live rows exceed ``FLOOR_ROWS``; when one tier holds ``MERGE_FACTOR`` segments
they are merged into one (which lands a tier up), and a segment more than half dead is rewritten
alone. So each row is rewritten about once per tier, and the number of segments stays logarithmic in
the collection's size. ``winnow optimize`` (:meth:`MergePath.optimize`) merges everything into one.

A merge is a write like any other: the merged segment is built beside the committed ones (vectors and
postings copied, nothing re-encoded or re-tokenized; an HNSW graph built where the result is large
enough), then one manifest rename commits it. Readers never wait: a reader keeps the segments it
loaded (memory-mapped files stay readable after the merge removes them), and a reader that finds a
segment gone re-reads the manifest.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

MERGE_FACTOR = 10
FLOOR_ROWS = 1_000
DEAD_FRACTION = 0.5


@dataclass(frozen=True)
class MergeReport:
    """What one merge (or a run of policy merges) did."""

    merges: int
    segments_before: int
    segments_after: int
    rows_written: int
    tombstones_purged: int
    generation: int
    seconds: float


def tier(live_rows: int, factor: int = MERGE_FACTOR, floor: int = FLOOR_ROWS) -> int:
    return int(math.floor(math.log(max(live_rows, floor) / floor, factor) + 1e-9))


def plan_merge(live: Sequence[int], dead: Sequence[int], factor: int = MERGE_FACTOR) -> list[int]:
    """Positions of the segments to merge next (empty: nothing to do). ``live``/``dead``: rows per segment."""
    tiers: dict[int, list[int]] = {}
    for i, n in enumerate(live):
        tiers.setdefault(tier(n, factor), []).append(i)
    for t in sorted(tiers):
        if len(tiers[t]) >= factor:
            return sorted(tiers[t], key=lambda i: live[i])[:factor]
    for i, (n, d) in enumerate(zip(live, dead)):
        if d and d > DEAD_FRACTION * (n + d):
            return [i]
    return []


class MergePath:
    """The merging part of :class:`~winnow.collection.Collection` (a mixin: it uses the write path's
    segment writing and commit)."""

    def optimize(self) -> MergeReport:
        """Merge every segment into one and purge every tombstone (``winnow optimize``)."""
        with self._write_lock():
            self._refresh()
            self._undo_interrupted()
            names = list(self.manifest.get("segments") or ())
            if (len(names) <= 1 and not self.manifest.get("tombstones")) or self.remote is not None:
                return MergeReport(0, len(names), len(names), 0, 0, self.generation, 0.0)
            return self._merge(names)

    def merge(self) -> MergeReport:
        """Run the merge policy until it has nothing to do."""
        with self._write_lock():
            self._refresh()
            self._undo_interrupted()
            return self._merge_by_policy()

    def _merge_by_policy(self) -> MergeReport:
        """Under the write lock: merge while the policy finds something to merge (a Milvus-backed
        collection has no segments: Milvus compacts its own)."""
        start = time.perf_counter()
        before = len(self.manifest.get("segments") or ())
        if self.remote is not None:
            return MergeReport(0, 0, 0, 0, 0, self.generation, 0.0)
        merges = rows = purged = 0
        while True:
            segments = self._segments_for_merge()
            tombstones = self._tombstones()
            live, dead = [], []
            for seg in segments:
                n_dead = int(np.isin(seg.keys, tombstones.keys).sum()) if len(tombstones) else 0
                live.append(seg.rows - n_dead)
                dead.append(n_dead)
            picked = plan_merge(live, dead)
            if not picked:
                break
            report = self._merge([segments[i].name for i in picked])
            merges += 1
            rows += report.rows_written
            purged += report.tombstones_purged
        return MergeReport(merges, before, len(self.manifest.get("segments") or ()), rows, purged, self.generation,
                           time.perf_counter() - start)

    def _segments_for_merge(self):
        return self._load_segments(self.manifest, graphs=False).segments

    def _merge(self, names: list[str]) -> MergeReport:
        """Under the write lock: fold segments ``names`` into one new segment, as one commit."""
        from winnow.index.segment import merged_rows
        from winnow.index.segments import Tombstones

        start = time.perf_counter()
        segments = {s.name: s for s in self._segments_for_merge()}
        picked = [segments[n] for n in names]
        tombstones = self._tombstones()
        parts = [(seg, ~np.isin(seg.keys, tombstones.keys)) for seg in picked]
        codec = self._late_codec()
        rows, postings = merged_rows(parts, late=codec)
        gen = self.generation + 1
        order = list(segments)
        merged = self._write_segment(gen, rows, postings, late=codec) if rows.keys.size else None
        at = min(order.index(n) for n in names)
        kept = [n for n in order if n not in names]
        new_order = kept[:at] + ([merged] if merged else []) + kept[at:]
        held = np.concatenate([seg.keys for seg in picked])
        remaining = Tombstones(tombstones.keys[~np.isin(tombstones.keys, held)])
        self._commit(gen, segments=new_order, tombstones=remaining, counts=dict(self.manifest["counts"]),
                     dim=self.manifest.get("dim"))
        return MergeReport(1, len(order), len(new_order), int(rows.keys.size), len(tombstones) - len(remaining), gen,
                           time.perf_counter() - start)
