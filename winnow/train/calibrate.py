"""Fitting a reranker's ``calibration.json`` on held-out training queries (never a test set).

The dev queries' first-stage lists (from mined files, as ``fit-fusion`` reads them) are scored by the
reranker; every (logit, relevant?) pair of them fits the reranker's calibrator, and each first stage's own
scores fit that stage's calibrator (for first-stage-only searches). See :mod:`winnow.rerank.calibration`.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from winnow.errors import InvalidArgumentError
from winnow.rerank.calibration import FORMAT_VERSION, fit_best, held_out_ece
from winnow.train.data import TrainingExample
from winnow.train.fusion_fit import dev_lists
from winnow.types import FirstStage


def calibration_payload(
    score: Callable[[str, list[str]], np.ndarray],
    dev_by_stage: Mapping[FirstStage, Sequence[TrainingExample]],
    *,
    depth: int = 20,
    seed: int = 0,
) -> dict[str, Any]:
    """``calibration.json``'s content: ``score(query, texts)`` gives the reranker's logits; ``dev_by_stage``
    holds each first stage's held-out examples (with their rankings)."""
    logits, labels, groups, sources = [], [], [], []
    stages: dict[str, Any] = {}
    seen: set[str] = set()
    for stage, examples in dev_by_stage.items():
        lists = [(_source_name(e.source), item) for e in examples for item in dev_lists([e], depth)]
        if not lists:
            raise InvalidArgumentError(f"the {stage.value} dev examples hold no first-stage rankings to calibrate on")
        first, first_labels, first_groups = [], [], []
        for i, (source, (query, texts, first_scores, relevant)) in enumerate(lists):
            first.append(first_scores)
            first_labels.append(relevant.astype(float))
            first_groups.append(np.full(len(texts), i))
            if query in seen:  # the same query in several stages' files: its pairs count once for the reranker
                continue
            seen.add(query)
            logits.append(np.asarray(score(query, texts), dtype=np.float64))
            labels.append(relevant.astype(float))
            groups.append(np.full(len(texts), len(seen)))
            sources.append(np.full(len(texts), source, dtype=object))
        fit = fit_best(np.concatenate(first), np.concatenate(first_labels), np.concatenate(first_groups), seed=seed)
        stages[stage.value] = {**fit.to_json(), "dev_queries": len(lists)}
    s, y, g = np.concatenate(logits), np.concatenate(labels), np.concatenate(groups)
    reranker = fit_best(s, y, g, seed=seed)
    check = held_out_ece(s, y, g, np.concatenate(sources), reranker.calibrator.method, seed=seed)
    return {
        "format_version": FORMAT_VERSION,
        "reranker": {**reranker.to_json(), "dev_queries": len(seen), "held_out_ece": check},
        "first_stages": stages,
        "depth": depth,
    }


def _source_name(source: str) -> str:
    """A mined file's source without its first stage (``msmarco-dense`` -> ``msmarco``)."""
    head, _, tail = (source or "data").rpartition("-")
    return head if head and tail in {s.value for s in FirstStage} else (source or "data")
