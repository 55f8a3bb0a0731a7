"""Routes: the model endpoints existing clients speak: rerank (Cohere / Jina / TEI / Infinity) and
embeddings (OpenAI).

``/rerank`` ranks through the library's reranker (``rank``, no first-stage mix: bare documents have no
first-stage scores). Long documents: TEI's ``truncate`` (false: 413 for a document the reranker would cut)
and ``truncation_direction``, and winnow's ``max_windows`` / ``aggregation`` (:mod:`winnow.rerank.reading`);
each result says how many of its tokens were read and cut, and ``/metrics`` sums them."""

import base64
import time
import uuid
from typing import Any

import numpy as np
from starlette.concurrency import run_in_threadpool

from winnow.serve import schemas as S
from winnow.serve.context import AppContext
from winnow.serve.errors import ApiError
from winnow.serve.limits import check_text, check_texts


def models_router(ctx: AppContext):
    api = ctx.router()
    registry, limits, metrics = ctx.registry, ctx.limits, ctx.metrics

    # -- rerank: Cohere / Jina / TEI / Infinity ----------------------------------------------------------
    async def rerank(req: S.RerankRequest) -> S.RerankResponse:
        name = registry.rerank_name(req.model)
        check_text(req.query, limits, "query")
        texts = [_document_text(d, i, req.rank_fields) for i, d in enumerate(req.documents)]
        check_texts(texts, limits, "document")
        reading = _reading(req)
        start = time.perf_counter()
        ranking = await registry.rank(name, req.query, texts, reading)
        metrics.stage.observe(time.perf_counter() - start, "rerank")
        metrics.on_rerank(ranking.rerank_stats, "rerank")
        hits = ranking.hits if req.top_n is None else ranking.hits[: req.top_n]
        results = [
            S.RerankResult(
                index=int(h.doc_id),
                relevance_score=float(1.0 / (1.0 + np.exp(-h.rerank_score))),  # relevance in 0..1, as Cohere/TEI give
                document=_returned_document(req.documents[int(h.doc_id)]) if req.return_documents else None,
                read_tokens=h.read_tokens,
                truncated_tokens=h.truncated_tokens,
            )
            for h in hits
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

    return api


def _reading(req: S.RerankRequest):
    """The request's truncate / truncation_direction (TEI) and max_windows / aggregation (winnow) as a Reading."""
    from winnow.rerank.reading import Reading, Truncation
    from winnow.rerank.windows import Aggregation

    return Reading(
        max_windows=req.max_windows,
        aggregation=Aggregation(req.aggregation),
        truncation=Truncation.parse(req.truncation_direction),
        truncate=req.truncate is not False,
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
