"""Prometheus metrics in the text exposition format (0.0.4), kept by hand: counters and histograms
with labels, safe to update from any thread.

Exposed by ``GET /metrics``: request counts and latencies per route, search time per stage, batch
sizes and waits per batcher, and cache hits (loaded models, open collections).
"""

from __future__ import annotations

import math
import threading
from typing import Iterable, Sequence

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384, 65536)


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{escape_label(str(v))}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _num(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Counter:
    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        self.name, self.help, self.label_names = name, help, tuple(labels)
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, *labels: str) -> float:
        return self._values.get(labels, 0.0)

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        with self._lock:
            items = sorted(self._values.items())
        for labels, v in items:
            yield f"{self.name}{_labels(self.label_names, labels)} {_num(v)}"


class Histogram:
    def __init__(self, name: str, help: str, labels: Sequence[str] = (), buckets: Sequence[float] = LATENCY_BUCKETS):
        self.name, self.help, self.label_names = name, help, tuple(labels)
        self.buckets = tuple(sorted(buckets))
        self._series: dict[tuple[str, ...], list[float]] = {}  # bucket counts..., sum, count
        self._lock = threading.Lock()

    def observe(self, value: float, *labels: str) -> None:
        with self._lock:
            series = self._series.setdefault(labels, [0.0] * (len(self.buckets) + 2))
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    series[i] += 1
            series[-2] += value
            series[-1] += 1

    def count(self, *labels: str) -> float:
        series = self._series.get(labels)
        return series[-1] if series else 0.0

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._series.items())
        for labels, series in items:
            for bound, n in [*zip(self.buckets, series), (math.inf, series[-1])]:
                le = 'le="' + _num(bound) + '"'
                yield f"{self.name}_bucket{_labels(self.label_names, labels, le)} {_num(n)}"
            yield f"{self.name}_sum{_labels(self.label_names, labels)} {_num(series[-2])}"
            yield f"{self.name}_count{_labels(self.label_names, labels)} {_num(series[-1])}"


class Metrics:
    """The server's metrics; one instance per app."""

    def __init__(self) -> None:
        self.requests = Counter("winnow_requests_total", "HTTP requests by method, route and status", ("method", "route", "status"))
        self.latency = Histogram("winnow_request_duration_seconds", "HTTP request latency by route", ("route",))
        self.stage = Histogram("winnow_search_stage_seconds", "time per search stage", ("stage",))
        self.batch_items = Histogram("winnow_batch_size", "requests per model call", ("batcher",), SIZE_BUCKETS)
        self.batch_cost = Histogram("winnow_batch_tokens", "estimated tokens per model call", ("batcher",), SIZE_BUCKETS)
        self.batch_wait = Histogram("winnow_batch_wait_seconds", "oldest request's wait before its model call", ("batcher",))
        self.model_call = Histogram("winnow_model_call_seconds", "time of one model call", ("batcher",))
        self.cache_hits = Counter("winnow_cache_hits_total", "lookups served from cache, by cache", ("cache",))
        self.cache_misses = Counter("winnow_cache_misses_total", "lookups that loaded, by cache", ("cache",))
        self.rerank_tokens = Counter(
            "winnow_rerank_tokens_total", "document tokens the reranker read or cut (truncated), by route", ("route", "kind")
        )
        self.rerank_unread = Counter(
            "winnow_rerank_unread_candidates_total", "candidates a latency budget left unread, by route", ("route",)
        )
        self._all = (
            self.requests,
            self.latency,
            self.stage,
            self.batch_items,
            self.batch_cost,
            self.batch_wait,
            self.model_call,
            self.cache_hits,
            self.cache_misses,
            self.rerank_tokens,
            self.rerank_unread,
        )

    def on_batch(self, stats) -> None:
        self.batch_items.observe(stats.items, stats.batcher)
        self.batch_cost.observe(stats.cost, stats.batcher)
        self.batch_wait.observe(stats.wait_s, stats.batcher)
        self.model_call.observe(stats.call_s, stats.batcher)

    def on_rerank(self, stats, route: str) -> None:
        """Count what a rerank stage read (a :class:`winnow.types.RerankStats`; None: no rerank stage ran)."""
        if stats is None:
            return
        if stats.read_tokens is not None:
            self.rerank_tokens.inc(route, "read", amount=stats.read_tokens)
        if stats.truncated_tokens is not None:
            self.rerank_tokens.inc(route, "truncated", amount=stats.truncated_tokens)
        if stats.candidates > stats.read:
            self.rerank_unread.inc(route, amount=stats.candidates - stats.read)

    def render(self, extra: Iterable[str] = ()) -> str:
        return "\n".join([*(line for metric in self._all for line in metric.render()), *extra]) + "\n"
