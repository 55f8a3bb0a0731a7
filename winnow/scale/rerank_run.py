"""Reranking a TREC run's candidates for many queries: in this process, or across a Ray cluster.

A run (``qid Q0 docid rank score tag``) names each query's first-stage candidates; the queries come from
a BEIR ``queries.jsonl`` and the passages from any corpus winnow reads. :func:`candidates_from_run` joins
them into :class:`QueryCandidates` (the first ``depth`` of each query); :func:`rerank_here` reranks them
one query at a time with a :class:`~winnow.rerank.cross_encoder.CrossEncoderReranker`, and
:func:`rerank_on_ray` does the same in :class:`RerankWorker` actors (Ray Data ``map_batches``, one
reranker per worker). Both go through :func:`rerank_query`, one query's candidates read by one reranker,
so their scores and orders are the same: the shipped int8 reranker runs each pair alone, and an fp32
one sees the same batches either way.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Mapping, Sequence

from winnow.errors import ClusterError, CorpusError, InvalidArgumentError
from winnow.types import Document, FirstStage, Hit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QueryCandidates:
    """One query and its first-stage candidates, in the run's order."""

    qid: str
    query: str
    doc_ids: tuple[str, ...]
    scores: tuple[float, ...]  # the first stage's
    titles: tuple[str, ...]
    texts: tuple[str, ...]

    def hits(self) -> list[Hit]:
        return [
            Hit(doc_id=d, score=s, rank=r, text=x, title=t)
            for r, (d, s, t, x) in enumerate(zip(self.doc_ids, self.scores, self.titles, self.texts), start=1)
        ]


@dataclass(frozen=True)
class RerankedQuery:
    """One query's candidates in the reranker's order, with the scores that order is by."""

    qid: str
    doc_ids: tuple[str, ...]
    scores: tuple[float, ...]


@dataclass(frozen=True)
class RerankedRun:
    """A reranked run, queries in the input's order (``run``, ready for
    :func:`winnow.evaluate.report.write_run`), what it read, where, and how long it took. ``workers`` is
    0 for this process; ``duplicates`` counts queries a retried Ray batch delivered twice (kept once);
    ``model_seconds`` is the time spent reranking the queries kept, summed over workers."""

    run: Mapping[str, tuple[tuple[str, float], ...]]
    queries: int
    pairs: int
    workers: int
    duplicates: int
    seconds: float
    model_seconds: float

    @property
    def pairs_per_second(self) -> float:
        return self.pairs / self.seconds if self.seconds > 0 else 0.0


def candidates_from_run(
    run: Mapping[str, Sequence[tuple[str, float]]],
    queries: Mapping[str, str],
    documents: Sequence[Document],
    *,
    depth: int = 100,
) -> list[QueryCandidates]:
    """The first ``depth`` candidates of each query of ``run`` (see :func:`winnow.evaluate.run_file.read_run`),
    with the query's text and each passage's title and text. A query or document the run names that
    the queries or the corpus lack raises :class:`~winnow.errors.CorpusError` listing a few."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise InvalidArgumentError(f"depth must be an integer >= 1, got {depth!r}")
    by_id = {d.id: d for d in documents}
    no_query = [q for q in run if q not in queries]
    if no_query:
        raise CorpusError("queries", None, f"{len(no_query)} query id(s) of the run are not in the queries file, e.g. {no_query[:3]}")
    no_doc = sorted({d for hits in run.values() for d, _ in hits[:depth] if d not in by_id})
    if no_doc:
        raise CorpusError("corpus", None, f"{len(no_doc)} document id(s) of the run are not in the corpus, e.g. {no_doc[:3]}")
    out = []
    for qid, hits in run.items():
        docs = [by_id[d] for d, _ in hits[:depth]]
        out.append(QueryCandidates(
            qid, queries[qid], tuple(d.id for d in docs), tuple(float(s) for _, s in hits[:depth]),
            tuple(d.title for d in docs), tuple(d.text for d in docs),
        ))
    return out


def rerank_query(reranker, item: QueryCandidates, first_stage: FirstStage | None = None) -> RerankedQuery:
    """``item``'s candidates reranked by ``reranker`` (its mix for ``first_stage`` where it has one)."""
    ranking = reranker.rank(item.query, item.hits(), first_stage=first_stage)
    return RerankedQuery(item.qid, tuple(h.doc_id for h in ranking.hits), tuple(float(h.score) for h in ranking.hits))


def make_reranker(model: str | None, *, backend: str = "auto", max_length: int | None = None, threads: int | None = None):
    """The cross-encoder both paths use: winnow's default reranker where ``model`` is None, no score cache."""
    from winnow.models.resolve import default_reranker
    from winnow.rerank.cross_encoder import CrossEncoderReranker

    return CrossEncoderReranker(model or default_reranker(), backend=backend, max_length=max_length, cache=False, threads=threads)


def rerank_here(
    items: Sequence[QueryCandidates], reranker, *, first_stage: FirstStage | None = None, progress: bool = False
) -> RerankedRun:
    """Rerank ``items`` in this process, one query after the other."""
    start = time.perf_counter()
    bar = _progress(len(items)) if progress else None
    done: list[RerankedQuery] = []
    try:
        for item in items:
            done.append(rerank_query(reranker, item, first_stage))
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - start
    return _assemble(items, {r.qid: r for r in done}, workers=0, duplicates=0, seconds=seconds, model_seconds=seconds)


class RerankWorker:
    """A Ray Data ``map_batches`` class: one instance per worker, holding the reranker (loaded once).

    Rows are :class:`QueryCandidates` as dicts; each comes back as a :class:`RerankedQuery` dict."""

    def __init__(self, model: str, backend: str, max_length: int | None, first_stage: str | None, threads: int = 1) -> None:
        self.reranker = make_reranker(model, backend=backend, max_length=max_length, threads=threads)
        self.reranker.warm_up()
        self.first_stage = FirstStage(first_stage) if first_stage else None

    def __call__(self, batch):
        import pyarrow as pa

        out = []
        for row in batch.to_pylist():
            start = time.perf_counter()
            item = QueryCandidates(row["qid"], row["query"], *(tuple(row[k]) for k in ("doc_ids", "scores", "titles", "texts")))
            done = rerank_query(self.reranker, item, self.first_stage)
            out.append({"qid": done.qid, "doc_ids": list(done.doc_ids), "scores": list(done.scores),
                        "seconds": time.perf_counter() - start})
        return pa.Table.from_pylist(out)


def rerank_on_ray(
    items: Sequence[QueryCandidates],
    *,
    model: str | None = None,
    backend: str = "auto",
    max_length: int | None = None,
    first_stage: FirstStage | None = None,
    workers: int | None = None,
    cpus_per_worker: int = 1,
    queries_per_batch: int = 8,
    retries: int = 3,
    progress: bool = False,
    worker_cls: type = RerankWorker,
) -> RerankedRun:
    """Rerank ``items`` across the connected Ray cluster (:func:`winnow.scale.cluster.connect` first).

    ``workers``: actors (default the cluster's CPUs // ``cpus_per_worker``); ``queries_per_batch``:
    queries per ``map_batches`` call, lowered so every worker gets a few; ``retries``: restarts of a dead
    actor and re-runs of its batch. ``worker_cls``: the ``map_batches`` class (tests pass one that dies)."""
    import ray
    import ray.data

    from winnow.scale.cluster import map_with_actors, portable_name, quiet_ray_data

    if cpus_per_worker < 1 or queries_per_batch < 1 or retries < 0:
        raise InvalidArgumentError(
            f"cpus_per_worker and queries_per_batch must be >= 1 and retries >= 0, got "
            f"{cpus_per_worker}, {queries_per_batch} and {retries}"
        )
    if workers is None:
        workers = max(1, int(ray.cluster_resources().get("CPU", 1)) // cpus_per_worker)
    if workers < 1:
        raise InvalidArgumentError(f"workers must be >= 1 (or None for every CPU of the cluster), got {workers}")
    start = time.perf_counter()
    if not items:
        return _assemble(items, {}, workers=0, duplicates=0, seconds=0.0, model_seconds=0.0)
    reranker = make_reranker(model, backend=backend, max_length=max_length)
    rows = max(1, min(queries_per_batch, math.ceil(len(items) / (2 * workers))))
    blocks = math.ceil(len(items) / rows)
    actors = min(workers, blocks)
    quiet_ray_data(progress=False)  # the driver shows one bar of queries done instead
    ds = ray.data.from_items(
        [{"qid": i.qid, "query": i.query, "doc_ids": list(i.doc_ids), "scores": list(i.scores),
          "titles": list(i.titles), "texts": list(i.texts)} for i in items],
        override_num_blocks=blocks,
    )
    ds = map_with_actors(
        ds, worker_cls,
        {"model": portable_name(reranker.resolved), "backend": str(reranker.backend), "max_length": max_length,
         "first_stage": None if first_stage is None else str(first_stage), "threads": cpus_per_worker},
        actors=actors, cpus_per_actor=cpus_per_worker, batch_rows=rows, batch_format="pyarrow", retries=retries,
    )
    done: dict[str, RerankedQuery] = {}
    duplicates, model_seconds = 0, 0.0
    bar = _progress(len(items)) if progress else None
    try:
        for row in ds.iter_rows():
            if row["qid"] in done:
                duplicates += 1
                continue
            done[row["qid"]] = RerankedQuery(row["qid"], tuple(row["doc_ids"]), tuple(float(s) for s in row["scores"]))
            model_seconds += float(row["seconds"])
            if bar is not None:
                bar.update(1)
    except ray.exceptions.RayError as exc:
        raise ClusterError(f"reranking on Ray failed after {retries} retries per batch: {exc}") from exc
    finally:
        if bar is not None:
            bar.close()
    if duplicates:
        log.warning("%d query(ies) came back from Ray more than once (a retried batch); each was kept once", duplicates)
    return _assemble(items, done, workers=actors, duplicates=duplicates, seconds=time.perf_counter() - start,
                     model_seconds=model_seconds)


def _assemble(items, done: Mapping[str, RerankedQuery], *, workers: int, duplicates: int, seconds: float,
              model_seconds: float) -> RerankedRun:
    lost = [i.qid for i in items if i.qid not in done]
    if lost:
        raise ClusterError(f"{len(lost)} of {len(items)} queries never came back from the workers (first: {lost[:5]})")
    run = {i.qid: tuple(zip(done[i.qid].doc_ids, done[i.qid].scores)) for i in items}
    pairs = sum(len(i.doc_ids) for i in items)
    log.info("reranked %d queries (%d pairs) in %.1f s on %s", len(items), pairs, seconds,
             f"{workers} Ray workers" if workers else "this process")
    return RerankedRun(run, len(items), pairs, workers, duplicates, seconds, model_seconds)


def _progress(total: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="reranking", unit="query")
