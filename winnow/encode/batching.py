"""Batching by token budget: sort inputs by length, cut batches whose padded size stays under a cap.

A fixed batch of 32 pads every input to the batch's longest; on short, uneven texts (MS MARCO
passages) most of the compute then goes to padding. Here inputs are sorted by token count, each batch
is padded only to its own longest input, and ``rows x padded length`` stays under ``max_tokens``, which
also bounds the activations' memory. Callers scatter each batch's outputs back by index, so results
come out in the caller's order. Pure functions over lengths: no model, no tokenizer.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from winnow.errors import InvalidArgumentError

DEFAULT_MAX_TOKENS = 8192  # padded tokens per batch: ~16 MB of activations per layer for a 384-dim model


def token_budget_batches(
    lengths: Sequence[int] | np.ndarray, max_tokens: int = DEFAULT_MAX_TOKENS, *, max_rows: int | None = None
) -> list[np.ndarray]:
    """Split positions ``0..n-1`` into batches of similar length.

    Each batch is an int64 array of positions into ``lengths``, sorted by increasing length (ties keep the
    caller's order). A batch holds as many inputs as fit ``rows * longest <= max_tokens`` (and at most
    ``max_rows`` rows); an input longer than the budget on its own gets a batch of one. Every position
    appears in exactly one batch.
    """
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, (int, np.integer)) or max_tokens < 1:
        raise InvalidArgumentError(f"max_tokens must be a positive integer, got {max_tokens!r}")
    if max_rows is not None and max_rows < 1:
        raise InvalidArgumentError(f"max_rows must be >= 1 (or None for no limit), got {max_rows!r}")
    lens = np.asarray(lengths, dtype=np.int64)
    if lens.ndim != 1:
        raise InvalidArgumentError(f"lengths must be one-dimensional, got shape {lens.shape}")
    if lens.size and lens.min() < 0:
        raise InvalidArgumentError(f"lengths must be >= 0, got {int(lens.min())}")
    order = np.argsort(lens, kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    n = len(order)
    cap_rows = n if max_rows is None else max_rows
    while start < n:
        end = start + 1
        # sorted ascending, so the newest row is the batch's longest: padded size = rows * its length
        while end < n and end - start < cap_rows and (end - start + 1) * max(int(lens[order[end]]), 1) <= max_tokens:
            end += 1
        batches.append(order[start:end])
        start = end
    return batches


def padded_tokens(lengths: Sequence[int] | np.ndarray, batches: Sequence[np.ndarray]) -> int:
    """Total padded tokens the batches cost (rows x longest, summed): the compute a batching plan pays."""
    lens = np.asarray(lengths, dtype=np.int64)
    return int(sum(len(b) * int(lens[b].max()) for b in batches if len(b)))


def fixed_count_batches(lengths: Sequence[int] | np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Batches of ``batch_size`` in the caller's order (the plain way; for comparisons)."""
    if batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be >= 1, got {batch_size!r}")
    n = len(lengths)
    return [np.arange(i, min(i + batch_size, n), dtype=np.int64) for i in range(0, n, batch_size)]


def pad_batch(token_ids: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad ``token_ids`` to the longest row: (ids, attention_mask), both int64 (rows, longest)."""
    rows = len(token_ids)
    longest = max((len(t) for t in token_ids), default=0)
    ids = np.full((rows, longest), pad_id, dtype=np.int64)
    mask = np.zeros((rows, longest), dtype=np.int64)
    for r, t in enumerate(token_ids):
        ids[r, : len(t)] = t
        mask[r, : len(t)] = 1
    return ids, mask
