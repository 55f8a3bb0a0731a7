"""Route: search a collection (first stage, then the library's reranker; see docs/serving.md)."""

import time
from dataclasses import replace

from winnow.serve import schemas as S
from winnow.serve.context import AppContext, CollectionName
from winnow.serve.errors import ApiError
from winnow.serve.first_stage import split_stages
from winnow.serve.limits import check_text
from winnow.serve.models import ModelNotServedError


def search_router(ctx: AppContext):
    api = ctx.router()
    catalog, registry, limits, metrics = ctx.catalog, ctx.registry, ctx.limits, ctx.metrics

    @api.post("/collections/{name}/search", response_model=S.SearchResponse, tags=["search"])
    def search(name: CollectionName, req: S.SearchRequest) -> S.SearchResponse:
        """First stage (bm25, dense, hybrid or late; metadata filter applied before top-k) then the reranker.
        Each hit carries its first-stage rank and score and its reranker score; timings are per stage."""
        check_text(req.query, limits, "query")
        reranker = None
        wanted, model = req.reranking()
        col = catalog.get(name).reader()
        if req.late_rerank():
            reranker = col.late_reranker()
        elif wanted and not (model is None and registry.default_rerank is None):
            try:
                reranker = registry.reranker(registry.rerank_name(model))
            except ModelNotServedError as exc:  # the collection exists; the request's field is what is wrong
                raise ApiError(422, str(exc)) from None
        depth = req.depth if req.depth is not None else max(100, req.top_k)
        if reranker is not None and depth < req.top_k:  # as the library and the CLI refuse it
            raise ApiError(422, f"depth must be >= top_k ({req.top_k}) so the reranker has enough candidates, got {depth}")
        if req.cascade is not None:
            reranker = _with_cascade(registry, reranker, req, depth)
        top_k = req.top_k
        both = req.include_first_stage and reranker is not None  # rerank every candidate, split below
        start = time.perf_counter()
        ranking = col.search(
            req.query,
            method=req.method,
            top_k=max(depth, top_k) if both else top_k,
            depth=max(depth, top_k),
            reranker=reranker,
            dense_index=req.dense_index,
            filter=req.filter_spec(),
            first_stage_calibrator=None if reranker is not None else _first_stage_calibrator(col, req),
            **_rerank_stage(req),
        )
        metrics.on_rerank(ranking.rerank_stats, "search")
        first_stage = ranking.hits if req.include_first_stage else None
        if both:
            stages = split_stages(ranking.hits, top_k)
            ranking, first_stage = replace(ranking, hits=stages.final), stages.first_stage
        if req.min_probability is not None:
            from winnow.rerank.calibration import keep_probable

            ranking = keep_probable(ranking, req.min_probability)  # a typed error (422) without calibration
        timings = {k: round(v, 3) for k, v in ranking.timings_ms.items()}
        timings["total"] = round((time.perf_counter() - start) * 1000.0, 3)
        for stage, ms in timings.items():
            metrics.stage.observe(ms / 1000.0, stage)
        return S.SearchResponse(
            query=ranking.query,
            method=req.method,
            reranker=reranker.name if reranker is not None else None,
            hits=[S.SearchHit(**h.to_json()) for h in ranking.hits],
            timings_ms=timings,
            first_stage=None if first_stage is None else [S.SearchHit(**h.to_json()) for h in first_stage],
        )

    return api


def _first_stage_calibrator(col, req: S.SearchRequest):
    """A first-stage-only search's calibrator: always where one fits the collection (hits then carry
    probabilities); where none does, an error only if the request filters by ``min_probability``."""
    from winnow.errors import InvalidArgumentError, ModelNotFoundError

    try:
        return col.first_stage_calibrator(req.method)
    except (InvalidArgumentError, ModelNotFoundError):
        if req.min_probability is not None:
            raise
        return None


def _with_cascade(registry, reranker, req: S.SearchRequest, depth: int):
    """The request's cascade: its served small reranker reads all ``depth`` candidates, ``reranker`` the best
    ``cascade_depth`` (as ``winnow search --cascade``)."""
    from winnow.rerank.cascade import with_cascade
    from winnow.rerank.cross_encoder import CrossEncoderReranker

    if not isinstance(reranker, CrossEncoderReranker):
        raise ApiError(422, "cascade puts a small reranker before the cross-encoder reranker: it needs rerank set to "
                       "a served cross-encoder (not false or 'late')")
    try:
        small = registry.reranker(registry.rerank_name(req.cascade))
    except ModelNotServedError as exc:
        raise ApiError(422, f"cascade: {exc}") from None
    return with_cascade(reranker, small, first_depth=depth, depth=req.cascade_depth)


def _rerank_stage(req: S.SearchRequest) -> dict:
    """The request's budget_ms / max_windows / aggregation as Collection.search's budget and reading."""
    from winnow.rerank.budget import Budget
    from winnow.rerank.reading import Reading
    from winnow.rerank.windows import Aggregation

    reading = None if req.max_windows is None else Reading(max_windows=req.max_windows, aggregation=Aggregation(req.aggregation))
    budget = None if req.budget_ms is None else Budget(req.budget_ms, k=req.top_k)
    return {"reading": reading, "budget": budget}
