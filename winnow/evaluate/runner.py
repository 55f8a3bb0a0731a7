"""Run several retrieval setups over one BEIR dataset and measure them the same way.

The corpus is indexed once per (corpus content, bi-encoder) into a collection under a cache home
(default ``$WINNOW_HOME/.eval-cache``), named ``<dataset>-<hash>``; a later evaluation of the same
corpus with the same model opens it instead of encoding again.

Methods are ``bm25``, ``dense``, ``hybrid`` (first stage, ``run_depth`` deep), ``X>rerank`` (the
first stage ``X`` ``depth`` deep, all candidates reranked by the cross-encoder, with its mix fitted for
``X`` where it has one) and ``X>rerank-alone`` (the same, ordered by the cross-encoder's score alone).
With ``late_interaction`` (a ColBERT model: the corpus cache keeps its token vectors) also ``late`` (the
late-interaction first stage) and ``X>late`` / ``X>late-alone`` (candidates reranked by exact MaxSim over
the stored token vectors, with / without the ColBERT model's fitted mix). Each judged query is
searched and timed per stage; queries are sent ``batch_size`` at a time (1 = true per-query latency,
larger = faster runs with latencies amortized over the batch).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from winnow.errors import InvalidArgumentError, ModelNotFoundError, WinnowError
from winnow.evaluate.dataset import BeirDataset
from winnow.evaluate.metrics import DEFAULT_METRICS, evaluate_run, parse_metrics
from winnow.evaluate.significance import PairedTest, paired_test
from winnow.storage import write_json_atomic

log = logging.getLogger(__name__)

FIRST_STAGES = ("bm25", "dense", "hybrid", "late")  # late: needs a corpus cache with late interaction
RERANK_SUFFIX = ">rerank"
ALONE_SUFFIX = ">rerank-alone"  # the reranker's own score, no fitted mix with the first stage
LATE_SUFFIX = ">late"  # reranked by MaxSim over the stored token vectors
LATE_ALONE_SUFFIX = ">late-alone"
SUFFIXES = (RERANK_SUFFIX, ALONE_SUFFIX, LATE_SUFFIX, LATE_ALONE_SUFFIX)
VALID_METHODS = FIRST_STAGES + tuple(f"{m}{sfx}" for sfx in SUFFIXES for m in FIRST_STAGES)
RUN_DEPTH = 1000  # first-stage-only methods: enough for R@1000 (and what the hybrid legs read)


@dataclass(frozen=True)
class MethodSpec:
    name: str
    first_stage: str
    rerank: bool
    mix: bool = True  # with rerank: apply the reranker's mix fitted for this first stage (False: its score alone)
    late: bool = False  # with rerank: the stored-token-vector MaxSim reranker, not the cross-encoder

    @property
    def needs_late_interaction(self) -> bool:
        return self.late or self.first_stage == "late"


def parse_methods(text: str | Sequence[str]) -> tuple[MethodSpec, ...]:
    """``"bm25,dense,hybrid>rerank"`` -> specs; unknown or repeated names raise, listing the valid ones."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text)]
    names = [n.replace(" ", "") for n in names if n]
    if not names:
        raise InvalidArgumentError(f"no methods given; choose from: {', '.join(VALID_METHODS)}")
    specs = []
    for name in names:
        if name not in VALID_METHODS:
            raise InvalidArgumentError(f"unknown method {name!r}; choose from: {', '.join(VALID_METHODS)}")
        if any(s.name == name for s in specs):
            raise InvalidArgumentError(f"method {name!r} is listed twice")
        suffix = next((sfx for sfx in SUFFIXES if name.endswith(sfx)), "")
        first = name.removesuffix(suffix)
        specs.append(MethodSpec(name, first, bool(suffix), mix=suffix not in (ALONE_SUFFIX, LATE_ALONE_SUFFIX),
                                late=suffix in (LATE_SUFFIX, LATE_ALONE_SUFFIX)))
    return tuple(specs)


# -- the corpus cache ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CorpusCache:
    """Where the dataset's corpus is indexed, and what building it cost."""

    name: str
    path: Path
    model: str
    documents: int
    chunks: int
    generation: int
    cached: bool  # True when this run encoded nothing
    encode_seconds: float  # what indexing the corpus took when the cache was built
    backend: str = "torch"  # the bi-encoder backend that encoded the corpus and encodes the queries


def resolved_backend(backend: str | None) -> str:
    """The bi-encoder backend ``backend`` (None: winnow's default) resolves to on this machine."""
    try:
        from winnow.models.backends import resolve_backend
    except ImportError:  # a winnow without backends: torch only
        return "torch"
    return resolve_backend(backend or "auto")


def cache_name(
    dataset: BeirDataset, model: str, backend: str | None = None, store: str | None = None,
    late_interaction: str | None = None, compression: str | None = None,
) -> str:
    """``<dataset folder>-<12 hex>``: the hash covers the corpus content, the bi-encoder's name, the
    backend that encodes it (int8 vectors differ a little from fp32 ones), where the first stage lives, and
    the late-interaction model and compression where token vectors are kept."""
    from winnow.models.resolve import resolve_model

    digest = hashlib.blake2b(digest_size=6)
    digest.update(dataset.corpus_hash.encode())
    digest.update(resolve_model(model).name.encode())
    digest.update(resolved_backend(backend).encode())
    if store not in (None, "", "local"):
        digest.update(store.encode())
    if late_interaction is not None:
        from winnow.index.late import DEFAULT_COMPRESSION
        from winnow.models.fingerprint import model_fingerprint

        digest.update(b"late:" + model_fingerprint(resolve_model(late_interaction).path).encode())
        digest.update((compression or DEFAULT_COMPRESSION.value).encode())
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", dataset.name).strip("-.") or "dataset"
    return f"{slug[:48]}-{digest.hexdigest()}"


def default_cache_dir(home: Path | str | None = None) -> Path:
    from winnow.collection import default_home

    return (Path(home) if home is not None else default_home()) / ".eval-cache"


@contextlib.contextmanager
def _build_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def open_corpus_cache(
    dataset: BeirDataset,
    *,
    cache_dir: Path | str,
    model: str | None = None,
    backend: str | None = None,
    progress: bool = False,
    store: str | None = None,
    late_interaction: str | None = None,
    compression: str | None = None,
):
    """The collection holding ``dataset``'s corpus (built on first use) and a :class:`CorpusCache`.
    ``backend`` picks the bi-encoder backend (None: winnow's default for this machine); ``store`` where its
    first stage lives, ``late_interaction``/``compression`` the token vectors it keeps (see
    :meth:`winnow.collection.Collection.create`)."""
    from winnow.collection import Collection
    from winnow.models.resolve import DEFAULT_BI_ENCODER

    model = model or DEFAULT_BI_ENCODER
    cache_dir = Path(cache_dir)
    name = cache_name(dataset, model, backend, store, late_interaction, compression)
    meta_path = cache_dir / f"{name}.eval.json"
    with _build_lock(cache_dir / f".{name}.lock"):
        col = Collection.open_or_create(name, home=cache_dir, model=model, store=store,
                                        late_interaction=late_interaction, compression=compression)
        if backend is not None and hasattr(col, "use_backend"):
            col.use_backend(backend)
        meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
        complete = meta.get("generation") == col.generation and meta.get("documents") == len(col) > 0
        if complete:
            log.info("corpus cache hit: %s (%d documents, generation %d)", col.path, len(col), col.generation)
            cached = True
        else:
            docs = dataset.read_corpus()
            log.info("indexing %d documents of %s into the cache %s", len(docs), dataset.name, col.path)
            report = col.add(docs, upsert=True, progress=progress)
            cached = report.chunks_encoded == 0
            meta = {
                "dataset": str(dataset.path),
                "corpus_hash": dataset.corpus_hash,
                "model": col.model_name,
                "documents": len(col),
                "generation": col.generation,
                "encode_seconds": meta.get("encode_seconds") if cached else report.seconds,
                "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            write_json_atomic(meta_path, meta, sort_keys=True)
    info = col.info()
    return col, CorpusCache(
        name=name,
        path=col.path,
        model=col.model_name,
        documents=info.documents,
        chunks=info.chunks,
        generation=info.generation,
        cached=cached,
        encode_seconds=float(meta.get("encode_seconds") or 0.0),
        backend=str(getattr(col.encoder, "backend", "torch")),
    )


# -- results --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Latency:
    p50: float
    p95: float
    mean: float


@dataclass(frozen=True)
class CalibrationCheck:
    """How well a method's calibrated probabilities match the judgments: over every hit it returned with a
    probability (an unjudged hit counts as not relevant, as the measures count it; judged-only would make
    a set whose qrels list only relevant passages, like msmarco's, look all relevant), the expected
    calibration error (10 equal-width bins) and the reliability diagram's bins."""

    ece: float
    pairs: int
    bins: tuple[tuple[float, float, int], ...]  # (mean probability, fraction relevant, hits) per bin


@dataclass(frozen=True)
class MethodResult:
    method: str
    metrics: Mapping[str, float]
    per_query: Mapping[str, Mapping[str, float]]  # metric -> {qid: value}
    latency_ms: Mapping[str, Latency]  # stage -> percentiles over queries; "total" is the whole search
    run: Mapping[str, tuple[tuple[str, float], ...]]  # qid -> ((doc_id, score), ...) best first
    no_results: int  # judged queries for which the method returned nothing
    tests: Mapping[str, PairedTest] = field(default_factory=dict)  # metric -> test against the baseline
    calibration: CalibrationCheck | None = None  # where the hits carry calibrated probabilities


@dataclass(frozen=True)
class EvalReport:
    dataset: str
    dataset_path: str
    split: str
    queries: int
    judged: int
    metrics: tuple[str, ...]
    rel: int
    depth: int
    run_depth: int
    batch_size: int
    reranker: str | None
    corpus: CorpusCache
    methods: tuple[MethodResult, ...]
    created: str
    query_texts: Mapping[str, str] = field(default_factory=dict)  # judged qid -> the query's text

    @property
    def baseline(self) -> str:
        return self.methods[0].method

    @property
    def primary_metric(self) -> str:
        return self.metrics[0]


# -- running --------------------------------------------------------------------------------------


def _latency(values: Sequence[float]) -> Latency:
    arr = np.asarray(values, dtype=np.float64)
    return Latency(float(np.percentile(arr, 50)), float(np.percentile(arr, 95)), float(arr.mean()))


def _search_fn(
    spec: MethodSpec, col, *, reranker, depth: int, run_depth: int, dense_index: str, reading=None, budget=None
) -> Callable:
    """queries -> rankings for one method (``reading``/``budget``: the rerank stage's, see :class:`Pipeline`)."""
    from winnow.pipeline import Pipeline

    retriever = col.retriever(spec.first_stage, dense_index=dense_index)
    if not spec.rerank:  # with the shipped first-stage calibrator where one fits: its ECE is reported too
        try:
            calibrator = col.first_stage_calibrator(spec.first_stage)
        except (InvalidArgumentError, ModelNotFoundError):
            return lambda queries: retriever.search_many(queries, run_depth)
        return Pipeline(retriever, None, top_k=run_depth, first_stage_calibrator=calibrator).search_many

    if spec.late:
        reranker = col.late_reranker(use_mix=spec.mix)
    pipeline = Pipeline(
        retriever, reranker, depth=depth, top_k=depth, hydrate=col.hydrate, mix=spec.mix,
        reading=reading, budget=budget, documents=col.get,
    )
    return pipeline.search_many


def run_method(
    spec: MethodSpec,
    col,
    dataset: BeirDataset,
    measures: Sequence,
    *,
    reranker=None,
    depth: int = 100,
    run_depth: int = RUN_DEPTH,
    batch_size: int = 1,
    dense_index: str = "auto",
    rel: int = 1,
    reading=None,
    budget=None,
) -> MethodResult:
    search = _search_fn(
        spec, col, reranker=reranker, depth=depth, run_depth=run_depth, dense_index=dense_index, reading=reading, budget=budget
    )
    qids = list(dataset.judged)
    texts = [dataset.queries[q] for q in qids]
    search(texts[:1])  # warm-up (model loading, JIT): not timed
    run: dict[str, tuple[tuple[str, float], ...]] = {}
    stages: dict[str, list[float]] = {}
    totals: list[float] = []
    probabilities: list[tuple[float, float]] = []  # (probability, relevant?) of the hits; unjudged: not relevant
    for start in range(0, len(qids), batch_size):
        batch = texts[start : start + batch_size]
        t0 = time.perf_counter()
        rankings = search(batch)
        per_query = (time.perf_counter() - t0) * 1000.0 / len(batch)
        for qid, ranking in zip(qids[start : start + batch_size], rankings):
            run[qid] = tuple((h.doc_id, float(h.score)) for h in ranking.hits)
            judged = dataset.qrels.get(qid, {})
            probabilities += [(h.probability, float(judged.get(h.doc_id, 0) >= rel)) for h in ranking.hits
                              if h.probability is not None]
            totals.append(per_query)
            for stage, ms in ranking.timings_ms.items():
                stages.setdefault(stage, []).append(float(ms))
    means, per_query_values = evaluate_run(measures, dataset.qrels, run, qids)
    latency = {stage: _latency(v) for stage, v in stages.items()}
    latency["total"] = _latency(totals)
    return MethodResult(
        method=spec.name,
        metrics=means,
        per_query=per_query_values,
        latency_ms=latency,
        run=run,
        no_results=sum(1 for q in qids if not run.get(q)),
        calibration=_calibration_check(probabilities),
    )


def _calibration_check(pairs: list[tuple[float, float]]) -> CalibrationCheck | None:
    if not pairs:
        return None
    from winnow.rerank.calibration import expected_calibration_error, reliability_bins

    p, y = np.asarray([a for a, _ in pairs]), np.asarray([b for _, b in pairs])
    return CalibrationCheck(expected_calibration_error(p, y), len(pairs), tuple(reliability_bins(p, y)))


def evaluate(
    dataset: BeirDataset,
    methods: str | Sequence[str],
    *,
    cache_dir: Path | str,
    metrics: Sequence[str] = DEFAULT_METRICS,
    rel: int = 1,
    depth: int = 100,
    run_depth: int = RUN_DEPTH,
    rerank: str | None = None,
    reranker=None,
    model: str | None = None,
    backend: str | None = None,
    batch_size: int = 1,
    dense_index: str = "auto",
    max_length: int | None = None,
    progress: bool = False,
    on_method: Callable[[MethodResult], None] | None = None,
    reading=None,
    budget=None,
    store: str | None = None,
    cascade: str | None = None,
    cascade_depth: int = 20,
    late_interaction: str | None = None,
    compression: str | None = None,
) -> EvalReport:
    """Evaluate ``methods`` on the judged queries of ``dataset``; ``reranker`` (an object) wins over ``rerank``
    (a cross-encoder id or folder) for the ``X>rerank`` methods. ``reading`` (a
    :class:`~winnow.rerank.reading.Reading`) and ``budget`` (a :class:`~winnow.rerank.budget.Budget`) set how
    the rerank stage reads long candidates and how long it may take; ``cascade`` (a small reranker's id or
    folder) reads every candidate first and the reranker only the best ``cascade_depth``. ``late_interaction``
    (a ColBERT model) and ``compression``: the corpus cache keeps its token vectors, for the late methods."""
    specs = parse_methods(methods)
    late = [s.name for s in specs if s.needs_late_interaction]
    if late and late_interaction is None:
        raise InvalidArgumentError(f"method(s) {', '.join(late)} read stored token vectors: pass --late-interaction MODEL "
                                   f"(a ColBERT model, e.g. one winnow train colbert wrote)")
    measures = parse_metrics(metrics, rel=rel)
    for name, value, low in (("depth", depth, 1), ("run_depth", run_depth, 1), ("batch_size", batch_size, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InvalidArgumentError(f"{name} must be an integer >= {low}, got {value!r}")
    if not dataset.judged:
        raise WinnowError(f"no query of {dataset.path} has judgments in qrels/{dataset.split}.tsv: nothing to evaluate")
    if any(s.rerank and not s.late for s in specs) and reranker is None:
        reranker = _make_reranker(rerank, [s.name for s in specs if s.rerank and not s.late], max_length, backend)
    if cascade and reranker is not None:
        from winnow.rerank.cascade import with_cascade

        reranker = with_cascade(reranker, cascade, first_depth=depth, depth=cascade_depth, cache=False)
    col, cache = open_corpus_cache(dataset, cache_dir=cache_dir, model=model, backend=backend, progress=progress,
                                   store=store, late_interaction=late_interaction, compression=compression)
    results: list[MethodResult] = []
    try:
        for spec in specs:
            log.info("evaluating %s on %d judged queries", spec.name, len(dataset.judged))
            result = run_method(
                spec, col, dataset, measures, reranker=reranker, depth=depth, run_depth=run_depth,
                batch_size=batch_size, dense_index=dense_index, rel=rel, reading=reading, budget=budget,
            )
            if results:
                base = results[0]
                tests = {m: paired_test(base.per_query[m], result.per_query[m]) for m in result.per_query}
                result = MethodResult(**{**result.__dict__, "tests": tests})
            results.append(result)
            if on_method is not None:
                on_method(result)
    finally:
        col.close()
    return EvalReport(
        dataset=dataset.name,
        dataset_path=str(Path(dataset.path).resolve()),
        split=dataset.split,
        queries=len(dataset.queries),
        judged=len(dataset.judged),
        metrics=tuple(str(m) for m in measures),
        rel=rel,
        depth=depth,
        run_depth=run_depth,
        batch_size=batch_size,
        reranker=_reranker_name(reranker, specs, late_interaction),
        corpus=cache,
        methods=tuple(results),
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        query_texts={q: dataset.queries[q] for q in dataset.judged},
    )


def _reranker_name(reranker, specs: Sequence[MethodSpec], late_interaction: str | None) -> str | None:
    """What the report names as the second stage: the cross-encoder, and/or the stored-vector MaxSim."""
    names = [getattr(reranker, "name", None)] if reranker is not None else []
    if any(s.late for s in specs):
        names.append(f"late:{late_interaction}")
    return " and ".join(n for n in names if n) or None


def _make_reranker(model: str | None, methods: list[str], max_length: int | None, backend: str | None):
    if not model:
        from winnow.models.resolve import default_reranker

        try:
            model = default_reranker()
        except ModelNotFoundError as exc:
            raise InvalidArgumentError(f"method(s) {', '.join(methods)} need a reranker: pass --rerank MODEL; {exc}") from exc
    from winnow.rerank.cross_encoder import CrossEncoderReranker

    # every query scored afresh (no score cache): honest latencies
    return CrossEncoderReranker(model, max_length=max_length, cache=False, backend=backend or "auto")
