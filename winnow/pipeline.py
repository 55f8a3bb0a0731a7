"""First stage + second stage, with the time each took.

``Pipeline(first_stage, reranker, depth, top_k).search(query)`` asks the first stage for ``depth``
candidates, reranks them, and keeps ``top_k``. Each hit says where the first stage had it.

``reading`` (:class:`~winnow.rerank.reading.Reading`) says how the reranker reads long candidates; one
that reads windows gets each candidate's whole document (``documents``, e.g. ``collection.get``) instead
of its best chunk. ``budget`` (:class:`~winnow.rerank.budget.Budget`) bounds the rerank stage's time.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Callable, Mapping, Sequence

from winnow.errors import InvalidArgumentError
from winnow.rerank.base import Reranker
from winnow.rerank.budget import Budget
from winnow.rerank.reading import Reading, document_hydrator
from winnow.retrieve.base import Retriever
from winnow.types import Document, Ranking


def _identity(ranking: Ranking) -> Ranking:
    return ranking


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"{name} must be an integer >= 1, got {value!r}")


class Pipeline:
    def __init__(
        self,
        first_stage: Retriever,
        reranker: Reranker | None = None,
        *,
        depth: int = 100,
        top_k: int = 10,
        hydrate: Callable[[Ranking], Ranking] = _identity,
        mix: bool = True,
        reading: Reading | None = None,
        budget: Budget | None = None,
        documents: Callable[[Sequence[str]], Mapping[str, Document]] | None = None,
        first_stage_calibrator=None,
    ) -> None:
        """``mix``: let the reranker apply its mix fitted for this first stage (False: order by its score alone).
        ``first_stage_calibrator`` (a :class:`~winnow.rerank.calibration.Calibrator`): without a reranker, each
        hit's probability of relevance from its first-stage score (see
        :func:`~winnow.rerank.calibration.first_stage_calibrator`)."""
        _check_count("top_k", top_k)
        _check_count("depth", depth)
        if reranker is not None and depth < top_k:  # without a reranker depth is unused
            raise InvalidArgumentError(f"depth must be >= top_k ({top_k}) so the reranker has enough candidates, got {depth}")
        self.first_stage = first_stage
        self.reranker = reranker
        self.depth = depth
        self.top_k = top_k
        self.hydrate = hydrate
        self.mix = mix
        self.reading = reading if reading is not None else getattr(reranker, "reading", None)
        self.budget = budget
        self.first_stage_calibrator = first_stage_calibrator
        if self.reading is not None and self.reading.windowed and reranker is not None:
            if documents is None:
                raise InvalidArgumentError(
                    f"reading {self.reading.max_windows} windows needs each candidate's whole document: pass "
                    f"documents= a function from ids to documents, e.g. documents=collection.get"
                )
            self.hydrate = document_hydrator(documents)

    def search(self, query: str) -> Ranking:
        return self.search_many([query])[0]

    def search_many(self, queries: Sequence[str]) -> list[Ranking]:
        if isinstance(queries, str):
            raise InvalidArgumentError("search_many takes a list of queries, got one string; use search()")
        for q in queries:
            if not isinstance(q, str) or not q.strip():
                raise InvalidArgumentError(f"query must be a non-empty string, got {q!r}")
        k = self.depth if self.reranker is not None else self.top_k
        first = self.first_stage.search_many(list(queries), k)
        return [self._second_stage(r) for r in first]

    def _second_stage(self, first: Ranking) -> Ranking:
        start = time.perf_counter()
        candidates = self.hydrate(first)
        hydrate_ms = (time.perf_counter() - start) * 1000.0
        timings = dict(first.timings_ms)
        timings["fetch"] = hydrate_ms
        if self.reranker is None:
            hits = tuple(replace(h, first_stage_rank=h.rank, first_stage_score=h.score) for h in candidates.hits)
            if self.first_stage_calibrator is not None and hits:
                p = self.first_stage_calibrator.apply([h.score for h in hits])
                hits = tuple(replace(h, probability=float(x)) for h, x in zip(hits, p))
            return Ranking(first.query, hits[: self.top_k], timings)
        unread = [h.doc_id for h in candidates.hits if not h.text and not h.title]
        if unread:
            raise InvalidArgumentError(
                f"{len(unread)} candidate(s) have no text for the reranker to read (first: {unread[0]!r}); "
                f"pass hydrate= a function that fills it in, e.g. hydrate=collection.hydrate"
            )
        reranked = self.reranker.rank(
            first.query, candidates.hits, top_k=self.top_k, first_stage=self.first_stage.origin if self.mix else None,
            reading=self.reading, budget=self.budget,
        )
        timings.update(reranked.timings_ms)
        return Ranking(first.query, reranked.hits, timings, reranked.rerank_stats)
