"""Request and response bodies (pydantic), in the shapes clients already speak.

Rerank follows the shape Cohere, Jina, TEI and Infinity share (``model``, ``query``, ``documents``, ``top_n``,
``return_documents`` -> ``results: [{index, relevance_score, document?}]``); embeddings follow OpenAI's
``/v1/embeddings``. Unknown extra fields are ignored, as those APIs' clients send some we don't use.
"""

from __future__ import annotations

import math
from dataclasses import asdict, fields
from typing import Annotated, Any, Literal, get_type_hints

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, create_model, field_validator

from winnow.collection import NAME_RE, CollectionInfo
from winnow.collection_merge import MergeReport
from winnow.errors import InvalidArgumentError
from winnow.rerank.cascade import DEFAULT_CASCADE_DEPTH
from winnow.rerank.reading import MAX_WINDOWS
from winnow.retrieve.filters import check_filter

MAX_METADATA_DEPTH = 8
MAX_TOP_K = 1000  # hits one search returns
MAX_DEPTH = 1000  # candidates one search reranks
MAX_BUDGET_MS = 600_000.0  # the longest rerank budget a request may ask for


def _utf8(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"text is not valid UTF-8 (lone surrogate at position {exc.start})") from None
    return value


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    return value


Text = Annotated[str, AfterValidator(_utf8)]
Int = Annotated[int, BeforeValidator(_not_bool)]  # JSON true/false are not integers


def bounded(ge: int, le: int | None = None):
    """An integer in [ge, le] that refuses booleans (constraints first, so OpenAPI shows them)."""
    return Annotated[int, Field(ge=ge, le=le), BeforeValidator(_not_bool)]


def _check_json(value: Any, depth: int = 0) -> None:
    if depth > MAX_METADATA_DEPTH:
        raise ValueError(f"metadata nests deeper than {MAX_METADATA_DEPTH} levels")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"metadata numbers must be finite, got {value!r}")
    if isinstance(value, str):
        _utf8(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            _utf8(k)
            _check_json(v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            _check_json(v, depth + 1)


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


# -- errors ------------------------------------------------------------------------------------------------
class ErrorDetail(BaseModel):
    message: str
    type: str
    code: int


class ErrorResponse(BaseModel):
    """Every error: ``{"error": {"message", "type", "code"}}`` (the OpenAI shape; the message names the bad value)."""

    error: ErrorDetail


# -- collections -------------------------------------------------------------------------------------------
class CreateCollectionRequest(Body):
    name: Annotated[str, Field(pattern=NAME_RE.pattern, description="1-64 letters, digits, '_', '.', '-'")]
    model: Text | None = Field(None, description="bi-encoder; one the server serves (default: its first)")
    window: Int = Field(256, ge=8, le=8192, description="chunk window in tokens")
    overlap: Int = Field(32, ge=0, le=8191, description="chunk overlap in tokens (less than window)")


# A collection's public facts: winnow.collection.CollectionInfo, field for field, less its filesystem path
# (a server does not tell clients where its files are).
CollectionStats = create_model(
    "CollectionStats",
    **{f.name: (get_type_hints(CollectionInfo)[f.name], ...) for f in fields(CollectionInfo) if f.name != "path"},
)


def collection_stats(info: CollectionInfo) -> BaseModel:
    return CollectionStats(**{k: v for k, v in asdict(info).items() if k != "path"})


class CollectionList(BaseModel):
    collections: list[CollectionStats]


class DocumentIn(Body):
    id: Annotated[Text, Field(min_length=1, max_length=512)]
    text: Annotated[Text, Field(min_length=1)]
    title: Text = ""
    metadata: dict[str, Any] = Field(default_factory=dict, description="JSON object; filterable by field")

    @field_validator("metadata")
    @classmethod
    def _metadata_json(cls, value: dict[str, Any]) -> dict[str, Any]:
        _check_json(value)
        return value


class AddDocumentsRequest(Body):
    documents: Annotated[list[DocumentIn], Field(min_length=1)]
    upsert: StrictBool = Field(True, description="replace documents whose id exists (else such an id is a 409)")


class DeleteDocumentsRequest(Body):
    ids: Annotated[list[Annotated[Text, Field(min_length=1, max_length=512)]], Field(min_length=1)]


class WriteResponse(BaseModel):
    """What a write changed; returned only after the write is committed to disk."""

    added: int
    updated: int
    unchanged: int
    deleted: int
    missing: list[str]
    chunks_encoded: int
    generation: int
    seconds: float


# What POST /collections/{name}:optimize did: winnow.collection_merge.MergeReport, field for field.
OptimizeResponse = create_model(
    "OptimizeResponse", **{f.name: (get_type_hints(MergeReport)[f.name], ...) for f in fields(MergeReport)},
)


class ChunkOut(BaseModel):
    """One chunk of a document: ``text == document.text[start:end]`` (offsets in Unicode code points);
    a search hit's ``chunk`` (``doc_id#index``) names one of these by ``index``."""

    index: int
    start: int
    end: int
    text: str


class DocumentOut(BaseModel):
    id: str
    text: str
    title: str
    metadata: dict[str, Any]
    chunks: list[ChunkOut] = Field(default_factory=list, description="the document's chunks as indexed, in order")


# -- search ------------------------------------------------------------------------------------------------
Scalar = Annotated[str, AfterValidator(_utf8)] | int | float | bool | None


class InCondition(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)
    in_: Annotated[list[Scalar], Field(max_length=1024)] = Field(alias="$in")


class EqCondition(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)
    eq: Scalar = Field(alias="$eq")


def _check_filter(value: Any) -> Any:
    """Check a filter before its typed validation, for a message that names the field and the operators."""
    if value is not None:
        try:
            check_filter(value)
        except InvalidArgumentError as exc:
            raise ValueError(str(exc)) from None
    return value


Filter = Annotated[dict[Text, Scalar | InCondition | EqCondition], BeforeValidator(_check_filter)]


LATE_RERANK = "late"  # the rerank value that scores by the collection's stored token vectors


class SearchRequest(Body):
    query: Annotated[Text, Field(min_length=1)]
    method: Literal["bm25", "dense", "hybrid", "late"] = Field(
        "hybrid", description="first stage; late: MaxSim over the stored ColBERT token vectors (collections indexed "
        "with late interaction)")
    depth: bounded(1, MAX_DEPTH) | None = Field(
        None, description="candidates the reranker reads (default max(100, top_k)); with a reranker at most "
        "depth hits come back"
    )
    top_k: Int = Field(10, ge=1, le=MAX_TOP_K, description="hits to return (at most)")
    rerank: StrictBool | Text | None = Field(
        "default",
        description="reranker: true or 'default' (the server's default: its first --rerank-model, else winnow's "
        "default reranker, else the one winnow ships), a served model name, 'late' (exact MaxSim over the "
        "collection's stored token vectors: collections indexed with late interaction), or false/'none'/null for "
        "the first stage only",
    )
    filter: Filter | None = Field(
        None,
        description='metadata conditions, all must hold: {"field": value} or {"field": {"$in": [v1, v2]}}; '
        "applied before top-k",
        examples=[{"lang": "en", "year": {"$in": [2023, 2024]}}],
    )
    dense_index: Literal["auto", "exact", "hnsw"] = "auto"
    min_probability: Annotated[float, Field(ge=0.0, le=1.0)] | None = Field(
        None, description="keep only hits at least this likely relevant (needs a reranker that ships a calibration)"
    )
    budget_ms: Annotated[float, Field(ge=0.0, le=MAX_BUDGET_MS)] | None = Field(
        None, description="time the rerank stage may take: candidates are read in first-stage order until it is spent "
        "(the rest follow unread, rerank_score null); null for no limit"
    )
    max_windows: bounded(1, MAX_WINDOWS) | None = Field(
        None, description="read each candidate's whole document as up to this many windows of the reranker's length "
        "(default 1: its best chunk in one pass)"
    )
    aggregation: Literal["maxp", "firstp", "softmax"] = Field(
        "maxp", description="with max_windows > 1: a document's score is its best window's (maxp), its first's, or a soft maximum"
    )
    include_first_stage: StrictBool = Field(
        False, description="also return the first stage's own top_k hits in its order (first_stage), to see what "
        "reranking changed"
    )
    cascade: Text | None = Field(
        None, description="a served small reranker (e.g. winnow-reranker-minilm-l3-distilled) that reads every "
        "candidate first; the reranker then reads only the best cascade_depth of its order"
    )
    cascade_depth: bounded(1, MAX_DEPTH) = Field(
        DEFAULT_CASCADE_DEPTH, description="with cascade: candidates the reranker reads"
    )

    def late_rerank(self) -> bool:
        """Whether the request reranks by the collection's stored token vectors (``"rerank": "late"``)."""
        return self.rerank == LATE_RERANK

    def reranking(self) -> tuple[bool, str | None]:
        """(whether to rerank, the model named: None for the server's default)."""
        if self.rerank is None or self.rerank is False or self.rerank == "none":
            return False, None
        if self.rerank is True or self.rerank == "default":
            return True, None
        return True, self.rerank

    def filter_spec(self) -> dict[str, Any] | None:
        """The filter as plain JSON (``{"field": value | {"$in": [...]} | {"$eq": value}}``)."""
        if self.filter is None:
            return None
        return {
            k: v.model_dump(by_alias=True) if isinstance(v, BaseModel) else v for k, v in self.filter.items()
        }


class SearchHit(BaseModel):
    rank: int
    doc_id: str
    score: float
    first_stage_rank: int | None
    first_stage_score: float | None
    rerank_score: float | None
    probability: float | None = Field(None, description="calibrated probability that the hit is relevant, where "
                                      "the reranker ships a calibration (its model card tells how it was fitted)")
    chunk: str | None
    title: str
    text: str
    metadata: dict[str, Any]
    read_tokens: int | None = Field(None, description="tokens of the hit's passage the reranker read (0: not read within the budget)")
    truncated_tokens: int | None = Field(None, description="tokens of the hit's passage the reranker did not read (cut)")


class SearchResponse(BaseModel):
    query: str
    method: str
    reranker: str | None
    hits: list[SearchHit]
    timings_ms: dict[str, float] = Field(description="per stage (bm25, dense, fusion, fetch, rerank) and total")
    first_stage: list[SearchHit] | None = Field(
        None, description="with include_first_stage: the first stage's top_k hits in its order (rank and score are "
        "the first stage's; rerank_score is what the reranker gave the hit); null otherwise"
    )


# -- rerank (Cohere / Jina / TEI / Infinity) ----------------------------------------------------------------
class RerankDocument(BaseModel):
    """A document given as an object: ``text`` is read (with ``rank_fields``, those fields); other fields are
    kept and returned with ``return_documents``."""

    model_config = ConfigDict(extra="allow")
    text: Text


class RerankRequest(Body):
    model: Text | None = Field(None, description="a served reranker; default: the server's default reranker "
                               "(its first --rerank-model, else winnow's default, else the one winnow ships)")
    query: Annotated[Text, Field(min_length=1)]
    documents: list[Text | RerankDocument] = Field(
        description='strings, or objects with a "text" field (and others, read when named in rank_fields)'
    )
    top_n: bounded(1) | None = None
    return_documents: StrictBool = False
    rank_fields: list[Text] | None = None
    truncate: StrictBool | None = Field(
        None, description="TEI's: false answers 413 when a document is longer than the reranker reads (with max_windows: "
        "than its windows read); true cuts it at truncation_direction; null (default) cuts it, as Cohere and Jina do"
    )
    truncation_direction: Literal["Right", "Left", "right", "left"] = Field(
        "Right", description="TEI's: which end of a too-long document is cut (Right keeps the beginning)"
    )
    max_windows: bounded(1, MAX_WINDOWS) = Field(
        1, description="winnow's: read a long document as up to this many overlapping windows of the reranker's length, "
        "scored together by aggregation (1: one pass)"
    )
    aggregation: Literal["maxp", "firstp", "softmax"] = Field(
        "maxp", description="with max_windows > 1: the best window's score (maxp), the first's, or a soft maximum"
    )

    @field_validator("documents")
    @classmethod
    def _documents_json(cls, value: list) -> list:
        for doc in value:
            if isinstance(doc, RerankDocument):
                _check_json(doc.model_dump())
        return value


class RerankResult(BaseModel):
    index: int
    relevance_score: float
    document: dict[str, Any] | None = None
    read_tokens: int | None = Field(None, description="tokens of the document the reranker read")
    truncated_tokens: int | None = Field(None, description="tokens of the document the reranker did not read (cut)")


class RerankUsage(BaseModel):
    total_tokens: int


class RerankResponse(BaseModel):
    id: str
    model: str
    results: list[RerankResult]
    usage: RerankUsage
    meta: dict[str, Any]


# -- embeddings (OpenAI) ------------------------------------------------------------------------------------
class EmbeddingRequest(Body):
    input: Annotated[Text, Field(min_length=1)] | Annotated[list[Annotated[Text, Field(min_length=1)]], Field(min_length=1)] = Field(
        description="a non-empty string or a list of them"
    )
    model: Text | None = Field(None, description="a served bi-encoder; default: the server's first")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: bounded(1) | None = Field(
        None, description="keep the first N dimensions, re-normalized (N at most the model's dimension)"
    )
    user: str | None = None


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str
    collections: int
    rerank_models: list[str]
    embed_models: list[str]
    batching: bool
    default_rerank_model: str | None = Field(None, description='what "rerank": "default" uses (null: none)')
    api_key_required: bool = Field(False, description="whether the other routes want the API key")
    reports: bool = Field(False, description="whether the server was pointed at eval reports (--reports)")


# -- eval reports (winnow serve --reports DIR) ---------------------------------------------------------------
class ReportSummary(BaseModel):
    name: str = Field(description="the report's folder name under --reports")
    dataset: str
    split: str
    created: str
    judged_queries: int
    metrics: list[str]
    methods: list[str]
    reranker: str | None


class ReportList(BaseModel):
    configured: bool = Field(description="whether the server was started with --reports DIR")
    reports: list[ReportSummary]
