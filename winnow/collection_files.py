"""A collection on disk, and how it stays whole through crashes.

A collection is a folder::

    manifest.json    format version, model, chunking, and the committed generation N
    store.sqlite     documents and chunks (see winnow.store), rows tagged by generation
    gen-N/           the index files of generation N: flat/ (embeddings), hnsw/, bm25/

A write builds ``gen-(N+1)`` beside the committed one and then replaces ``manifest.json`` in one
atomic rename: that rename is the commit. A process killed at any moment leaves either the old or
the new generation; opening the collection (and every later write, under the write lock) rolls SQLite
back to the generation the manifest names and removes leftover files (:func:`undo_interrupted`).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
from pathlib import Path

from winnow.errors import CollectionNotFoundError, InvalidArgumentError
from winnow.models.fingerprint import model_fingerprint
from winnow.models.resolve import resolve_model
from winnow.storage import fsync_dir

log = logging.getLogger("winnow.collection")

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


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



def fsync_tree(path: Path) -> None:
    """Sync every file and folder under ``path`` (a generation built beside the committed one)."""
    for p in sorted(path.rglob("*")):
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
    for d in [path, *(p for p in path.rglob("*") if p.is_dir())]:
        fsync_dir(d)



@contextlib.contextmanager
def write_lock(folder: Path, *, wait: bool = True):
    """Hold a collection's write lock; yields whether it is held (with ``wait=False`` it is not when
    another writer has it)."""
    with open(folder / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def undo_interrupted(folder: Path, store, gen: int) -> None:
    """Under the write lock: drop SQLite rows and files beyond the committed generation ``gen`` (idempotent)."""
    store.rollback_to(gen)
    for p in folder.iterdir():
        stale_gen = p.name.startswith("gen-") and p.name != f"gen-{gen}"
        if stale_gen or p.name.endswith(".tmp"):
            log.info("removing leftover %s from an interrupted write", p)
            shutil.rmtree(p) if p.is_dir() else p.unlink()


def model_id(resolved) -> str:
    """The model name a manifest records: a local folder as its absolute path (so the collection can be
    searched from any working directory), anything else by its resolved id."""
    return str(resolved.path) if resolved.source == "local" else resolved.name


def same_model(recorded: dict, model: str) -> bool:
    """Whether ``model`` is the model a manifest recorded: same id, or the same weights under another name."""
    resolved = resolve_model(model)
    if model_id(resolved) == recorded["name"]:
        return True
    return recorded.get("fingerprint") is not None and model_fingerprint(resolved.path) == recorded["fingerprint"]


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

