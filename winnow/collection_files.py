"""A collection on disk, and how it stays whole through crashes.

A collection is a folder::

    manifest.json    format version, model, chunking, the committed generation N, and which
                     segments and tombstone file make up generation N
    store.sqlite     documents and chunks (see winnow.store), rows tagged by generation
    segments/seg-G/  immutable segments (winnow.index.segment), each written by generation G
    dead-N.npy       the keys of generation N's dead chunks (tombstones), where there are any
    codebook-G/      with late interaction: the token vectors' codebook, trained by generation G's write
                     (winnow.index.late)

A write adds one new segment (and a new tombstone file) beside the committed files and then replaces
``manifest.json`` in one atomic rename: that rename is the commit. A process killed at any moment
leaves either the old or the new generation; opening the collection (and every later write, under the
write lock) rolls SQLite back to the generation the manifest names and removes files no manifest
names (:func:`undo_interrupted`). Format 1 (one ``gen-N/`` folder of whole indexes) is upgraded in
place on first open (:mod:`winnow.collection_upgrade`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
from pathlib import Path

from winnow.errors import CollectionDamagedError, CollectionNotFoundError, InvalidArgumentError
from winnow.models.fingerprint import model_fingerprint
from winnow.models.resolve import resolve_model

log = logging.getLogger("winnow.collection")

FORMAT_VERSION = 2
SEGMENTS = "segments"
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


def undo_interrupted(folder: Path, store, manifest: dict) -> None:
    """Under the write lock: drop SQLite rows beyond the committed generation and every file the
    committed manifest does not name (an interrupted write's, or a merge's inputs) (idempotent)."""
    store.rollback_to(int(manifest["generation"]))
    remove_stale(folder, manifest)


def remove_stale(folder: Path, manifest: dict) -> None:
    """Remove the files ``manifest`` does not name: an interrupted write's, or those a commit superseded."""
    for p in stale_files(folder, manifest):
        log.debug("removing %s: the committed manifest does not name it", p)
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def stale_files(folder: Path, manifest: dict) -> list[Path]:
    """Files in a collection folder that its manifest does not name."""
    keep = set(manifest.get("segments") or ())
    codebook = (manifest.get("late_interaction") or {}).get("codebook")
    out = [p for p in folder.iterdir() if p.name.endswith(".tmp") or p.name.startswith("gen-")
           or (p.name.startswith("dead-") and p.name != manifest.get("tombstones"))
           or (p.name.startswith("codebook-") and p.name != codebook)]
    seg_dir = folder / SEGMENTS
    if seg_dir.is_dir():
        out += [p for p in seg_dir.iterdir() if p.name not in keep]
    return sorted(out)


REQUIRED = ("format_version", "model", "chunking", "generation", "counts")
SETTINGS = ("name", "model", "chunking", "index", "store", "late_interaction", "created")  # what the store keeps for a repair


def read_manifest(folder: Path) -> dict:
    """The committed manifest; a missing, truncated or otherwise unreadable one raises
    :class:`CollectionDamagedError` saying what is wrong and how to repair it."""
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CollectionNotFoundError(f"no collection at {folder} (no {MANIFEST})") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise damaged_manifest(folder.name, f"{MANIFEST} is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise damaged_manifest(folder.name, f"{MANIFEST} holds a {type(manifest).__name__}, not an object")
    lacking = [k for k in REQUIRED if k not in manifest]
    if lacking:
        raise damaged_manifest(folder.name, f"{MANIFEST} lacks {', '.join(lacking)}")
    return manifest


def damaged_manifest(name: str, what: str) -> CollectionDamagedError:
    return CollectionDamagedError(
        f"collection {name!r} is damaged: {what}. Rebuild its manifest and indexes from its store with: "
        f"winnow repair {name}"
    )


def repair_settings(manifest: dict) -> dict:
    """The parts of a manifest its store keeps too, so that a lost manifest can be rebuilt."""
    return {k: manifest[k] for k in SETTINGS if k in manifest}


def default_encoder(folder: Path, model: str, backend: str = "auto"):
    """winnow's bi-encoder for a collection's model, with the embedding cache its home shares (re-indexing
    text encoded before costs no model call)."""
    from winnow.encode.bi_encoder import BiEncoder
    from winnow.encode.cache import EmbeddingCache

    return BiEncoder(model, backend=backend, cache=EmbeddingCache(folder.parent / ".cache" / "embeddings.sqlite"))


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
    try:
        store = read_manifest(path).get("store")
    except CollectionDamagedError:
        store = None
    trash = home / f".{name}.deleting.{os.getpid()}"
    os.rename(path, trash)
    shutil.rmtree(trash)
    if store and store.get("kind", "local") != "local":  # the first stage's rows in Milvus go too
        from winnow.index.milvus import MilvusStore, StoreSpec

        remote = MilvusStore(StoreSpec.from_json(store), store["collection"])
        try:
            remote.drop()
        finally:
            remote.close()
    return path

