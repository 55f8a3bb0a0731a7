"""A collection's write path: documents in, a new committed generation out.

Under the write lock, a write re-reads the manifest and undoes any interrupted write, skips identical
documents, chunks and encodes only what changed, writes the store rows of generation N+1, builds its
index files beside the committed ones (reusing the vectors of unchanged chunks), and commits by
replacing ``manifest.json`` (:mod:`winnow.collection_files`).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from winnow.collection_files import MANIFEST, fsync_tree
from winnow.errors import CollectionExistsError, InvalidArgumentError
from winnow.limits import MAX_DOCUMENT_CHARS, check_document_sizes
from winnow.storage import fsync_dir, write_json_atomic
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
            new_gen = gen + 1
            keys = self.store.write_generation(new_gen, changed, chunks, deleting)
            self._build_generation(new_gen, np.asarray(keys, dtype=np.int64), vectors)
            n_docs = self.store.count_documents(new_gen)
            n_chunks = len(self.store.live_chunks(new_gen))
            manifest = dict(self.manifest)
            manifest.update(
                generation=new_gen,
                dim=int(vectors.shape[1]) if len(vectors) else manifest.get("dim"),
                counts={"documents": n_docs, "chunks": n_chunks},
                updated=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            )
            write_json_atomic(self.path / MANIFEST, manifest, sort_keys=True)  # the commit point
            self.manifest = manifest
            self._forget_loaded()
            shutil.rmtree(self._gen_dir(gen), ignore_errors=True)
            self.store.purge(new_gen)
            updated = sum(1 for d in changed if d.id in known)
            return WriteReport(
                added=len(changed) - updated,
                updated=updated,
                unchanged=len(docs) - len(changed),
                deleted=len(deleting),
                missing=missing,
                chunks_encoded=len(chunks),
                generation=new_gen,
                seconds=time.perf_counter() - start,
            )

    def _build_generation(self, gen: int, new_keys: np.ndarray, new_vectors: np.ndarray) -> None:
        from winnow.index.bm25 import BM25Index
        from winnow.index.flat import FlatIndex
        from winnow.index.hnsw import HNSWIndex

        live_keys = np.asarray([c.key for c in self.store.live_chunks(gen)], dtype=np.int64)
        old_flat = self._load_flat(self.generation)
        vectors = gather_vectors(live_keys, new_keys, new_vectors, old_flat)
        tmp = self.path / f"gen-{gen}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        dim = vectors.shape[1] if vectors.size else (new_vectors.shape[1] if new_vectors.ndim == 2 else 0)
        if len(live_keys):
            flat = FlatIndex(dim)
            flat.add(live_keys, vectors)
            flat.save(tmp / "flat")
            HNSWIndex.from_vectors(live_keys, vectors).save(tmp / "hnsw")
            contents = list(self.store.iter_chunk_contents(gen))
            BM25Index.build(np.asarray([k for k, _ in contents], dtype=np.int64), [t for _, t in contents]).save(
                tmp / "bm25"
            )
        fsync_tree(tmp)
        os.rename(tmp, self._gen_dir(gen))
        fsync_dir(self.path)



def gather_vectors(live_keys: np.ndarray, new_keys: np.ndarray, new_vectors: np.ndarray, old_flat) -> np.ndarray:
    """Rows for ``live_keys``: new chunks from ``new_vectors``, the rest reused from the old flat index."""
    if len(live_keys) == 0:
        return np.zeros((0, new_vectors.shape[1] if new_vectors.ndim == 2 else 0), dtype=np.float32)
    dim = new_vectors.shape[1] if len(new_keys) else old_flat.dim
    out = np.empty((len(live_keys), dim), dtype=np.float32)
    position = {int(k): i for i, k in enumerate(live_keys.tolist())}
    filled = np.zeros(len(live_keys), dtype=bool)
    for k, v in zip(new_keys.tolist(), new_vectors):
        out[position[k]] = v
        filled[position[k]] = True
    if old_flat is not None and not filled.all():
        old_pos = {int(k): i for i, k in enumerate(np.asarray(old_flat.keys).tolist())}
        rows = np.flatnonzero(~filled)
        src = np.asarray([old_pos[int(live_keys[r])] for r in rows], dtype=np.int64)
        out[rows] = np.asarray(old_flat.vectors)[src]
        filled[rows] = True
    if not filled.all():  # pragma: no cover - would mean the store and the index files disagree
        raise RuntimeError("internal error: some live chunks have no embedding")
    return out


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

