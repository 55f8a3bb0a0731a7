"""A cross-encoder reranker on sentence-transformers' ``CrossEncoder``: reads query and passage together."""

from __future__ import annotations

import logging
from functools import cached_property
from typing import Sequence

import numpy as np

from winnow.errors import InvalidArgumentError
from winnow.models.resolve import ResolvedModel, resolve_model
from winnow.rerank.base import Reranker
from winnow.runtime import limit_blas_threads

log = logging.getLogger(__name__)


class CrossEncoderReranker(Reranker):
    """Any cross-encoder (Hugging Face id or local folder).

    ``max_length`` caps query+passage tokens (longer pairs are truncated); ``sigmoid=True`` maps the
    model's logit into 0..1, otherwise raw logits are returned (their order is the same).
    """

    def __init__(
        self,
        model: str,
        *,
        max_length: int | None = None,
        batch_size: int = 32,
        sigmoid: bool = False,
        device: str = "cpu",
    ) -> None:
        if max_length is not None and max_length < 8:
            raise InvalidArgumentError(f"max_length must be >= 8 tokens (or None for the model's), got {max_length}")
        if batch_size < 1:
            raise InvalidArgumentError(f"batch_size must be >= 1, got {batch_size}")
        self.resolved: ResolvedModel = resolve_model(model)
        self.name = self.resolved.name
        self._max_length = max_length
        self.batch_size = batch_size
        self.sigmoid = sigmoid
        self.device = device

    @cached_property
    def _model(self):
        from sentence_transformers import CrossEncoder

        log.info("loading cross-encoder %s from %s", self.name, self.resolved.path)
        return CrossEncoder(
            str(self.resolved.path), device=self.device, max_length=self._max_length, local_files_only=True
        )

    @property
    def max_length(self) -> int | None:
        return self._model.max_length

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0, dtype=np.float32)
        import torch

        activation = torch.nn.Sigmoid() if self.sigmoid else torch.nn.Identity()
        with limit_blas_threads():
            scores = self._model.predict(
                [(query, t) for t in texts],
                batch_size=self.batch_size,
                activation_fn=activation,
                show_progress_bar=False,
                convert_to_numpy=True,
            )
        scores = np.asarray(scores, dtype=np.float32)
        return scores.reshape(len(texts), -1)[:, 0] if scores.ndim > 1 else scores
