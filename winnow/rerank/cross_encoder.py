"""A cross-encoder reranker: reads query and passage together, on torch or ONNX Runtime (fp32 or int8).

Backends as for the bi-encoder (:mod:`winnow.encode.bi_encoder`): ``torch`` runs sentence-transformers'
``CrossEncoder``; ``onnx`` an fp32 export with fused kernels; ``onnx-int8`` the same with dynamically
quantized int8 weights; ``auto`` picks per machine. Pairs are batched by token budget (sorted by length,
padded to each batch's longest, ``max_tokens`` padded tokens per batch) and truncated to ``max_length``.

Scores are cached (:class:`~winnow.rerank.cache.ScoreCache`, LRU, bounded): a query asked again costs
dictionary lookups, not model calls. The cache holds raw logits keyed by model, backend, max_length,
query and passage hash; ``sigmoid`` is applied after it.
"""

from __future__ import annotations

import logging
from functools import cached_property
from typing import Callable, Sequence

import numpy as np

from winnow.encode.batching import DEFAULT_MAX_TOKENS, token_budget_batches
from winnow.errors import InvalidArgumentError
from winnow.models.backends import Backend, check_backend, resolve_backend
from winnow.models.export import prebuilt_model
from winnow.models.resolve import ResolvedModel, resolve_model
from winnow.rerank.base import Reranker
from winnow.rerank.budget import CostModel
from winnow.rerank.cache import ScoreCache
from winnow.rerank.calibration import CalibrationTable
from winnow.rerank.mix import MixTable
from winnow.rerank.reading import ONE_PASS, PassageReader, Reading
from winnow.runtime import limit_blas_threads

log = logging.getLogger(__name__)


class CrossEncoderReranker(Reranker):
    """Any cross-encoder (Hugging Face id or local folder).

    ``max_length`` caps query+passage tokens (longer pairs are truncated, longest part first);
    ``sigmoid=True`` maps the model's logit into 0..1, otherwise raw logits are returned (same order).
    ``cache``: True for a private :class:`ScoreCache`, a ScoreCache to share one, False/None for none.
    ``use_mix``: where the model folder has a ``fusion.json`` (winnow's trained rerankers do), order
    candidates by its mix of reranker and first-stage scores fitted for their first stage
    (:mod:`winnow.rerank.mix`); False ranks by the reranker's score alone.
    ``reading``: how it reads candidates longer than one pass, unless ``rank`` is given another
    (:class:`~winnow.rerank.reading.Reading`; default one pass cut at the right, as always).
    ``cost_model``: what a latency budget plans with (:class:`~winnow.rerank.budget.CostModel`; default a fresh one).
    """

    def __init__(
        self,
        model: str,
        *,
        max_length: int | None = None,
        batch_size: int = 32,
        sigmoid: bool = False,
        device: str = "cpu",
        backend: str = "auto",
        max_tokens: int = DEFAULT_MAX_TOKENS,
        cache: ScoreCache | bool | None = True,
        threads: int | None = None,
        use_mix: bool = True,
        logits_fn: Callable[[list[tuple[str, str]]], np.ndarray] | None = None,
        reading: Reading = ONE_PASS,
        cost_model: CostModel | None = None,
    ) -> None:
        if max_length is not None and max_length < 8:
            raise InvalidArgumentError(f"max_length must be >= 8 tokens (or None for the model's), got {max_length}")
        if batch_size < 1:
            raise InvalidArgumentError(f"batch_size must be >= 1, got {batch_size}")
        if max_tokens < 16:
            raise InvalidArgumentError(f"max_tokens must be >= 16 padded tokens per batch, got {max_tokens}")
        self.resolved: ResolvedModel = resolve_model(model)
        self.name = self.resolved.name
        self.mixes = MixTable.from_model_dir(self.resolved.path) if use_mix else None
        self.calibration = CalibrationTable.from_model_dir(self.resolved.path)
        self._max_length = max_length
        self.batch_size = batch_size  # rows per call for the torch backend when no fast tokenizer plans batches
        self.sigmoid = sigmoid
        self.device = device
        self.requested_backend = check_backend(backend)
        self.max_tokens = max_tokens
        self.threads = threads
        if cache is True:
            cache = ScoreCache()
        elif cache is False:
            cache = None
        elif cache is not None and not isinstance(cache, ScoreCache):
            raise InvalidArgumentError(f"cache must be True, False, None or a ScoreCache, got {type(cache).__name__}")
        self.cache: ScoreCache | None = cache
        self.logits_fn = logits_fn
        if not isinstance(reading, Reading):
            raise InvalidArgumentError(f"reading must be a winnow.rerank.reading.Reading, got {type(reading).__name__}")
        self.reading = reading
        if cost_model is not None:
            self.cost_model = cost_model

    def __repr__(self) -> str:
        return f"CrossEncoderReranker({self.name!r}, backend={self.requested_backend!r})"

    # -- backend ---------------------------------------------------------------------------------
    @cached_property
    def backend(self) -> Backend:
        """The backend in use: ``torch``, ``onnx`` or ``onnx-int8`` (``auto`` resolved)."""
        prebuilt = prebuilt_model(self.resolved.path)
        if prebuilt is not None:  # an ONNX-only folder (winnow's shipped reranker) runs as it was built
            if self.requested_backend not in (Backend.AUTO, prebuilt.backend):
                raise InvalidArgumentError(
                    f"model {self.name!r} ships as {prebuilt.backend} ONNX only; backend {self.requested_backend!r} "
                    f"is not available for it: use 'auto' or {prebuilt.backend!r}"
                )
            if self.device != "cpu":
                raise InvalidArgumentError(f"model {self.name!r} ships as ONNX for the CPU; device {self.device!r} needs torch weights")
            return resolve_backend(prebuilt.backend)
        chosen = resolve_backend(self.requested_backend)
        if chosen is Backend.TORCH:
            return chosen
        from winnow.encode.onnx import tokenizer_file

        if self.device != "cpu":
            if self.requested_backend is not Backend.AUTO:
                raise InvalidArgumentError(f"backend {chosen!r} runs on the CPU only; device {self.device!r} needs torch")
            return Backend.TORCH
        try:
            tokenizer_file(self.resolved.path)
        except InvalidArgumentError:
            if self.requested_backend is not Backend.AUTO:
                raise
            return Backend.TORCH
        return chosen

    @cached_property
    def _model(self):
        from sentence_transformers import CrossEncoder

        log.info("loading cross-encoder %s from %s", self.name, self.resolved.path)
        return CrossEncoder(
            str(self.resolved.path), device=self.device, max_length=self._max_length, local_files_only=True
        )

    @cached_property
    def _runner(self):
        from winnow.encode.onnx import runner_for

        return runner_for(
            self.resolved, "score", self.backend,
            max_length=self.max_length, max_tokens=self.max_tokens, threads=self.threads,
        )

    @cached_property
    def _pair_tokenizer(self):
        """A fast tokenizer that plans the torch backend's batches (None: fixed batches of batch_size)."""
        from winnow.encode.onnx import tokenizer_file

        try:
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(tokenizer_file(self.resolved.path)))
        except Exception:  # any unreadable tokenizer: plan by count instead
            return None
        tok.no_padding()
        tok.enable_truncation(self.max_length, strategy="longest_first")
        return tok

    @cached_property
    def passage_reader(self) -> PassageReader | None:
        """Counts and cuts passages with the model's fast tokenizer (None where the folder has none)."""
        from winnow.encode.onnx import tokenizer_file

        try:
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(tokenizer_file(self.resolved.path)))
        except Exception:  # no readable fast tokenizer: passages are read whole, uncounted
            return None
        return PassageReader(tok, self.max_length)

    @cached_property
    def max_length(self) -> int:
        """Tokens per pair: the given ``max_length``, else the model's."""
        if self._max_length is not None:
            return int(self._max_length)
        if self.backend is Backend.TORCH:
            model = self._model  # sentence-transformers >= 5 renamed CrossEncoder.max_length (now deprecated)
            value = model.max_seq_length if hasattr(type(model), "max_seq_length") else model.max_length
            if value:
                return int(value)
        from winnow.encode.onnx import model_max_length

        return model_max_length(self.resolved.path)

    @cached_property
    def cache_id(self) -> str:
        """The model part of a score-cache key: name, weights fingerprint and backend."""
        from winnow.models.fingerprint import model_fingerprint

        return f"{self.name}|{model_fingerprint(self.resolved.path)}|{self.backend}"

    def warm_up(self) -> "CrossEncoderReranker":
        """Load the model now (not on the first query), without leaving anything in the score cache."""
        self.model_logits([("warm up", "load the model now")])
        return self

    # -- scoring ---------------------------------------------------------------------------------
    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        return self._activate(self.raw_scores(query, texts))

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """One float per (query, passage) pair, in order: lets a server score many queries in one call."""
        return self._activate(self.logits(pairs))

    def raw_scores(self, query: str, texts: Sequence[str]) -> np.ndarray:
        return self.logits([(query, t) for t in texts])

    def present(self, raw: np.ndarray) -> np.ndarray:
        return self._activate(raw)

    def logits(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Raw logits of ``pairs``, in order: from the cache where it holds them, else computed (by
        ``logits_fn`` where one was given, else the model)."""
        pairs = list(pairs)
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        compute = self.logits_fn or self.model_logits
        if self.cache is None:
            return np.asarray(compute(pairs), dtype=np.float32)
        keys = [k for q, t in pairs for k in self.cache.keys_for(self.cache_id, self.max_length, q, [t])]
        logits, found = self.cache.get_many(keys)
        if not found.all():
            missing = np.flatnonzero(~found)
            fresh = np.asarray(compute([pairs[i] for i in missing]), dtype=np.float32)
            logits[missing] = fresh
            self.cache.put_many([keys[i] for i in missing], fresh)
        return np.asarray(logits, dtype=np.float32)

    def _activate(self, logits: np.ndarray) -> np.ndarray:
        logits = np.asarray(logits, dtype=np.float32)
        return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32) if self.sigmoid else logits

    def model_logits(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """The model's logits for ``pairs``, uncached (what ``logits_fn`` stands in for)."""
        return self._logits(list(pairs))

    def _logits(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        """Raw first-logit scores of ``pairs``, in order, through the chosen backend."""
        out = np.empty(len(pairs), dtype=np.float32)
        if self.backend is not Backend.TORCH:

            def consume(positions, logits, _mask):
                out[positions] = logits.reshape(len(positions), -1)[:, 0]

            self._runner.run_batches(pairs, consume)
            return out
        import torch

        tok = self._pair_tokenizer
        if tok is None:
            batches = [np.arange(i, min(i + self.batch_size, len(pairs))) for i in range(0, len(pairs), self.batch_size)]
        else:
            batches = token_budget_batches([len(e.ids) for e in tok.encode_batch(pairs)], self.max_tokens)
        with limit_blas_threads():
            for batch in batches:
                scores = self._model.predict(
                    [pairs[i] for i in batch],
                    batch_size=len(batch),
                    activation_fn=torch.nn.Identity(),
                    show_progress_bar=False,
                    convert_to_numpy=True,
                )
                scores = np.asarray(scores, dtype=np.float32)
                out[batch] = scores.reshape(len(batch), -1)[:, 0]
        return out
