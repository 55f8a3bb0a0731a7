"""A collection's read side: the segments and tombstones of its committed generation, loaded once and
forgotten when another writer commits a newer one, and the reads built on them (chunk map, metadata
filters, exact similarities, filling hits in from the store)."""

from __future__ import annotations

from functools import cached_property
from typing import Sequence

import numpy as np

from winnow.collection_files import SEGMENTS
from winnow.errors import CollectionDamagedError, InvalidArgumentError
from winnow.types import Chunk, Ranking

EXACT_BELOW = 20_000  # a segment of this many chunks or more gets an HNSW graph, which "auto" walks


def damaged(name: str, what: str) -> CollectionDamagedError:
    return CollectionDamagedError(
        f"collection {name!r} is damaged: {what}. See what is wrong with: winnow check {name}; "
        f"rebuild its indexes from its store with: winnow repair {name}"
    )


class ReadSnapshot:
    """The reading half of :class:`~winnow.collection.Collection` (a mixin: it uses the collection's path,
    store, manifest and encoder)."""

    def load(self) -> "ReadSnapshot":
        """Load what searches read (segments, tombstones, HNSW graphs) now, while this generation's files
        are certainly there; returns the collection."""
        self.segment_set
        return self

    def warm_up(self, method: str = "hybrid") -> "ReadSnapshot":
        """:meth:`load`, and load what ``method`` reads queries with: the BM25 tokenizer (bm25, hybrid; imported on
        first use), the bi-encoder (dense, hybrid), ColBERT's encoder (late)."""
        self.load()
        if method in ("bm25", "hybrid") and len(self):
            self.retriever("bm25").search("load the tokenizer now", 1)
        if method == "late":
            self.late_view()
            self.late_encoder.encode_queries(["load the late-interaction encoder now"])
        elif method != "bm25":
            self.encoder.encode_queries(["load the bi-encoder now"])
        return self

    def _auto_uses_hnsw(self) -> bool:
        return self.segment_set.uses_graphs()

    @cached_property
    def segment_set(self):
        """The committed generation's segments and tombstones. A merge committed by another process may
        have removed a segment the manifest we read named: then the manifest is read again."""
        for attempt in range(3):
            try:
                return self._load_segments(self.manifest, graphs=True)
            except FileNotFoundError as exc:
                if attempt == 2 or not self._manifest_moved():
                    raise damaged(self.name, f"a file of generation {self.generation} is missing: {exc.filename}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _manifest_moved(self) -> bool:
        """Re-read the manifest; whether another writer committed since (then loaded state is forgotten)."""
        before = self.generation
        self._refresh()
        return self.generation != before

    @cached_property
    def remote(self):
        """The Milvus store holding this collection's first stage, or None for local segments."""
        from winnow.index.milvus import MilvusStore, StoreKind, StoreSpec

        spec = StoreSpec.from_json(self.manifest.get("store"))
        return None if spec.kind is StoreKind.LOCAL else MilvusStore(spec, self.manifest["store"]["collection"])

    def _load_segments(self, manifest: dict, *, graphs: bool):
        """The segments ``manifest`` names (with their HNSW graphs read, for ``graphs``) and its tombstones;
        for a Milvus-backed collection, its view of the committed generation."""
        from winnow.index.base import IncompatibleIndexError
        from winnow.index.segment import Segment
        from winnow.index.segments import SegmentSet, Tombstones

        if self.remote is not None:
            dead = manifest.get("tombstones")
            keys = np.load(self.path / dead, allow_pickle=False) if dead else np.zeros(0, np.int64)
            return self.remote.view(int(manifest["generation"]), keys, int(manifest["counts"]["chunks"]))

        folder = self.path / SEGMENTS
        segments = []
        for name in manifest.get("segments") or ():
            if not (folder / name).is_dir():
                raise FileNotFoundError(2, "segment folder missing", str(folder / name))
            try:
                seg = Segment(folder / name)
                if graphs:  # a reader reads everything now: a merge may remove the folder later
                    seg.postings, seg.hnsw
            except FileNotFoundError:
                raise
            except (IncompatibleIndexError, OSError, ValueError) as exc:  # truncated or overwritten files
                raise damaged(self.name, f"segment {name} cannot be read: {exc}") from None
            segments.append(seg)
        dead = manifest.get("tombstones")
        tombstones = Tombstones.of(np.load(self.path / dead, allow_pickle=False) if dead else [])
        return SegmentSet(segments, tombstones)

    def similarities(self, queries: Sequence[str], doc_ids: Sequence[Sequence[str]]) -> list[list[float]]:
        """Exact dense similarity of each query with each of its documents (the best of the document's
        chunks), whether or not a search would rank them: ``out[i][j]`` is query i with ``doc_ids[i][j]``."""
        wanted = sorted({d for ids in doc_ids for d in ids})
        vectors = self.segment_set.vectors_of(wanted)
        unknown = [d for d in wanted if d not in vectors]
        if unknown:
            raise InvalidArgumentError(f"{len(unknown)} document id(s) not in collection {self.name!r}: {unknown[:5]}")
        q = self.encoder.encode_queries(list(queries))
        return [[float(np.max(vectors[d] @ q[i])) for d in ids] for i, ids in enumerate(doc_ids)]

    def _forget_loaded(self) -> None:
        for attr in ("segment_set", "metadata_map"):
            self.__dict__.pop(attr, None)

    @property
    def keymap(self):
        """key -> (document id, chunk index) of every live chunk."""
        return self.segment_set.keymap

    @cached_property
    def metadata_map(self) -> dict[str, dict]:
        """Every live document's metadata by id (read once per generation, for filters)."""
        return self.store.live_metadata(self.generation)

    def matching_ids(self, filter: dict) -> frozenset[str]:
        """Ids of the documents whose metadata matches ``filter`` (see :mod:`winnow.retrieve.filters`)."""
        from winnow.retrieve.filters import check_filter, matches

        normal = check_filter(filter)
        return frozenset(doc_id for doc_id, md in self.metadata_map.items() if matches(normal, md))

    def chunks_of(self, doc_id: str) -> tuple[Chunk, ...]:
        """The document's chunks as stored (``text == document.text[start:end]``), in order; () for an unknown id."""
        doc = self.store.documents(self.generation, [doc_id]).get(doc_id)
        if doc is None:
            return ()
        spans = self.store.chunk_spans(self.generation, [doc_id])
        return tuple(
            Chunk(doc_id, i, doc.text[s:e], s, e, doc.title) for (_, i), (s, e) in sorted(spans.items())
        )

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

