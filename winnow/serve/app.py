"""The HTTP API: ``create_app(settings)`` builds the FastAPI app (OpenAPI at ``/docs``).

Routes
  GET  /health, GET /metrics (Prometheus)
  GET|POST /collections, GET /collections/{name} (= /stats), DELETE /collections/{name}
  POST /collections/{name}/documents (add/upsert), POST /collections/{name}/documents:delete,
  GET|DELETE /collections/{name}/documents/{id}
  POST /collections/{name}/search
  POST /rerank (also /v1/rerank, /v2/rerank): the shape Cohere, Jina, TEI and Infinity share
  POST /v1/embeddings (also /embeddings): OpenAI's shape
"""


import base64
import logging
import time
import uuid
from contextlib import asynccontextmanager
from typing import Annotated, Any

import numpy as np
from fastapi import Path as PathParam

from winnow.collection import NAME_RE

from winnow.serve import schemas as S
from winnow.serve.errors import ApiError
from winnow.limits import check_document_sizes
from winnow.serve.limits import BodyLimitMiddleware, check_count, check_text, check_texts
from winnow.serve.metrics import Metrics
from winnow.serve.settings import ServeSettings
from winnow.types import Document

log = logging.getLogger(__name__)

ERRORS = {s: {"model": S.ErrorResponse} for s in (400, 401, 404, 409, 413, 422)}
CollectionName = Annotated[str, PathParam(pattern=NAME_RE.pattern, description="collection name")]


class MetricsMiddleware:
    """Counts every request by method, route template and status, and times it."""

    def __init__(self, app, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = {"code": 500}

        async def send_and_record(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.inc(scope["method"], path, str(status["code"]))
            self.metrics.latency.observe(time.perf_counter() - start, path)


def create_app(settings: ServeSettings):
    from fastapi import APIRouter, Depends, FastAPI, Response
    from starlette.concurrency import run_in_threadpool

    from winnow import __version__
    from winnow.serve import errors
    from winnow.serve.auth import key_dependency
    from winnow.serve.catalog import CollectionCatalog
    from winnow.serve.models import ModelNotServedError, ModelRegistry

    metrics = Metrics()
    registry = ModelRegistry(settings, metrics)
    catalog = CollectionCatalog(settings.home, registry, metrics)
    limits = settings.limits

    @asynccontextmanager
    async def lifespan(app):
        await run_in_threadpool(registry.warm_up)
        log.info("winnow serving %s on %s:%s", settings.home, settings.host, settings.port)
        yield
        registry.close()
        catalog.close()

    app = FastAPI(
        title="winnow",
        version=__version__,
        description="Two-stage search over HTTP: collections, search with reranking, and rerank/embedding "
        "endpoints in the shapes Cohere/Jina/TEI/Infinity and OpenAI clients speak.",
        lifespan=lifespan,
    )
    app.state.settings, app.state.metrics, app.state.registry, app.state.catalog = settings, metrics, registry, catalog
    errors.install(app)
    open_paths = frozenset({"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
    # the key is checked before the body is read: a client without it learns nothing of the size limits
    app.add_middleware(BodyLimitMiddleware, max_bytes=limits.max_body_bytes, api_key=settings.api_key, open_paths=open_paths)
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    api = APIRouter(dependencies=[Depends(key_dependency(settings.api_key))], responses=ERRORS)

    # -- open routes -------------------------------------------------------------------------------------
    @app.get("/health", response_model=S.Health, tags=["server"])
    def health() -> S.Health:
        return S.Health(
            version=__version__,
            collections=len(catalog.names()),
            rerank_models=sorted(set(registry.rerank_aliases.values())),
            embed_models=sorted(set(registry.embed_aliases.values())),
            batching=settings.batching.enabled,
        )

    @api.get(
        "/metrics",
        tags=["server"],
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    def prometheus() -> Response:
        return Response(metrics.render(registry.cache_lines()), media_type="text/plain; version=0.0.4; charset=utf-8")

    # -- collections -------------------------------------------------------------------------------------
    stats = S.collection_stats

    @api.get("/collections", response_model=S.CollectionList, tags=["collections"])
    def list_collections() -> S.CollectionList:
        return S.CollectionList(collections=[stats(i) for i in catalog.infos()])

    @api.post("/collections", response_model=S.CollectionStats, status_code=201, tags=["collections"])
    def create_collection(req: S.CreateCollectionRequest) -> S.CollectionStats:
        model = registry.embed_name(req.model)
        return stats(catalog.create(req.name, model=model, window=req.window, overlap=req.overlap))

    @api.get("/collections/{name}", response_model=S.CollectionStats, tags=["collections"])
    def collection_stats(name: CollectionName) -> S.CollectionStats:
        return stats(catalog.get(name).reader().info())

    api.add_api_route(
        "/collections/{name}/stats", collection_stats, methods=["GET"], response_model=S.CollectionStats,
        tags=["collections"], name="collection_stats_alias",
    )

    @api.delete("/collections/{name}", status_code=204, response_class=Response, response_model=None, tags=["collections"])
    def delete_collection(name: CollectionName) -> Response:
        catalog.drop(name)
        return Response(status_code=204)

    @api.post("/collections/{name}/documents", response_model=S.WriteResponse, tags=["documents"])
    def add_documents(name: CollectionName, req: S.AddDocumentsRequest) -> S.WriteResponse:
        """Add documents (replacing those with known ids unless ``upsert`` is false). Answers after the write
        is committed to disk: an acknowledged document survives a crash."""
        check_count(len(req.documents), limits, "documents")
        docs = [Document(d.id, d.text, d.title, d.metadata) for d in req.documents]
        check_document_sizes(docs, limits.max_document_chars)  # the library's limit and message (413)
        report = catalog.get(name).write(lambda col: col.add(docs, upsert=req.upsert, max_chars=limits.max_document_chars))
        return write_response(report)

    @api.post("/collections/{name}/documents:delete", response_model=S.WriteResponse, tags=["documents"])
    def delete_documents(name: CollectionName, req: S.DeleteDocumentsRequest) -> S.WriteResponse:
        check_count(len(req.ids), limits, "ids")
        return write_response(catalog.get(name).write(lambda col: col.delete(req.ids)))

    @api.get("/collections/{name}/documents/{doc_id:path}", response_model=S.DocumentOut, tags=["documents"])
    def get_document(name: CollectionName, doc_id: str) -> S.DocumentOut:
        doc = catalog.get(name).reader().get([doc_id]).get(doc_id)
        if doc is None:
            raise ApiError(404, f"no document with id {doc_id!r} in collection {name!r}")
        return S.DocumentOut(id=doc.id, text=doc.text, title=doc.title, metadata=dict(doc.metadata))

    @api.delete("/collections/{name}/documents/{doc_id:path}", response_model=S.WriteResponse, tags=["documents"])
    def delete_document(name: CollectionName, doc_id: str) -> S.WriteResponse:
        return write_response(catalog.get(name).write(lambda col: col.delete([doc_id])))

    # -- search ------------------------------------------------------------------------------------------
    @api.post("/collections/{name}/search", response_model=S.SearchResponse, tags=["search"])
    def search(name: CollectionName, req: S.SearchRequest) -> S.SearchResponse:
        """First stage (bm25, dense or hybrid; metadata filter applied before top-k) then the reranker.
        Each hit carries its first-stage rank and score and its reranker score; timings are per stage."""
        check_text(req.query, limits, "query")
        reranker = None
        wanted, model = req.reranking()
        if wanted and not (model is None and registry.default_rerank is None):
            try:
                reranker = registry.reranker(registry.rerank_name(model))
            except ModelNotServedError as exc:  # the collection exists; the request's field is what is wrong
                raise ApiError(422, str(exc)) from None
        depth = req.depth if req.depth is not None else max(100, req.top_k)
        if reranker is not None and depth < req.top_k:  # as the library and the CLI refuse it
            raise ApiError(422, f"depth must be >= top_k ({req.top_k}) so the reranker has enough candidates, got {depth}")
        top_k = req.top_k
        col = catalog.get(name).reader()
        start = time.perf_counter()
        ranking = col.search(
            req.query,
            method=req.method,
            top_k=top_k,
            depth=max(depth, top_k),
            reranker=reranker,
            dense_index=req.dense_index,
            filter=req.filter_spec(),
        )
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
        )

    # -- rerank: Cohere / Jina / TEI / Infinity ----------------------------------------------------------
    async def rerank(req: S.RerankRequest) -> S.RerankResponse:
        name = registry.rerank_name(req.model)
        check_text(req.query, limits, "query")
        texts = [_document_text(d, i, req.rank_fields) for i, d in enumerate(req.documents)]
        check_texts(texts, limits, "document")
        start = time.perf_counter()
        logits = await registry.logits(name, req.query, texts) if texts else np.zeros(0)
        metrics.stage.observe(time.perf_counter() - start, "rerank")
        order = np.argsort(-np.asarray(logits, dtype=np.float64), kind="stable")
        scores = 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))  # relevance in 0..1, as Cohere/TEI give
        if req.top_n is not None:
            order = order[: req.top_n]
        results = [
            S.RerankResult(
                index=int(i),
                relevance_score=float(scores[i]),
                document=_returned_document(req.documents[i]) if req.return_documents else None,
            )
            for i in order
        ]
        tokens = sum(len(req.query) + len(t) for t in texts) // 4
        return S.RerankResponse(
            id=str(uuid.uuid4()),
            model=name,
            results=results,
            usage=S.RerankUsage(total_tokens=tokens),
            meta={"api_version": {"version": "2"}, "billed_units": {"search_units": 1}},
        )

    for path in ("/rerank", "/v1/rerank", "/v2/rerank"):
        api.add_api_route(
            path,
            rerank,
            methods=["POST"],
            response_model=S.RerankResponse,
            response_model_exclude_none=True,
            tags=["rerank"],
            name=f"rerank{path.replace('/', '_')}",
            summary="Rerank documents for a query (Cohere / Jina / TEI / Infinity shape)",
        )

    # -- embeddings: OpenAI ------------------------------------------------------------------------------
    async def embeddings(req: S.EmbeddingRequest) -> S.EmbeddingResponse:
        name = registry.embed_name(req.model)
        texts = [req.input] if isinstance(req.input, str) else list(req.input)
        if not texts:
            raise ApiError(422, "input is an empty list: give a string or a non-empty list of strings")
        check_texts(texts, limits, "input")
        if req.dimensions is not None:
            dim = await run_in_threadpool(lambda: registry.encoder(name).dim)
            if req.dimensions > dim:
                raise ApiError(
                    422, f"dimensions {req.dimensions} is more than {name!r} gives ({dim}); ask for at most {dim}"
                )
        start = time.perf_counter()
        vectors = await registry.embed(name, texts)
        metrics.stage.observe(time.perf_counter() - start, "embed")
        if req.dimensions is not None and req.dimensions < vectors.shape[1]:
            vectors = vectors[:, : req.dimensions]
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        data = [
            S.Embedding(index=i, embedding=_encode_vector(v, req.encoding_format)) for i, v in enumerate(vectors)
        ]
        tokens = sum(len(t) for t in texts) // 4
        return S.EmbeddingResponse(
            data=data,
            model=req.model or name,
            usage=S.EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens),
        )

    for path in ("/v1/embeddings", "/embeddings"):
        api.add_api_route(
            path,
            embeddings,
            methods=["POST"],
            response_model=S.EmbeddingResponse,
            tags=["embeddings"],
            name=f"embeddings{path.replace('/', '_')}",
            summary="Embed texts (OpenAI shape)",
        )

    app.include_router(api)
    app.state.route_methods = [
        (r.path_regex, set(r.methods))
        for r in [*api.routes, *app.router.routes]
        if getattr(r, "methods", None) and hasattr(r, "path_regex")
    ]
    return app


def write_response(report) -> S.WriteResponse:
    return S.WriteResponse(
        added=report.added,
        updated=report.updated,
        unchanged=report.unchanged,
        deleted=report.deleted,
        missing=list(report.missing),
        chunks_encoded=report.chunks_encoded,
        generation=report.generation,
        seconds=round(report.seconds, 4),
    )


def _document_text(doc: "str | S.RerankDocument", i: int, rank_fields: list[str] | None) -> str:
    if isinstance(doc, str):
        return doc
    doc = doc.model_dump()
    fields = rank_fields or ["text"]
    missing = [f for f in fields if f not in doc]
    if missing:
        raise ApiError(
            422,
            f"documents[{i}] is an object without field(s) {missing}: give strings, objects with \"text\", "
            f"or name the fields to read in rank_fields",
        )
    return "\n".join(f"{f}: {doc[f]}" if len(fields) > 1 else str(doc[f]) for f in fields)


def _returned_document(doc: "str | S.RerankDocument") -> dict[str, Any]:
    return {"text": doc} if isinstance(doc, str) else doc.model_dump()


def _encode_vector(vector: np.ndarray, encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]
