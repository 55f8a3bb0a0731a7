"""Late interaction inside a collection: every chunk's ColBERT token vectors, compressed, one
:class:`~winnow.index.multivector.MultiVectorPart` per segment (``segments/seg-G/multivector/``).

* The collection's manifest names the ColBERT model (id and fingerprint, as for the bi-encoder), the
  compression and its **codebook**: trained on the first write's token vectors, stored beside the manifest
  (``codebook-G/``, G the generation that trained it) and never changed by later writes, so every
  segment's codes mean the same. A merge copies the codes of the rows it keeps.
* A part is written inside its segment's folder before the segment is renamed into place, so it commits
  with the segment (and an interrupted write leaves neither); its rows are the segment's rows, so the
  segment's tombstones and a filter's mask hide the same rows from both.
* :class:`LateView` searches the parts as one index (PLAID-style candidates per segment, exact MaxSim,
  merged by score: MaxSim is absolute, no collection statistics needed) and scores given documents
  exactly (a reranker over stored vectors: a document's score is its best live chunk's, MaxP).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from winnow.errors import IncompatibleCollectionError, InvalidArgumentError
from winnow.index.base import SearchResult, check_k, empty_result
from winnow.index.multivector import StoredTokens
from winnow.index.residual import Codebook, Compression, train_codebook

DEFAULT_COMPRESSION = Compression.RESIDUAL_2  # 26 bytes a token at 96 dims
PART = "multivector"  # a segment's part folder
CODEBOOK_PREFIX = "codebook-"
DEFAULT_NPROBE = 4
DEFAULT_CANDIDATES = 1024


@dataclass(frozen=True)
class LateSettings:
    """What a collection's manifest records under ``late_interaction``."""

    model: str  # the ColBERT model's id (a local folder as its absolute path, as for the bi-encoder)
    fingerprint: str | None
    compression: Compression
    codebook: str | None = None  # the codebook folder beside the manifest; None until the first write

    def to_json(self) -> dict[str, Any]:
        return {"model": {"name": self.model, "fingerprint": self.fingerprint},
                "compression": self.compression.value, "codebook": self.codebook}

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> "LateSettings | None":
        entry = manifest.get("late_interaction")
        if not entry:
            return None
        try:
            return cls(entry["model"]["name"], entry["model"].get("fingerprint"),
                       Compression.parse(entry["compression"]), entry.get("codebook"))
        except (KeyError, TypeError, InvalidArgumentError) as exc:
            raise IncompatibleCollectionError(f"manifest.json: late_interaction entry {entry!r} is not readable ({exc})") from None


def centroid_count(tokens: int) -> int:
    """PLAID's rule of thumb, 2^floor(log2(16 sqrt(tokens))), kept to at most one centroid per 4 tokens
    (a small first write) and at most 65,536 (uint16 ids)."""
    if tokens < 1:
        raise InvalidArgumentError("a codebook needs at least one token vector")
    k = 2 ** int(math.floor(math.log2(16 * math.sqrt(tokens))))
    return max(1, min(k, 65_536, 2 ** int(math.floor(math.log2(max(1, tokens // 4))))))


def train_collection_codebook(matrices: Sequence[np.ndarray], compression: Compression, *, seed: int = 0) -> Codebook:
    """The codebook a collection keeps: centroids (k by :func:`centroid_count`) on a sample of ``matrices``'
    token vectors; residual buckets of the compression's bits (2 for int8/float16, which use the centroids only)."""
    vectors = np.concatenate([np.asarray(m, dtype=np.float32) for m in matrices])
    return train_codebook(vectors, centroids=centroid_count(len(vectors)), bits=compression.bits or 2, seed=seed)


def write_codebook(collection: Path, generation: int, codebook: Codebook) -> str:
    """Write the codebook as ``codebook-<generation>/`` (built under a ``.tmp`` name, renamed in); the
    manifest names it at commit, so an interrupted write leaves a folder recovery removes."""
    import os
    import shutil

    from winnow.storage import fsync_dir, fsync_tree

    name = f"{CODEBOOK_PREFIX}{generation}"
    tmp = collection / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    codebook.save(tmp)
    fsync_tree(tmp)
    shutil.rmtree(collection / name, ignore_errors=True)  # an unnamed leftover of an interrupted write
    os.rename(tmp, collection / name)
    fsync_dir(collection)
    return name


@dataclass(frozen=True)
class LateCodec:
    """How a collection compresses token vectors: its codebook and compression (what writing a part needs)."""

    codebook: Codebook
    compression: Compression


@dataclass(frozen=True)
class EncodedTokens:
    """Texts' token vectors as a segment stores them, the codec they were coded with, and the collection's
    settings naming that codec's codebook (``trained``: the codebook is new, written by this call)."""

    tokens: StoredTokens
    codec: LateCodec
    settings: LateSettings
    trained: bool


def encode_tokens(
    encoder, texts: Sequence[str], settings: LateSettings, codebook: Codebook | None, collection: Path, generation: int,
    *, progress: bool = False,
) -> EncodedTokens:
    """Encode ``texts`` with the ColBERT ``encoder`` and compress them against ``codebook``; with None, train a
    codebook on these vectors and write it as ``codebook-<generation>`` (:func:`write_codebook`) first."""
    from dataclasses import replace

    from winnow.index.multivector import compress

    matrices = encoder.encode_documents(list(texts), progress=progress)
    trained = codebook is None
    if codebook is None:
        codebook = train_collection_codebook(matrices, settings.compression)
        settings = replace(settings, codebook=write_codebook(collection, generation, codebook))
    codec = LateCodec(codebook, settings.compression)
    return EncodedTokens(compress(matrices, codebook, settings.compression), codec, settings, trained)


class LateView:
    """The token-vector parts of a generation's segments, with per-segment masks of the rows a search may
    return (live, and of an allowed document where a filter is given)."""

    def __init__(self, segments, masks: Sequence[np.ndarray], codebook: Codebook) -> None:
        self.segments = segments  # a SegmentSet
        self.masks = tuple(masks)
        self.parts = tuple(seg.late_part(codebook) for seg in segments.segments)
        self._n = int(sum(int(m.sum()) for m in self.masks))

    def __len__(self) -> int:
        return self._n

    def search(self, query: np.ndarray, k: int, *, nprobe: int = DEFAULT_NPROBE, candidates: int = DEFAULT_CANDIDATES) -> SearchResult:
        """The best ``k`` chunk keys for one query's token matrix (1 x k arrays, padded with -1/-inf)."""
        k = check_k(k)
        found_keys, found_scores = [], []
        for seg, part, mask in zip(self.segments.segments, self.parts, self.masks):
            if not mask.any():
                continue
            hits = part.search(query, k, nprobe=nprobe, candidates=max(candidates, k), live=mask)
            found_keys.append(seg.keys[hits.rows])
            found_scores.append(hits.scores)
        result = empty_result(1, k)
        if found_keys:
            keys, scores = np.concatenate(found_keys), np.concatenate(found_scores)
            order = np.lexsort((keys, -scores))[:k]
            result.keys[0, : order.size] = keys[order]
            result.scores[0, : order.size] = scores[order]
        return result

    def score_documents(self, query: np.ndarray, doc_ids: Sequence[str]) -> dict[str, float]:
        """Exact MaxSim of each document's stored vectors: its best live chunk's (documents with no live
        chunk here are left out)."""
        wanted = frozenset(doc_ids)
        best: dict[str, float] = {}
        for seg, part, mask in zip(self.segments.segments, self.parts, self.masks):
            rows = np.flatnonzero(mask & seg.rows_of_documents(wanted))
            if not rows.size:
                continue
            for row, score in zip(rows.tolist(), part.score(query, rows).tolist()):
                doc = seg.doc_id(row)
                if score > best.get(doc, -math.inf):
                    best[doc] = float(score)
        return best
