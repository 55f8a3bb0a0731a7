"""The first stage's own ranking, recovered from reranked hits: each reranked hit keeps where the first
stage had it (``first_stage_rank``, ``first_stage_score``), so the reranked list of *every* candidate
holds the first stage's list too. The search route asks the reranker for all candidates (it scores them
all anyway) and splits that one list into both, instead of running the first stage twice."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

from winnow.types import Hit


@dataclass(frozen=True)
class BothStages:
    final: tuple[Hit, ...]  # the reranked top_k
    first_stage: tuple[Hit, ...]  # the first stage's top_k, in its order, with its ranks and scores


def split_stages(reranked: Sequence[Hit], top_k: int) -> BothStages:
    """``reranked``: every candidate, reranked (each with its first-stage rank and score). The first
    stage's hits keep what the reranker gave them in ``rerank_score``."""
    ranked = [h for h in reranked if h.first_stage_rank is not None]
    first = sorted(ranked, key=lambda h: h.first_stage_rank)[:top_k]
    return BothStages(
        final=tuple(reranked[:top_k]),
        first_stage=tuple(replace(h, rank=h.first_stage_rank, score=h.first_stage_score) for h in first),
    )
