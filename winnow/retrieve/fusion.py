"""Fusion of rankings, as pure functions: rankings in, one ranking out; inputs untouched.

Variants are picked by name from :data:`FUSIONS`; an unknown name lists the valid ones.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from winnow.errors import InvalidArgumentError
from winnow.types import Hit, Ranking

RRF_K = 60


def reciprocal_rank_fusion(rankings: Sequence[Ranking], *, k: int = RRF_K, top_k: int | None = None) -> Ranking:
    """Cormack et al. 2009: score(d) = sum over rankings of 1 / (k + rank(d))."""
    if k < 0:
        raise InvalidArgumentError(f"RRF k must be >= 0, got {k}")
    scores: dict[str, float] = {}
    for ranking in rankings:
        for hit in ranking.hits:
            scores[hit.doc_id] = scores.get(hit.doc_id, 0.0) + 1.0 / (k + hit.rank)
    return _fused(rankings, scores, top_k)


NORMALIZATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "minmax": lambda s: (s - s.min()) / (s.max() - s.min()) if s.max() > s.min() else np.ones_like(s),
    "zscore": lambda s: (s - s.mean()) / s.std() if s.std() > 0 else np.zeros_like(s),
}


def convex_combination(
    rankings: Sequence[Ranking],
    *,
    weights: Sequence[float] | None = None,
    normalization: str = "minmax",
    top_k: int | None = None,
) -> Ranking:
    """sum_i w_i * norm(score_i(d)); a document missing from a ranking gets that ranking's lowest normalized score."""
    if normalization not in NORMALIZATIONS:
        raise InvalidArgumentError(
            f"unknown normalization {normalization!r}; choose one of: {', '.join(NORMALIZATIONS)}"
        )
    if not rankings:
        raise InvalidArgumentError("fusion needs at least one ranking, got none")
    weights = list(weights) if weights is not None else [1.0 / len(rankings)] * len(rankings)
    if len(weights) != len(rankings) or any(w < 0 for w in weights):
        raise InvalidArgumentError(
            f"weights must be {len(rankings)} non-negative numbers (one per ranking), got {weights!r}"
        )
    norm = NORMALIZATIONS[normalization]
    per_ranking: list[dict[str, float]] = []
    floors: list[float] = []
    for ranking in rankings:
        raw = np.array([h.score for h in ranking.hits], dtype=np.float64)
        normed = norm(raw) if raw.size else raw
        per_ranking.append({h.doc_id: float(v) for h, v in zip(ranking.hits, normed)})
        floors.append(float(normed.min()) if normed.size else 0.0)
    docs = {h.doc_id for r in rankings for h in r.hits}
    scores = {
        d: sum(w * part.get(d, floor) for w, part, floor in zip(weights, per_ranking, floors)) for d in docs
    }
    return _fused(rankings, scores, top_k)


def _fused(rankings: Sequence[Ranking], scores: dict[str, float], top_k: int | None) -> Ranking:
    if not rankings:
        raise InvalidArgumentError("fusion needs at least one ranking, got none")
    first_seen: dict[str, Hit] = {}
    for ranking in rankings:
        for hit in ranking.hits:
            first_seen.setdefault(hit.doc_id, hit)
    order = sorted(scores, key=lambda d: (-scores[d], d))
    if top_k is not None:
        order = order[:top_k]
    hits = tuple(
        Hit(
            doc_id=d,
            score=scores[d],
            rank=i,
            text=first_seen[d].text,
            title=first_seen[d].title,
            chunk=first_seen[d].chunk,
            metadata=first_seen[d].metadata,
        )
        for i, d in enumerate(order, start=1)
    )
    timings: dict[str, float] = {}
    for ranking in rankings:
        timings.update(ranking.timings_ms)
    return Ranking(rankings[0].query, hits, timings)


FUSIONS: dict[str, Callable[..., Ranking]] = {"rrf": reciprocal_rank_fusion, "convex": convex_combination}


def get_fusion(name: str) -> Callable[..., Ranking]:
    if name not in FUSIONS:
        raise InvalidArgumentError(f"unknown fusion {name!r}; choose one of: {', '.join(FUSIONS)}")
    return FUSIONS[name]
