"""Opening collections written by an older winnow: format 1 is upgraded in place, without re-encoding.

Format 1 kept one ``gen-N/`` folder of whole indexes (``flat/`` embeddings, ``hnsw/``, ``bm25/``). The
upgrade reads the embeddings from ``gen-N/flat`` and the chunk texts from the store, writes them as one
segment, and commits a format 2 manifest with the same generation by the usual atomic rename; only
then is ``gen-N/`` removed. A crash before the rename leaves the format 1 collection as it was (the
half-built segment is removed by the next open), after it the upgraded one.
"""

from __future__ import annotations

import logging
import time

import numpy as np

log = logging.getLogger("winnow.collection")

UPGRADABLE = (1,)


def upgrade(col) -> None:
    """Upgrade ``col`` (a :class:`~winnow.collection.Collection` whose manifest is format 1) in place."""
    from winnow.collection_files import FORMAT_VERSION, MANIFEST, SEGMENTS, read_manifest, remove_stale, repair_settings
    from winnow.collection_read import EXACT_BELOW
    from winnow.index.flat import FlatIndex
    from winnow.index.segment import SegmentRows, write_segment
    from winnow.storage import write_json_atomic

    with col._write_lock():
        manifest = read_manifest(col.path)
        if manifest.get("format_version") == FORMAT_VERSION:  # another process upgraded it meanwhile
            col.manifest = manifest
            return
        start = time.perf_counter()
        gen = int(manifest["generation"])
        col.store.rollback_to(gen)  # what format 1's recovery did first
        segments = []
        flat_dir = col.path / f"gen-{gen}" / "flat"
        chunks = col.store.live_chunks(gen)
        if chunks:
            flat = FlatIndex.load(flat_dir, mmap=True)
            row_of = {int(k): i for i, k in enumerate(np.asarray(flat.keys).tolist())}
            texts = dict(col.store.iter_chunk_contents(gen))
            keys = np.asarray([c.key for c in chunks], dtype=np.int64)
            rows = SegmentRows(
                keys=keys,
                doc_ids=[c.doc_id for c in chunks],
                chunk_idx=np.asarray([c.index for c in chunks], dtype=np.int32),
                vectors=np.asarray(flat.vectors)[[row_of[int(k)] for k in keys.tolist()]],
                texts=[texts[c.key] for c in chunks],
            )
            name = f"seg-{gen}"
            write_segment(col.path / SEGMENTS, name, rows, hnsw_min_rows=EXACT_BELOW)
            segments.append(name)
        manifest.update(
            format_version=FORMAT_VERSION,
            segments=segments,
            tombstones=None,
            index={"hnsw_min_rows": EXACT_BELOW},
            counts={**manifest["counts"], "tombstones": 0},
        )
        col.store.save_settings(repair_settings(manifest))
        write_json_atomic(col.path / MANIFEST, manifest, sort_keys=True)  # the commit point
        col.manifest = manifest
        remove_stale(col.path, manifest)
        log.info("upgraded collection %s to format %d in %.1f s (%d chunks, nothing re-encoded)",
                 col.name, FORMAT_VERSION, time.perf_counter() - start, len(chunks))
