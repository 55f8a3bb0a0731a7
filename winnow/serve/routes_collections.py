"""Routes: collections and their documents (list, create, stats, drop; add/upsert, delete, get)."""

from dataclasses import asdict

from fastapi import Response

from winnow.limits import check_document_sizes
from winnow.serve import schemas as S
from winnow.serve.context import AppContext, CollectionName
from winnow.serve.errors import ApiError
from winnow.serve.limits import check_count
from winnow.types import Document


def collections_router(ctx: AppContext):
    api = ctx.router()
    catalog, registry, limits = ctx.catalog, ctx.registry, ctx.limits
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
        reader = catalog.get(name).reader()
        doc = reader.get([doc_id]).get(doc_id)
        if doc is None:
            raise ApiError(404, f"no document with id {doc_id!r} in collection {name!r}")
        chunks = [S.ChunkOut(index=c.index, start=c.start, end=c.end, text=c.text) for c in reader.chunks_of(doc_id)]
        return S.DocumentOut(id=doc.id, text=doc.text, title=doc.title, metadata=dict(doc.metadata), chunks=chunks)

    @api.post("/collections/{name}:optimize", response_model=S.OptimizeResponse, tags=["collections"])
    def optimize_collection(name: CollectionName) -> S.OptimizeResponse:
        """Merge every segment into one and purge deleted chunks (``winnow optimize``); searches go on meanwhile."""
        return S.OptimizeResponse(**asdict(catalog.get(name).write(lambda col: col.optimize())))

    @api.delete("/collections/{name}/documents/{doc_id:path}", response_model=S.WriteResponse, tags=["documents"])
    def delete_document(name: CollectionName, doc_id: str) -> S.WriteResponse:
        return write_response(catalog.get(name).write(lambda col: col.delete([doc_id])))

    return api


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
