"""Bi-encoder: texts -> L2-normalized float32 vectors, on torch or ONNX Runtime (fp32 or int8).

Queries and documents have their own methods (``encode_query`` / ``encode_documents``) so that models
with query/document prompts slot in without an ``is_query`` flag.

Backends (``backend=``): ``torch`` runs sentence-transformers; ``onnx`` runs an fp32 ONNX export with
ONNX Runtime's fused kernels (vectors equal torch's to ~1e-6); ``onnx-int8`` runs the same export with
dynamically quantized int8 weights (cosine to fp32 ~0.99, a little less exact, several times faster
on CPUs with VNNI). ``auto`` picks per machine (:func:`winnow.models.backends.default_backend`). Every
backend batches by token budget: inputs sorted by length, each batch padded only to its own longest,
at most ``max_tokens`` padded tokens per batch; results come back in the caller's order.

With an :class:`~winnow.encode.cache.EmbeddingCache`, ``encode_documents`` reads vectors of texts
encoded before (same model content, backend, length and prompt) instead of running the model.
"""

from __future__ import annotations

import json
import logging
from functools import cached_property
from typing import Sequence

import numpy as np

from winnow.encode.batching import DEFAULT_MAX_TOKENS, token_budget_batches
from winnow.errors import InvalidArgumentError
from winnow.models.backends import Backend, check_backend, resolve_backend
from winnow.models.resolve import DEFAULT_BI_ENCODER, ResolvedModel, resolve_model
from winnow.runtime import limit_blas_threads

log = logging.getLogger(__name__)


class BiEncoder:
    """Encodes queries and documents with one model, loaded (and exported, for ONNX) on first use."""

    def __init__(
        self,
        model: str = DEFAULT_BI_ENCODER,
        *,
        backend: str = "auto",
        batch_size: int = 32,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        device: str = "cpu",
        cache=None,
        threads: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise InvalidArgumentError(f"batch_size must be >= 1, got {batch_size}")
        if max_tokens < 16:
            raise InvalidArgumentError(f"max_tokens must be >= 16 padded tokens per batch, got {max_tokens}")
        self.resolved: ResolvedModel = resolve_model(model)
        self.name = self.resolved.name
        self.requested_backend = check_backend(backend)
        self.batch_size = batch_size  # rows per batch for the torch backend's sentence-transformers calls
        self.max_tokens = max_tokens
        self.device = device
        self.cache = cache
        self.threads = threads

    def __repr__(self) -> str:
        return f"BiEncoder({self.name!r}, backend={self.requested_backend!r})"

    # -- backend ---------------------------------------------------------------------------------
    @cached_property
    def backend(self) -> Backend:
        """The backend in use: ``torch``, ``onnx`` or ``onnx-int8`` (``auto`` resolved)."""
        chosen = resolve_backend(self.requested_backend)
        if chosen is not Backend.TORCH and self.device != "cpu":
            if self.requested_backend is not Backend.AUTO:
                raise InvalidArgumentError(f"backend {chosen!r} runs on the CPU only; device {self.device!r} needs torch")
            return Backend.TORCH
        if chosen is not Backend.TORCH:
            try:
                self._layout  # noqa: B018 - a model ONNX can't reproduce falls back (auto) or fails (explicit)
            except InvalidArgumentError:
                if self.requested_backend is not Backend.AUTO:
                    raise
                log.info("model %s needs the torch backend", self.name)
                return Backend.TORCH
        return chosen

    @cached_property
    def _layout(self):
        from winnow.encode.onnx import read_embedding_layout, tokenizer_file

        tokenizer_file(self.resolved.path)
        return read_embedding_layout(self.resolved.path)

    @cached_property
    def _runner(self):
        from winnow.encode.onnx import runner_for

        return runner_for(
            self.resolved, "embed", self.backend,
            max_length=self._layout.max_seq_length, max_tokens=self.max_tokens, threads=self.threads,
        )

    @cached_property
    def _model(self):
        from sentence_transformers import SentenceTransformer

        log.info("loading bi-encoder %s from %s", self.name, self.resolved.path)
        return SentenceTransformer(str(self.resolved.path), device=self.device, local_files_only=True)

    @cached_property
    def _length_tokenizer(self):
        """A fast tokenizer for planning the torch backend's batches (None: fixed batches of batch_size)."""
        from winnow.encode.onnx import tokenizer_file

        try:
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(tokenizer_file(self.resolved.path)))
        except Exception:  # no or an unreadable tokenizer.json: plan fixed batches of batch_size instead
            return None
        tok.no_padding()
        tok.enable_truncation(self.max_seq_length)
        return tok

    @property
    def dim(self) -> int:
        if self.backend is Backend.TORCH:
            model = self._model
            getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
            return int(getter())
        config = json.loads((self.resolved.path / "config.json").read_text(encoding="utf-8"))
        return int(config["hidden_size"])

    @property
    def max_seq_length(self) -> int:
        if self.backend is Backend.TORCH:
            return int(self._model.max_seq_length)
        return self._layout.max_seq_length

    @cached_property
    def cache_space(self) -> str:
        """What besides the text decides a vector: model content, backend, length, document prompt."""
        from winnow.models.fingerprint import model_fingerprint

        prompt = self._prompt("document") or ""
        return f"{model_fingerprint(self.resolved.path)}:{self.backend}:{self.max_seq_length}:{prompt}"

    # -- encoding --------------------------------------------------------------------------------
    def encode_query(self, query: str) -> np.ndarray:
        """One query -> a (dim,) float32 unit vector."""
        return self.encode_queries([query])[0]

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        return self._encode(list(queries), prompt_name="query", progress=False)

    def encode_documents(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """Texts -> (n, dim) float32 unit vectors, in the order given (cached ones read back)."""
        texts = list(texts)
        if self.cache is None or not texts:
            return self._encode(texts, prompt_name="document", progress=progress)
        space, dim = self.cache_space, self.dim
        vectors, found = self.cache.get_many(space, dim, texts)
        missing = np.flatnonzero(~found)
        if len(missing):
            fresh = self._encode([texts[i] for i in missing], prompt_name="document", progress=progress)
            vectors[missing] = fresh
            self.cache.put_many(space, [texts[i] for i in missing], fresh)
        log.debug("embedding cache: %d of %d texts found", int(found.sum()), len(texts))
        return vectors

    def encode_tokens(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Per text, its token vectors (n_tokens, dim), L2-normalized, special tokens included."""
        texts = list(texts)
        if not texts:
            return []
        if self.backend is Backend.TORCH:
            with limit_blas_threads():
                outputs = self._model.encode(
                    texts, batch_size=self.batch_size, output_value="token_embeddings", show_progress_bar=False
                )
            return [_unit_rows(np.asarray(t.float().cpu().numpy() if hasattr(t, "cpu") else t)) for t in outputs]
        from winnow.encode.onnx import normalize_rows

        out: list[np.ndarray | None] = [None] * len(texts)

        def consume(positions, hidden, mask):
            lengths = mask.sum(axis=1)
            for row, i in enumerate(positions):
                out[i] = normalize_rows(hidden[row, : lengths[row]].astype(np.float32))

        self._runner.run_batches(texts, consume)
        return out  # type: ignore[return-value]

    def _prompt(self, prompt_name: str) -> str | None:
        if self.backend is Backend.TORCH:
            return (self._model.prompts or {}).get(prompt_name) or None
        return self._layout.prompts.get(prompt_name) or None

    def _encode(self, texts: list[str], *, prompt_name: str, progress: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.backend is Backend.TORCH:
            return self._encode_torch(texts, prompt_name=prompt_name, progress=progress)
        from winnow.encode.onnx import normalize_rows, pool

        prompt = self._prompt(prompt_name)
        items = [prompt + t for t in texts] if prompt else texts
        layout = self._layout
        out = np.empty((len(items), self.dim), dtype=np.float32)
        bar = _progress(len(items)) if progress else None

        def consume(positions, hidden, mask):
            vectors = pool(hidden, mask, layout.pooling)
            out[positions] = normalize_rows(vectors)  # always unit vectors, as with torch
            if bar is not None:
                bar.update(len(positions))

        try:
            self._runner.run_batches(items, consume)
        finally:
            if bar is not None:
                bar.close()
        return out

    def _encode_torch(self, texts: list[str], *, prompt_name: str, progress: bool) -> np.ndarray:
        model = self._model
        kwargs = {"prompt_name": prompt_name} if prompt_name in (model.prompts or {}) else {}
        tok = self._length_tokenizer
        if tok is None:
            batches = [np.arange(i, min(i + self.batch_size, len(texts))) for i in range(0, len(texts), self.batch_size)]
        else:
            lengths = [len(e.ids) for e in tok.encode_batch(texts)]
            batches = token_budget_batches(lengths, self.max_tokens)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        bar = _progress(len(texts)) if progress else None
        try:
            with limit_blas_threads():
                for batch in batches:
                    vectors = model.encode(
                        [texts[i] for i in batch],
                        batch_size=len(batch),
                        normalize_embeddings=True,
                        convert_to_numpy=True,
                        show_progress_bar=False,
                        **kwargs,
                    )
                    out[batch] = vectors
                    if bar is not None:
                        bar.update(len(batch))
        finally:
            if bar is not None:
                bar.close()
        return out


def _unit_rows(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float32)
    return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)


def _progress(total: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="encoding", unit="text")
