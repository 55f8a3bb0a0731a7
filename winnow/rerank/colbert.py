"""A trained ColBERT model as a reranker: MaxSim of the query's token vectors against each candidate's,
encoded on the fly (:mod:`winnow.encode.colbert`). Over a collection's stored token vectors the same score
comes from :meth:`winnow.index.multivector.MultiVectorPart.score` without encoding the candidates.

Where the folder has a ``fusion.json`` (``winnow train fit-fusion`` fits one for ColBERT folders as for
cross-encoders, on held-out training queries), candidates of a first stage with a fitted mix are ordered by
the mix of MaxSim and the first stage's score (:mod:`winnow.rerank.mix`); ``use_mix=False`` ranks by MaxSim alone."""

from __future__ import annotations

from functools import cached_property
from typing import Sequence

import numpy as np

from winnow.errors import InvalidArgumentError
from winnow.rerank.base import Reranker, ScoredPrefix
from winnow.rerank.budget import StopReason


class ColBERTReranker(Reranker):
    def __init__(self, model: str, *, encoder=None, backend: str = "auto", use_mix: bool = True) -> None:
        self.model = model
        self._given = encoder
        self._backend = backend
        self.name = f"colbert:{model}"
        if use_mix:
            from winnow.models.resolve import resolve_model
            from winnow.rerank.mix import MixTable

            folder = encoder.folder if encoder is not None else resolve_model(model).path
            self.mixes = MixTable.from_model_dir(folder)

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


class StoredMaxSimReranker(Reranker):
    """MaxSim over a collection's stored token vectors (:meth:`winnow.collection.Collection.late_reranker`):
    only the query is encoded; each candidate document scores its best live chunk's exact MaxSim (the
    codes decoded), whatever chunk the first stage matched. Candidates must be the collection's documents.
    Scoring a hundred candidates takes milliseconds, so a :class:`~winnow.rerank.budget.Budget` never stops
    it early: every candidate is scored. Mixes as :class:`ColBERTReranker`'s (the model's ``fusion.json``)."""

    def __init__(self, collection, *, use_mix: bool = True) -> None:
        from winnow.models.resolve import resolve_model
        from winnow.rerank.mix import MixTable

        self.collection = collection
        self.model = collection.late_settings.model
        self.name = f"late:{self.model}"
        if use_mix:
            self.mixes = MixTable.from_model_dir(resolve_model(self.model).path)

    def warm_up(self) -> "StoredMaxSimReranker":
        """Load the ColBERT encoder and open the collection's token-vector parts now, not on the first query."""
        self.collection.late_encoder.encode_queries(["load the late-interaction encoder now"])
        self.collection.late_view()
        return self

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        raise InvalidArgumentError(
            f"{self.name} scores a collection's documents by their stored token vectors, not given texts: "
            f"use rank() with the collection's hits, or ColBERTReranker({self.model!r}) to encode texts"
        )

    def _score_candidates(self, query, candidates, reading, budget, first, mix, top_k, start) -> ScoredPrefix:
        reads = self.read(query, [(h.title, h.text) for h in candidates], reading)
        if not candidates:
            return ScoredPrefix(np.zeros(0), (), StopReason.ALL)
        q = self.collection.late_encoder.encode_queries([query])[0]
        found = self.collection.late_view().score_documents(q, [h.doc_id for h in candidates])
        missing = [h.doc_id for h in candidates if h.doc_id not in found]
        if missing:
            raise InvalidArgumentError(
                f"{len(missing)} candidate(s) are not live documents of collection {self.collection.name!r} "
                f"(first: {missing[:3]}); {self.name} reranks only that collection's hits"
            )
        return ScoredPrefix(np.asarray([found[h.doc_id] for h in candidates], dtype=np.float64), tuple(reads), StopReason.ALL)
