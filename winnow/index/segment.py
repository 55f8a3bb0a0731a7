"""One immutable segment of a collection: the chunks one write added (or one merge folded together).

A segment never changes once written; deleting its rows is the collection's business (tombstones, see
:mod:`winnow.index.segments`). On disk, a folder::

    segment.json     kind, format version, rows, dim, whether an HNSW graph is there
    keys.npy         the chunks' int64 keys (the store's chunk keys)
    doc_of.npy       per row: which entry of doc_ids.npy it belongs to (int32)
    doc_ids.npy      the segment's document ids, UTF-8 bytes
    chunk_idx.npy    per row: the chunk's position in its document (int32)
    vectors.npy      (rows, dim) float32 embeddings, memory-mapped when read
    postings/        BM25 term statistics (:mod:`winnow.index.postings`)
    hnsw/            a FAISS HNSW graph, only for segments of at least ``hnsw_min_rows`` rows
    multivector/     the rows' ColBERT token vectors, compressed, in a collection with late interaction
                     (:mod:`winnow.index.late`, :mod:`winnow.index.multivector`)

It is built in a ``.tmp`` folder beside its final name and renamed into place once every file is synced.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from winnow.index.base import IncompatibleIndexError, check_manifest, load_array, save_array, write_manifest
from winnow.index.postings import Postings
from winnow.storage import fsync_dir, fsync_tree

if TYPE_CHECKING:
    from winnow.index.late import LateCodec
    from winnow.index.multivector import StoredTokens

KIND = "segment"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class SegmentRows:
    """What a new segment holds, row by row."""

    keys: np.ndarray  # int64
    doc_ids: Sequence[str]
    chunk_idx: np.ndarray  # int32
    vectors: np.ndarray  # (rows, dim) float32
    texts: Sequence[str]  # what BM25 reads: title and chunk text
    late: "StoredTokens | None" = None  # each row's compressed token vectors (late interaction), else None


class Segment:
    """A loaded segment: arrays memory-mapped, the HNSW graph read on first use."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.name = self.path.name
        manifest = check_manifest(self.path, KIND, FORMAT_VERSION)
        self.rows = int(manifest["rows"])
        self.dim = int(manifest["dim"])
        self.has_hnsw = bool(manifest["hnsw"])
        self.has_late = bool(manifest.get("multivector", False))
        self._late_part = None
        self.keys = np.asarray(load_array(self.path / "keys.npy", mmap=False), dtype=np.int64)
        self.doc_of = load_array(self.path / "doc_of.npy", mmap=True)
        self.doc_ids = load_array(self.path / "doc_ids.npy", mmap=True)
        self.chunk_idx = load_array(self.path / "chunk_idx.npy", mmap=True)
        self.vectors = load_array(self.path / "vectors.npy", mmap=True)
        shapes = (self.keys.size, self.doc_of.size, self.chunk_idx.size, self.vectors.shape[0])
        if len(set(shapes)) != 1 or shapes[0] != self.rows or (self.rows and self.vectors.shape[1] != self.dim):
            raise IncompatibleIndexError(f"{self.path}: files disagree on the number of rows {shapes} (manifest: {self.rows})")

    @cached_property
    def postings(self) -> Postings:
        """BM25 counts, read on first use (a write that only looks at segment sizes never parses them)."""
        postings = Postings.load(self.path / "postings")
        if postings.n_rows != self.rows:
            raise IncompatibleIndexError(f"{self.path}: postings hold {postings.n_rows} rows, the segment {self.rows}")
        return postings

    @cached_property
    def hnsw(self):
        from winnow.index.hnsw import HNSWIndex

        return HNSWIndex.load(self.path / "hnsw") if self.has_hnsw else None

    def late_part(self, codebook):
        """The segment's token-vector part (opened once, memory-mapped), for the collection's codebook."""
        from winnow.index.late import PART
        from winnow.index.multivector import MultiVectorPart

        part = self._late_part
        if part is None:
            if not self.has_late:
                raise IncompatibleIndexError(f"{self.path}: no token vectors (written without late interaction)")
            part = MultiVectorPart.open(self.path / PART, codebook)
            if part.docs != self.rows:
                raise IncompatibleIndexError(f"{self.path}: token vectors of {part.docs} rows, the segment has {self.rows}")
            self._late_part = part
        return part

    @cached_property
    def term_ids(self) -> dict[str, int]:
        return self.postings.term_ids()

    def doc_id(self, row: int) -> str:
        return self.doc_ids[int(self.doc_of[row])].decode("utf-8")

    def rows_of_documents(self, ids: frozenset[str]) -> np.ndarray:
        """Bool mask of the rows whose document is in ``ids``."""
        if not self.rows:
            return np.zeros(0, dtype=bool)
        width = self.doc_ids.dtype.itemsize  # a longer id is not here (the cast would cut it to a prefix)
        wanted = np.asarray([b for b in (d.encode("utf-8") for d in ids) if len(b) <= width], dtype=self.doc_ids.dtype)
        return np.isin(np.asarray(self.doc_ids), wanted)[np.asarray(self.doc_of)]


def write_segment(
    folder: Path, name: str, rows: SegmentRows, *, postings: Postings | None = None, hnsw_min_rows: int,
    late: "LateCodec | None" = None,
) -> Path:
    """Build segment ``name`` under ``folder`` beside its final place, sync it, rename it in. ``postings``:
    already built (a merge), else built from ``rows.texts``. ``late``: the collection's codec, where it keeps
    token vectors (``rows.late`` must then hold one document of tokens per row)."""
    target = folder / name
    tmp = folder / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    n = int(rows.keys.size)
    dim = int(rows.vectors.shape[1]) if rows.vectors.ndim == 2 else 0
    names = list(dict.fromkeys(rows.doc_ids))
    position = {d: i for i, d in enumerate(names)}
    encoded = [d.encode("utf-8") for d in names]
    width = max((len(b) for b in encoded), default=1) or 1
    save_array(tmp / "keys.npy", np.asarray(rows.keys, dtype=np.int64))
    save_array(tmp / "doc_of.npy", np.asarray([position[d] for d in rows.doc_ids], dtype=np.int32))
    save_array(tmp / "doc_ids.npy", np.asarray(encoded, dtype=f"S{width}"))
    save_array(tmp / "chunk_idx.npy", np.asarray(rows.chunk_idx, dtype=np.int32))
    save_array(tmp / "vectors.npy", np.ascontiguousarray(rows.vectors, dtype=np.float32))
    (postings if postings is not None else Postings.build(rows.texts)).save(tmp / "postings")
    graph = n >= hnsw_min_rows and n > 0
    if graph:
        from winnow.index.hnsw import HNSWIndex

        HNSWIndex.from_vectors(rows.keys, rows.vectors).save(tmp / "hnsw")
    has_late = late is not None and n > 0
    if has_late:
        from winnow.index.late import PART
        from winnow.index.multivector import MultiVectorPart

        if rows.late is None or len(rows.late.lengths) != n:
            raise IncompatibleIndexError(f"segment {name}: late interaction needs token vectors for each of its {n} rows")
        MultiVectorPart.write_stored(tmp / PART, rows.late, late.codebook, late.compression)
    write_manifest(tmp, KIND, FORMAT_VERSION, {"rows": n, "dim": dim, "hnsw": graph, "multivector": has_late})
    fsync_tree(tmp)
    os.rename(tmp, target)
    fsync_dir(folder)
    return target


def merged_rows(parts: Sequence[tuple[Segment, np.ndarray]], *, late: "LateCodec | None" = None) -> tuple[SegmentRows, Postings]:
    """The kept rows of several segments as one (``parts``: segment and kept-row mask), in key order
    within each part; and their merged postings (no text is re-read or re-tokenized). With ``late`` the
    kept rows' compressed token vectors are copied too (not re-encoded)."""
    from winnow.index.multivector import StoredTokens

    keys, doc_ids, chunk_idx, vectors, tokens = [], [], [], [], []
    for seg, keep in parts:
        rows = np.flatnonzero(keep)
        keys.append(seg.keys[rows])
        names = [d.decode("utf-8") for d in seg.doc_ids]
        doc_ids.extend(names[i] for i in np.asarray(seg.doc_of)[rows].tolist())
        chunk_idx.append(np.asarray(seg.chunk_idx)[rows])
        vectors.append(np.asarray(seg.vectors)[rows])
        if late is not None and rows.size:
            tokens.append(seg.late_part(late.codebook).stored(rows))
    dim = parts[0][0].dim if parts else 0
    rows = SegmentRows(
        keys=np.concatenate(keys) if keys else np.zeros(0, np.int64),
        doc_ids=doc_ids,
        chunk_idx=np.concatenate(chunk_idx) if chunk_idx else np.zeros(0, np.int32),
        vectors=np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32),
        texts=(),
        late=StoredTokens.concat(tokens) if tokens else None,
    )
    return rows, Postings.merge([(seg.postings, keep) for seg, keep in parts])
