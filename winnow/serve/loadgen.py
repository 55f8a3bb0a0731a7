"""A bounded HTTP load generator for loopback servers: ``clients`` concurrent clients send a fixed number of
requests in all, each with a timeout, under an overall deadline; it stops by itself.

Used by the serving tests and ``bench/serve_load.py``. Only ever point it at a server you started on
127.0.0.1.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlsplit

from winnow.serve.settings import is_loopback

WORDS = (
    "river mountain forest city market library engine planet ocean garden music history science bridge "
    "winter summer harbor desert island castle village railway theater museum school doctor kitchen "
    "computer network battery window letter camera coffee bicycle painting festival language storm"
).split()


def synthetic_documents(n: int, *, words: tuple[int, int] = (8, 120), seed: int = 0) -> list[dict[str, Any]]:
    """``n`` deterministic documents ``{id, text, metadata: {group}}`` of ``words[0]`` to ``words[1]`` words:
    uneven lengths, as real passages have (MS MARCO's run from a dozen words to a couple of hundred)."""
    rng = random.Random(seed)
    return [
        {
            "id": f"d{i}",
            "text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(*words))),
            "metadata": {"group": i % 4},
        }
        for i in range(n)
    ]


def synthetic_queries(n: int, *, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.sample(WORDS, 3)) for _ in range(n)]


@dataclass(frozen=True)
class LoadResult:
    clients: int
    requests: int
    ok: int
    errors: int
    error_samples: tuple[str, ...]
    seconds: float
    p50_ms: float
    p99_ms: float
    throughput: float  # successful requests per second

    def line(self) -> str:
        return (
            f"{self.clients} clients, {self.requests} requests: {self.ok} ok, {self.errors} errors, "
            f"p50 {self.p50_ms:.0f} ms, p99 {self.p99_ms:.0f} ms, {self.throughput:.2f} req/s in {self.seconds:.1f} s"
        )


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process (all its threads) has used so far, from /proc (Linux)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def run_load(
    base_url: str,
    path: str,
    make_body: Callable[[int], dict],
    *,
    clients: int = 32,
    requests: int = 128,
    request_timeout: float = 120.0,
    deadline: float = 600.0,
    headers: dict[str, str] | None = None,
) -> LoadResult:
    """POST ``make_body(i)`` to ``base_url + path`` for i in range(requests), ``clients`` at a time."""
    host = urlsplit(base_url).hostname or ""
    if not is_loopback(host):
        raise ValueError(f"load tests only target loopback servers, not {host!r}")
    return asyncio.run(
        _load(base_url, path, make_body, clients, requests, request_timeout, deadline, headers or {})
    )


async def _load(base_url, path, make_body, clients, requests, request_timeout, deadline, headers) -> LoadResult:
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    next_i = iter(range(requests))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async with httpx.AsyncClient(base_url=base_url, timeout=request_timeout, limits=limits, headers=headers) as http:

        async def client() -> None:
            for i in next_i:
                t = time.perf_counter()
                try:
                    r = await http.post(path, json=make_body(i))
                    if r.status_code == 200:
                        latencies.append((time.perf_counter() - t) * 1000.0)
                    else:
                        errors.append(f"{r.status_code}: {r.text[:200]}")
                except Exception as exc:  # noqa: BLE001 - every failure counts as an error
                    errors.append(repr(exc)[:200])

        start = time.perf_counter()
        tasks = [asyncio.create_task(client()) for _ in range(clients)]
        done, pending = await asyncio.wait(tasks, timeout=deadline)
        for task in pending:
            task.cancel()
        seconds = time.perf_counter() - start
    missing = requests - len(latencies) - len(errors)
    if missing > 0:
        errors.extend([f"not sent or not answered before the {deadline:.0f} s deadline"] * missing)
    return LoadResult(
        clients=clients,
        requests=requests,
        ok=len(latencies),
        errors=len(errors),
        error_samples=tuple(dict.fromkeys(errors))[:5],
        seconds=seconds,
        p50_ms=percentile(latencies, 0.5),
        p99_ms=percentile(latencies, 0.99),
        throughput=len(latencies) / seconds if seconds > 0 else 0.0,
    )
