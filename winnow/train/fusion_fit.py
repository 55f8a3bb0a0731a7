"""Fitting the mix of reranker and first-stage scores on held-out queries.

Per query both score lists are z-scored (mean 0, standard deviation 1 over its candidates) and mixed as
``w * z(reranker) + (1 - w) * z(first stage)``; ``w`` is picked on a grid by mean nDCG@10 on the dev
queries (ties: the weight nearest 0.5). ``w = 1`` is the reranker alone, ``w = 0`` the first stage alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from winnow.rerank.mix import ScoreMix
from winnow.train.data import TrainingExample

GRID = tuple(round(w, 2) for w in np.linspace(0.0, 1.0, 21).tolist())


@dataclass(frozen=True)
class FusionFit:
    weight: float  # of the reranker's z-scored score
    ndcg_at_10: Mapping[float, float]  # weight -> mean nDCG@10 on the dev queries
    queries: int

    @property
    def first_stage(self) -> float:
        return self.ndcg_at_10[0.0]

    @property
    def reranker(self) -> float:
        return self.ndcg_at_10[1.0]

    @property
    def best(self) -> float:
        return self.ndcg_at_10[self.weight]

    def to_json(self) -> dict:
        return {
            "method": "zscore",
            "weight_reranker": self.weight,
            "weight_first_stage": round(1.0 - self.weight, 2),
            "dev_queries": self.queries,
            "dev_ndcg@10": {"first_stage": self.first_stage, "reranker": self.reranker, "mix": self.best},
            "grid": {str(k): v for k, v in self.ndcg_at_10.items()},
        }


def ndcg_at_10(scores: np.ndarray, relevant: np.ndarray) -> float:
    """Binary-relevance nDCG@10 of the order ``scores`` gives (ties broken by position, stable)."""
    order = np.argsort(-np.asarray(scores), kind="stable")[:10]
    gains = np.asarray(relevant, dtype=np.float64)[order]
    dcg = float(np.sum(gains / np.log2(np.arange(2, len(gains) + 2))))
    ideal = np.sort(np.asarray(relevant, dtype=np.float64))[::-1][:10]
    idcg = float(np.sum(ideal / np.log2(np.arange(2, len(ideal) + 2))))
    return dcg / idcg if idcg > 0 else 0.0


def fit_weight(
    rerank: Sequence[np.ndarray], first: Sequence[np.ndarray], relevant: Sequence[np.ndarray], grid=GRID
) -> FusionFit:
    """Pick the mixing weight (pure: per-query score arrays in, the fit out)."""
    table = {}
    for w in grid:
        values = [ndcg_at_10(ScoreMix(w).apply(r, f), rel) for r, f, rel in zip(rerank, first, relevant)]
        table[float(w)] = float(np.mean(values)) if values else 0.0
    # ties go to the weight nearest an even mix: a saturated dev set (every weight scoring the same)
    # must not push the shipped mix to either extreme
    best = max(table, key=lambda w: (round(table[w], 6), -abs(w - 0.5)))
    return FusionFit(best, table, len(rerank))


def dev_lists(examples: Sequence[TrainingExample], depth: int):
    """Per dev query with a first-stage ranking: (query, texts, first-stage scores, relevant mask).
    A positive the first stage missed is appended with the lowest score, as it would rank last."""
    out = []
    for e in examples:
        if not e.ranking or not e.positives:
            continue
        hits = list(e.ranking[:depth])
        pos_ids = {p.id for p in e.positives}
        texts = [h.text for h in hits]
        scores = [float(h.score) for h in hits]
        rel = [h.id in pos_ids for h in hits]
        floor = min(scores) - 1e-3 if scores else 0.0
        for p in e.positives:
            if p.id not in {h.id for h in hits}:
                texts.append(p.text)
                scores.append(floor)
                rel.append(True)
        out.append((e.query, texts, np.asarray(scores), np.asarray(rel)))
    return out


def fit_on_dev(score, examples: Sequence[TrainingExample], *, depth: int = 30) -> FusionFit | None:
    """Score the dev queries' first-stage lists with ``score(query, texts) -> raw scores`` (a reranker's
    logits or MaxSim) and fit the mix."""
    lists = dev_lists(examples, depth)
    if not lists:
        return None
    rerank = [np.asarray(score(q, texts), dtype=np.float64) for q, texts, _, _ in lists]
    return fit_weight(rerank, [f for _, _, f, _ in lists], [r for _, _, _, r in lists])


def cross_encoder_scores(model, *, batch_size: int = 64):
    """A sentence-transformers ``CrossEncoder``'s raw logits as a ``score(query, texts)`` function."""
    import torch

    def score(query: str, texts: Sequence[str]) -> np.ndarray:
        flat = model.predict([(query, t) for t in texts], batch_size=batch_size, activation_fn=torch.nn.Identity(),
                             convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(flat, dtype=np.float64).reshape(len(texts), -1)[:, 0]

    return score
