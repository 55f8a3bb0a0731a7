"""Micro-batching: concurrent requests for one model share one model call.

Each :class:`MicroBatcher` owns ``workers`` threads. Callers ``submit(payload, cost)`` and get a
``concurrent.futures.Future`` (``await asyncio.wrap_future(f)`` from async code, ``f.result()`` from a
thread). An idle worker waits for the oldest pending item to have waited ``max_wait_ms`` (or for the
pending cost, in estimated tokens, to reach ``max_cost``, or ``max_items`` to be pending), then takes
its fair share of what is pending (split evenly among the idle workers, at most ``max_cost`` and
``max_items``), runs ``fn(payloads) -> results`` once and hands each caller its result. While calls run,
new requests queue up and form the next batches, so under load batches grow by themselves: a few large
model calls (one per worker, e.g. one per core) instead of many small ones fighting over the cores.
Large calls pay off most where texts differ in length: sorted by length, they pad far less.

A batch whose call fails is retried item by item, so one bad input fails only its own request.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, Generic, Sequence, TypeVar

from winnow.errors import InvalidArgumentError

log = logging.getLogger(__name__)

P = TypeVar("P")
R = TypeVar("R")


@dataclass(frozen=True)
class BatchStats:
    """One model call: how many requests, their summed cost, the oldest one's wait and the call's time."""

    batcher: str
    items: int
    cost: int
    wait_s: float
    call_s: float


@dataclass
class _Item:
    payload: Any
    cost: int
    future: Future
    queued: float


class BatcherClosedError(RuntimeError):
    """The batcher was closed (server shutting down) before this request ran."""


class MicroBatcher(Generic[P, R]):
    def __init__(
        self,
        fn: Callable[[list[P]], Sequence[R]],
        *,
        name: str,
        max_wait_ms: float = 5.0,
        max_cost: int = 32_768,
        max_items: int = 256,
        workers: int = 1,
        on_batch: Callable[[BatchStats], None] | None = None,
    ) -> None:
        if max_wait_ms < 0 or max_cost < 1 or max_items < 1 or workers < 1:
            raise InvalidArgumentError(
                f"batcher {name!r}: need max_wait_ms >= 0, max_cost >= 1, max_items >= 1, workers >= 1; got "
                f"{max_wait_ms}, {max_cost}, {max_items}, {workers}"
            )
        self.fn = fn
        self.name = name
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_cost = max_cost
        self.max_items = max_items
        self.on_batch = on_batch
        self._pending: deque[_Item] = deque()
        self._pending_cost = 0
        self._idle = 0  # workers waiting for work
        self._cv = threading.Condition()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._run, name=f"batcher-{name}-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, payload: P, cost: int = 1) -> Future:
        future: Future = Future()
        item = _Item(payload, max(1, int(cost)), future, time.perf_counter())
        with self._cv:
            if self._closed:
                future.set_exception(BatcherClosedError(f"batcher {self.name!r} is closed"))
                return future
            self._pending.append(item)
            self._pending_cost += item.cost
            self._cv.notify_all()
        return future

    def close(self, timeout: float = 10.0) -> None:
        """Run what is already pending, then stop the workers; later submits fail."""
        with self._cv:
            if self._closed:
                return
            self._closed = True
            self._cv.notify_all()
        for thread in self._threads:
            thread.join(timeout)
        with self._cv:
            left, self._pending = list(self._pending), deque()
        for item in left:  # only if a worker is stuck past the timeout
            if item.future.set_running_or_notify_cancel():
                item.future.set_exception(BatcherClosedError(f"batcher {self.name!r} closed"))

    # -- workers -----------------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._execute(batch, sum(it.cost for it in batch))

    def _ready(self) -> bool:
        return (
            self._closed
            or self._pending_cost >= self.max_cost
            or len(self._pending) >= self.max_items
            or time.perf_counter() >= self._pending[0].queued + self.max_wait_s
        )

    def _next_batch(self) -> list[_Item] | None:
        with self._cv:
            self._idle += 1
            try:
                while True:
                    while not self._pending:
                        if self._closed:
                            return None
                        self._cv.wait()
                    if self._ready():
                        break
                    self._cv.wait(max(0.0, self._pending[0].queued + self.max_wait_s - time.perf_counter()))
                # a fair share of what is pending: idle workers (this one included) split it evenly
                share = math.ceil(len(self._pending) / max(1, self._idle))
                batch = [self._pending.popleft()]
                cost = batch[0].cost
                while (
                    self._pending
                    and len(batch) < min(share, self.max_items)
                    and cost + self._pending[0].cost <= self.max_cost
                ):
                    item = self._pending.popleft()
                    batch.append(item)
                    cost += item.cost
                self._pending_cost -= cost
                return batch
            finally:
                self._idle -= 1

    def _execute(self, batch: list[_Item], cost: int) -> None:
        live = [it for it in batch if it.future.set_running_or_notify_cancel()]
        if not live:
            return
        start = time.perf_counter()
        wait_s = start - min(it.queued for it in live)
        try:
            results = list(self.fn([it.payload for it in live]))
            if len(results) != len(live):
                raise RuntimeError(f"batch function returned {len(results)} results for {len(live)} inputs")
        except BaseException as exc:  # noqa: BLE001 - handed to the callers
            if len(live) == 1:
                live[0].future.set_exception(exc)
            else:
                log.warning("batch of %d in %s failed (%r); retrying one by one", len(live), self.name, exc)
                for it in live:
                    self._run_one(it)
        else:
            for it, result in zip(live, results):
                it.future.set_result(result)
        if self.on_batch is not None:
            self.on_batch(BatchStats(self.name, len(live), cost, wait_s, time.perf_counter() - start))

    def _run_one(self, item: _Item) -> None:
        try:
            item.future.set_result(list(self.fn([item.payload]))[0])
        except BaseException as exc:  # noqa: BLE001
            item.future.set_exception(exc)
