"""The HTTP API: ``create_app(settings)`` builds the FastAPI app (OpenAPI at ``/docs``).

Routes
  GET  /health, GET /metrics (Prometheus)
  GET|POST /collections, GET /collections/{name} (= /stats), DELETE /collections/{name}
  POST /collections/{name}/documents (add/upsert), POST /collections/{name}/documents:delete,
  GET|DELETE /collections/{name}/documents/{id}
  POST /collections/{name}/search
  POST /rerank (also /v1/rerank, /v2/rerank): the shape Cohere, Jina, TEI and Infinity share
  POST /v1/embeddings (also /embeddings): OpenAI's shape
  GET  /reports, GET /reports/{name}: the eval reports of --reports DIR
  GET  / (and /static/*): the web page, which uses only the routes above

The routes live in ``routes_collections``, ``routes_search`` and ``routes_models``; this module builds
the app from them (middlewares, open routes, the server's parts in an :class:`AppContext`).
"""


import logging
import time
from contextlib import asynccontextmanager

from winnow.serve import schemas as S
from winnow.serve.limits import BodyLimitMiddleware
from winnow.serve.metrics import Metrics
from winnow.serve.settings import ServeSettings

log = logging.getLogger(__name__)


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
    from fastapi import FastAPI, Response
    from starlette.concurrency import run_in_threadpool

    from winnow import __version__
    from winnow.serve import errors
    from winnow.serve.catalog import CollectionCatalog
    from winnow.serve.context import AppContext
    from winnow.serve.models import ModelRegistry
    from winnow.serve.routes_collections import collections_router
    from winnow.serve.page import install_page, open_paths as page_paths
    from winnow.serve.routes_models import models_router
    from winnow.serve.routes_reports import reports_router
    from winnow.serve.routes_search import search_router

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
    open_paths = frozenset({"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}) | page_paths()
    # the key is checked before the body is read: a client without it learns nothing of the size limits
    app.add_middleware(BodyLimitMiddleware, max_bytes=limits.max_body_bytes, api_key=settings.api_key, open_paths=open_paths)
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    ctx = AppContext(settings, metrics, registry, catalog)
    api = ctx.router()
    routers = [api]

    # -- open routes -------------------------------------------------------------------------------------
    @app.get("/health", response_model=S.Health, tags=["server"])
    def health() -> S.Health:
        return S.Health(
            version=__version__,
            collections=len(catalog.names()),
            rerank_models=sorted(set(registry.rerank_aliases.values())),
            embed_models=sorted(set(registry.embed_aliases.values())),
            batching=settings.batching.enabled,
            default_rerank_model=registry.default_rerank,
            api_key_required=settings.api_key is not None,
            reports=settings.reports is not None,
        )

    @api.get(
        "/metrics",
        tags=["server"],
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    def prometheus() -> Response:
        return Response(metrics.render(registry.cache_lines()), media_type="text/plain; version=0.0.4; charset=utf-8")

    for make in (collections_router, search_router, models_router, reports_router):
        routers.append(make(ctx))
    for router in routers:
        app.include_router(router)
    install_page(app)  # GET / and /static/*: the web page (open, like /docs)
    app.state.route_methods = [
        (r.path_regex, set(r.methods))
        for r in [*(route for router in routers for route in router.routes), *app.router.routes]
        if getattr(r, "methods", None) and hasattr(r, "path_regex")
    ]
    return app
