"""Scores you can threshold: a reranker's logits (or a first stage's scores) mapped to the probability that
the passage is relevant, fitted on held-out training queries.

Two calibrators, picked per score source by log-loss on held-out folds of the dev queries (then refitted on
all of them):

* **Platt scaling**: ``p = sigmoid(a * score + b)``, a logistic regression on the one score;
* **isotonic regression**: a non-decreasing step function (pool-adjacent-violators), interpolated
  linearly between its steps and clipped to ``[eps, 1 - eps]`` so log-loss stays finite.

A model folder ships them as ``calibration.json`` (format 1)::

    {"format_version": 1,
     "reranker": {"method": "platt", "a": 1.3, "b": -2.1, "dev_pairs": 9000, "dev_log_loss": {...}},
     "first_stages": {"dense": {"method": "isotonic", "x": [...], "y": [...]}, "bm25": {...}, "hybrid": {...}}}

``reranker`` calibrates the reranker's own logit (whatever mix orders the hits); ``first_stages`` calibrate
first-stage-only searches. Applying a calibrator is plain arithmetic: nothing is fitted at search time.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import numpy as np

from winnow.errors import InvalidArgumentError
from winnow.types import FirstStage

FILENAME = "calibration.json"
FORMAT_VERSION = 1
EPS = 1e-4  # isotonic probabilities are kept inside [EPS, 1 - EPS]


class CalibrationMethod(str, Enum):
    PLATT = "platt"
    ISOTONIC = "isotonic"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Calibrator:
    """A fitted map from a score to a probability of relevance."""

    method: CalibrationMethod
    a: float = 1.0  # Platt
    b: float = 0.0
    x: tuple[float, ...] = ()  # isotonic: increasing scores...
    y: tuple[float, ...] = ()  # ... and the non-decreasing probabilities at them

    def __post_init__(self) -> None:
        if self.method is CalibrationMethod.ISOTONIC and (len(self.x) != len(self.y) or not self.x):
            raise InvalidArgumentError(f"an isotonic calibrator needs as many x as y values (>= 1), got {len(self.x)} and {len(self.y)}")

    def apply(self, scores: np.ndarray | Sequence[float]) -> np.ndarray:
        s = np.asarray(scores, dtype=np.float64)
        if self.method is CalibrationMethod.PLATT:
            return 1.0 / (1.0 + np.exp(-(self.a * s + self.b)))
        return np.clip(np.interp(s, self.x, self.y), EPS, 1.0 - EPS)

    def to_json(self) -> dict[str, Any]:
        if self.method is CalibrationMethod.PLATT:
            return {"method": self.method.value, "a": self.a, "b": self.b}
        return {"method": self.method.value, "x": list(self.x), "y": list(self.y)}

    @classmethod
    def from_json(cls, payload: Mapping[str, Any]) -> "Calibrator":
        try:
            method = CalibrationMethod(payload["method"])
            if method is CalibrationMethod.PLATT:
                return cls(method, a=float(payload["a"]), b=float(payload["b"]))
            return cls(method, x=tuple(map(float, payload["x"])), y=tuple(map(float, payload["y"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidArgumentError(f"not a valid calibrator ({exc!r}): {dict(payload)!r:.120}") from exc


# -- fitting ---------------------------------------------------------------------------------------------------
def fit_platt(scores: np.ndarray, labels: np.ndarray, *, iterations: int = 100) -> Calibrator:
    """Logistic regression of the labels on the score (Newton's method, a tiny ridge for stability)."""
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    _check(s, y)
    w = np.zeros(2)
    X = np.stack([s, np.ones_like(s)], axis=1)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(X @ w)))
        grad = X.T @ (p - y) + 1e-6 * w
        hess = (X * (p * (1 - p))[:, None]).T @ X + 1e-6 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return Calibrator(CalibrationMethod.PLATT, a=float(w[0]), b=float(w[1]))


def fit_isotonic(scores: np.ndarray, labels: np.ndarray) -> Calibrator:
    """Pool-adjacent-violators on the labels sorted by score. Each pooled block keeps its lowest and highest
    score as knots (one value across the block, as scikit-learn's ``IsotonicRegression`` predicts on the
    fitted points); between blocks the curve is linear."""
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    _check(s, y)
    order = np.argsort(s, kind="stable")
    s, y = s[order], y[order]
    # blocks of equal scores first (ties must share a value), then merge violators: [value, weight, lo, hi]
    blocks: list[list[float]] = []
    start = 0
    for end in range(1, len(s) + 1):
        if end == len(s) or s[end] != s[start]:
            blocks.append([float(y[start:end].mean()), end - start, float(s[start]), float(s[start])])
            start = end
            while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
                v2, w2, _, hi2 = blocks.pop()
                v1, w1, lo1, _ = blocks.pop()
                blocks.append([(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, lo1, hi2])
    xs: list[float] = []
    ys: list[float] = []
    for value, _, lo, hi in blocks:
        v = min(max(value, EPS), 1.0 - EPS)
        for x in (lo, hi) if hi > lo else (lo,):
            xs.append(x)
            ys.append(v)
    return Calibrator(CalibrationMethod.ISOTONIC, x=tuple(xs), y=tuple(ys))


def log_loss(probabilities: np.ndarray, labels: np.ndarray) -> float:
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, 1 - 1e-12)
    y = np.asarray(labels, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, *, bins: int = 10) -> float:
    """ECE over ``bins`` equal-width probability bins: the mean |accuracy - confidence| weighted by bin size."""
    p, y = np.asarray(probabilities, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    if p.size == 0:
        return 0.0
    which = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.sum() * abs(y[mask].mean() - p[mask].mean())
    return float(total / p.size)


def reliability_bins(probabilities: np.ndarray, labels: np.ndarray, *, bins: int = 10) -> list[tuple[float, float, int]]:
    """(mean confidence, fraction relevant, count) per non-empty equal-width bin: a reliability diagram."""
    p, y = np.asarray(probabilities, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    which = np.minimum((p * bins).astype(int), bins - 1)
    return [(float(p[which == b].mean()), float(y[which == b].mean()), int((which == b).sum()))
            for b in range(bins) if (which == b).any()]


@dataclass(frozen=True)
class CalibrationFit:
    calibrator: Calibrator
    pairs: int
    log_loss: Mapping[str, float]  # method -> held-out log-loss (mean over the folds)

    def to_json(self) -> dict[str, Any]:
        return {**self.calibrator.to_json(), "dev_pairs": self.pairs,
                "dev_log_loss": {k: round(v, 6) for k, v in self.log_loss.items()}}


FITTERS = {CalibrationMethod.PLATT: fit_platt, CalibrationMethod.ISOTONIC: fit_isotonic}


def fit_best(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray, *, folds: int = 2, seed: int = 0) -> CalibrationFit:
    """Fit each method on all but one fold of the queries (``groups``: a query id per pair), score log-loss
    on the fold left out, pick the lower mean, and refit it on everything."""
    s, y, g = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.float64), np.asarray(groups)
    _check(s, y)
    queries = np.unique(g)
    if len(queries) < folds:
        raise InvalidArgumentError(f"calibration needs at least {folds} dev queries, got {len(queries)}")
    rng = np.random.default_rng(seed)
    fold_of = dict(zip(queries.tolist(), rng.permutation(len(queries)) % folds))
    fold = np.asarray([fold_of[q] for q in g.tolist()])
    losses: dict[str, float] = {}
    for method, fit in FITTERS.items():
        per_fold = []
        for k in range(folds):
            train, test = fold != k, fold == k
            if len(np.unique(y[train])) < 2:
                per_fold.append(math.inf)
                continue
            per_fold.append(log_loss(fit(s[train], y[train]).apply(s[test]), y[test]))
        losses[method.value] = float(np.mean(per_fold))
    best = min(FITTERS, key=lambda m: losses[m.value])
    return CalibrationFit(FITTERS[best](s, y), len(s), losses)


def held_out_ece(scores: np.ndarray, labels: np.ndarray, groups: np.ndarray, sources: np.ndarray,
                 method: CalibrationMethod, *, folds: int = 2, seed: int = 0) -> dict[str, dict[str, float]]:
    """Per source, the ECE of ``method`` on queries it was not fitted on: each source's queries are cut into
    ``folds`` folds, and each fold is scored by a calibrator fitted on everything else (the other sources and
    the source's other folds). What a shipped calibration can be expected to do on new queries of a source."""
    s, y, g, src = (np.asarray(a) for a in (scores, labels, groups, sources))
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, float]] = {}
    for name in sorted(set(src.tolist())):
        mine = src == name
        queries = np.unique(g[mine])
        fold_of = dict(zip(queries.tolist(), rng.permutation(len(queries)) % folds))
        fold = np.full(len(s), -1)
        fold[mine] = [fold_of[q] for q in g[mine].tolist()]
        p = np.empty(int(mine.sum()))
        for k in range(folds):
            test = fold == k
            if not test.any():
                continue
            p[(fold[mine] == k)] = FITTERS[method](s[~test], y[~test].astype(float)).apply(s[test])
        out[name] = {"ece": round(expected_calibration_error(p, y[mine]), 4), "pairs": int(mine.sum()),
                     "queries": len(queries), "fraction_relevant": round(float(y[mine].mean()), 4)}
    return out


def _check(s: np.ndarray, y: np.ndarray) -> None:
    if s.shape != y.shape or s.ndim != 1 or s.size == 0:
        raise InvalidArgumentError(f"calibration needs one label per score (1-D, non-empty), got {s.shape} and {y.shape}")
    if not np.isin(y, (0.0, 1.0)).all():
        raise InvalidArgumentError("calibration labels must be 0 or 1")
    if len(np.unique(y)) < 2:
        raise InvalidArgumentError("calibration needs both relevant and non-relevant pairs")


def keep_probable(ranking, min_probability: float):
    """The ranking's hits whose calibrated probability is at least ``min_probability`` (ranks, timings and
    what the rerank stage read kept)."""
    from dataclasses import replace

    if not 0.0 <= min_probability <= 1.0:
        raise InvalidArgumentError(f"min_probability must be in 0..1, got {min_probability!r}")
    if any(h.probability is None for h in ranking.hits):
        raise InvalidArgumentError(
            "a probability threshold needs calibrated probabilities: rerank with a model that ships "
            "calibration.json (winnow train calibrate MODEL --dev FILE... fits one)"
        )
    return replace(ranking, hits=tuple(h for h in ranking.hits if h.probability >= min_probability))


# -- the shipped table -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CalibrationTable:
    reranker: Calibrator | None = None
    first_stages: Mapping[FirstStage, Calibrator] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "first_stages", MappingProxyType(dict(self.first_stages)))

    def for_stage(self, stage: FirstStage | None) -> Calibrator | None:
        return None if stage is None else self.first_stages.get(stage)

    @classmethod
    def from_model_dir(cls, folder: Path | str) -> "CalibrationTable | None":
        path = Path(folder) / FILENAME
        if not path.is_file():
            return None
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
            if payload.get("format_version") != FORMAT_VERSION:
                raise InvalidArgumentError(f"{path}: format_version {payload.get('format_version')!r} is not {FORMAT_VERSION}")
            reranker = Calibrator.from_json(payload["reranker"]) if payload.get("reranker") else None
            stages = {FirstStage(k): Calibrator.from_json(v) for k, v in (payload.get("first_stages") or {}).items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidArgumentError(f"{path} is not a valid calibration file ({exc!r}); delete it or refit it") from exc
        return cls(reranker, stages)


def first_stage_calibrator(stage: FirstStage, *, bi_encoder: str | None = None, model: str | None = None) -> Calibrator:
    """The calibrator of ``stage``'s scores shipped with ``model`` (default: winnow's default reranker), for
    searches without a reranker. It was fitted on scores of the default bi-encoder (dense and hybrid lists
    mined with it), so a collection built with another (``bi_encoder``) gets a typed error, not wrong numbers.
    BM25 scores also depend on the corpus (its statistics): the BM25 calibrator is the training sources'."""
    from winnow.models.resolve import DEFAULT_BI_ENCODER, default_reranker

    table = _model_table(model or default_reranker())
    calibrator = table.for_stage(stage) if table is not None else None
    if calibrator is None:
        raise InvalidArgumentError(
            f"no calibrated probabilities for {stage.value} scores: rerank (--rerank) for the reranker's probabilities"
        )
    if stage is not FirstStage.BM25 and bi_encoder is not None and not _same_model(bi_encoder, DEFAULT_BI_ENCODER):
        raise InvalidArgumentError(
            f"the {stage.value} calibrator was fitted on {DEFAULT_BI_ENCODER}'s scores; this collection uses "
            f"{bi_encoder}: rerank (--rerank) for calibrated probabilities"
        )
    return calibrator


@functools.lru_cache(maxsize=8)
def _model_table(model: str) -> CalibrationTable | None:
    """A model's calibration table, resolved and read once per process (searches ask for it per query)."""
    from winnow.models.resolve import resolve_model

    return CalibrationTable.from_model_dir(resolve_model(model).path)


@functools.lru_cache(maxsize=32)
def _same_model(a: str, b: str) -> bool:
    """Whether two model names resolve to one folder (cached: the server asks on every first-stage search)."""
    from winnow.errors import ModelNotFoundError
    from winnow.models.resolve import resolve_model

    if a == b:
        return True
    try:
        return resolve_model(a).path == resolve_model(b).path
    except ModelNotFoundError:
        return False
