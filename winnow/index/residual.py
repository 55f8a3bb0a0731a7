"""Compressed token vectors: residual quantisation against k-means centroids (ColBERTv2, PLAID), or int8.

A token vector ``v`` (unit length) is stored as the id of its nearest centroid ``c`` plus its residual
``v - c`` quantised per dimension to ``bits`` bits (2 or 4): each dimension's residuals are cut into
``2**bits`` buckets at their quantiles (``cutoffs``), and a bucket decodes to the mean residual that fell
into it on the training sample (``weights``). Decoding is ``c + weights[dim, code]``, renormalised.
Bytes per token: ``dim * bits / 8`` for the codes plus 2 for the centroid id (k <= 65,536): 26 bytes at
96 dims and 2 bits, 50 at 4 bits, against 96 for int8 and 384 for float32.

``int8`` needs no training: unit vectors have components in [-1, 1], stored as ``round(127 v)``.

A :class:`Codebook` is saved as numpy arrays plus a JSON manifest with a format version (no pickle),
written atomically, and loaded with ``mmap_mode="r"``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from winnow.choices import Choice
from winnow.errors import IncompatibleCollectionError, InvalidArgumentError

FORMAT_VERSION = 1
MANIFEST = "codebook.json"


class Compression(Choice):
    """How token vectors are stored."""

    FLOAT16 = "float16"
    INT8 = "int8"
    RESIDUAL_4 = "residual-4"
    RESIDUAL_2 = "residual-2"

    @property
    def bits(self) -> int | None:
        """Bits a dimension of residual codes, None for the others."""
        return {Compression.RESIDUAL_4: 4, Compression.RESIDUAL_2: 2}.get(self)

    def bytes_per_token(self, dim: int) -> int:
        if self is Compression.FLOAT16:
            return 2 * dim
        if self is Compression.INT8:
            return dim
        return dim * self.bits // 8 + 2  # + the uint16 centroid id


@dataclass(frozen=True)
class Codebook:
    centroids: np.ndarray  # (k, dim) float32, unit rows
    bits: int
    cutoffs: np.ndarray  # (dim, 2**bits - 1) float32: bucket boundaries of each dimension's residuals
    weights: np.ndarray  # (dim, 2**bits) float32: what each bucket decodes to

    @property
    def dim(self) -> int:
        return int(self.centroids.shape[1])

    def save(self, folder: str | Path) -> None:
        from winnow.storage import atomic_write_bytes, write_json_atomic

        folder = Path(folder)
        for name in ("centroids", "cutoffs", "weights"):
            array = np.ascontiguousarray(getattr(self, name), dtype=np.float32)
            atomic_write_bytes(folder / f"{name}.npy", lambda f, a=array: np.save(f, a, allow_pickle=False))
        write_json_atomic(folder / MANIFEST, {"format_version": FORMAT_VERSION, "bits": self.bits,
                                              "centroids": int(self.centroids.shape[0]), "dim": self.dim})

    @classmethod
    def load(cls, folder: str | Path, *, mmap: bool = True) -> "Codebook":
        folder = Path(folder)
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        if manifest.get("format_version") != FORMAT_VERSION:
            raise IncompatibleCollectionError(
                f"{folder / MANIFEST}: format_version {manifest.get('format_version')!r}; this winnow reads {FORMAT_VERSION}"
            )
        mode = "r" if mmap else None
        arrays = {n: np.load(folder / f"{n}.npy", mmap_mode=mode, allow_pickle=False) for n in ("centroids", "cutoffs", "weights")}
        return cls(arrays["centroids"], int(manifest["bits"]), arrays["cutoffs"], arrays["weights"])


@dataclass(frozen=True)
class Codes:
    """Residual codes of n token vectors: nearest centroid and the packed per-dimension buckets."""

    centroid: np.ndarray  # (n,) uint16
    packed: np.ndarray  # (n, dim * bits / 8) uint8


def _check_bits(bits: int) -> None:
    if bits not in (2, 4):
        raise InvalidArgumentError(f"residual bits must be 2 or 4, got {bits!r}")


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def kmeans(vectors: np.ndarray, k: int, *, seed: int = 0, iterations: int = 20) -> np.ndarray:
    """Spherical k-means (faiss) over unit rows: (k, dim) unit centroids."""
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if not 1 <= k <= min(65_536, len(vectors)):
        raise InvalidArgumentError(f"centroids must be in 1..{min(65_536, len(vectors))} for {len(vectors)} vectors, got {k}")
    km = faiss.Kmeans(vectors.shape[1], k, niter=iterations, seed=seed, spherical=True, verbose=False,
                      min_points_per_centroid=1, max_points_per_centroid=1 << 20)
    km.train(vectors)
    return _unit(km.centroids)


def nearest_centroid(centroids: np.ndarray, vectors: np.ndarray, *, block: int = 65_536) -> np.ndarray:
    out = np.empty(len(vectors), dtype=np.uint16)
    c = np.asarray(centroids, dtype=np.float32)
    for s in range(0, len(vectors), block):
        out[s : s + block] = np.argmax(np.asarray(vectors[s : s + block], dtype=np.float32) @ c.T, axis=1)
    return out


def train_codebook(
    vectors: np.ndarray, *, centroids: "int | np.ndarray", bits: int, seed: int = 0, sample: int = 200_000
) -> Codebook:
    """Centroids by k-means on a seeded sample of ``vectors`` (unit rows), or the given (k, dim) centroids
    (another codebook's: 2- and 4-bit codes over the same centroids), then per-dimension bucket cutoffs at
    the residuals' quantiles and bucket values at the mean residual of each bucket."""
    _check_bits(bits)
    vectors = np.asarray(vectors, dtype=np.float32)
    rng = np.random.default_rng(seed)
    if len(vectors) > sample:
        vectors = vectors[np.sort(rng.choice(len(vectors), sample, replace=False))]
    c = kmeans(vectors, centroids, seed=seed) if np.isscalar(centroids) else np.asarray(centroids, dtype=np.float32)
    residual = vectors - c[nearest_centroid(c, vectors)]
    levels = 1 << bits
    cutoffs = np.quantile(residual, np.arange(1, levels) / levels, axis=0).T.astype(np.float32)  # (dim, levels-1)
    codes = _bucketise(residual, cutoffs)
    weights = np.empty((residual.shape[1], levels), dtype=np.float32)
    for d in range(residual.shape[1]):
        sums = np.bincount(codes[:, d], weights=residual[:, d], minlength=levels)
        counts = np.bincount(codes[:, d], minlength=levels)
        edges = np.concatenate([[residual[:, d].min()], cutoffs[d], [residual[:, d].max()]])
        mid = (edges[:-1] + edges[1:]) / 2  # an empty bucket decodes to its middle
        weights[d] = np.where(counts > 0, sums / np.maximum(counts, 1), mid)
    return Codebook(c, bits, cutoffs, weights)


def _bucketise(residual: np.ndarray, cutoffs: np.ndarray) -> np.ndarray:
    """(n, dim) residuals -> (n, dim) bucket ids: how many of the dimension's cutoffs each is above."""
    codes = np.zeros(residual.shape, dtype=np.uint8)
    for j in range(cutoffs.shape[1]):
        codes += residual > cutoffs[:, j][None, :]
    return codes


def encode(codebook: Codebook, vectors: np.ndarray) -> Codes:
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != codebook.dim:
        raise InvalidArgumentError(f"vectors of shape {vectors.shape}; the codebook encodes (n, {codebook.dim})")
    centroid = nearest_centroid(codebook.centroids, vectors)
    codes = _bucketise(vectors - np.asarray(codebook.centroids)[centroid], np.asarray(codebook.cutoffs))
    return Codes(centroid, pack(codes, codebook.bits))


def decode(codebook: Codebook, codes: Codes) -> np.ndarray:
    """(n, dim) float32 unit rows: centroid + bucket values. Each packed byte is looked up whole in a table of
    the residual values it stands for (:func:`byte_table`), not unpacked dimension by dimension."""
    packed = np.asarray(codes.packed)
    table = byte_table(np.asarray(codebook.weights), codebook.bits)
    residual = table[np.arange(packed.shape[1])[None, :], packed].reshape(len(packed), codebook.dim)
    return _unit(np.asarray(codebook.centroids)[codes.centroid] + residual)


def byte_table(weights: np.ndarray, bits: int) -> np.ndarray:
    """(dim / per, 256, per) float32, per = 8 / bits: ``table[g, b]`` is what byte value ``b`` at byte ``g`` of
    a packed row decodes to, the bucket values of dimensions ``g * per .. g * per + per - 1`` (as :func:`pack`
    lays them out, low bits first)."""
    _check_bits(bits)
    per = 8 // bits
    dim = weights.shape[0]
    buckets = (np.arange(256)[:, None] >> (np.arange(per) * bits)[None, :]) & ((1 << bits) - 1)  # (256, per)
    dims = np.arange(dim // per)[:, None, None] * per + np.arange(per)[None, None, :]  # (dim / per, 1, per)
    return np.ascontiguousarray(weights[dims, buckets[None, :, :]], dtype=np.float32)


def pack(codes: np.ndarray, bits: int) -> np.ndarray:
    """(n, dim) ints < 2**bits -> (n, dim * bits / 8) uint8, low bits first."""
    _check_bits(bits)
    per = 8 // bits
    n, dim = codes.shape
    if dim % per:
        raise InvalidArgumentError(f"dim {dim} is not a multiple of {per} ({bits}-bit codes pack {per} a byte)")
    grouped = codes.astype(np.uint8).reshape(n, dim // per, per)
    out = np.zeros((n, dim // per), dtype=np.uint8)
    for j in range(per):
        out |= grouped[:, :, j] << (bits * j)
    return out


def unpack(packed: np.ndarray, bits: int, dim: int) -> np.ndarray:
    per = 8 // bits
    shifts = (np.arange(per, dtype=np.uint8) * bits)[None, None, :]
    codes = (np.asarray(packed)[:, :, None] >> shifts) & ((1 << bits) - 1)
    return codes.reshape(len(packed), dim)


def to_int8(vectors: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(vectors, dtype=np.float32) * 127.0), -127, 127).astype(np.int8)


def from_int8(codes: np.ndarray) -> np.ndarray:
    return _unit(np.asarray(codes, dtype=np.float32) / 127.0)
