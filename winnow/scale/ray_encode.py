"""Corpus encoding across the workers of a Ray cluster.

:class:`RayEncoder` stands in for a collection's bi-encoder on the write path: documents are encoded by
Ray Data (``map_batches`` with :class:`EncodeWorker`, one actor per worker holding the model, loaded
once), queries in this process by the bi-encoder it wraps. The wrapped encoder's embedding cache is
read and written here, in the driver, so re-indexing text encoded before costs no model call, as in
the single-process path.

Every row carries its position; the driver puts each vector back in its place and counts the rows it
got, so a worker that dies mid-job (its actor restarted by Ray, its unfinished batch run again) costs
time, not rows: :class:`RayEncoding` says how many rows came back more than once (0 expected), and a
row that never came back raises :class:`~winnow.errors.ClusterError`.

    from winnow.collection import Collection
    from winnow.scale.ray_encode import RayEncoder

    with Collection.open("docs", encoder_for=lambda model: RayEncoder(model, address="auto")) as col:
        col.add(documents)
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from winnow.errors import ClusterError, InvalidArgumentError
from winnow.scale.cluster import (
    LOCAL,
    RayCluster,
    connect,
    map_with_actors,
    portable_name,
    quiet_ray_data,
    ray_session,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RayEncoding:
    """One encoding job: the vectors in the caller's order, the workers it ran on, how many rows came
    back more than once (a retried batch whose first run had been delivered; kept once), its wall time,
    and ``model_seconds``, the time the workers spent in the model for the rows kept (their sum over
    workers: ``len(vectors) / model_seconds`` is one worker's rate, the rest of the wall time is Ray's)."""

    vectors: np.ndarray
    workers: int
    batches: int
    duplicates: int
    seconds: float
    model_seconds: float


class EncodeWorker:
    """A Ray Data ``map_batches`` class: one instance per worker, holding the bi-encoder.

    ``model`` is the name each worker resolves on its own machine (winnow and the model installed
    there, as on the driver); ``backend`` the driver's resolved backend, so every worker runs the same
    runtime; ``threads`` the CPUs each worker was given."""

    def __init__(self, model: str, backend: str, threads: int = 1) -> None:
        from winnow.encode.bi_encoder import BiEncoder

        self.encoder = BiEncoder(model, backend=backend, threads=threads)
        self.encoder.encode_documents(["load the model now"])

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        start = time.perf_counter()
        vectors = self.encoder.encode_documents([str(t) for t in batch["text"]])
        seconds = np.full(len(vectors), (time.perf_counter() - start) / max(len(vectors), 1))
        return {"row": np.asarray(batch["row"], dtype=np.int64), "vector": vectors, "seconds": seconds}


def encode_on_ray(
    texts: Sequence[str],
    *,
    model: str,
    backend: str,
    workers: int | None = None,
    cpus_per_worker: int = 1,
    batch_rows: int = 256,
    retries: int = 3,
    progress: bool = False,
    worker_cls: type = EncodeWorker,
) -> RayEncoding:
    """Encode ``texts`` as documents on the connected Ray cluster (see :func:`winnow.scale.cluster.connect`).

    ``workers``: actors (default: the cluster's CPUs // ``cpus_per_worker``); ``batch_rows``: texts per
    ``map_batches`` call, lowered so that every worker gets a few batches; ``retries``: restarts of a
    dead actor and re-runs of its batch (Ray's ``max_restarts`` / ``max_task_retries``).
    ``worker_cls``: the ``map_batches`` class (tests pass one that dies mid-job)."""
    import ray
    import ray.data

    texts = list(texts)
    if cpus_per_worker < 1:
        raise InvalidArgumentError(f"cpus_per_worker must be >= 1, got {cpus_per_worker}")
    if batch_rows < 1:
        raise InvalidArgumentError(f"batch_rows must be >= 1, got {batch_rows}")
    if retries < 0:
        raise InvalidArgumentError(f"retries must be >= 0, got {retries}")
    if workers is None:
        workers = max(1, int(ray.cluster_resources().get("CPU", 1)) // cpus_per_worker)
    if workers < 1:
        raise InvalidArgumentError(f"workers must be >= 1 (or None for every CPU of the cluster), got {workers}")
    start = time.perf_counter()
    n = len(texts)
    rows = max(1, min(batch_rows, math.ceil(n / (2 * workers))))  # every worker gets at least two batches
    blocks = math.ceil(n / rows)
    quiet_ray_data(progress=False)  # the driver shows one bar of rows done instead
    ds = ray.data.from_items([{"row": i, "text": t} for i, t in enumerate(texts)], override_num_blocks=blocks)
    ds = map_with_actors(
        ds, worker_cls, {"model": model, "backend": backend, "threads": cpus_per_worker},
        actors=min(workers, blocks), cpus_per_actor=cpus_per_worker, batch_rows=rows, batch_format="numpy",
        retries=retries,
    )
    out: np.ndarray | None = None
    model_seconds = 0.0
    seen = np.zeros(n, dtype=np.int64)
    bar = _progress(n) if progress else None
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            got = np.asarray(batch["row"], dtype=np.int64)
            vectors = np.asarray(batch["vector"], dtype=np.float32)
            if out is None:
                out = np.zeros((n, vectors.shape[1]), dtype=np.float32)
            fresh = seen[got] == 0  # a row delivered twice keeps its first vector (both are the same model's)
            out[got[fresh]] = vectors[fresh]
            model_seconds += float(np.sum(np.asarray(batch["seconds"])[fresh]))
            np.add.at(seen, got, 1)
            if bar is not None:
                bar.update(int(fresh.sum()))
    except ray.exceptions.RayError as exc:
        raise ClusterError(f"encoding on Ray failed after {retries} retries per batch: {exc}") from exc
    finally:
        if bar is not None:
            bar.close()
    lost = np.flatnonzero(seen == 0)
    if len(lost) or out is None:
        raise ClusterError(f"{len(lost)} of {n} rows never came back from the Ray workers (first: {lost[:5].tolist()})")
    duplicates = int(np.sum(seen > 1))
    if duplicates:
        log.warning("%d row(s) came back from Ray more than once (a retried batch); each was kept once", duplicates)
    seconds = time.perf_counter() - start
    log.info("encoded %d texts on %d Ray workers in %.1f s (%.1f texts/s)", n, min(workers, blocks), seconds, n / seconds)
    return RayEncoding(out, min(workers, blocks), blocks, duplicates, seconds, model_seconds)


class RayEncoder:
    """A bi-encoder whose ``encode_documents`` runs on Ray; everything else is the wrapped encoder's.

    ``encoder``: a model name (winnow's :class:`~winnow.encode.bi_encoder.BiEncoder` on the default
    backend, no cache) or a ``BiEncoder`` (its backend and embedding cache are used). ``address``:
    where to connect on first use (see :mod:`winnow.scale.cluster`); ignored where Ray is already
    initialized in this process. The rest as :func:`encode_on_ray`; :attr:`last` holds the last job."""

    def __init__(
        self,
        encoder,
        *,
        address: str | None = LOCAL,
        workers: int | None = None,
        cpus_per_worker: int = 1,
        batch_rows: int = 256,
        retries: int = 3,
        worker_cls: type = EncodeWorker,
    ) -> None:
        if isinstance(encoder, (str, Path)):
            from winnow.encode.bi_encoder import BiEncoder

            encoder = BiEncoder(str(encoder))
        self.local = encoder
        self.address = address
        self.options = {"workers": workers, "cpus_per_worker": cpus_per_worker, "batch_rows": batch_rows,
                        "retries": retries, "worker_cls": worker_cls}
        self.cluster: RayCluster | None = None
        self.last: RayEncoding | None = None

    def __repr__(self) -> str:
        return f"RayEncoder({self.local!r}, address={self.address!r})"

    @property
    def name(self) -> str:
        return self.local.name

    @property
    def resolved(self):
        return self.local.resolved

    @property
    def dim(self) -> int:
        return self.local.dim

    @property
    def backend(self):
        return self.local.backend

    def encode_query(self, query: str) -> np.ndarray:
        return self.local.encode_query(query)

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        return self.local.encode_queries(queries)

    def encode_documents(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """Texts -> (n, dim) float32 unit vectors in the order given, the missing ones encoded on Ray."""
        texts = list(texts)
        if not texts:
            return self.local.encode_documents([])
        cache = self.local.cache
        if cache is None:
            return self._on_ray(texts, progress)
        space, dim = self.local.cache_space, self.local.dim
        vectors, found = cache.get_many(space, dim, texts)
        missing = np.flatnonzero(~found)
        if len(missing):
            fresh = self._on_ray([texts[i] for i in missing], progress)
            vectors[missing] = fresh
            cache.put_many(space, [texts[i] for i in missing], fresh)
        log.debug("embedding cache: %d of %d texts found", int(found.sum()), len(texts))
        return vectors

    def _on_ray(self, texts: list[str], progress: bool) -> np.ndarray:
        if self.cluster is None:
            self.cluster = connect(self.address)
            if self.cluster.address == LOCAL:  # export the ONNX model once here, not in every worker at once
                self.local.encode_queries(["prepare the model once for the local workers"])
        self.last = encode_on_ray(
            texts, model=portable_name(self.local.resolved), backend=str(self.local.backend), progress=progress, **self.options
        )
        return self.last.vectors


@contextlib.contextmanager
def ray_encoder_for(
    address: str | None, *, home: Path | str | None, collection: str, backend: str = "auto", **options
) -> Iterator[Callable[[str], RayEncoder]]:
    """For ``winnow index --ray``: a Ray session for the block and the ``encoder_for`` a collection takes,
    wrapping the encoder (backend, embedding cache) the collection would use on its own."""
    from winnow.collection_files import check_name, default_encoder, default_home

    folder = (Path(home) if home is not None else default_home()) / check_name(collection)
    with ray_session(address) as cluster:
        yield lambda model: RayEncoder(default_encoder(folder, model, backend), address=cluster.address, **options)


def _progress(total: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="encoding on Ray", unit="text")
