"""Bi-encoder: texts -> L2-normalized float32 vectors, through sentence-transformers.

Queries and documents have their own methods (``encode_query`` / ``encode_documents``) so that models
with query/document prompts slot in without an ``is_query`` flag.
"""

from __future__ import annotations

import logging
from functools import cached_property
from typing import Sequence

import numpy as np

from winnow.models.resolve import DEFAULT_BI_ENCODER, ResolvedModel, resolve_model
from winnow.runtime import limit_blas_threads

log = logging.getLogger(__name__)


class BiEncoder:
    """Encodes queries and documents with one sentence-transformers model, loaded on first use."""

    def __init__(self, model: str = DEFAULT_BI_ENCODER, *, batch_size: int = 32, device: str = "cpu") -> None:
        self.resolved: ResolvedModel = resolve_model(model)
        self.name = self.resolved.name
        self.batch_size = batch_size
        self.device = device

    @cached_property
    def _model(self):
        from sentence_transformers import SentenceTransformer

        log.info("loading bi-encoder %s from %s", self.name, self.resolved.path)
        return SentenceTransformer(str(self.resolved.path), device=self.device, local_files_only=True)

    @property
    def dim(self) -> int:
        model = self._model
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(getter())

    @property
    def max_seq_length(self) -> int:
        return int(self._model.max_seq_length)

    def encode_query(self, query: str) -> np.ndarray:
        """One query -> a (dim,) float32 unit vector."""
        return self.encode_queries([query])[0]

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        return self._encode(list(queries), prompt_name="query", progress=False)

    def encode_documents(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """Texts -> (n, dim) float32 unit vectors, in the order given."""
        return self._encode(list(texts), prompt_name="document", progress=progress)

    def encode_tokens(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Per text, its token vectors (n_tokens, dim), L2-normalized, special tokens included."""
        if not texts:
            return []
        with limit_blas_threads():
            outputs = self._model.encode(
                list(texts), batch_size=self.batch_size, output_value="token_embeddings", show_progress_bar=False
            )
        out = []
        for t in outputs:
            m = np.asarray(t.float().cpu().numpy() if hasattr(t, "cpu") else t, dtype=np.float32)
            out.append(m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12))
        return out

    def _encode(self, texts: list[str], *, prompt_name: str, progress: bool) -> np.ndarray:
        model = self._model
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        kwargs = {"prompt_name": prompt_name} if prompt_name in (model.prompts or {}) else {}
        with limit_blas_threads():
            vectors = model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=progress,
                **kwargs,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)
