"""A collection's write path: documents in, a new committed generation out.

Under the write lock, a write re-reads the manifest and undoes any interrupted write, skips identical
documents, chunks and encodes only what changed, writes the store rows of generation N+1, writes one
new segment holding only the new chunks and a tombstone file naming the chunks it replaced or deleted,
and commits by replacing ``manifest.json`` (:mod:`winnow.collection_files`). So a write costs
O(batch), not O(collection); afterwards the merge policy may fold small segments together
(:mod:`winnow.collection_merge`), as another commit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from winnow.collection_files import FORMAT_VERSION, MANIFEST, SEGMENTS, remove_stale
from winnow.collection_read import EXACT_BELOW
from winnow.errors import CollectionExistsError, InvalidArgumentError
from winnow.index.segment import SegmentRows, write_segment
from winnow.index.segments import Tombstones
from winnow.limits import MAX_DOCUMENT_CHARS, check_document_sizes
from winnow.storage import atomic_write_bytes, write_json_atomic
from winnow.store import document_hash
from winnow.types import Document


@dataclass(frozen=True)
class WriteReport:
    """What one add/delete changed. ``unchanged`` documents were identical and skipped."""

    added: int
    updated: int
    unchanged: int
    deleted: int
    missing: tuple[str, ...]
    chunks_encoded: int
    generation: int
    seconds: float


class WritePath:
    """The writing half of :class:`~winnow.collection.Collection` (a mixin: it uses the collection's path,
    store, manifest, chunker, encoder and read snapshot)."""

    def add(
        self, documents: Iterable[Document], *, upsert: bool = True, progress: bool = False,
        max_chars: int = MAX_DOCUMENT_CHARS,
    ) -> WriteReport:
        """Add documents; with ``upsert`` (default) a known id with new content replaces the old
        version (the report counts them as ``updated``), otherwise a known id is an error. Identical
        documents are skipped. A document over ``max_chars`` characters is refused before anything is
        written (:mod:`winnow.limits`)."""
        docs = list(documents)
        check_documents(docs)
        check_document_sizes(docs, max_chars)
        return self._write(docs, delete_ids=[], upsert=upsert, progress=progress)

    def delete(self, ids: Iterable[str]) -> WriteReport:
        """Delete documents by id; ids not in the collection are reported in ``missing``."""
        return self._write([], delete_ids=list(dict.fromkeys(ids)), upsert=True, progress=False)

    def _write(self, docs: list[Document], *, delete_ids: list[str], upsert: bool, progress: bool) -> WriteReport:
        start = time.perf_counter()
        with self._write_lock():
            self._refresh()  # another Collection object or process may have committed since we read it
            self._undo_interrupted()  # ... or been killed mid-write, leaving rows at the generation we write
            gen = self.generation
            known = self.store.live_hashes(gen, [d.id for d in docs] + delete_ids)
            if not upsert:
                clash = [d.id for d in docs if d.id in known and known[d.id] != document_hash(d)]
                if clash:
                    raise CollectionExistsError(
                        f"{len(clash)} document id(s) already in {self.name!r} with other content "
                        f"(first: {clash[:3]}); pass upsert=True to replace them (winnow index: leave out --no-upsert)"
                    )
            changed = [d for d in docs if known.get(d.id) != document_hash(d)]
            missing = tuple(i for i in delete_ids if i not in known)
            deleting = [i for i in delete_ids if i in known]
            if not changed and not deleting:
                return WriteReport(0, 0, len(docs), 0, missing, 0, gen, time.perf_counter() - start)
            chunks = self.chunker.chunk_many(changed) if changed else []
            if chunks:
                vectors = self.encoder.encode_documents([c.content for c in chunks], progress=progress)
            else:  # deletions only: no need to load the model
                vectors = np.zeros((0, self.manifest.get("dim") or 0), dtype=np.float32)
            updated = sum(1 for d in changed if d.id in known)
            new_gen = gen + 1
            late = self._encode_tokens(chunks, new_gen, progress)
            retired = self.store.live_chunk_keys(gen, [d.id for d in changed if d.id in known] + deleting)
            keys = self.store.write_generation(new_gen, changed, chunks, deleting)
            segments = list(self.manifest.get("segments") or ())
            if chunks:
                rows = SegmentRows(
                    keys=np.asarray(keys, dtype=np.int64),
                    doc_ids=[c.doc_id for c in chunks],
                    chunk_idx=np.asarray([c.index for c in chunks], dtype=np.int32),
                    vectors=vectors,
                    texts=[c.content for c in chunks],
                    late=late.tokens if late is not None else None,
                )
                if self.remote is not None:
                    metadata = {d.id: dict(d.metadata) for d in changed}
                    self.remote.insert(new_gen, rows.keys, rows.doc_ids, rows.chunk_idx, vectors, rows.texts,
                                       [metadata[d] for d in rows.doc_ids])
                else:
                    segments.append(self._write_segment(new_gen, rows, late=late.codec if late is not None else None))
            # a remote store deleted the rows of earlier tombstones after their commits (see _commit)
            tombstones = Tombstones.of(retired) if self.remote is not None else self._tombstones().union(retired)
            counts = self.manifest["counts"]
            self._commit(
                new_gen,
                segments=segments,
                tombstones=tombstones,
                counts={
                    "documents": counts["documents"] + len(changed) - updated - len(deleting),
                    "chunks": counts["chunks"] + len(chunks) - len(retired),
                },
                dim=int(vectors.shape[1]) if len(vectors) else self.manifest.get("dim"),
                late=late.settings.to_json() if late is not None and late.trained else None,
            )
            report = WriteReport(
                added=len(changed) - updated,
                updated=updated,
                unchanged=len(docs) - len(changed),
                deleted=len(deleting),
                missing=missing,
                chunks_encoded=len(chunks),
                generation=new_gen,
                seconds=time.perf_counter() - start,
            )
            self._merge_by_policy()  # after the commit: the write is durable whatever a merge does
            return report

    def _write_segment(self, gen: int, rows: "SegmentRows", postings=None, *, late=None) -> str:
        """Write segment ``seg-<gen>`` beside the committed files (named in the manifest at commit); ``late``:
        the codec of the rows' token vectors (``rows.late``), where the collection keeps them."""
        name = f"seg-{gen}"
        write_segment(self.path / SEGMENTS, name, rows, postings=postings, hnsw_min_rows=self.hnsw_min_rows, late=late)
        return name

    def _encode_tokens(self, chunks, gen: int, progress: bool):
        """Where the collection keeps late-interaction token vectors, the chunks' (an
        :class:`~winnow.index.late.EncodedTokens`; the first write with chunks trains the codebook, written now as
        ``codebook-<gen>`` and named by the commit); None otherwise."""
        from winnow.index.late import encode_tokens

        settings = self.late_settings
        if settings is None or not chunks:
            return None
        codebook = self.late_codebook() if settings.codebook is not None else None
        return encode_tokens(self.late_encoder, [c.content for c in chunks], settings, codebook, self.path, gen,
                             progress=progress)

    def _tombstones(self):
        name = self.manifest.get("tombstones")
        return Tombstones.of(np.load(self.path / name, allow_pickle=False) if name else [])

    @property
    def hnsw_min_rows(self) -> int:
        return int(self.manifest.get("index", {}).get("hnsw_min_rows", EXACT_BELOW))

    def _commit(self, gen: int, *, segments: list[str], tombstones, counts: dict, dim, late: dict | None = None) -> None:
        """Write generation ``gen``'s tombstones, then its manifest (the commit point); then drop the files
        no manifest names any more and the store rows no generation from ``gen`` on can see. ``late``: a new
        late-interaction entry (the first write names its codebook)."""
        dead_name = None
        if len(tombstones):
            dead_name = f"dead-{gen}.npy"
            atomic_write_bytes(self.path / dead_name, lambda f: np.save(f, tombstones.keys, allow_pickle=False))
        manifest = dict(self.manifest)
        manifest.update(
            format_version=FORMAT_VERSION,
            generation=gen,
            segments=segments,
            tombstones=dead_name,
            dim=dim,
            counts={**counts, "tombstones": len(tombstones)},
            updated=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        )
        if late is not None:
            manifest["late_interaction"] = late
        write_json_atomic(self.path / MANIFEST, manifest, sort_keys=True)  # the commit point
        self.manifest = manifest
        self._forget_loaded()
        remove_stale(self.path, manifest)
        self.store.purge(gen)
        if self.remote is not None and len(tombstones):  # committed: the retired rows can go (idempotent)
            self.remote.delete_keys(tombstones.keys)


def check_documents(docs: Sequence[Document]) -> None:
    seen: set[str] = set()
    for i, d in enumerate(docs, start=1):
        if not isinstance(d, Document):
            raise InvalidArgumentError(f"record {i}: expected a winnow.Document, got {type(d).__name__}")
        if not d.id:
            raise InvalidArgumentError(f"record {i}: document id is empty")
        if not d.text.strip():
            raise InvalidArgumentError(f"record {i} (id {d.id!r}): text is empty")
        if d.id in seen:
            raise InvalidArgumentError(f"record {i}: duplicate document id {d.id!r} in one batch")
        seen.add(d.id)

