"""The server's micro-batcher, deterministically: what forms a batch is decided by counts, costs and a gate
the test holds, never by how fast the machine is (no sleeps, no timing windows)."""

from __future__ import annotations

import threading

import pytest

from winnow.errors import InvalidArgumentError
from winnow.serve.batching import BatcherClosedError, MicroBatcher

FOREVER_MS = 600_000  # a wait no test reaches: batches form by count, cost or close only


class Recorder:
    """A batch function that records each call's payloads; optionally holds the first call at a gate."""

    def __init__(self, gate: bool = False) -> None:
        self.calls: list[list] = []
        self.started = threading.Event()
        self.release = threading.Event()
        if not gate:
            self.release.set()

    def __call__(self, payloads):
        self.calls.append(list(payloads))
        self.started.set()
        self.release.wait(60)
        if "bad" in payloads:
            raise ValueError("bad payload")
        return [f"r:{p}" for p in payloads]


def test_requests_pending_together_share_one_call_in_order():
    fn = Recorder()
    b = MicroBatcher(fn, name="t", max_wait_ms=FOREVER_MS, max_items=4, workers=1)
    futures = [b.submit(i) for i in range(4)]  # the fourth fills max_items: the batch is ready
    assert [f.result(60) for f in futures] == ["r:0", "r:1", "r:2", "r:3"]
    assert fn.calls == [[0, 1, 2, 3]]
    b.close()


def test_requests_arriving_during_a_call_form_the_next_batch():
    fn = Recorder(gate=True)
    b = MicroBatcher(fn, name="t", max_wait_ms=0, workers=1)
    first = b.submit("a")
    assert fn.started.wait(60)  # the only worker is inside the first call now
    later = [b.submit(x) for x in ("b", "c", "d")]
    fn.release.set()
    assert first.result(60) == "r:a" and [f.result(60) for f in later] == ["r:b", "r:c", "r:d"]
    assert fn.calls == [["a"], ["b", "c", "d"]]
    b.close()


def test_the_cost_budget_splits_batches():
    fn = Recorder(gate=True)
    b = MicroBatcher(fn, name="t", max_wait_ms=0, max_cost=10, workers=1)
    first = b.submit("a", cost=1)
    assert fn.started.wait(60)
    later = [b.submit(x, cost=6) for x in ("b", "c", "d")]  # 6 + 6 > 10: one a call
    fn.release.set()
    assert [f.result(60) for f in [first, *later]] == ["r:a", "r:b", "r:c", "r:d"]
    assert fn.calls == [["a"], ["b"], ["c"], ["d"]]
    b.close()


def test_a_failing_batch_fails_only_the_bad_request():
    fn = Recorder()
    b = MicroBatcher(fn, name="t", max_wait_ms=FOREVER_MS, max_items=3, workers=1)
    good1, bad, good2 = b.submit("x"), b.submit("bad"), b.submit("y")
    assert good1.result(60) == "r:x" and good2.result(60) == "r:y"
    with pytest.raises(ValueError, match="bad payload"):
        bad.result(60)
    assert fn.calls[0] == ["x", "bad", "y"] and sorted(map(tuple, fn.calls[1:])) == [("bad",), ("x",), ("y",)]
    b.close()


def test_close_runs_what_is_pending_then_refuses():
    fn = Recorder()
    b = MicroBatcher(fn, name="t", max_wait_ms=FOREVER_MS, max_items=100, workers=1)
    pending = [b.submit(i) for i in range(3)]  # not ready by count, cost or time: close runs them
    b.close()
    assert [f.result(60) for f in pending] == ["r:0", "r:1", "r:2"]
    with pytest.raises(BatcherClosedError):
        b.submit(9).result(60)
    with pytest.raises(InvalidArgumentError, match="max_items >= 1"):
        MicroBatcher(fn, name="bad", max_items=0)
