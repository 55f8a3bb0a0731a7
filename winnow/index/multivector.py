"""A multi-vector (late-interaction) index: every document's token vectors, compressed, memory-mapped.

One immutable part holds a batch of documents (rows 0..n-1 in the order given), like a collection
segment: it is written once, file by file, with its manifest last (a part without ``multivector.json``
was never committed and is ignored), and read with ``mmap_mode="r"``. Files::

    multivector.json   format version, compression, dim, counts (written last)
    offsets.npy        int64 (docs + 1): token rows of document i are offsets[i]:offsets[i+1]
    centroid.npy       uint16 (tokens): each token's nearest centroid (every compression keeps it)
    packed.npy         uint8 (tokens, dim*bits/8)   residual-2 / residual-4
    int8.npy           int8 (tokens, dim)           int8
    float16.npy        float16 (tokens, dim)        float16
    ivf_offsets.npy    int64 (centroids + 1), ivf_docs.npy int32: the documents with a token in each centroid

The codebook (:class:`~winnow.index.residual.Codebook`: centroids, and for residual codes the buckets) is
shared by the parts of one collection and passed in.

Two uses:

* **first stage** (PLAID-style candidate generation): each query token probes its ``nprobe`` nearest
  centroids; the documents listed under them are scored by *centroid interaction* (each document token
  stands in for its centroid: MaxSim over the query-centroid scores, no decoding), the best
  ``candidates`` are decoded and scored exactly;
* **reranker** of any first stage: exact MaxSim of the stored (decoded) vectors of the given rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from winnow.errors import IncompatibleCollectionError, InvalidArgumentError
from winnow.index.residual import Codebook, Codes, Compression, decode, encode, from_int8, nearest_centroid, to_int8

FORMAT_VERSION = 1
MANIFEST = "multivector.json"


@dataclass(frozen=True)
class LateHits:
    """Rows of a part and their MaxSim scores, best first."""

    rows: np.ndarray  # int64
    scores: np.ndarray  # float32


def maxsim_many(query: np.ndarray, vectors: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Sum over query tokens of the best dot product with each document's tokens; documents are the
    row ranges ``offsets[i]:offsets[i+1]`` of ``vectors`` (each non-empty). (ndocs,) float32."""
    offsets = np.asarray(offsets, dtype=np.int64)
    if len(offsets) < 2:
        return np.zeros(0, dtype=np.float32)
    if np.any(np.diff(offsets) <= 0):
        raise InvalidArgumentError("maxsim_many: every document needs at least one token vector")
    sims = np.asarray(query, dtype=np.float32) @ np.asarray(vectors, dtype=np.float32).T
    return np.maximum.reduceat(sims, offsets[:-1], axis=1).sum(axis=0).astype(np.float32)


STORE_FILE = {Compression.FLOAT16: "float16", Compression.INT8: "int8",
              Compression.RESIDUAL_4: "packed", Compression.RESIDUAL_2: "packed"}  # each compression's token array


@dataclass(frozen=True)
class StoredTokens:
    """Documents' token vectors as a part stores them: tokens per document, each token's centroid, and the
    compression's per-token array (packed residual codes, int8 or float16 rows)."""

    lengths: np.ndarray  # int64 (docs,)
    centroid: np.ndarray  # uint16 (tokens,)
    store: np.ndarray  # (tokens, ...) as the compression stores them

    @staticmethod
    def concat(parts: Sequence["StoredTokens"]) -> "StoredTokens":
        return StoredTokens(np.concatenate([p.lengths for p in parts]).astype(np.int64),
                            np.concatenate([p.centroid for p in parts]), np.concatenate([p.store for p in parts]))


def compress(matrices: Sequence[np.ndarray], codebook: Codebook, compression: Compression) -> StoredTokens:
    """One (tokens, dim) matrix a document -> its stored form."""
    compression = Compression.parse(compression)
    if not matrices or any(len(m) == 0 for m in matrices):
        raise InvalidArgumentError("a multi-vector part needs documents with at least one token vector each")
    vectors = np.concatenate([np.asarray(m, dtype=np.float32) for m in matrices])
    if vectors.shape[1] != codebook.dim:
        raise InvalidArgumentError(f"token vectors of dim {vectors.shape[1]}; the codebook's is {codebook.dim}")
    lengths = np.asarray([len(m) for m in matrices], dtype=np.int64)
    if compression.bits is not None:
        codes = encode(codebook, vectors)
        return StoredTokens(lengths, codes.centroid, codes.packed)
    store = to_int8(vectors) if compression is Compression.INT8 else vectors.astype(np.float16)
    return StoredTokens(lengths, nearest_centroid(codebook.centroids, vectors), store)


def _ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, e) for s, e in zip(starts, ends)])`` without the Python loop (int64)."""
    lengths = np.asarray(ends, dtype=np.int64) - np.asarray(starts, dtype=np.int64)
    before = np.cumsum(lengths) - lengths  # where each range begins in the output
    return np.repeat(np.asarray(starts, dtype=np.int64) - before, lengths) + np.arange(int(lengths.sum()), dtype=np.int64)


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` best scores, best first, ties by index (deterministic)."""
    k = min(k, len(scores))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    return np.lexsort((np.arange(len(scores)), -scores))[:k]


class MultiVectorPart:
    """One immutable part (see the module docstring): :meth:`write` then :meth:`open`."""

    def __init__(self, folder: Path, manifest: dict, arrays: dict, codebook: Codebook) -> None:
        self.folder = folder
        self.compression = Compression.parse(manifest["compression"])
        self.dim = int(manifest["dim"])
        self.offsets = arrays["offsets"]
        self.centroid = arrays["centroid"]
        self.ivf_offsets = arrays["ivf_offsets"]
        self.ivf_docs = arrays["ivf_docs"]
        self.store = arrays.get("packed", arrays.get("int8", arrays.get("float16")))
        self.codebook = codebook
        self._doc_of_token: np.ndarray | None = None

    @property
    def docs(self) -> int:
        return len(self.offsets) - 1

    @property
    def tokens(self) -> int:
        return int(self.offsets[-1])

    def bytes_per_token(self) -> int:
        return self.compression.bytes_per_token(self.dim)

    # -- writing -------------------------------------------------------------------------------
    @staticmethod
    def write(folder: str | Path, matrices: Sequence[np.ndarray], codebook: Codebook, compression: Compression) -> Path:
        """Compress ``matrices`` (one (tokens, dim) matrix a document) and write them as a part."""
        compression = Compression.parse(compression)
        return MultiVectorPart.write_stored(folder, compress(matrices, codebook, compression), codebook, compression)

    @staticmethod
    def write_stored(folder: str | Path, stored: "StoredTokens", codebook: Codebook, compression: Compression) -> Path:
        """Write already compressed tokens (a merge copies the codes of the rows it keeps: nothing is
        re-encoded, so merged codes are the written ones bit for bit)."""
        from winnow.storage import atomic_write_bytes, write_json_atomic

        compression = Compression.parse(compression)
        folder = Path(folder)
        if (folder / MANIFEST).is_file():
            raise InvalidArgumentError(f"{folder} already holds a multi-vector part; parts are immutable")
        if compression.bits is not None and compression.bits != codebook.bits:
            raise InvalidArgumentError(f"compression {compression} needs a {compression.bits}-bit codebook, got {codebook.bits}-bit")
        lengths = np.asarray(stored.lengths, dtype=np.int64)
        if lengths.size == 0 or np.any(lengths <= 0):
            raise InvalidArgumentError("a multi-vector part needs documents with at least one token vector each")
        folder.mkdir(parents=True, exist_ok=True)
        n = len(lengths)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        arrays: dict[str, np.ndarray] = {"offsets": offsets, "centroid": stored.centroid, STORE_FILE[compression]: stored.store}
        doc_of_token = np.repeat(np.arange(n, dtype=np.int32), lengths)
        pairs = np.unique(stored.centroid.astype(np.int64) * n + doc_of_token)  # (centroid, doc), sorted
        k = len(codebook.centroids)
        arrays["ivf_docs"] = (pairs % n).astype(np.int32)
        arrays["ivf_offsets"] = np.searchsorted(pairs // n, np.arange(k + 1)).astype(np.int64)
        for name, array in arrays.items():
            atomic_write_bytes(folder / f"{name}.npy", lambda f, a=array: np.save(f, np.ascontiguousarray(a), allow_pickle=False))
        write_json_atomic(folder / MANIFEST, {"format_version": FORMAT_VERSION, "compression": compression.value,
                                              "dim": codebook.dim, "docs": n, "tokens": int(offsets[-1]),
                                              "centroids": k})
        return folder

    @classmethod
    def open(cls, folder: str | Path, codebook: Codebook) -> "MultiVectorPart":
        folder = Path(folder)
        path = folder / MANIFEST
        if not path.is_file():
            raise IncompatibleCollectionError(f"{folder} holds no committed multi-vector part (no {MANIFEST})")
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if manifest.get("format_version") != FORMAT_VERSION:
            raise IncompatibleCollectionError(f"{path}: format_version {manifest.get('format_version')!r}; this winnow reads {FORMAT_VERSION}")
        if int(manifest["dim"]) != codebook.dim or int(manifest["centroids"]) != len(codebook.centroids):
            raise IncompatibleCollectionError(f"{path}: written with another codebook (dim {manifest['dim']}, {manifest['centroids']} centroids)")
        compression = Compression.parse(manifest["compression"])
        names = ("offsets", "centroid", "ivf_offsets", "ivf_docs", STORE_FILE[compression])
        arrays = {n: np.load(folder / f"{n}.npy", mmap_mode="r", allow_pickle=False) for n in names}
        return cls(folder, manifest, arrays, codebook)

    # -- reading -------------------------------------------------------------------------------
    def _token_index(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The token positions of ``rows`` (concatenated) and each row's token count."""
        starts, ends = np.asarray(self.offsets[rows]), np.asarray(self.offsets[rows + 1])
        return _ranges(starts, ends), ends - starts

    def stored(self, rows: Sequence[int]) -> "StoredTokens":
        """The compressed tokens of ``rows`` as stored (what a merge copies)."""
        index, lengths = self._token_index(np.asarray(rows, dtype=np.int64))
        return StoredTokens(lengths, np.asarray(self.centroid[index]), np.asarray(self.store[index]))

    def vectors(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Decoded token vectors of ``rows`` (concatenated) and their offsets."""
        index, lengths = self._token_index(np.asarray(rows, dtype=np.int64))
        local = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        if self.compression is Compression.INT8:
            return from_int8(np.asarray(self.store[index])), local
        if self.compression is Compression.FLOAT16:
            return np.asarray(self.store[index], dtype=np.float32), local
        codes = Codes(np.asarray(self.centroid[index]), np.asarray(self.store[index]))
        return decode(self.codebook, codes), local

    def score(self, query: np.ndarray, rows: Sequence[int]) -> np.ndarray:
        """Exact MaxSim of ``query`` (Lq x dim) against the stored vectors of ``rows``: the reranker use."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) == 0:
            return np.zeros(0, dtype=np.float32)
        if rows.min() < 0 or rows.max() >= self.docs:
            raise InvalidArgumentError(f"rows must be in 0..{self.docs - 1}, got {rows.min()}..{rows.max()}")
        vectors, offsets = self.vectors(rows)
        return maxsim_many(query, vectors, offsets)

    def search(
        self, query: np.ndarray, k: int, *, nprobe: int = 4, candidates: int = 256, live: np.ndarray | None = None
    ) -> LateHits:
        """First stage: centroid probing, centroid interaction, exact MaxSim of the best ``candidates``.
        ``live``: a bool mask over the rows; the others are never returned (nor take a candidate's place)."""
        if k < 1 or nprobe < 1 or candidates < k:
            raise InvalidArgumentError(f"need k >= 1, nprobe >= 1 and candidates >= k, got k={k}, nprobe={nprobe}, candidates={candidates}")
        query = np.asarray(query, dtype=np.float32)
        qc = query @ np.asarray(self.codebook.centroids).T  # (Lq, centroids)
        probe = np.unique(np.argsort(-qc, axis=1)[:, : min(nprobe, qc.shape[1])])
        docs = np.unique(np.concatenate([np.asarray(self.ivf_docs[self.ivf_offsets[c] : self.ivf_offsets[c + 1]]) for c in probe]))
        if live is not None:
            docs = docs[np.asarray(live, dtype=bool)[docs]]
        if len(docs) == 0:
            return LateHits(np.zeros(0, np.int64), np.zeros(0, np.float32))
        if len(docs) > candidates:
            starts, ends = np.asarray(self.offsets[docs]), np.asarray(self.offsets[docs + 1])
            index = _ranges(starts, ends)
            local = np.concatenate([[0], np.cumsum(ends - starts)])
            approx = np.maximum.reduceat(qc[:, np.asarray(self.centroid[index])], local[:-1], axis=1).sum(axis=0)
            docs = docs[_top(approx, candidates)]
        exact = self.score(query, docs)
        best = _top(exact, k)
        return LateHits(docs[best].astype(np.int64), exact[best])
