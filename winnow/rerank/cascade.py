"""A cascade of rerankers: a small, fast one reads many candidates, a better one reads the best few of them.

``CascadeReranker([CascadeStage(small, 100), CascadeStage(default, 20)])`` ranks the first 100 candidates
with ``small``, then the best 20 of its order with ``default``; the list comes back as the last stage put
its candidates, followed by each earlier stage's other candidates in that stage's order (scores below every
hit a later stage read, so the list stays ordered by score; ``rerank_score`` is the score of the last stage
that read the hit). Every stage keeps the first stage's rank and score, so each one applies its own mix fitted
for the candidates' first stage. A reading applies to every stage; a budget to the last (the stage the time
goes to).

:func:`with_cascade` puts a small reranker (``winnow train small-reranker`` distils one from the default)
in front of a reranker; ``--cascade MODEL [--cascade-depth N]`` on ``winnow search`` and ``winnow eval``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from winnow.errors import InvalidArgumentError
from winnow.rerank.base import Reranker
from winnow.rerank.budget import Budget
from winnow.rerank.reading import Reading
from winnow.types import FirstStage, Hit, Ranking


@dataclass(frozen=True)
class CascadeStage:
    reranker: Reranker
    depth: int  # candidates this stage reads: the best of the previous stage's order (the first stage's for the first)

    def __post_init__(self) -> None:
        if isinstance(self.depth, bool) or not isinstance(self.depth, int) or self.depth < 1:
            raise InvalidArgumentError(f"a cascade stage's depth must be an integer >= 1, got {self.depth!r}")


DEFAULT_CASCADE_DEPTH = 20  # candidates the last stage reads by default


class CascadeReranker(Reranker):
    def __init__(self, stages: Sequence[CascadeStage]) -> None:
        stages = tuple(stages)
        if not stages:
            raise InvalidArgumentError("a cascade needs at least one stage")
        depths = [s.depth for s in stages]
        if depths != sorted(depths, reverse=True):
            raise InvalidArgumentError(f"cascade depths must not grow from one stage to the next, got {depths}")
        self.stages = stages
        self.name = " > ".join(f"{s.reranker.name}@{s.depth}" for s in stages)
        last = stages[-1].reranker
        self.mixes, self.calibration, self.reading = last.mixes, last.calibration, last.reading

    def warm_up(self) -> "CascadeReranker":
        for stage in self.stages:
            stage.reranker.warm_up()
        return self

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """The last stage's scores (what orders the cascade's best hits)."""
        return self.stages[-1].reranker.score(query, texts)

    def rank(
        self,
        query: str,
        candidates: Sequence[Hit],
        top_k: int | None = None,
        *,
        first_stage: FirstStage | None = None,
        reading: Reading | None = None,
        budget: Budget | None = None,
    ) -> Ranking:
        if top_k is not None and top_k < 1:
            raise InvalidArgumentError(f"top_k must be >= 1 (or None for all), got {top_k!r}")
        start = time.perf_counter()
        current: list[Hit] = list(candidates)
        timings: dict[str, float] = {}
        stats = None
        for n, stage in enumerate(self.stages):
            head, tail = current[: stage.depth], current[stage.depth :]
            last = n == len(self.stages) - 1
            ranked = stage.reranker.rank(query, head, first_stage=first_stage, reading=reading, budget=budget if last else None)
            timings[f"rerank{n + 1}"] = ranked.timings_ms["rerank"]
            stats = ranked.rerank_stats
            floor = min((h.score for h in ranked.hits), default=0.0)
            current = [*ranked.hits, *(_below(h, floor - i) for i, h in enumerate(tail, start=1))]
        hits = tuple(replace(h, rank=i) for i, h in enumerate(current[:top_k] if top_k else current, start=1))
        timings["rerank"] = (time.perf_counter() - start) * 1000.0
        return Ranking(query, hits, timings, stats)


def _below(hit: Hit, score: float) -> Hit:
    """A hit no later stage read, given ``score`` (below theirs), keeping where the first stage had it."""
    return replace(
        hit, score=score,
        first_stage_rank=hit.rank if hit.first_stage_rank is None else hit.first_stage_rank,
        first_stage_score=hit.score if hit.first_stage_score is None else hit.first_stage_score,
    )


def with_cascade(reranker: Reranker, small, *, first_depth: int, depth: int = DEFAULT_CASCADE_DEPTH,
                 cache: bool = True) -> CascadeReranker:
    """``small`` (a cross-encoder id or folder, or a :class:`Reranker`) reads the first ``first_depth``
    candidates; ``reranker`` reads the best ``depth`` of its order (``depth`` is capped at ``first_depth``)."""
    if isinstance(small, str):
        from winnow.rerank.cross_encoder import CrossEncoderReranker

        small = CrossEncoderReranker(small, cache=cache, reading=reranker.reading)
    if not isinstance(small, Reranker):
        raise InvalidArgumentError(f"a cascade's first stage must be a model id, a folder or a Reranker, got {type(small).__name__}")
    return CascadeReranker([CascadeStage(small, first_depth), CascadeStage(reranker, min(depth, first_depth))])
