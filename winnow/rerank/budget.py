"""A latency budget for the rerank stage: how deep to read, chosen per query.

With a :class:`Budget`, ``rank`` scores the candidates in first-stage order, a group of about
``batch_tokens`` tokens at a time (fewer where that would cost over a tenth of the budget), and before each
group asks :class:`CostModel` what the group will cost.
It stops when that would pass the budget (``StopReason.TIME``), or when the best candidate left (the
first stage's next: every later one has a lower first-stage score) could not enter the top ``k`` of the
fitted mix even with the reranker's best score so far (``StopReason.OUT_OF_REACH``; only where a mix orders
the hits: the reranker alone says nothing about unread candidates). The candidates read are ranked as a
rerank of that depth would rank them; the rest follow in first-stage order.

:class:`CostModel` learns milliseconds per scored token as the reranker runs (a moving average over the
groups it times), so a budget adapts to the machine and its load; it starts from a prior measured on the
2-core development CPU.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from enum import Enum

import numpy as np

from winnow.errors import InvalidArgumentError
from winnow.rerank.mix import ScoreMix

DEFAULT_BATCH_TOKENS = 512  # tokens scored between two looks at the clock (about 10 ms of the shipped int8 model here)
GROUP_SHARE = 0.1  # a group costs at most this share of the budget (see Budget.group_tokens)
MIN_GROUP_TOKENS = 64
OUTLIER = 4.0
DEVIATION_SMOOTHING = 0.25  # Jacobson's h for the deviation (his g, for the average, is CostModel's smoothing)  # a sample is clipped to within this factor of the current estimate
PRIOR_MS_PER_TOKEN = 0.02  # the shipped int8 reranker on the 2-core development CPU, a little pessimistic


class StopReason(str, Enum):
    """Why the rerank stage stopped reading candidates."""

    ALL = "all"  # every candidate was read
    TIME = "time"  # the next group would have passed the budget
    OUT_OF_REACH = "out_of_reach"  # no unread candidate could enter the top k of the mix

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Budget:
    """Milliseconds the rerank stage of one query may take (``ms``). ``k``: the top whose membership decides
    when unread candidates are out of reach (None: ``rank``'s ``top_k``). ``headroom``: the share of the
    budget planned for (the rest absorbs the cost model's misses)."""

    ms: float
    k: int | None = None
    batch_tokens: int = DEFAULT_BATCH_TOKENS
    headroom: float = 0.9

    def __post_init__(self) -> None:
        if isinstance(self.ms, bool) or not isinstance(self.ms, (int, float)) or not math.isfinite(self.ms) or self.ms < 0:
            raise InvalidArgumentError(f"budget must be a finite number of milliseconds >= 0, got {self.ms!r}")
        if self.k is not None and (isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1):
            raise InvalidArgumentError(f"budget k must be an integer >= 1 (or None for rank's top_k), got {self.k!r}")
        if isinstance(self.batch_tokens, bool) or not isinstance(self.batch_tokens, int) or self.batch_tokens < 1:
            raise InvalidArgumentError(f"budget batch_tokens must be an integer >= 1, got {self.batch_tokens!r}")
        if not (isinstance(self.headroom, (int, float)) and 0 < self.headroom <= 1):
            raise InvalidArgumentError(f"budget headroom must be in (0, 1], got {self.headroom!r}")

    @property
    def planned_ms(self) -> float:
        return self.ms * self.headroom

    def group_tokens(self, ms_per_token: float) -> int:
        """Tokens to score between two looks at the clock: ``batch_tokens``, or fewer where that would cost more
        than a tenth of the budget (a slow or loaded machine), so one group cannot overshoot it much."""
        affordable = int(GROUP_SHARE * self.planned_ms / ms_per_token) if ms_per_token > 0 else self.batch_tokens
        return min(self.batch_tokens, max(MIN_GROUP_TOKENS, affordable))


class CostModel:
    """Milliseconds per scored token, learned from what timed groups cost (thread-safe).

    Jacobson's estimator (the one TCP times its retransmissions with): a moving average of the rate and of
    its deviation; :meth:`predict` plans with the average plus ``spread`` deviations, so a machine whose
    speed wanders (other work on the cores) is planned for pessimistically and a steady one tightly."""

    def __init__(self, ms_per_token: float = PRIOR_MS_PER_TOKEN, *, smoothing: float = 0.2, spread: float = 2.0) -> None:
        if not (math.isfinite(ms_per_token) and ms_per_token > 0):
            raise InvalidArgumentError(f"ms_per_token must be a positive number, got {ms_per_token!r}")
        if not 0 < smoothing <= 1:
            raise InvalidArgumentError(f"smoothing must be in (0, 1], got {smoothing!r}")
        if not (math.isfinite(spread) and spread >= 0):
            raise InvalidArgumentError(f"spread must be a number >= 0, got {spread!r}")
        self._rate = float(ms_per_token)
        self._deviation = float(ms_per_token) / 2.0
        self.smoothing = float(smoothing)
        self.spread = float(spread)
        self._lock = threading.Lock()

    @property
    def ms_per_token(self) -> float:
        """The average rate learned so far."""
        return self._rate

    @property
    def planning_ms_per_token(self) -> float:
        """The rate :meth:`predict` plans with: the average plus ``spread`` deviations."""
        return self._rate + self.spread * self._deviation

    def predict(self, tokens: int) -> float:
        return tokens * self.planning_ms_per_token

    def observe(self, tokens: int, ms: float) -> None:
        """Learn from a group of ``tokens`` that took ``ms``. One sample is clipped to within 4x of the average,
        so a call that loaded the model, or one the score cache answered, does not throw it off."""
        if tokens <= 0 or not math.isfinite(ms) or ms < 0:
            return
        with self._lock:
            sample = min(max(ms / tokens, self._rate / OUTLIER), self._rate * OUTLIER)
            error = sample - self._rate
            self._rate += self.smoothing * error
            self._deviation += DEVIATION_SMOOTHING * (abs(error) - self._deviation)


def out_of_reach(raw: np.ndarray, first: np.ndarray, next_first: float, mix: ScoreMix | None, k: int) -> bool:
    """Whether the best unread candidate (first-stage score ``next_first``) stays out of the top ``k`` of the
    mix when read next, even scoring as high as the best reranker score so far. ``raw``/``first``: the read
    candidates' reranker and first-stage scores. Never true without a mix or before ``k`` candidates are read."""
    raw = np.asarray(raw, dtype=np.float64)
    if mix is None or mix.weight >= 1.0 or raw.size < k:
        return False
    r = np.append(raw, raw.max())
    f = np.append(np.asarray(first, dtype=np.float64), float(next_first))
    mixed = mix.apply(r, f)
    return int((mixed[:-1] > mixed[-1]).sum()) >= k
