"""The one shape every reranker has: ``rank(query, candidates, top_k) -> Ranking``."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import replace
from typing import Sequence

import numpy as np

from winnow.errors import InvalidArgumentError
from winnow.rerank.mix import ScoreMix
from winnow.types import Hit, Ranking


class Reranker(ABC):
    """Scores (query, candidate) pairs and reorders the candidates by that score."""

    name: str = "reranker"
    mix: ScoreMix | None = None  # a trained model's fitted mix with the first stage (see winnow.rerank.mix)

    @abstractmethod
    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """One float per text, higher is more relevant; same order as ``texts``."""

    def rank(self, query: str, candidates: Sequence[Hit], top_k: int | None = None) -> Ranking:
        """Rerank ``candidates`` (a first stage's hits) and keep the best ``top_k`` (all when None).

        Each returned hit keeps the first stage's rank and score (taken from the candidate's own rank and
        score unless the candidate already carries them) and gets ``rerank_score``, the reranker's own
        score. Where the reranker carries a fitted :attr:`mix`, ``score`` and the order are the mix of
        the two. The caller's list is not modified.
        """
        if top_k is not None and top_k < 1:
            raise InvalidArgumentError(f"top_k must be >= 1 (or None for all), got {top_k!r}")
        start = time.perf_counter()
        texts = [_passage(h) for h in candidates]
        raw = np.asarray(self.score(query, texts), dtype=np.float64) if texts else np.zeros(0)
        first = [_first(h.first_stage_score, h.score) for h in candidates]
        mixed = self.mix is not None and all(f is not None for f in first)
        scores = self.mix.apply(raw, np.asarray(first, dtype=np.float64)) if mixed else raw
        order = np.argsort(-scores, kind="stable")
        if top_k is not None:
            order = order[:top_k]
        hits = tuple(
            replace(
                candidates[i],
                score=float(scores[i]),
                rank=new_rank,
                rerank_score=float(raw[i]),
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
