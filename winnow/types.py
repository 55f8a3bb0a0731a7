"""Frozen dataclasses shared by every stage of the pipeline.

A query flows one way: corpus -> chunks -> first-stage indexes -> candidates -> reranker -> ranking.
Each stage hands the next one of the types below; none of them is mutated after creation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any, Mapping


def _frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(value or {}))


def with_title(title: str, text: str) -> str:
    """What the models read of a titled passage: title and text, as BEIR's dense baselines do."""
    return f"{title} {text}" if title else text


class FirstStage(str, Enum):
    """Where a reranker's candidates came from: a trained reranker's mix with the first stage's scores
    is fitted per first stage, since their scores differ in kind (cosine, BM25, reciprocal-rank fusion)."""

    DENSE = "dense"
    BM25 = "bm25"
    HYBRID = "hybrid"  # reciprocal-rank fusion of dense and BM25

    def __str__(self) -> str:
        return self.value

    def __repr__(self) -> str:
        return repr(self.value)


@dataclass(frozen=True)
class Document:
    """One document as read from a corpus."""

    id: str
    text: str
    title: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "metadata", _frozen_mapping(self.metadata))


@dataclass(frozen=True)
class ChunkRef:
    """Which chunk of which document: shown (JSON, tables) as ``doc_id#index``."""

    doc_id: str
    index: int

    def __str__(self) -> str:
        return f"{self.doc_id}#{self.index}"


@dataclass(frozen=True)
class Chunk:
    """A passage of a document: ``text == document.text[start:end]``.

    ``index`` is the chunk's position in its document (0-based). The title is kept so that every
    chunk of a titled document is encoded with its title in front (see :attr:`content`).
    """

    doc_id: str
    index: int
    text: str
    start: int
    end: int
    title: str = ""

    @property
    def id(self) -> str:
        return str(ChunkRef(self.doc_id, self.index))

    @property
    def content(self) -> str:
        """What the models read: title and text, as BEIR's dense baselines do."""
        return with_title(self.title, self.text)


@dataclass(frozen=True)
class Hit:
    """One result of a search.

    ``score``/``rank`` are the final ones (1-based rank). ``first_stage_*`` say where the first stage had
    this hit; after reranking ``rerank_score`` holds the reranker's own score. ``chunk`` is the chunk that
    scored best for this document (shown as ``doc#n``), or ``None`` where the stage ranks whole documents.
    """

    doc_id: str
    score: float
    rank: int
    text: str = ""
    title: str = ""
    chunk: ChunkRef | None = None
    first_stage_rank: int | None = None
    first_stage_score: float | None = None
    rerank_score: float | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    probability: float | None = None  # calibrated P(relevant), where the reranker ships a calibration
    read_tokens: int | None = None  # after reranking: the passage's tokens the reranker read (0: not read, see budgets)
    truncated_tokens: int | None = None  # after reranking: its tokens the reranker did not read (cut)

    def __post_init__(self) -> None:
        object.__setattr__(self, "metadata", _frozen_mapping(self.metadata))

    def to_json(self) -> dict[str, Any]:
        """The hit as the CLI's ``--json`` and the server's search response give it."""
        return {
            "rank": self.rank,
            "doc_id": self.doc_id,
            "score": self.score,
            "first_stage_rank": self.first_stage_rank,
            "first_stage_score": self.first_stage_score,
            "rerank_score": self.rerank_score,
            "chunk": None if self.chunk is None else str(self.chunk),
            "title": self.title,
            "text": self.text,
            "metadata": dict(self.metadata),
            "probability": self.probability,
            "read_tokens": self.read_tokens,
            "truncated_tokens": self.truncated_tokens,
        }

    @property
    def movement(self) -> int | None:
        """Places gained by reranking (positive moved up); ``None`` when the first stage had no rank."""
        if self.first_stage_rank is None:
            return None
        return self.first_stage_rank - self.rank


@dataclass(frozen=True)
class RerankStats:
    """What a rerank stage read, over all its candidates (not only the hits kept): how many candidates it was
    given and read (fewer under a latency budget), their tokens read and cut, and why it stopped reading
    (a :class:`winnow.rerank.budget.StopReason`: ``all``, ``time`` or ``out_of_reach``)."""

    candidates: int
    read: int
    read_tokens: int | None
    truncated_tokens: int | None
    stop: str = "all"


@dataclass(frozen=True)
class Ranking:
    """An ordered list of hits for one query, with the time each stage took (milliseconds) and, after a
    rerank stage, what it read (:class:`RerankStats`)."""

    query: str
    hits: tuple[Hit, ...]
    timings_ms: Mapping[str, float] = field(default_factory=dict)
    rerank_stats: RerankStats | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "hits", tuple(self.hits))
        object.__setattr__(self, "timings_ms", _frozen_mapping(self.timings_ms))

    def __len__(self) -> int:
        return len(self.hits)

    def __iter__(self):
        return iter(self.hits)

    @property
    def doc_ids(self) -> list[str]:
        return [h.doc_id for h in self.hits]
