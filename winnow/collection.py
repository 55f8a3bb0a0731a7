"""A named, persistent, incrementally updatable set of documents with its indexes.

On disk a collection is a folder::

    manifest.json    format version, model, chunking, and the committed generation N
    store.sqlite     documents and chunks (see winnow.store), rows tagged by generation
    gen-N/           the index files of generation N: flat/ (embeddings), hnsw/, bm25/

A write builds ``gen-(N+1)`` beside the committed one and then replaces ``manifest.json`` in one
atomic rename: that rename is the commit. A process killed at any moment leaves either the old or
the new generation; opening the collection (and every later write, under the write lock) rolls SQLite
back to the generation the manifest names and removes leftover files. Readers never wait for the lock:
they re-read the manifest when they build a retriever, so they see other processes' commits.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from winnow.errors import (
    CollectionExistsError,
    CollectionNotFoundError,
    IncompatibleCollectionError,
    InvalidArgumentError,
)
from winnow.models.fingerprint import model_fingerprint
from winnow.models.resolve import DEFAULT_BI_ENCODER, resolve_model
from winnow.limits import MAX_DOCUMENT_CHARS, check_document_sizes
from winnow.storage import fsync_dir, write_json_atomic
from winnow.store import Store, document_hash
from winnow.types import Document, Ranking

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
METHODS = ("bm25", "dense", "hybrid")
DENSE_INDEXES = ("auto", "exact", "hnsw")
EXACT_BELOW = 20_000  # "auto" searches exactly below this many chunks, through HNSW above


def default_home() -> Path:
    """``$WINNOW_HOME``, else ``$XDG_DATA_HOME/winnow``, else ``~/.local/share/winnow``."""
    if os.environ.get("WINNOW_HOME"):
        return Path(os.environ["WINNOW_HOME"]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "winnow"


def check_name(name: str) -> str:
    if not NAME_RE.match(name or ""):
        raise InvalidArgumentError(
            f"invalid collection name {name!r}: use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    path: Path
    model: str
    documents: int
    chunks: int
    generation: int
    window: int
    overlap: int
    updated: str


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


def _fsync_tree(path: Path) -> None:
    for p in sorted(path.rglob("*")):
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
    for d in [path, *(p for p in path.rglob("*") if p.is_dir())]:
        fsync_dir(d)


class Collection:
    """Open with :meth:`open` or :meth:`create`; write with :meth:`add` and :meth:`delete`; search with
    :meth:`search` or build stages with :meth:`retriever`."""

    def __init__(self, path: Path, *, model: str | None = None, encoder_for: Callable[[str], Any] | None = None) -> None:
        """``encoder_for``: builds the bi-encoder from the collection's model name (a server passes one that
        encodes through its batcher); default: winnow's :class:`~winnow.encode.bi_encoder.BiEncoder`."""
        self.path = Path(path)
        self._encoder_for = encoder_for
        self.name = self.path.name
        manifest_path = self.path / MANIFEST
        if not manifest_path.is_file():
            raise CollectionNotFoundError(f"no collection at {self.path} (no {MANIFEST})")
        self.manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        version = self.manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise IncompatibleCollectionError(
                f"collection {self.name!r} has format version {version!r}; this winnow reads version "
                f"{FORMAT_VERSION}. Rebuild it: winnow index PATH --collection {self.name}"
            )
        built_with = self.manifest["model"]["name"]
        if model is not None and not _same_model(self.manifest["model"], model):
            raise IncompatibleCollectionError(
                f"collection {self.name!r} was built with model {built_with!r}, not {model!r}; "
                f"search it with its own model, or index into a new collection for {model!r}"
            )
        self.store = Store(self.path / "store.sqlite")
        self._recover()

    # -- life cycle ----------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        name: str,
        *,
        home: Path | str | None = None,
        model: str = DEFAULT_BI_ENCODER,
        window: int = 256,
        overlap: int = 32,
    ) -> "Collection":
        home = Path(home) if home is not None else default_home()
        path = home / check_name(name)
        if path.exists():
            raise CollectionExistsError(f"collection {name!r} already exists")
        from winnow.corpus.chunking import Chunker

        resolved = resolve_model(model)
        Chunker.for_model(resolved.path, window=window, overlap=overlap)  # validates window/overlap
        home.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=home))
        Store(tmp / "store.sqlite").close()
        now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        write_json_atomic(
            tmp / MANIFEST,
            {
                "format_version": FORMAT_VERSION,
                "name": name,
                "model": {"name": _model_id(resolved), "fingerprint": model_fingerprint(resolved.path)},
                "chunking": {"window": window, "overlap": overlap},
                "generation": 0,
                "dim": None,
                "counts": {"documents": 0, "chunks": 0},
                "created": now,
                "updated": now,
            },
            sort_keys=True,
        )
        os.rename(tmp, path)
        fsync_dir(home)
        log.info("created collection %s at %s", name, path)
        return cls(path)

    @classmethod
    def open(
        cls, name: str, *, home: Path | str | None = None, model: str | None = None,
        encoder_for: Callable[[str], Any] | None = None,
    ) -> "Collection":
        home = Path(home) if home is not None else default_home()
        path = home / check_name(name)
        if not (path / MANIFEST).is_file():
            known = ", ".join(i.name for i in list_collections(home)) or "none"
            raise CollectionNotFoundError(f"no collection named {name!r} in {home} (collections there: {known})")
        return cls(path, model=model, encoder_for=encoder_for)

    @classmethod
    def open_or_create(cls, name: str, *, home: Path | str | None = None, model: str | None = None, **kw):
        home = Path(home) if home is not None else default_home()
        if (home / check_name(name) / MANIFEST).is_file():
            return cls.open(name, home=home, model=model)
        return cls.create(name, home=home, model=model or DEFAULT_BI_ENCODER, **kw)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "Collection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def generation(self) -> int:
        return int(self.manifest["generation"])

    @property
    def model_name(self) -> str:
        return self.manifest["model"]["name"]

    def _gen_dir(self, gen: int) -> Path:
        return self.path / f"gen-{gen}"

    def _refresh(self) -> None:
        """Re-read the manifest; forget loaded indexes if another writer committed a new generation."""
        try:
            manifest = json.loads((self.path / MANIFEST).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CollectionNotFoundError(f"collection {self.name!r} at {self.path} was dropped") from None
        if manifest.get("generation") != self.manifest.get("generation"):
            self._forget_loaded()
        self.manifest = manifest

    def _recover(self) -> None:
        """Undo whatever a killed write left beyond the committed generation.

        Skipped while another writer holds the lock: that writer is alive, so nothing was interrupted,
        and opening (to search, or to list collections) must not wait for a long indexing run."""
        with self._write_lock(wait=False) as held:
            if not held:
                log.debug("collection %s is being written by another process; no recovery needed", self.name)
                return
            # Re-read under the lock: a writer may have committed after __init__ read the manifest, and
            # rolling back to that stale generation would undo its committed write.
            self._refresh()
            self._undo_interrupted()

    def _undo_interrupted(self) -> None:
        """Under the write lock: drop SQLite rows and files beyond the committed generation (idempotent)."""
        gen = self.generation
        self.store.rollback_to(gen)
        for p in self.path.iterdir():
            stale_gen = p.name.startswith("gen-") and p.name != f"gen-{gen}"
            if stale_gen or p.name.endswith(".tmp"):
                log.info("removing leftover %s from an interrupted write", p)
                shutil.rmtree(p) if p.is_dir() else p.unlink()

    @contextlib.contextmanager
    def _write_lock(self, *, wait: bool = True):
        """Hold the collection's write lock; yields whether it is held (with ``wait=False`` it is not
        when another writer has it)."""
        with open(self.path / ".lock", "w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # -- models --------------------------------------------------------------------------------
    backend: str = "auto"  # the bi-encoder's backend (see use_backend); never recorded in the collection

    def use_backend(self, backend: str) -> "Collection":
        """Encode with ``backend`` (auto, torch, onnx, onnx-int8) from now on. All give near-identical
        vectors (int8 ones differ slightly), so a collection may be written and searched with any."""
        from winnow.models.export import check_backend

        self.backend = check_backend(backend)
        self.__dict__.pop("encoder", None)
        return self

    @cached_property
    def encoder(self):
        if self._encoder_for is not None:
            return self._encoder_for(self.model_name)
        from winnow.encode.bi_encoder import BiEncoder
        from winnow.encode.cache import EmbeddingCache

        # shared by the collections of this home: re-indexing text encoded before costs no model call
        cache = EmbeddingCache(self.path.parent / ".cache" / "embeddings.sqlite")
        return BiEncoder(self.model_name, backend=self.backend, cache=cache)

    @cached_property
    def chunker(self):
        from winnow.corpus.chunking import Chunker

        c = self.manifest["chunking"]
        return Chunker.for_model(resolve_model(self.model_name).path, window=c["window"], overlap=c["overlap"])

    # -- writing -------------------------------------------------------------------------------
    def add(
        self, documents: Iterable[Document], *, upsert: bool = True, progress: bool = False,
        max_chars: int = MAX_DOCUMENT_CHARS,
    ) -> WriteReport:
        """Add documents; with ``upsert`` (default) a known id with new content replaces the old
        version (the report counts them as ``updated``), otherwise a known id is an error. Identical
        documents are skipped. A document over ``max_chars`` characters is refused before anything is
        written (:mod:`winnow.limits`)."""
        docs = list(documents)
        _check_documents(docs)
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
        vectors = _gather_vectors(live_keys, new_keys, new_vectors, old_flat)
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
        _fsync_tree(tmp)
        os.rename(tmp, self._gen_dir(gen))
        fsync_dir(self.path)

    # -- reading -------------------------------------------------------------------------------
    def _load_flat(self, gen: int):
        from winnow.index.flat import FlatIndex

        path = self._gen_dir(gen) / "flat"
        return FlatIndex.load(path) if path.is_dir() else None

    def load(self) -> "Collection":
        """Load what searches read (chunk map, BM25, and the dense index ``dense_index="auto"`` uses) now,
        while this generation's files are certainly there; returns the collection."""
        self.keymap
        self.bm25_index
        self.hnsw_index if self._auto_uses_hnsw() else self.flat_index
        return self

    def warm_up(self, method: str = "hybrid") -> "Collection":
        """:meth:`load`, and load the bi-encoder where ``method`` encodes queries (not for bm25)."""
        self.load()
        if method != "bm25":
            self.encoder.encode_queries(["load the bi-encoder now"])
        return self

    def _auto_uses_hnsw(self) -> bool:
        return len(self.keymap) >= EXACT_BELOW

    def similarities(self, queries: Sequence[str], doc_ids: Sequence[Sequence[str]]) -> list[list[float]]:
        """Exact dense similarity of each query with each of its documents (the best of the document's
        chunks), whether or not a search would rank them: ``out[i][j]`` is query i with ``doc_ids[i][j]``."""
        flat = self.flat_index
        vectors = np.asarray(flat.vectors)
        rows: dict[str, list[int]] = {}
        for row, key in enumerate(np.asarray(flat.keys).tolist()):
            doc_id, _ = self.keymap[int(key)]
            rows.setdefault(doc_id, []).append(row)
        unknown = sorted({d for ids in doc_ids for d in ids} - rows.keys())
        if unknown:
            raise InvalidArgumentError(f"{len(unknown)} document id(s) not in collection {self.name!r}: {unknown[:5]}")
        q = self.encoder.encode_queries(list(queries))
        return [[float(np.max(vectors[rows[d]] @ q[i])) for d in ids] for i, ids in enumerate(doc_ids)]

    def _forget_loaded(self) -> None:
        for attr in ("flat_index", "hnsw_index", "bm25_index", "keymap", "metadata_map"):
            self.__dict__.pop(attr, None)

    @cached_property
    def flat_index(self):
        return self._load_flat(self.generation)

    @cached_property
    def hnsw_index(self):
        from winnow.index.hnsw import HNSWIndex

        path = self._gen_dir(self.generation) / "hnsw"
        return HNSWIndex.load(path) if path.is_dir() else None

    @cached_property
    def bm25_index(self):
        from winnow.index.bm25 import BM25Index

        path = self._gen_dir(self.generation) / "bm25"
        return BM25Index.load(path) if path.is_dir() else None

    @cached_property
    def keymap(self) -> dict[int, tuple[str, int]]:
        return {c.key: (c.doc_id, c.index) for c in self.store.live_chunks(self.generation)}

    @cached_property
    def metadata_map(self) -> dict[str, dict]:
        """Every live document's metadata by id (read once per generation, for filters)."""
        return self.store.live_metadata(self.generation)

    def matching_ids(self, filter: dict) -> frozenset[str]:
        """Ids of the documents whose metadata matches ``filter`` (see :mod:`winnow.retrieve.filters`)."""
        from winnow.retrieve.filters import check_filter, matches

        normal = check_filter(filter)
        return frozenset(doc_id for doc_id, md in self.metadata_map.items() if matches(normal, md))

    def __len__(self) -> int:
        return int(self.manifest["counts"]["documents"])

    def info(self) -> CollectionInfo:
        c = self.manifest
        return CollectionInfo(
            name=self.name,
            path=self.path,
            model=self.model_name,
            documents=c["counts"]["documents"],
            chunks=c["counts"]["chunks"],
            generation=c["generation"],
            window=c["chunking"]["window"],
            overlap=c["chunking"]["overlap"],
            updated=c["updated"],
        )

    def get(self, ids: Sequence[str]) -> dict[str, Document]:
        return self.store.documents(self.generation, list(ids))

    def retriever(
        self, method: str = "hybrid", *, dense_index: str = "auto", fusion: str = "rrf", filter: dict | None = None
    ):
        """The first stage for ``method`` (bm25, dense or hybrid) over this collection.

        With ``filter`` (metadata conditions, see :mod:`winnow.retrieve.filters`) every leg returns only
        matching documents, filtered before its top-k."""
        from winnow.retrieve.dense import DenseRetriever
        from winnow.retrieve.hybrid import HybridRetriever
        from winnow.retrieve.lexical import BM25Retriever

        if method not in METHODS:
            raise InvalidArgumentError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")
        if dense_index not in DENSE_INDEXES:
            raise InvalidArgumentError(
                f"unknown dense index {dense_index!r}; choose one of: {', '.join(DENSE_INDEXES)}"
            )
        self._refresh()  # a long-lived reader picks up generations other processes committed
        n_docs = len(self)
        allowed = self.matching_ids(filter) if filter is not None else None
        if method == "bm25":
            return BM25Retriever(_or_empty(self.bm25_index), self.keymap, n_docs=n_docs, allowed=allowed)
        use_hnsw = dense_index == "hnsw" or (dense_index == "auto" and self._auto_uses_hnsw())
        index = self.hnsw_index if use_hnsw else self.flat_index
        dense = DenseRetriever(self.encoder, _or_empty(index), self.keymap, n_docs=n_docs, allowed=allowed)
        if method == "dense":
            return dense
        lexical = BM25Retriever(_or_empty(self.bm25_index), self.keymap, n_docs=n_docs, allowed=allowed)
        return HybridRetriever([lexical, dense], fusion=fusion)

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

    def search(
        self,
        query: str,
        *,
        method: str = "hybrid",
        top_k: int = 10,
        depth: int = 100,
        reranker=None,
        dense_index: str = "auto",
        filter: dict | None = None,
    ) -> Ranking:
        """First stage (and reranker, if given) for one query: a hydrated :class:`Ranking`.

        ``filter`` keeps only documents whose metadata matches, e.g. ``{"lang": "en", "year": {"$in": [2024]}}``."""
        from winnow.pipeline import Pipeline

        pipeline = Pipeline(
            self.retriever(method, dense_index=dense_index, filter=filter),
            reranker,
            depth=depth,
            top_k=top_k,
            hydrate=self.hydrate,
        )
        return pipeline.search(query)


def _model_id(resolved) -> str:
    """The model name a manifest records: a local folder as its absolute path (so the collection can be
    searched from any working directory), anything else by its resolved id."""
    return str(resolved.path) if resolved.source == "local" else resolved.name


def _same_model(recorded: dict, model: str) -> bool:
    """Whether ``model`` is the model a manifest recorded: same id, or the same weights under another name."""
    resolved = resolve_model(model)
    if _model_id(resolved) == recorded["name"]:
        return True
    return recorded.get("fingerprint") is not None and model_fingerprint(resolved.path) == recorded["fingerprint"]


class _EmptyIndex:
    def __len__(self) -> int:
        return 0


def _or_empty(index):
    return index if index is not None else _EmptyIndex()


def _gather_vectors(live_keys: np.ndarray, new_keys: np.ndarray, new_vectors: np.ndarray, old_flat) -> np.ndarray:
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


def _check_documents(docs: Sequence[Document]) -> None:
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


def list_collections(home: Path | str | None = None) -> list[CollectionInfo]:
    home = Path(home) if home is not None else default_home()
    if not home.is_dir():
        return []
    out = []
    for p in sorted(home.iterdir()):
        if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).is_file():
            with Collection(p) as c:
                out.append(c.info())
    return out


def drop_collection(name: str, *, home: Path | str | None = None) -> Path:
    """Delete a collection folder (renamed away first, so a crash never leaves half of one)."""
    home = Path(home) if home is not None else default_home()
    path = home / check_name(name)
    if not (path / MANIFEST).is_file():
        raise CollectionNotFoundError(f"no collection named {name!r} in {home}")
    trash = home / f".{name}.deleting.{os.getpid()}"
    os.rename(path, trash)
    shutil.rmtree(trash)
    return path
