"""The one shape every reranker has: ``rank(query, candidates, top_k) -> Ranking``."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Sequence

import numpy as np

from winnow.errors import InvalidArgumentError
from winnow.rerank.budget import Budget, CostModel, StopReason, out_of_reach
from winnow.rerank.calibration import CalibrationTable
from winnow.rerank.mix import MixTable, ScoreMix
from winnow.rerank.reading import ONE_PASS, PassageRead, PassageReader, Reading, Truncation
from winnow.rerank.windows import aggregate
from winnow.types import FirstStage, Hit, Ranking, RerankStats, with_title

CHARS_PER_TOKEN = 4  # a candidate's size before it is tokenized (to cut budget groups)


@dataclass(frozen=True)
class ScoredPrefix:
    """What the rerank stage read: the first ``len(raw)`` candidates (in the order given), each one's
    aggregated raw score and :class:`PassageRead`, and why it stopped there."""

    raw: np.ndarray
    reads: tuple[PassageRead, ...]
    stop: StopReason


class Reranker(ABC):
    """Scores (query, candidate) pairs and reorders the candidates by that score."""

    name: str = "reranker"
    mixes: MixTable | None = None  # a trained model's fitted mixes with each first stage (winnow.rerank.mix)
    calibration: CalibrationTable | None = None  # its fitted relevance probabilities (winnow.rerank.calibration)
    reading: Reading = ONE_PASS  # how it reads candidates unless rank() is given another (winnow.rerank.reading)

    @abstractmethod
    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """One float per text, higher is more relevant; same order as ``texts``."""

    def raw_scores(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """The scores :meth:`rank` orders and mixes by (a cross-encoder's logits); :meth:`present` maps them
        to what the caller sees (e.g. a sigmoid), which never changes the order."""
        return self.score(query, texts)

    def present(self, raw: np.ndarray) -> np.ndarray:
        return raw

    def warm_up(self) -> "Reranker":
        """Load what scoring needs now, not on the first query (nothing to load here)."""
        return self

    @property
    def passage_reader(self) -> PassageReader | None:
        """What counts and cuts its passages' tokens (None: it reads each passage whole, uncounted)."""
        return None

    @cached_property
    def cost_model(self) -> CostModel:
        """Milliseconds per scored token, learned as it runs: what a :class:`Budget` plans with."""
        return CostModel()

    def read(self, query: str, passages: Sequence[tuple[str, str]], reading: Reading = ONE_PASS) -> list[PassageRead]:
        """What it reads of each (title, text) with ``query`` (see :mod:`winnow.rerank.reading`)."""
        reader = self.passage_reader
        if reader is not None:
            return reader.read(query, passages, reading)
        if reading != ONE_PASS and (reading.windowed or reading.truncation is Truncation.LEFT or not reading.truncate):
            raise InvalidArgumentError(
                f"reranker {self.name!r} has no tokenizer, so it reads each passage in one pass as given: "
                f"windows, left truncation and truncate=False need a reranker with a fast tokenizer (a cross-encoder)"
            )
        return [PassageRead((with_title(title, text),)) for title, text in passages]

    def rank(
        self,
        query: str,
        candidates: Sequence[Hit],
        top_k: int | None = None,
        *,
        first_stage: FirstStage | None = None,
        reading: Reading | None = None,
        budget: Budget | None = None,
    ) -> Ranking:
        """Rerank ``candidates`` (a first stage's hits, in its order) and keep the best ``top_k`` (all when None).

        Each returned hit keeps the first stage's rank and score (taken from the candidate's own rank and
        score unless the candidate already carries them) and gets ``rerank_score``, the reranker's own
        score, and ``read_tokens`` / ``truncated_tokens``. Where the reranker carries a mix fitted for
        ``first_stage`` (the candidates' origin), ``score`` and the order are the mix of the two; otherwise
        the reranker's score alone. ``reading`` (default: the reranker's own) says how long passages are
        read (one pass or windows); ``budget`` bounds the stage's time by reading only the first candidates
        (see :mod:`winnow.rerank.budget`): the hits not read come after the read ones, in the order given,
        with ``rerank_score`` None and scores below every read hit's. The caller's list is not modified.
        """
        if top_k is not None and top_k < 1:
            raise InvalidArgumentError(f"top_k must be >= 1 (or None for all), got {top_k!r}")
        start = time.perf_counter()
        reading = self.reading if reading is None else reading
        first = [_first(h.first_stage_score, h.score) for h in candidates]
        mix = self.mixes.for_stage(first_stage) if self.mixes is not None else None
        mixed = mix is not None and all(f is not None for f in first)
        prefix = self._score_candidates(query, candidates, reading, budget, first, mix if mixed else None, top_k, start)
        raw, depth = prefix.raw, len(prefix.raw)
        shown = np.asarray(self.present(raw), dtype=np.float64)
        order_by = mix.apply(raw, np.asarray(first[:depth], dtype=np.float64)) if mixed else raw
        scores = order_by if mixed else shown
        calibrator = self.calibration.reranker if self.calibration is not None else None
        probability = calibrator.apply(raw) if calibrator is not None and raw.size else None
        order = [*np.argsort(-order_by, kind="stable").tolist(), *range(depth, len(candidates))]
        if top_k is not None:
            order = order[:top_k]
        floor = float(scores.min()) if depth else 0.0
        hits = []
        for new_rank, i in enumerate(order, start=1):
            c = candidates[i]
            where = {"first_stage_rank": _first(c.first_stage_rank, c.rank), "first_stage_score": _first(c.first_stage_score, c.score)}
            if i < depth:
                read = prefix.reads[i]
                hits.append(replace(
                    c, score=float(scores[i]), rank=new_rank, rerank_score=float(shown[i]),
                    probability=None if probability is None else float(probability[i]),
                    read_tokens=read.read_tokens, truncated_tokens=read.truncated_tokens, **where,
                ))
            else:  # not read within the budget
                hits.append(replace(c, score=floor - (i - depth + 1), rank=new_rank, rerank_score=None, probability=None,
                                    read_tokens=0, truncated_tokens=None, **where))
        stats = RerankStats(
            candidates=len(candidates), read=depth, read_tokens=_total(r.read_tokens for r in prefix.reads),
            truncated_tokens=_total(r.truncated_tokens for r in prefix.reads), stop=prefix.stop,
        )
        return Ranking(query, tuple(hits), {"rerank": (time.perf_counter() - start) * 1000.0}, stats)

    # -- reading and scoring ---------------------------------------------------------------------------
    def _score_candidates(
        self, query: str, candidates: Sequence[Hit], reading: Reading, budget: Budget | None,
        first: Sequence[float | None], mix: ScoreMix | None, top_k: int | None, start: float,
    ) -> ScoredPrefix:
        """Read and score the candidates (all of them, or within ``budget``): what :meth:`rank` orders."""
        passages = [(h.title, h.text) for h in candidates]
        if budget is None:
            return self._score_all(query, passages, reading)
        k = budget.k or top_k or len(candidates)
        return self._score_within(query, passages, reading, budget, first, mix, k, start)

    def _score_reads(self, query: str, reads: Sequence[PassageRead], reading: Reading) -> np.ndarray:
        """One aggregated raw score per read: all windows of all reads scored in one call."""
        texts = [t for r in reads for t in r.texts]
        if not texts:
            return np.zeros(0)
        logits = np.asarray(self.raw_scores(query, texts), dtype=np.float64)
        out, at = np.empty(len(reads)), 0
        for i, r in enumerate(reads):
            n = len(r.texts)
            out[i] = logits[at] if n == 1 else aggregate(logits[at : at + n], reading.aggregation)
            at += n
        return out

    def _timed_scores(self, query: str, reads: Sequence[PassageRead], reading: Reading) -> np.ndarray:
        start = time.perf_counter()
        raw = self._score_reads(query, reads, reading)
        cost = _cost_tokens(reads)
        if cost is not None:
            self.cost_model.observe(cost, (time.perf_counter() - start) * 1000.0)
        return raw

    def _score_all(self, query: str, passages: Sequence[tuple[str, str]], reading: Reading) -> ScoredPrefix:
        reads = self.read(query, passages, reading)
        return ScoredPrefix(self._timed_scores(query, reads, reading), tuple(reads), StopReason.ALL)

    def _score_within(
        self, query: str, passages: Sequence[tuple[str, str]], reading: Reading, budget: Budget,
        first: Sequence[float | None], mix: ScoreMix | None, k: int, start: float,
    ) -> ScoredPrefix:
        """Read candidates group by group in the order given until the budget or the mix says stop."""
        checked = self.read(query, passages, reading) if not reading.truncate else None  # refuse before scoring
        raw_parts: list[np.ndarray] = []
        reads: list[PassageRead] = []
        stop = StopReason.ALL
        group_tokens = lambda: budget.group_tokens(self.cost_model.planning_ms_per_token)  # noqa: E731
        for lo, hi in _groups(passages, group_tokens):
            group = checked[lo:hi] if checked is not None else self.read(query, passages[lo:hi], reading)
            cost = _cost_tokens(group)
            predicted = self.cost_model.predict(cost if cost is not None else _estimate(passages[lo:hi]))
            if (time.perf_counter() - start) * 1000.0 + predicted > budget.planned_ms:
                stop = StopReason.TIME
                break
            raw_parts.append(self._timed_scores(query, group, reading))
            reads.extend(group)
            if hi < len(passages) and mix is not None:
                raw = np.concatenate(raw_parts)
                if out_of_reach(raw, np.asarray(first[:hi], dtype=np.float64), float(first[hi]), mix, k):
                    stop = StopReason.OUT_OF_REACH
                    break
        raw = np.concatenate(raw_parts) if raw_parts else np.zeros(0)
        return ScoredPrefix(raw, tuple(reads), stop)


def _total(values) -> int | None:
    values = list(values)
    return None if any(v is None for v in values) else int(sum(values))


def _first(value, fallback):
    return fallback if value is None else value


def _cost_tokens(reads: Sequence[PassageRead]) -> int | None:
    costs = [r.cost_tokens for r in reads]
    return None if any(c is None for c in costs) else int(sum(costs))


def _estimate(passages: Sequence[tuple[str, str]]) -> int:
    return sum((len(title) + len(text)) // CHARS_PER_TOKEN + 2 for title, text in passages)


def _groups(passages: Sequence[tuple[str, str]], group_tokens):
    """Consecutive (lo, hi) ranges of candidates of about ``group_tokens()`` estimated tokens each (at least
    one candidate; the size is asked again for every group, as the cost model learns)."""
    lo, size, target = 0, 0, group_tokens()
    for i, p in enumerate(passages):
        size += _estimate([p])
        if size >= target:
            yield lo, i + 1
            lo, size, target = i + 1, 0, group_tokens()
    if lo < len(passages):
        yield lo, len(passages)
