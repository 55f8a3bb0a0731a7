"""The fitted mixes of a reranker's score with the first stage's, one per first stage, as a trained model
ships them.

``winnow train reranker`` and ``winnow train fit-fusion`` fit ``w`` on held-out training queries, on the
lists of each first stage the reranker will see (dense, BM25, hybrid), and write ``fusion.json`` beside the
weights. At search time each query's two score lists are z-scored over its candidates and mixed as
``w * z(reranker) + (1 - w) * z(first stage)`` with the ``w`` of the candidates' first stage; the hits are
ordered by the mix, and each keeps the reranker's own score in ``rerank_score``. Candidates from a first
stage with no fitted mix (or of unknown origin, e.g. ``POST /rerank`` with bare documents) are ordered by
the reranker alone: never by another stage's weight, whose scores are of another kind.

``fusion.json``, format 2::

    {"format_version": 2, "method": "zscore",
     "first_stages": {"dense": {"weight_reranker": 0.5, "dev_queries": 420, "dev_ndcg@10": {...}, ...},
                      "bm25": {...}, "hybrid": {...}}}

Format 1 (a single top-level ``weight_reranker``, written before 2026-12) was fitted on dense lists: it
reads as a dense-only table.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import numpy as np

from winnow.errors import InvalidArgumentError
from winnow.retrieve.fusion import NORMALIZATIONS
from winnow.types import FirstStage

FILENAME = "fusion.json"
FORMAT_VERSION = 2
zscore = NORMALIZATIONS["zscore"]


@dataclass(frozen=True)
class ScoreMix:
    """``weight`` of the reranker's z-scored score; the first stage gets ``1 - weight``."""

    weight: float

    def __post_init__(self) -> None:
        if not (isinstance(self.weight, (int, float)) and math.isfinite(self.weight) and 0.0 <= self.weight <= 1.0):
            raise InvalidArgumentError(f"a score mix's reranker weight must be a number in 0..1, got {self.weight!r}")

    def apply(self, reranker: np.ndarray, first_stage: np.ndarray) -> np.ndarray:
        """Mixed scores, one per candidate (same order as the inputs)."""
        reranker = np.asarray(reranker, dtype=np.float64)
        first_stage = np.asarray(first_stage, dtype=np.float64)
        if reranker.shape != first_stage.shape:
            raise InvalidArgumentError(
                f"score mix needs one first-stage score per reranker score, got {first_stage.shape} and {reranker.shape}"
            )
        if reranker.size == 0:
            return reranker
        return self.weight * zscore(reranker) + (1.0 - self.weight) * zscore(first_stage)


@dataclass(frozen=True)
class MixTable:
    """A reranker's fitted mixes by first stage (see the module docstring)."""

    mixes: Mapping[FirstStage, ScoreMix] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mixes", MappingProxyType(dict(self.mixes)))

    def for_stage(self, stage: FirstStage | None) -> ScoreMix | None:
        """The mix fitted for ``stage``; None (rank by the reranker alone) for any other."""
        return None if stage is None else self.mixes.get(stage)

    @classmethod
    def from_json(cls, payload: Mapping[str, Any], *, where: str = "fusion.json") -> "MixTable":
        try:
            if payload.get("method") != "zscore":
                raise InvalidArgumentError(f"{where}: method {payload.get('method')!r} is not supported; only 'zscore'")
            version = int(payload.get("format_version", 1))
            if version == 1:
                return cls({FirstStage.DENSE: ScoreMix(float(payload["weight_reranker"]))})
            if version != FORMAT_VERSION:
                raise InvalidArgumentError(f"{where}: format_version {version} is newer than this winnow reads ({FORMAT_VERSION})")
            stages = payload["first_stages"]
            known = {s.value for s in FirstStage}
            unknown = sorted(set(stages) - known)
            if unknown:
                raise InvalidArgumentError(f"{where}: unknown first stage(s) {unknown}; known: {', '.join(sorted(known))}")
            return cls({FirstStage(k): ScoreMix(float(v["weight_reranker"])) for k, v in stages.items()})
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidArgumentError(f"{where} is not a valid score mix ({exc!r}); delete it or refit it") from exc

    @classmethod
    def from_model_dir(cls, folder: Path | str) -> "MixTable | None":
        """The table in ``folder/fusion.json``, or None when the model ships none."""
        path = Path(folder) / FILENAME
        if not path.is_file():
            return None
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise InvalidArgumentError(f"{path} is not valid JSON ({exc}); delete it or refit it") from exc
        if not isinstance(payload, dict):
            raise InvalidArgumentError(f"{path} must hold a JSON object")
        return cls.from_json(payload, where=str(path))


def fusion_payload(fits: Mapping[FirstStage, Mapping[str, Any]]) -> dict:
    """``fusion.json``'s content for per-stage fits (each a :meth:`FusionFit.to_json`-like mapping)."""
    return {
        "format_version": FORMAT_VERSION,
        "method": "zscore",
        "first_stages": {stage.value: dict(fit) for stage, fit in sorted(fits.items(), key=lambda kv: kv[0].value)},
    }


def merge_fusion(existing: Mapping[str, Any] | None, stage: FirstStage, fit: Mapping[str, Any]) -> dict:
    """``existing`` fusion.json content (any format, or None) with ``stage``'s fit put in (replacing its old one).
    A format-1 file's single fit was made on dense lists and is kept as the dense entry."""
    fits: dict[FirstStage, Mapping[str, Any]] = {}
    if existing:
        if int(existing.get("format_version", 1)) == 1 and "weight_reranker" in existing:
            fits[FirstStage.DENSE] = {k: v for k, v in existing.items() if k != "method"}
        else:
            fits.update({FirstStage(k): v for k, v in existing.get("first_stages", {}).items()})
    fits[stage] = dict(fit)
    return fusion_payload(fits)
