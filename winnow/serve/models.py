"""The models a server serves: loaded once, cached, and called through micro-batchers.

Only the models named at start (``--rerank-model``, ``--embed-model``), the rerankers that ship with
winnow, and the bi-encoders of the collections on disk are ever loaded: a request naming another model
gets a 404 that lists the served ones, never a download. A request naming no reranker gets the first
``--rerank-model``, else winnow's default reranker, else the first one winnow ships.

Rerankers are winnow's own :class:`~winnow.rerank.cross_encoder.CrossEncoderReranker`, exactly as the
library builds them (fitted mixes, score cache, ranking); the server only injects its micro-batcher as
the way uncached logits get computed, so a collection search answers as ``Collection.search`` does. Loading happens under one lock (two threads loading one model at once break
it); inference on a loaded model is safe from many threads.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future
from typing import Sequence

import numpy as np

from winnow.errors import WinnowError
from winnow.models.resolve import DEFAULT_RERANKER, resolve_model, shipped_models
from winnow.serve.batching import MicroBatcher
from winnow.serve.metrics import Metrics, escape_label
from winnow.serve.settings import ServeSettings
from winnow.types import Ranking

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4  # cost estimate for batching budgets; exact counts would mean tokenizing twice


class ModelNotServedError(WinnowError):
    """A request named a model this server does not serve (404)."""


class NoDefaultModelError(WinnowError):
    """A request named no model and the server has no default for that kind (422)."""


def _estimate_tokens(text: str, cap: int | None) -> int:
    n = len(text) // CHARS_PER_TOKEN + 2
    return min(n, cap) if cap else n


class ModelRegistry:
    def __init__(self, settings: ServeSettings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self._lock = threading.RLock()
        self._rerankers: dict[str, object] = {}
        self._encoders: dict[tuple[str, bool], object] = {}
        self._batchers: dict[tuple[str, str], MicroBatcher] = {}
        self._closed = False
        # every name a client may use for a served model -> its canonical (resolved) name
        default = settings.rerank_models[0] if settings.rerank_models else DEFAULT_RERANKER
        shipped = shipped_models()
        self.rerank_aliases = self._aliases([*settings.rerank_models, *shipped])
        self.warm_rerank = {self.rerank_aliases[n] for n in settings.rerank_models}  # loaded at start
        self.embed_aliases = self._aliases(settings.embed_models)
        if default is None and shipped:
            default = shipped[0]
        self.default_rerank = self.rerank_aliases[default] if default is not None else None
        if self.default_rerank is not None:
            self.warm_rerank.add(self.default_rerank)
        self.default_embed = self.embed_aliases[settings.embed_models[0]] if settings.embed_models else None

    @staticmethod
    def _aliases(names: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for name in names:
            resolved = resolve_model(name)  # raises ModelNotFoundError at start, not at the first request
            for alias in (name, resolved.name, resolved.name.split("/")[-1], str(resolved.path)):
                out.setdefault(alias, resolved.name)
        return out

    # -- names ---------------------------------------------------------------------------------------------
    def rerank_name(self, requested: str | None) -> str:
        if requested is None:
            if self.default_rerank is None:
                raise NoDefaultModelError(
                    "no reranker model given and this server has no default: pass \"model\" "
                    "(or start the server with --rerank-model)"
                )
            return self.default_rerank
        if requested not in self.rerank_aliases:
            served = ", ".join(sorted(set(self.rerank_aliases.values()))) or "none"
            raise ModelNotServedError(f"reranker model {requested!r} is not served here; served rerankers: {served}")
        return self.rerank_aliases[requested]

    def embed_name(self, requested: str | None) -> str:
        if requested is None:
            if self.default_embed is None:
                raise NoDefaultModelError("no embedding model given and this server has no default: pass \"model\"")
            return self.default_embed
        if requested not in self.embed_aliases:
            served = ", ".join(sorted(set(self.embed_aliases.values()))) or "none"
            raise ModelNotServedError(f"embedding model {requested!r} is not served here; served models: {served}")
        return self.embed_aliases[requested]

    # -- loading (cached) ----------------------------------------------------------------------------------
    def reranker(self, name: str):
        """The loaded cross-encoder for a canonical name (see :meth:`rerank_name`)."""
        model = self._rerankers.get(name)
        if model is not None:
            self.metrics.cache_hits.inc("reranker")
            return model
        with self._lock:
            if name not in self._rerankers:
                from winnow.rerank.cross_encoder import CrossEncoderReranker

                self.metrics.cache_misses.inc("reranker")
                batched = self.settings.batching.enabled
                model = CrossEncoderReranker(
                    name,
                    max_length=self.settings.rerank_max_length,
                    threads=self.settings.model_threads,
                    logits_fn=(lambda pairs, name=name: self._batched_logits(name, pairs)) if batched else None,
                )
                model.warm_up()  # load the weights now, under the lock
                self._rerankers[name] = model
            return self._rerankers[name]

    def encoder(self, name: str, *, bulk: bool = False):
        """The loaded bi-encoder for a model name (served, or a collection's own). ``bulk``: the instance for
        indexing writes, which uses every core per call (writes are few and large); the other one serves
        queries and embedding requests through the batchers with ``model_threads`` per call."""
        key = (name, bulk)
        model = self._encoders.get(key)
        if model is not None:
            self.metrics.cache_hits.inc("encoder")
            return model
        with self._lock:
            if key not in self._encoders:
                from winnow.encode.bi_encoder import BiEncoder

                self.metrics.cache_misses.inc("encoder")
                model = BiEncoder(name, threads=None if bulk else self.settings.model_threads)
                model.encode_queries(["load the weights now, under the lock"])
                self._encoders[key] = model
            return self._encoders[key]

    def warm_up(self) -> None:
        """Load every served model now (at start), so the first requests don't pay for it."""
        for name in sorted(self.warm_rerank):
            self.reranker(name)
        for name in set(self.embed_aliases.values()):
            self.encoder(name)

    # -- calls ---------------------------------------------------------------------------------------------
    def _batcher(self, kind: str, name: str) -> MicroBatcher:
        key = (kind, name)
        batcher = self._batchers.get(key)
        if batcher is not None:
            return batcher
        with self._lock:
            if key not in self._batchers:
                if self._closed:
                    raise WinnowError("server is shutting down")
                b = self.settings.batching
                fn = {"rerank": self._rerank_batch, "embed": self._embed_batch, "query": self._query_batch}[kind]
                self._batchers[key] = MicroBatcher(
                    lambda payloads, fn=fn, name=name: fn(name, payloads),
                    name=f"{kind}:{name.split('/')[-1]}",
                    max_wait_ms=b.max_wait_ms,
                    max_cost=b.max_tokens,
                    max_items=b.max_items,
                    workers=b.workers,
                    on_batch=self.metrics.on_batch,
                )
            return self._batchers[key]

    def _rerank_batch(self, name: str, payloads: list[list[tuple[str, str]]]) -> list[np.ndarray]:
        return _split(self.reranker(name).model_logits([p for pairs in payloads for p in pairs]), payloads)

    def _embed_batch(self, name: str, payloads: list[list[str]]) -> list[np.ndarray]:
        return _split(self.encoder(name).encode_documents([t for texts in payloads for t in texts]), payloads)

    def _query_batch(self, name: str, payloads: list[list[str]]) -> list[np.ndarray]:
        return _split(self.encoder(name).encode_queries([t for texts in payloads for t in texts]), payloads)

    def cache_lines(self) -> list[str]:
        """Prometheus lines for the rerankers' score caches (hits and misses per model)."""
        lines = []
        for kind in ("hits", "misses"):
            name = f"winnow_rerank_score_cache_{kind}_total"
            lines += [f"# HELP {name} reranker (query, passage) scores {kind} in the score cache", f"# TYPE {name} counter"]
            for model_name, model in sorted(self._rerankers.items()):
                cache = getattr(model, "cache", None)
                if cache is not None:
                    lines.append(f'{name}{{model="{escape_label(model_name)}"}} {getattr(cache, kind)}')
        return lines

    def _rerank_cost(self, pairs: Sequence[tuple[str, str]]) -> int:
        cap = self.settings.rerank_max_length
        return sum(_estimate_tokens(q + t, cap) for q, t in pairs) or 1

    def _submit(self, kind: str, name: str, payload, cost: int) -> Future:
        return self._batcher(kind, name).submit(payload, cost)

    def _batched_logits(self, name: str, pairs: list[tuple[str, str]]) -> np.ndarray:
        """The reranker's ``logits_fn``: uncached pairs go to the batcher and this thread waits for them."""
        return self._submit("rerank", name, list(pairs), self._rerank_cost(pairs)).result()

    async def rank(self, name: str, query: str, texts: Sequence[str], reading) -> Ranking:
        """The reranker's ranking of bare texts (hit ids are their positions), read as ``reading`` says; from
        async code: runs in a worker thread (uncached logits go through the batcher)."""
        from starlette.concurrency import run_in_threadpool

        from winnow.types import Hit

        hits = [Hit(doc_id=str(i), score=0.0, rank=i + 1, text=t) for i, t in enumerate(texts)]
        return await run_in_threadpool(lambda: self.reranker(name).rank(query, hits, reading=reading))

    async def logits(self, name: str, query: str, texts: Sequence[str]) -> np.ndarray:
        """Reranker logits (cached, then batched), from async code: runs in a worker thread."""
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(self.reranker(name).raw_scores, query, list(texts))

    async def embed(self, name: str, texts: Sequence[str]) -> np.ndarray:
        """Document embeddings (OpenAI endpoint), batched with other requests for the same model."""
        if not self.settings.batching.enabled:
            from starlette.concurrency import run_in_threadpool

            return await run_in_threadpool(self.encoder(name).encode_documents, list(texts))
        cost = sum(_estimate_tokens(t, 512) for t in texts) or 1
        return await asyncio.wrap_future(self._submit("embed", name, list(texts), cost))

    def encode_queries_blocking(self, name: str, queries: Sequence[str]) -> np.ndarray:
        if not self.settings.batching.enabled:
            return self.encoder(name).encode_queries(list(queries))
        cost = sum(_estimate_tokens(q, 512) for q in queries) or 1
        return self._submit("query", name, list(queries), cost).result()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            batchers = list(self._batchers.values())
        for b in batchers:
            b.close()


def _split(vectors: np.ndarray, payloads: list[list[str]]) -> list[np.ndarray]:
    out, at = [], 0
    for texts in payloads:
        out.append(vectors[at : at + len(texts)])
        at += len(texts)
    return out


class ServedQueryEncoder:
    """Stands in for a collection's bi-encoder on the read path: query encoding goes through the batcher."""

    def __init__(self, registry: ModelRegistry, name: str) -> None:
        self.registry = registry
        self.name = name
        self._encoder = registry.encoder(name)

    @property
    def resolved(self):
        return self._encoder.resolved

    @property
    def dim(self) -> int:
        return self._encoder.dim

    def encode_query(self, query: str) -> np.ndarray:
        return self.encode_queries([query])[0]

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        return self.registry.encode_queries_blocking(self.name, queries)

    def encode_documents(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        return self._encoder.encode_documents(texts, progress=progress)
