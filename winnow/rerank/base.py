"""The one shape every reranker has: ``rank(query, candidates, top_k) -> Ranking``."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import replace
from typing import Sequence

import numpy as np

from winnow.errors import InvalidArgumentError
from winnow.types import Hit, Ranking


class Reranker(ABC):
    """Scores (query, candidate) pairs and reorders the candidates by that score."""

    name: str = "reranker"

    @abstractmethod
    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """One float per text, higher is more relevant; same order as ``texts``."""

    def rank(self, query: str, candidates: Sequence[Hit], top_k: int | None = None) -> Ranking:
        """Rerank ``candidates`` (a first stage's hits) and keep the best ``top_k`` (all when None).

        Each returned hit keeps the first stage's rank and score (taken from the candidate's own rank and
        score unless the candidate already carries them) and gets ``rerank_score``. The caller's list is
        not modified.
        """
        if top_k is not None and top_k < 1:
            raise InvalidArgumentError(f"top_k must be >= 1 (or None for all), got {top_k!r}")
        start = time.perf_counter()
        texts = [_passage(h) for h in candidates]
        scores = np.asarray(self.score(query, texts), dtype=np.float64) if texts else np.zeros(0)
        order = np.argsort(-scores, kind="stable")
        if top_k is not None:
            order = order[:top_k]
        hits = tuple(
            replace(
                candidates[i],
                score=float(scores[i]),
                rank=new_rank,
                rerank_score=float(scores[i]),
                first_stage_rank=_first(candidates[i].first_stage_rank, candidates[i].rank),
                first_stage_score=_first(candidates[i].first_stage_score, candidates[i].score),
            )
            for new_rank, i in enumerate(order, start=1)
        )
        return Ranking(query, hits, {"rerank": (time.perf_counter() - start) * 1000.0})


def _first(value, fallback):
    return fallback if value is None else value


def _passage(hit: Hit) -> str:
    return f"{hit.title} {hit.text}" if hit.title else hit.text
