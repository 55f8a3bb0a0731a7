"""The fitted mix of a reranker's score with the first stage's, as a trained model ships it.

``winnow train reranker`` fits ``w`` on held-out training queries and writes ``fusion.json`` beside the
weights. At search time each query's two score lists are z-scored over its candidates and mixed as
``w * z(reranker) + (1 - w) * z(first stage)``; the hits are ordered by the mix, and each keeps the
reranker's own score in ``rerank_score``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from winnow.errors import InvalidArgumentError
from winnow.retrieve.fusion import NORMALIZATIONS

FILENAME = "fusion.json"
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

    @classmethod
    def from_model_dir(cls, folder: Path | str) -> ScoreMix | None:
        """The mix in ``folder/fusion.json``, or None when the model ships none."""
        path = Path(folder) / FILENAME
        if not path.is_file():
            return None
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
            if payload.get("method") != "zscore":
                raise InvalidArgumentError(f"{path}: method {payload.get('method')!r} is not supported; only 'zscore'")
            return cls(float(payload["weight_reranker"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidArgumentError(f"{path} is not a valid score mix ({exc}); delete it or retrain") from exc
