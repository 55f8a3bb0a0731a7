"""A trained ColBERT model as a reranker: MaxSim of the query's token vectors against each candidate's,
encoded on the fly (:mod:`winnow.encode.colbert`). Over a collection's stored token vectors the same score
comes from :meth:`winnow.index.multivector.MultiVectorPart.score` without encoding the candidates."""

from __future__ import annotations

from functools import cached_property
from typing import Sequence

import numpy as np

from winnow.rerank.base import Reranker


class ColBERTReranker(Reranker):
    def __init__(self, model: str, *, encoder=None, backend: str = "auto") -> None:
        self.model = model
        self._given = encoder
        self._backend = backend
        self.name = f"colbert:{model}"

    @cached_property
    def encoder(self):
        if self._given is not None:
            return self._given
        from winnow.encode.colbert import ColBERTEncoder

        return ColBERTEncoder(self.model, backend=self._backend)

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        from winnow.index.multivector import maxsim_many

        if not texts:
            return np.zeros(0, dtype=np.float32)
        q = self.encoder.encode_queries([query])[0]
        docs = self.encoder.encode_documents(list(texts))
        offsets = np.concatenate([[0], np.cumsum([len(d) for d in docs])])
        return maxsim_many(q, np.concatenate(docs), offsets)
