"""Late interaction (ColBERT-style MaxSim) over a bi-encoder's token vectors: no training needed.

score(q, d) = mean over query tokens of the best cosine with any document token. It reads every token
of both texts, so it sees matches that one pooled vector averages away.
"""

from __future__ import annotations

from functools import cached_property
from typing import Sequence

import numpy as np

from winnow.models.resolve import DEFAULT_BI_ENCODER
from winnow.rerank.base import Reranker


def maxsim(query_tokens: np.ndarray, doc_tokens: np.ndarray) -> float:
    """Mean over query tokens of the max dot product with the document's tokens (rows L2-normalized)."""
    if len(query_tokens) == 0 or len(doc_tokens) == 0:
        return 0.0
    return float((query_tokens @ doc_tokens.T).max(axis=1).mean())


class MaxSimReranker(Reranker):
    def __init__(self, model: str = DEFAULT_BI_ENCODER, *, encoder=None) -> None:
        self._given = encoder
        self.model = model
        self.name = f"maxsim:{model}"

    @cached_property
    def encoder(self):
        if self._given is not None:
            return self._given
        from winnow.encode.bi_encoder import BiEncoder

        return BiEncoder(self.model)

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        q = self.encoder.encode_tokens([query])[0]
        docs = self.encoder.encode_tokens(list(texts))
        return np.asarray([maxsim(q, d) for d in docs], dtype=np.float32)
