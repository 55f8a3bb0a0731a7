"""Dev evaluation of a first-stage or late-interaction model on held-out training queries: rerank each
query's mined first-stage list with the model and compare nDCG@10 with the first stage's own order.
Binary relevance (a query's positives), as the mined files know it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from winnow.train.data import TrainingExample


@dataclass(frozen=True)
class DevReport:
    queries: int
    first_stage: float  # mean nDCG@10 of the mined order
    model: float  # mean nDCG@10 of the model's order over the same lists
    by_source: Mapping[str, tuple[int, float, float]] = field(default_factory=dict)  # source -> (n, first, model)

    def to_json(self) -> dict:
        return {"queries": self.queries, "first_stage_ndcg@10": round(self.first_stage, 4),
                "model_ndcg@10": round(self.model, 4),
                "by_source": {k: {"queries": n, "first_stage": round(a, 4), "model": round(b, 4)}
                              for k, (n, a, b) in self.by_source.items()}}


def ndcg_at_10(ranked_ids: Sequence[str], relevant: set[str]) -> float:
    dcg = sum(1.0 / math.log2(i + 2) for i, d in enumerate(ranked_ids[:10]) if d in relevant)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(10, len(relevant))))
    return dcg / ideal if ideal else 0.0


def rerank_dev(
    dev: Sequence[TrainingExample], score: Callable[[str, Sequence[str]], np.ndarray], *, depth: int = 20
) -> DevReport:
    """``score(query, texts)`` reorders each dev query's first ``depth`` first-stage hits (stable on ties)."""
    per: dict[str, list[tuple[float, float]]] = {}
    for e in dev:
        hits = e.ranking[:depth]
        if not hits or not e.positives:
            continue
        relevant = {p.id for p in e.positives}
        scores = np.asarray(score(e.query, [h.text for h in hits]), dtype=np.float64)
        order = sorted(range(len(hits)), key=lambda i: (-scores[i], i))
        first = ndcg_at_10([h.id for h in hits], relevant)
        model = ndcg_at_10([hits[i].id for i in order], relevant)
        per.setdefault(e.source or "data", []).append((first, model))
    rows = [x for v in per.values() for x in v]
    if not rows:
        return DevReport(0, 0.0, 0.0)
    by_source = {k: (len(v), float(np.mean([a for a, _ in v])), float(np.mean([b for _, b in v]))) for k, v in per.items()}
    return DevReport(len(rows), float(np.mean([a for a, _ in rows])), float(np.mean([b for _, b in rows])), by_source)
