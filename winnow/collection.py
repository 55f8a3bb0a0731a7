"""A named, persistent, incrementally updatable set of documents with its indexes.

On disk a collection is a folder of ``manifest.json``, ``store.sqlite``, immutable segments (one per
write, folded together by merges) and a tombstone file of dead chunks; a write adds a segment beside
the committed ones and commits by renaming the manifest into place, so a crash leaves the old or the
new state (the layout and recovery: :mod:`winnow.collection_files`). Readers never wait for the write
lock: they re-read the manifest when they build a retriever, so they see other processes' commits,
and a reader keeps the generation it loaded until then.

The parts live beside this module: :mod:`winnow.collection_files` (layout, lock, recovery),
:mod:`winnow.collection_write` (the write path), :mod:`winnow.collection_merge` (merges),
:mod:`winnow.collection_read` (the loaded segments of one generation), :mod:`winnow.collection_check`
(check and repair) and :mod:`winnow.collection_upgrade` (older formats); this module is the
collection's life cycle and query API.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Sequence

from winnow.collection_files import (
    FORMAT_VERSION,
    MANIFEST,
    NAME_RE,
    check_name,
    default_encoder,
    default_home,
    drop_collection,
    model_id,
    read_manifest,
    repair_settings,
    same_model,
    undo_interrupted,
    write_lock,
)
from winnow.collection_merge import MergePath
from winnow.collection_read import EXACT_BELOW, ReadSnapshot
from winnow.collection_upgrade import UPGRADABLE, upgrade
from winnow.collection_write import WritePath, WriteReport
from winnow.errors import (
    CollectionError,
    CollectionExistsError,
    CollectionNotFoundError,
    IncompatibleCollectionError,
    InvalidArgumentError,
)
from winnow.models.fingerprint import model_fingerprint
from winnow.models.resolve import DEFAULT_BI_ENCODER, resolve_model
from winnow.storage import fsync_dir, write_json_atomic
from winnow.store import Store
from winnow.types import Document, Ranking

# the names importers know, from the modules the parts live in
__all__ = [
    "Collection", "CollectionInfo", "WriteReport", "list_collections", "collection_info", "drop_collection", "default_home",
    "check_name", "MANIFEST", "NAME_RE", "FORMAT_VERSION", "EXACT_BELOW", "METHODS", "DENSE_INDEXES",
]

log = logging.getLogger(__name__)

METHODS = ("bm25", "dense", "hybrid", "late")  # late: MaxSim over stored token vectors (collections with late interaction)
DENSE_INDEXES = ("auto", "exact", "hnsw")


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
    created: str = ""
    segments: int = 0
    tombstones: int = 0  # dead chunks still held by segments, until a merge purges them
    store: str = "local"  # where the first stage lives: local segments, milvus-lite or milvus
    late_interaction: str | None = None  # the ColBERT model whose token vectors it keeps, and how: "MODEL (residual-2)"
    problem: str | None = None  # set where the collection is damaged: what is wrong and how to repair it



class Collection(ReadSnapshot, WritePath, MergePath):
    """Open with :meth:`open` or :meth:`create`; write with :meth:`add` and :meth:`delete`; search with
    :meth:`search` or build stages with :meth:`retriever`."""

    def __init__(self, path: Path, *, model: str | None = None, encoder_for: Callable[[str], Any] | None = None) -> None:
        """``encoder_for``: builds the bi-encoder from the collection's model name (a server passes one that
        encodes through its batcher); default: winnow's :class:`~winnow.encode.bi_encoder.BiEncoder`."""
        self.path = Path(path)
        self._encoder_for = encoder_for
        self.name = self.path.name
        self.manifest = read_manifest(self.path)
        version = self.manifest.get("format_version")
        if version not in (FORMAT_VERSION, *UPGRADABLE):
            raise IncompatibleCollectionError(
                f"collection {self.name!r} has format version {version!r}; this winnow reads versions "
                f"{', '.join(map(str, (*UPGRADABLE, FORMAT_VERSION)))}. Rebuild it: winnow index PATH --collection {self.name}"
            )
        built_with = self.manifest["model"]["name"]
        if model is not None and not same_model(self.manifest["model"], model):
            raise IncompatibleCollectionError(
                f"collection {self.name!r} was built with model {built_with!r}, not {model!r}; "
                f"search it with its own model, or index into a new collection for {model!r}"
            )
        self.store = Store(self.path / "store.sqlite")
        if version != FORMAT_VERSION:
            upgrade(self)
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
        hnsw_min_rows: int = EXACT_BELOW,
        store: str | None = None,
        late_interaction: str | None = None,
        compression: str | None = None,
    ) -> "Collection":
        """``hnsw_min_rows``: segments of at least this many chunks get an HNSW graph (dense "auto"
        walks it); smaller ones are searched exactly. ``store``: where the first stage lives: local
        segments (default), ``milvus-lite:PATH`` or ``milvus://HOST:PORT`` (:mod:`winnow.index.milvus`).
        ``late_interaction``: a ColBERT model (``winnow train colbert``; a folder or a shipped name) whose
        token vectors every chunk keeps, compressed as ``compression`` (default residual-2), for the
        ``late`` first stage and :meth:`late_reranker` (:mod:`winnow.index.late`)."""
        from winnow.index.milvus import StoreKind, StoreSpec

        spec = StoreSpec.parse(store)
        late = _late_settings(late_interaction, compression)
        if late is not None and spec.kind is not StoreKind.LOCAL:
            raise InvalidArgumentError(
                f"late interaction keeps token vectors in local segments; a collection in {spec.kind.value} cannot have them "
                f"(leave out --late-interaction, or --store)"
            )
        home = Path(home) if home is not None else default_home()
        if isinstance(hnsw_min_rows, bool) or not isinstance(hnsw_min_rows, int) or hnsw_min_rows < 1:
            raise InvalidArgumentError(f"hnsw_min_rows must be an integer >= 1, got {hnsw_min_rows!r}")
        path = home / check_name(name)
        if path.exists():
            raise CollectionExistsError(f"collection {name!r} already exists")
        from winnow.corpus.chunking import Chunker

        resolved = resolve_model(model)
        Chunker.for_model(resolved.path, window=window, overlap=overlap)  # validates window/overlap
        home.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=home))
        now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        manifest = {
            "format_version": FORMAT_VERSION,
            "name": name,
            "model": {"name": model_id(resolved), "fingerprint": model_fingerprint(resolved.path)},
            "chunking": {"window": window, "overlap": overlap},
            "index": {"hnsw_min_rows": int(hnsw_min_rows)},
            "store": {**spec.to_json(), "collection": remote_name(name, tmp.name)},
            "generation": 0,
            "dim": None,
            "counts": {"documents": 0, "chunks": 0},
            "segments": [],
            "tombstones": None,
            **({"late_interaction": late.to_json()} if late is not None else {}),
            "created": now,
            "updated": now,
        }
        store = Store(tmp / "store.sqlite")
        store.save_settings(repair_settings(manifest))  # what winnow repair needs if the manifest is lost
        store.close()
        write_json_atomic(tmp / MANIFEST, manifest, sort_keys=True)
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
    def open_or_create(
        cls, name: str, *, home: Path | str | None = None, model: str | None = None,
        encoder_for: Callable[[str], Any] | None = None, **kw,
    ):
        """``encoder_for`` as for :meth:`open`; ``kw`` go to :meth:`create`."""
        home = Path(home) if home is not None else default_home()
        if (home / check_name(name) / MANIFEST).is_file():
            return cls.open(name, home=home, model=model, encoder_for=encoder_for)
        created = cls.create(name, home=home, model=model or DEFAULT_BI_ENCODER, **kw)
        created._encoder_for = encoder_for
        return created

    def close(self) -> None:
        self.store.close()
        remote = self.__dict__.get("remote")
        if remote is not None:
            remote.close()

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

    def _refresh(self) -> None:
        """Re-read the manifest; forget loaded indexes if another writer committed a new generation."""
        if not (self.path / MANIFEST).exists():
            raise CollectionNotFoundError(f"collection {self.name!r} at {self.path} was dropped")
        manifest = read_manifest(self.path)
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
        undo_interrupted(self.path, self.store, self.manifest)
        if self.remote is not None:  # an interrupted write's rows, and retired rows a commit did not get to delete
            self.remote.delete_after(self.generation)
            self.remote.delete_keys(self._tombstones().keys)


    def _write_lock(self, *, wait: bool = True):
        return write_lock(self.path, wait=wait)

    # -- models --------------------------------------------------------------------------------
    backend: str = "auto"  # the bi-encoder's backend (see use_backend); never recorded in the collection
    _codebook: tuple | None = None  # (name, Codebook) of the late-interaction codebook, once loaded
    _late_rerankers: dict = {}  # use_mix -> the stored-vector reranker (a new dict per collection when set)

    def use_backend(self, backend: str) -> "Collection":
        """Encode with ``backend`` (auto, torch, onnx, onnx-int8) from now on. All give near-identical
        vectors (int8 ones differ slightly), so a collection may be written and searched with any."""
        from winnow.models.backends import check_backend

        self.backend = check_backend(backend)
        self.__dict__.pop("encoder", None)
        return self

    @cached_property
    def encoder(self):
        if self._encoder_for is not None:
            return self._encoder_for(self.model_name)
        return default_encoder(self.path, self.model_name, self.backend)

    @property
    def late_settings(self):
        """The collection's late-interaction settings (:class:`~winnow.index.late.LateSettings`), or None."""
        from winnow.index.late import LateSettings

        return LateSettings.from_manifest(self.manifest)

    @cached_property
    def late_encoder(self):
        """The ColBERT encoder the collection's token vectors come from (a typed error without late interaction)."""
        from winnow.encode.colbert import ColBERTEncoder

        return ColBERTEncoder(self._require_late().model)

    def _require_late(self):
        settings = self.late_settings
        if settings is None:
            raise InvalidArgumentError(
                f"collection {self.name!r} keeps no token vectors: the late first stage and late reranker need a "
                f"collection created with late interaction (winnow index PATH --collection NEW --late-interaction MODEL)"
            )
        return settings

    @cached_property
    def chunker(self):
        from winnow.corpus.chunking import Chunker

        c = self.manifest["chunking"]
        return Chunker.for_model(resolve_model(self.model_name).path, window=c["window"], overlap=c["overlap"])

    def __len__(self) -> int:
        return int(self.manifest["counts"]["documents"])

    def info(self) -> CollectionInfo:
        c = self.manifest
        late = self.late_settings
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
            created=c.get("created", ""),
            store=(c.get("store") or {}).get("kind", "local"),
            segments=len(c.get("segments") or ()),
            tombstones=int(c["counts"].get("tombstones", 0)),
            late_interaction=None if late is None else f"{late.model} ({late.compression.value})",
        )

    def get(self, ids: Sequence[str]) -> dict[str, Document]:
        return self.store.documents(self.generation, list(ids))

    def retriever(
        self, method: str = "hybrid", *, dense_index: str = "auto", fusion: str = "rrf", filter: dict | None = None
    ):
        """The first stage for ``method`` (bm25, dense, hybrid, or late: PLAID-style candidates from the stored
        token vectors' centroids, scored by exact MaxSim) over this collection.

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
        from winnow.index.segments import DenseMode

        self._refresh()  # a long-lived reader picks up generations other processes committed
        n_docs = len(self)
        allowed = self.matching_ids(filter) if filter is not None else None
        segments = self.segment_set
        keymap = segments.keymap
        where = None
        if filter is not None:
            from winnow.retrieve.filters import check_filter

            where = check_filter(filter)
        if method == "late":
            from winnow.retrieve.late import LateRetriever

            return LateRetriever(self.late_encoder, self.late_view(allowed), keymap, n_docs=n_docs, allowed=allowed)
        lexical = BM25Retriever(segments.lexical(allowed, where), keymap, n_docs=n_docs, allowed=allowed)
        if method == "bm25":
            return lexical
        dense_view = segments.dense(DenseMode(dense_index), allowed, where)
        dense = DenseRetriever(self.encoder, dense_view, keymap, n_docs=n_docs, allowed=allowed)
        if method == "dense":
            return dense
        return HybridRetriever([lexical, dense], fusion=fusion)

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
        reading=None,
        budget=None,
        first_stage_calibrator=None,
    ) -> Ranking:
        """First stage (and reranker, if given) for one query: a hydrated :class:`Ranking`.

        ``filter`` keeps only documents whose metadata matches, e.g. ``{"lang": "en", "year": {"$in": [2024]}}``.
        ``reading`` and ``budget``: how the rerank stage reads long candidates (default: the reranker's own
        :class:`~winnow.rerank.reading.Reading`; one that reads windows gets whole documents) and the time it
        may take (:class:`~winnow.rerank.budget.Budget`), see :class:`~winnow.pipeline.Pipeline`.
        ``first_stage_calibrator``: probabilities for a search without a reranker
        (:meth:`first_stage_calibrator` gives the shipped one for a method)."""
        from winnow.pipeline import Pipeline

        pipeline = Pipeline(
            self.retriever(method, dense_index=dense_index, filter=filter),
            reranker,
            depth=depth,
            top_k=top_k,
            hydrate=self.hydrate,
            reading=reading,
            budget=budget,
            documents=self.get,
            first_stage_calibrator=first_stage_calibrator,
        )
        return pipeline.search(query)

    def late_reranker(self, *, use_mix: bool = True):
        """A reranker of any first stage's candidates by exact MaxSim over this collection's stored token
        vectors (nothing re-encoded but the query); a document scores its best live chunk. Where the ColBERT
        model ships a fitted mix (``fusion.json``) it orders by the mix with the first stage, as trained
        rerankers do; ``use_mix=False``: MaxSim alone."""
        from winnow.rerank.colbert import StoredMaxSimReranker

        self._require_late()
        if use_mix not in self._late_rerankers:  # made once: a server asks on every search
            self._late_rerankers = {**self._late_rerankers, use_mix: StoredMaxSimReranker(self, use_mix=use_mix)}
        return self._late_rerankers[use_mix]

    def late_view(self, allowed: frozenset[str] | None = None):
        """The generation's token-vector parts with their live (and allowed) rows."""
        from winnow.index.late import LateView

        segments = self.segment_set
        return LateView(segments, segments.masks(allowed), self.late_codebook())

    def late_codebook(self):
        """The codebook the collection's token vectors are coded against (loaded once)."""
        from winnow.index.residual import Codebook

        name = self._require_late().codebook
        if name is None:
            raise InvalidArgumentError(f"collection {self.name!r} holds no documents yet: add some before a late search")
        if self._codebook is None or self._codebook[0] != name:
            self._codebook = (name, Codebook.load(self.path / name))
        return self._codebook[1]

    def _late_codec(self):
        """The codec later segments are written with (None without late interaction or before the first write)."""
        from winnow.index.late import LateCodec

        settings = self.late_settings
        if settings is None or settings.codebook is None:
            return None
        return LateCodec(self.late_codebook(), settings.compression)

    def first_stage_calibrator(self, method: str):
        """The shipped calibrator of ``method``'s scores (from the default reranker's ``calibration.json``),
        for first-stage-only searches; a typed error where there is none or it does not fit this collection."""
        from winnow.rerank.calibration import first_stage_calibrator
        from winnow.types import FirstStage

        try:
            stage = FirstStage(method)
        except ValueError:
            raise InvalidArgumentError(f"unknown method {method!r}; choose one of: {', '.join(s.value for s in FirstStage)}") from None
        return first_stage_calibrator(stage, bi_encoder=self.model_name)



def _late_settings(model: str | None, compression: str | None):
    """The manifest's late-interaction entry for a new collection (None without a model)."""
    from winnow.index.late import DEFAULT_COMPRESSION, LateSettings
    from winnow.index.residual import Compression

    if model is None:
        if compression is not None:
            raise InvalidArgumentError("compression sets how late-interaction token vectors are stored: give a late_interaction model too")
        return None
    from winnow.encode.colbert import read_config

    resolved = resolve_model(model)
    read_config(resolved.path)  # a ColBERT folder, or a typed error saying what it is not
    comp = Compression.parse(compression) if compression is not None else DEFAULT_COMPRESSION
    return LateSettings(model_id(resolved), model_fingerprint(resolved.path), comp)


def remote_name(name: str, salt: str) -> str:
    """A Milvus collection name for winnow collection ``name`` (letters, digits, underscores), unique
    per creation so that a dropped and recreated collection never meets its predecessor's rows."""
    import hashlib
    import re

    return f"winnow_{re.sub(r'[^A-Za-z0-9_]', '_', name)}_{hashlib.sha1(salt.encode()).hexdigest()[:8]}"


def list_collections(home: Path | str | None = None) -> list[CollectionInfo]:
    """Every collection in ``home``; a damaged one is listed with its ``problem`` and never stops the
    others from being listed."""
    home = Path(home) if home is not None else default_home()
    if not home.is_dir():
        return []
    out = []
    for p in sorted(home.iterdir()):
        if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).is_file():
            out.append(collection_info(p))
    return out


def collection_info(path: Path) -> CollectionInfo:
    """The collection's facts, or a :class:`CollectionInfo` naming its problem where it cannot be read."""
    try:
        with Collection(path) as c:
            c.segment_set  # a missing or unreadable segment shows here
            return c.info()
    except (CollectionError, OSError) as exc:
        return CollectionInfo(
            name=path.name, path=path, model="", documents=0, chunks=0, generation=0, window=0, overlap=0,
            updated="", problem=str(exc),
        )

