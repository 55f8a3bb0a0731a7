"""The one shape every reranker has: ``rank(query, candidates, top_k) -> Ranking``."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import replace
from typing import Sequence

import numpy as np

from winnow.errors import InvalidArgumentError
from winnow.rerank.calibration import CalibrationTable
from winnow.rerank.mix import MixTable
from winnow.types import FirstStage, Hit, Ranking, with_title


class Reranker(ABC):
    """Scores (query, candidate) pairs and reorders the candidates by that score."""

    name: str = "reranker"
    mixes: MixTable | None = None  # a trained model's fitted mixes with each first stage (winnow.rerank.mix)
    calibration: CalibrationTable | None = None  # its fitted relevance probabilities (winnow.rerank.calibration)

    @abstractmethod
    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """One float per text, higher is more relevant; same order as ``texts``."""

    def raw_scores(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """The scores :meth:`rank` orders and mixes by (a cross-encoder's logits); :meth:`present` maps them
        to what the caller sees (e.g. a sigmoid), which never changes the order."""
        return self.score(query, texts)

    def present(self, raw: np.ndarray) -> np.ndarray:
        return raw

    def rank(
        self, query: str, candidates: Sequence[Hit], top_k: int | None = None, *, first_stage: FirstStage | None = None
    ) -> Ranking:
        """Rerank ``candidates`` (a first stage's hits) and keep the best ``top_k`` (all when None).

        Each returned hit keeps the first stage's rank and score (taken from the candidate's own rank and
        score unless the candidate already carries them) and gets ``rerank_score``, the reranker's own
        score. Where the reranker carries a mix fitted for ``first_stage`` (the candidates' origin),
        ``score`` and the order are the mix of the two; otherwise the reranker's score alone. The
        caller's list is not modified.
        """
        if top_k is not None and top_k < 1:
            raise InvalidArgumentError(f"top_k must be >= 1 (or None for all), got {top_k!r}")
        start = time.perf_counter()
        texts = [_passage(h) for h in candidates]
        raw = np.asarray(self.raw_scores(query, texts), dtype=np.float64) if texts else np.zeros(0)
        shown = np.asarray(self.present(raw), dtype=np.float64)
        first = [_first(h.first_stage_score, h.score) for h in candidates]
        mix = self.mixes.for_stage(first_stage) if self.mixes is not None else None
        mixed = mix is not None and all(f is not None for f in first)
        order_by = mix.apply(raw, np.asarray(first, dtype=np.float64)) if mixed else raw
        scores = order_by if mixed else shown
        calibrator = self.calibration.reranker if self.calibration is not None else None
        probability = calibrator.apply(raw) if calibrator is not None and raw.size else None
        order = np.argsort(-order_by, kind="stable")
        if top_k is not None:
            order = order[:top_k]
        hits = tuple(
            replace(
                candidates[i],
                score=float(scores[i]),
                rank=new_rank,
                rerank_score=float(shown[i]),
                probability=None if probability is None else float(probability[i]),
                first_stage_rank=_first(candidates[i].first_stage_rank, candidates[i].rank),
                first_stage_score=_first(candidates[i].first_stage_score, candidates[i].score),
            )
            for new_rank, i in enumerate(order, start=1)
        )
        return Ranking(query, hits, {"rerank": (time.perf_counter() - start) * 1000.0})


def _first(value, fallback):
    return fallback if value is None else value


def _passage(hit: Hit) -> str:
    return with_title(hit.title, hit.text)
