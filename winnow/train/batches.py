"""Length-bucketed batches for training: rows of similar length share a batch, so padding is small.

A training step costs about what its longest pair costs (every pair of a batch is padded to it): on the
2-core development CPU a batch of 32 pairs of 51 tokens took 0.35 s with bf16 autocast and one of 151
tokens 1.19 s. Sources differ a lot in length (SelQA and WikiQA sentences, SQuAD and MedQuAD paragraphs),
so random batches pad most pairs to a long neighbour. The sampler here shuffles, cuts the shuffled order
into windows of ``window`` batches, sorts each window by length, cuts it into batches and shuffles the
batches: every batch is of one length class, the order is random, and the same seed and epoch give the
same batches (which a resumed run relies on to skip the batches it has already seen).
"""

from __future__ import annotations

import random
from functools import lru_cache
from typing import Iterator, Sequence

from winnow.errors import InvalidArgumentError


def row_lengths(columns: dict[str, list], *, cap: int) -> list[int]:
    """A length per row of :func:`winnow.train.data.rows` columns (characters of the query plus its longest
    passage, capped at ``cap``): the quantity a batch pads to."""
    queries = columns["query"]
    if "docs" in columns:
        longest = [max((len(d) for d in docs), default=0) for docs in columns["docs"]]
    else:
        text_cols = [k for k in columns if k not in ("query", "label", "labels")]
        longest = [max(len(columns[k][i]) for k in text_cols) for i in range(len(queries))]
    return [min(cap, len(q) + n) for q, n in zip(queries, longest)]


def bucketed_batches(lengths: Sequence[int], batch_size: int, *, seed: int, window: int = 50) -> list[list[int]]:
    """Row indices in batches of similar length (see the module docstring); deterministic in ``seed``."""
    if batch_size < 1 or window < 1:
        raise InvalidArgumentError(f"batch_size and window must be >= 1, got {batch_size} and {window}")
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    span = batch_size * window
    batches: list[list[int]] = []
    for start in range(0, len(order), span):
        chunk = sorted(order[start : start + span], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


class LengthBuckets:
    """The ``batch_sampler`` for sentence-transformers' trainer: a picklable callable (the trainer saves its
    arguments with each checkpoint) that the trainer calls with the dataset and its batch size, drop_last,
    generator and seed, and that returns a sampler of :func:`bucketed_batches` reseeded every epoch."""

    def __init__(self, lengths: Sequence[int]) -> None:
        self.lengths = list(lengths)

    def __call__(self, dataset, **kwargs):
        if len(dataset) != len(self.lengths):
            raise InvalidArgumentError(f"{len(self.lengths)} lengths for a dataset of {len(dataset)} rows")
        return _sampler_class()(dataset, lengths=self.lengths, **kwargs)


@lru_cache(maxsize=1)
def _sampler_class():
    from sentence_transformers.base.sampler import DefaultBatchSampler

    class LengthBucketBatchSampler(DefaultBatchSampler):
        def __init__(self, dataset, *, lengths: Sequence[int], batch_size: int, drop_last: bool, **kwargs) -> None:
            super().__init__(dataset, batch_size=batch_size, drop_last=drop_last, **kwargs)
            self.lengths = lengths

        def _batches(self) -> list[list[int]]:
            batches = bucketed_batches(self.lengths, self.batch_size, seed=self.seed + self.epoch)
            return [b for b in batches if len(b) == self.batch_size] if self.drop_last else batches

        def __iter__(self) -> Iterator[list[int]]:
            yield from self._batches()

        def __len__(self) -> int:
            return len(self._batches())

    return LengthBucketBatchSampler
