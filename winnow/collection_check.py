"""``winnow check`` and ``winnow repair``: finding a collection damaged from outside, and rebuilding it.

A check reads everything a search would (the manifest, every segment, the tombstones) and compares the
segments' live chunks with the store's, naming each problem and the command that repairs it. A repair,
under the write lock, rebuilds a collection from its store, the one file that holds the documents:
the manifest from the settings the store keeps beside it (model, chunking) where the manifest is lost,
and one fresh segment of every live chunk, its vectors taken from whatever segment still holds them and
encoded again (through the embedding cache) for the rest. It commits like any write, so a repair killed
midway leaves the collection as damaged as it was, never worse.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from winnow.errors import CollectionDamagedError, IncompatibleCollectionError


@dataclass(frozen=True)
class CheckReport:
    name: str
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class RepairReport:
    name: str
    chunks: int
    vectors_reused: int
    vectors_encoded: int
    manifest_rebuilt: bool
    generation: int
    seconds: float


def check_collection(path: Path) -> CheckReport:
    """Every problem found in the collection at ``path`` (none: it is whole)."""
    from winnow.collection_files import FORMAT_VERSION, SEGMENTS, read_manifest
    from winnow.index.base import IncompatibleIndexError
    from winnow.index.segment import Segment
    from winnow.store import Store

    name = Path(path).name
    repair = f"repair it with: winnow repair {name}"
    try:
        manifest = read_manifest(Path(path))
    except CollectionDamagedError as exc:
        return CheckReport(name, (str(exc),))
    if manifest["format_version"] != FORMAT_VERSION:
        return CheckReport(name, ())  # an older format: upgraded (and checked) when next opened
    if (manifest.get("store") or {}).get("kind", "local") != "local":
        return CheckReport(name, ())  # its first stage lives in Milvus, which keeps its own files whole
    problems = []
    segments = []
    for seg_name in manifest.get("segments") or ():
        folder = Path(path) / SEGMENTS / seg_name
        if not folder.is_dir():
            problems.append(f"segment folder {SEGMENTS}/{seg_name} is missing; {repair}")
            continue
        try:
            seg = Segment(folder)
            seg.postings, seg.hnsw  # everything a search reads
            segments.append(seg)
        except (IncompatibleIndexError, OSError, ValueError) as exc:
            problems.append(f"segment {seg_name} cannot be read ({exc}); {repair}")
    problems += _late_problems(Path(path), manifest, segments, repair)
    dead = manifest.get("tombstones")
    tombstones = np.zeros(0, np.int64)
    if dead:
        try:
            tombstones = np.load(Path(path) / dead, allow_pickle=False)
        except (OSError, ValueError) as exc:
            problems.append(f"tombstone file {dead} cannot be read ({exc}); {repair}")
    if problems:
        return CheckReport(name, tuple(problems))
    store = Store(Path(path) / "store.sqlite")
    try:
        gen = int(manifest["generation"])
        stored = np.asarray(sorted(c.key for c in store.live_chunks(gen)), dtype=np.int64)
        held = np.concatenate([s.keys for s in segments]) if segments else np.zeros(0, np.int64)
        live = np.sort(held[~np.isin(held, tombstones)])
        if not np.array_equal(stored, live):
            lost = np.setdiff1d(stored, live).size
            extra = np.setdiff1d(live, stored).size
            problems.append(f"the segments hold {live.size} live chunks, the store {stored.size} "
                            f"({lost} missing from the segments, {extra} not in the store); {repair}")
        n_docs = store.count_documents(gen)
        if manifest["counts"].get("documents") != n_docs or manifest["counts"].get("chunks") != stored.size:
            problems.append(f"the manifest counts {manifest['counts']} disagree with the store "
                            f"({n_docs} documents, {stored.size} chunks); {repair}")
    finally:
        store.close()
    return CheckReport(name, tuple(problems))


def repair_collection(path: Path, *, backend: str = "auto", progress: bool = False) -> RepairReport:
    """Rebuild the collection at ``path`` from its store (see the module's notes)."""
    from winnow.collection_files import (
        FORMAT_VERSION, MANIFEST, SEGMENTS, default_encoder, read_manifest, remove_stale, repair_settings, write_lock,
    )
    from winnow.collection_read import EXACT_BELOW
    from winnow.index.segment import Segment, SegmentRows, write_segment
    from winnow.storage import write_json_atomic
    from winnow.store import Store

    path = Path(path)
    name = path.name
    start = time.perf_counter()
    if not (path / "store.sqlite").is_file():
        raise CollectionDamagedError(f"collection {name!r} cannot be repaired: its store.sqlite is missing, and it "
                                     f"holds the documents; drop the folder and index the documents again")
    with write_lock(path):
        store = Store(path / "store.sqlite")
        try:
            try:
                manifest = read_manifest(path)
                rebuilt = False
            except CollectionDamagedError:
                settings = store.settings()
                if "model" not in settings or "chunking" not in settings:
                    raise CollectionDamagedError(
                        f"collection {name!r} cannot be repaired: its manifest is unreadable and its store keeps no "
                        f"settings (written by a winnow before format 2); drop it and index the documents again"
                    ) from None
                now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
                manifest = {"name": name, "created": now, **settings, "generation": _latest_generation(path, store),
                            "counts": {}, "dim": None}
                rebuilt = True
            if (manifest.get("store") or {}).get("kind", "local") != "local":
                raise CollectionDamagedError(
                    f"collection {name!r} keeps its first stage in Milvus ({manifest['store'].get('uri')}); winnow repair "
                    f"rebuilds local segments only: drop the collection and index its documents again"
                )
            gen = int(manifest["generation"])
            store.rollback_to(gen)
            chunks = store.live_chunks(gen)
            texts = dict(store.iter_chunk_contents(gen))
            vectors: dict[int, np.ndarray] = {}
            live_keys = np.asarray([c.key for c in chunks], dtype=np.int64)
            seg_dir = path / SEGMENTS
            for folder in sorted(seg_dir.iterdir()) if seg_dir.is_dir() else ():
                try:
                    seg = Segment(folder)
                except Exception:  # noqa: BLE001 - a damaged segment is what is being repaired
                    continue
                wanted = np.isin(seg.keys, live_keys)
                for row in np.flatnonzero(wanted).tolist():
                    vectors.setdefault(int(seg.keys[row]), np.asarray(seg.vectors[row]))
            todo = [c for c in chunks if c.key not in vectors]
            if todo:
                encoder = default_encoder(path, manifest["model"]["name"], backend)
                fresh = encoder.encode_documents([texts[c.key] for c in todo], progress=progress)
                vectors.update({c.key: v for c, v in zip(todo, fresh)})
            new_gen = gen + 1
            segments = []
            if chunks:
                rows = SegmentRows(
                    keys=np.asarray([c.key for c in chunks], dtype=np.int64),
                    doc_ids=[c.doc_id for c in chunks],
                    chunk_idx=np.asarray([c.index for c in chunks], dtype=np.int32),
                    vectors=np.stack([vectors[c.key] for c in chunks]).astype(np.float32),
                    texts=[texts[c.key] for c in chunks],
                )
                hnsw_min_rows = int((manifest.get("index") or {}).get("hnsw_min_rows", EXACT_BELOW))
                rows, codec = _with_token_vectors(path, manifest, rows, new_gen, progress)
                segments.append(f"seg-{new_gen}")
                write_segment(seg_dir, segments[0], rows, hnsw_min_rows=hnsw_min_rows, late=codec)
            manifest.update(
                format_version=FORMAT_VERSION,
                generation=new_gen,
                segments=segments,
                tombstones=None,
                dim=int(rows.vectors.shape[1]) if chunks else manifest.get("dim"),
                counts={"documents": store.count_documents(gen), "chunks": len(chunks), "tombstones": 0},
                updated=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            )
            manifest.setdefault("index", {"hnsw_min_rows": EXACT_BELOW})
            store.save_settings(repair_settings(manifest))
            write_json_atomic(path / MANIFEST, manifest, sort_keys=True)  # the commit point
            remove_stale(path, manifest)
            return RepairReport(name, len(chunks), len(chunks) - len(todo), len(todo), rebuilt, new_gen,
                                time.perf_counter() - start)
        finally:
            store.close()


def _late_problems(path: Path, manifest: dict, segments, repair: str) -> list[str]:
    """With late interaction: the codebook loads and every segment's token-vector part opens, one row a chunk."""
    from winnow.index.base import IncompatibleIndexError
    from winnow.index.late import LateSettings
    from winnow.index.residual import Codebook

    try:
        settings = LateSettings.from_manifest(manifest)
    except IncompatibleCollectionError as exc:
        return [f"{exc}; {repair}"]
    if settings is None or settings.codebook is None:
        return []
    try:
        codebook = Codebook.load(path / settings.codebook)
    except (OSError, ValueError, KeyError, IncompatibleCollectionError) as exc:
        return [f"late-interaction codebook {settings.codebook} cannot be read ({exc}); {repair}"]
    problems = []
    for seg in segments:
        try:
            part = seg.late_part(codebook)
            part.offsets[-1], part.store[-1:]  # the arrays are whole
        except (IncompatibleIndexError, IncompatibleCollectionError, OSError, ValueError, IndexError) as exc:
            problems.append(f"segment {seg.name}'s token vectors cannot be read ({exc}); {repair}")
    return problems


def _with_token_vectors(path: Path, manifest: dict, rows, gen: int, progress: bool):
    """With late interaction: the rows with every chunk's token vectors encoded again (a repair trusts no
    stored part), coded against the collection's codebook where it still loads, else a new one (named in
    ``manifest``). Without: the rows as they are and no codec."""
    from dataclasses import replace

    from winnow.encode.colbert import ColBERTEncoder
    from winnow.index.late import LateSettings, encode_tokens
    from winnow.index.residual import Codebook

    settings = LateSettings.from_manifest(manifest)
    if settings is None:
        return rows, None
    encoder = ColBERTEncoder(settings.model)
    codebook = None
    if settings.codebook is not None:
        try:
            codebook = Codebook.load(path / settings.codebook)
        except (OSError, ValueError, KeyError, IncompatibleCollectionError):  # unreadable: a new one is trained
            codebook = None
    if codebook is not None and codebook.dim != encoder.dim:
        codebook = None
    encoded = encode_tokens(encoder, rows.texts, settings, codebook, path, gen, progress=progress)
    manifest["late_interaction"] = encoded.settings.to_json()
    return replace(rows, late=encoded.tokens), encoded.codec


def _latest_generation(path: Path, store) -> int:
    """The generation a lost manifest had at least: the store's latest, or a later merge's (merges write
    segments and tombstone files named after their generation, and no store rows)."""
    import re

    from winnow.collection_files import SEGMENTS

    names = [p.name for p in (path / SEGMENTS).iterdir()] if (path / SEGMENTS).is_dir() else []
    names += [p.name for p in path.iterdir()]
    found = [int(m.group(1)) for n in names if (m := re.fullmatch(r"(?:seg-|dead-)(\d+)(?:\.npy)?", n))]
    return max([store.latest_generation(), *found])
