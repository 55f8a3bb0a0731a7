"""The server's collections: one writer and one read snapshot per collection.

A collection is single-writer, so each has one write lock: writes run one at a time (in the request's
worker thread) and answer only after :meth:`Collection.add` has committed (its manifest rename), so an
acknowledged write survives a crash. Reads never wait for writes: they use a snapshot (a
:class:`Collection` opened at the last committed generation, indexes loaded); after each write the
snapshot is replaced by a fresh one, and searches already running finish on the old one.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Callable, TypeVar

from winnow.collection import (
    MANIFEST,
    Collection,
    CollectionInfo,
    check_name,
    collection_info,
    drop_collection,
)
from winnow.errors import CollectionError, CollectionExistsError, CollectionNotFoundError, InvalidArgumentError
from winnow.serve.metrics import Metrics
from winnow.serve.models import ModelRegistry, ServedQueryEncoder

log = logging.getLogger(__name__)

T = TypeVar("T")


class CollectionHandle:
    def __init__(self, name: str, home: Path, registry: ModelRegistry) -> None:
        self.name = name
        self.home = home
        self.registry = registry
        self.write_lock = threading.Lock()
        self._reader: Collection | None = None
        self._writer: Collection | None = None
        self.dropped = False

    def reader(self) -> Collection:
        """The current read snapshot (opened on first use)."""
        reader = self._reader
        if reader is None:
            with self.write_lock:
                self._check_alive()
                if self._reader is None:
                    self._reader = self._open_reader()
                reader = self._reader
        return reader

    def write(self, op: Callable[[Collection], T]) -> T:
        """Run ``op`` on the writer, one write at a time; then publish a new read snapshot."""
        with self.write_lock:
            self._check_alive()
            if self._writer is None:
                self._writer = Collection.open(
                    self.name, home=self.home, encoder_for=lambda model: self.registry.encoder(model, bulk=True)
                )
            try:
                result = op(self._writer)
            except (InvalidArgumentError, CollectionExistsError):  # refused before writing anything
                raise
            except BaseException:
                # A write that failed midway may leave rows of an uncommitted generation in this
                # connection: reopen, which rolls back to the committed generation.
                self._writer.close()
                self._writer = None
                self._reader = self._open_reader()
                raise
            if self._reader is None or self._reader.generation != self._writer.generation:
                self._reader = self._open_reader()
            return result

    def close(self) -> None:
        """Close the writer. Read snapshots are left to the garbage collector: searches may still use them."""
        if self._writer is not None:
            self._writer.close()
        self._writer = self._reader = None

    def _check_alive(self) -> None:
        if self.dropped or not (self.home / self.name / MANIFEST).is_file():
            self.dropped = True
            raise CollectionNotFoundError(f"collection {self.name!r} was deleted")

    def _open_reader(self) -> Collection:
        col = Collection.open(self.name, home=self.home, encoder_for=lambda model: ServedQueryEncoder(self.registry, model))
        return col.load()  # what searches need, now, while this generation's files are certainly there


class CollectionCatalog:
    def __init__(self, home: Path, registry: ModelRegistry, metrics: Metrics) -> None:
        self.home = Path(home)
        self.registry = registry
        self.metrics = metrics
        self._handles: dict[str, CollectionHandle] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        if not self.home.is_dir():
            return []
        return sorted(
            p.name
            for p in self.home.iterdir()
            if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).is_file()
        )

    def get(self, name: str) -> CollectionHandle:
        check_name(name)
        with self._lock:
            handle = self._handles.get(name)
            if handle is not None and not handle.dropped:
                self.metrics.cache_hits.inc("collection")
                return handle
            if not (self.home / name / MANIFEST).is_file():
                known = ", ".join(self.names()) or "none"
                raise CollectionNotFoundError(f"no collection named {name!r} (collections: {known})")
            self.metrics.cache_misses.inc("collection")
            handle = CollectionHandle(name, self.home, self.registry)
            self._handles[name] = handle
            return handle

    def create(self, name: str, *, model: str, window: int, overlap: int) -> CollectionInfo:
        with self._lock:
            col = Collection.create(name, home=self.home, model=model, window=window, overlap=overlap)
            try:
                return col.info()
            finally:
                col.close()

    def infos(self) -> list[CollectionInfo]:
        """Every collection's facts; a damaged one is listed with its ``problem`` (the others are unaffected)."""
        out = []
        for name in self.names():
            try:
                out.append(self.get(name).reader().info())
            except CollectionNotFoundError:  # deleted meanwhile
                continue
            except CollectionError:
                out.append(collection_info(self.home / name))
        return out

    def drop(self, name: str) -> None:
        handle = self.get(name)
        with handle.write_lock:
            handle.dropped = True
            handle.close()
            drop_collection(name, home=self.home)
        with self._lock:
            if self._handles.get(name) is handle:
                del self._handles[name]

    def close(self) -> None:
        with self._lock:
            handles = list(self._handles.values())
            self._handles.clear()
        for h in handles:
            with h.write_lock:
                h.close()
