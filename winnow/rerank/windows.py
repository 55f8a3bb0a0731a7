"""Long passages read as windows: where the windows fall, and how their scores become one.

A cross-encoder reads ``max_length`` tokens a pass (query, passage and three special tokens). A longer
passage is read as windows of the tokens left for the passage, each overlapping the one before by
``overlap`` tokens, from the passage's start, at most ``max_windows`` of them; the windows' scores are
aggregated into the passage's (:class:`Aggregation`): the best window (MaxP, Dai & Callan 2019), the first
(FirstP: what one truncated pass reads) or a soft maximum (the softmax-weighted mean of the window scores,
which lies between their mean and their maximum and does not grow with the number of windows).

Pure functions over token counts and scores: no model, no tokenizer (those are in :mod:`winnow.rerank.reading`).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from winnow.choices import Choice
from winnow.errors import InvalidArgumentError


class Aggregation(Choice):
    """How a passage's window scores become its score."""

    MAXP = "maxp"  # the best window
    FIRSTP = "firstp"  # the first window
    SOFTMAX = "softmax"  # softmax-weighted mean of the windows (temperature 1 on the logit scale)


def window_spans(n_tokens: int, size: int, overlap: int, max_windows: int) -> list[tuple[int, int]]:
    """Token spans ``[start, end)`` covering ``0..n_tokens`` with windows of ``size`` tokens, each starting
    ``size - overlap`` after the one before, at most ``max_windows``; the last window of a passage read whole
    ends at ``n_tokens`` (so it is a full window, not a sliver). An empty passage has one empty window."""
    if size < 1:
        raise InvalidArgumentError(f"window size must be >= 1 token, got {size}")
    if not 0 <= overlap < size:
        raise InvalidArgumentError(f"window overlap must be in 0..{size - 1} tokens (less than the window), got {overlap}")
    if max_windows < 1:
        raise InvalidArgumentError(f"max_windows must be >= 1, got {max_windows}")
    if n_tokens <= size:
        return [(0, max(n_tokens, 0))]
    stride = size - overlap
    needed = 1 + math.ceil((n_tokens - size) / stride)
    if needed <= max_windows:
        spans = [(i * stride, i * stride + size) for i in range(needed - 1)]
        last = (n_tokens - size, n_tokens)
        return spans + [last] if not spans or last[0] > spans[-1][0] else spans
    return [(i * stride, i * stride + size) for i in range(max_windows)]


def covered(spans: Sequence[tuple[int, int]]) -> int:
    """Tokens inside at least one span (spans sorted by start, as :func:`window_spans` gives them)."""
    total, reach = 0, 0
    for start, end in spans:
        start = max(start, reach)
        if end > start:
            total += end - start
            reach = end
    return total


def aggregate(scores: np.ndarray, aggregation: Aggregation) -> float:
    """One passage's score from its windows' scores (in reading order)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        raise InvalidArgumentError("a passage needs at least one window score to aggregate")
    if aggregation is Aggregation.MAXP:
        return float(s.max())
    if aggregation is Aggregation.FIRSTP:
        return float(s[0])
    if aggregation is Aggregation.SOFTMAX:
        weights = np.exp(s - s.max())
        return float((weights * s).sum() / weights.sum())
    raise InvalidArgumentError(f"unknown aggregation {aggregation!r}; choose one of: {', '.join(a.value for a in Aggregation)}")


def best_window(scores: np.ndarray) -> int:
    """Index of the best-scoring window (the first of ties)."""
    return int(np.argmax(np.asarray(scores, dtype=np.float64)))
