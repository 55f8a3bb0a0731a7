"""Hybrid first stage: two (or more) retrievers composed with a fusion function."""

from __future__ import annotations

import time
from typing import Sequence

from winnow.retrieve.base import Retriever, check_k
from winnow.retrieve.fusion import get_fusion
from winnow.types import FirstStage, Ranking


class HybridRetriever(Retriever):
    """Searches each leg ``leg_depth`` deep, then fuses (``rrf`` by default, or ``convex``)."""

    name = "hybrid"

    def __init__(
        self, retrievers: Sequence[Retriever], *, fusion: str = "rrf", leg_depth: int = 1000, **fusion_args
    ) -> None:
        self.retrievers = list(retrievers)
        self.fuse = get_fusion(fusion)
        self.fusion = fusion
        self.leg_depth = leg_depth
        self.fusion_args = fusion_args
        # the fitted hybrid mix is for reciprocal-rank fusion's scores; another fusion's get the reranker alone
        self.origin = FirstStage.HYBRID if fusion == "rrf" and not fusion_args else None

    def search_many(self, queries: Sequence[str], k: int) -> list[Ranking]:
        check_k(k)
        depth = max(k, self.leg_depth)
        legs = [r.search_many(queries, depth) for r in self.retrievers]
        out = []
        for i in range(len(queries)):
            start = time.perf_counter()
            fused = self.fuse([leg[i] for leg in legs], top_k=k, **self.fusion_args)
            timings = dict(fused.timings_ms)
            timings["fusion"] = (time.perf_counter() - start) * 1000.0
            out.append(Ranking(fused.query, fused.hits, timings))
        return out
