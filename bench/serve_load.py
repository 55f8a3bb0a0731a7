"""Load on ``winnow serve``: 32 concurrent clients searching with rerank, with and without micro-batching.

    python -m bench.serve_load [--requests 192] [--clients 32] [--depth 20] [--rounds 3] [--out FILE]

Both servers run on 127.0.0.1 over the same collection (synthetic documents of uneven length, built
once), with the same reranker; only ``--no-batching`` differs. Each round runs one fixed-count load
(every request with its own query, so no cache answers it) against each server in turn, the order
alternating, so a noisy neighbour hits both alike. Reports p50/p99 latency and throughput per round
and the median throughput ratio. Bounded: a fixed number of requests, a deadline, loopback only.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

log = logging.getLogger("bench.serve_load")

CLIENTS = 32


def make_reranker(folder: Path) -> Path:
    """A cross-encoder of the MiniLM shape (bundled weights, fresh head): cost is what is measured here."""
    import torch
    from sentence_transformers import CrossEncoder

    from winnow.models.resolve import resolve_model

    torch.manual_seed(0)
    path = folder / "cross-encoder"
    CrossEncoder(str(resolve_model("all-MiniLM-L6-v2").path), num_labels=1, local_files_only=True).save(str(path))
    return path


def measure(
    *,
    requests: int,
    clients: int,
    depth: int,
    rounds: int,
    docs: int,
    reranker: Path | None,
    work: Path,
    method: str = "hybrid",
    extra_args: list[str] | None = None,
) -> dict:
    import httpx

    from winnow.serve.loadgen import process_cpu_seconds, run_load, synthetic_documents, synthetic_queries
    from winnow.serve.process import ServerProcess

    reranker = reranker or make_reranker(work)
    data = work / "data"
    common = ["--rerank-model", str(reranker), *(extra_args or [])]
    servers = {
        "batched": ServerProcess(data, common, log_path=work / "batched.log"),
        "unbatched": ServerProcess(data, [*common, "--no-batching"], log_path=work / "unbatched.log"),
    }
    results: dict[str, list] = {name: [] for name in servers}
    cpu_s: dict[str, list[float]] = {name: [] for name in servers}
    try:
        servers["batched"].start()
        url = servers["batched"].url
        httpx.post(f"{url}/collections", json={"name": "load"}, timeout=60).raise_for_status()
        t = time.perf_counter()
        httpx.post(f"{url}/collections/load/documents", json={"documents": synthetic_documents(docs)},
                   timeout=1800).raise_for_status()
        log.info("indexed %d documents in %.1f s", docs, time.perf_counter() - t)
        servers["unbatched"].start()
        queries = synthetic_queries(requests * rounds + clients)

        for r in range(rounds):
            order = list(servers) if r % 2 == 0 else list(reversed(servers))
            for name in order:
                server = servers[name]
                offset = r * requests

                def body(i, offset=offset):
                    return {"query": f"{queries[offset + i]} {offset + i}", "method": method, "depth": depth,
                            "top_k": 5, "rerank": "default"}

                warm = run_load(server.url, "/collections/load/search", lambda i: body(i % clients),
                                clients=4, requests=4, deadline=300)
                if warm.errors:
                    raise RuntimeError(f"{name} warm-up failed: {warm.error_samples}")
                cpu0 = process_cpu_seconds(server.proc.pid)
                res = run_load(server.url, "/collections/load/search", body, clients=clients, requests=requests,
                               deadline=900)
                cpu = process_cpu_seconds(server.proc.pid) - cpu0
                log.info("round %d %-9s %s; server CPU %.1f s (%.2f req per CPU-s)", r + 1, name, res.line(), cpu,
                         res.ok / cpu if cpu else float("nan"))
                results[name].append(res)
                cpu_s[name].append(cpu)
        batch_line = [
            line for line in httpx.get(servers["batched"].url + "/metrics").text.splitlines()
            if line.startswith("winnow_batch_size_") and "rerank" in line and "bucket" not in line
        ]
    finally:
        for s in servers.values():
            s.stop()
    ratios = [b.throughput / u.throughput for b, u in zip(results["batched"], results["unbatched"]) if u.throughput]
    return {
        "clients": clients,
        "requests_per_round": requests,
        "rounds": rounds,
        "depth": depth,
        "method": method,
        "documents": docs,
        "rerank_batches": batch_line,
        "rounds_detail": {name: [res.__dict__ for res in rs] for name, rs in results.items()},
        "median": {
            name: {
                "p50_ms": statistics.median(r.p50_ms for r in rs),
                "p99_ms": statistics.median(r.p99_ms for r in rs),
                "throughput": statistics.median(r.throughput for r in rs),
                "errors": sum(r.errors for r in rs),
                "requests_per_cpu_s": statistics.median(r.ok / c for r, c in zip(rs, cpu_s[name]) if c),
            }
            for name, rs in results.items()
        },
        "ratio_median": statistics.median(ratios) if ratios else float("nan"),
        "ratios": ratios,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=192, help="requests per load (fixed count)")
    p.add_argument("--clients", type=int, default=CLIENTS)
    p.add_argument("--depth", type=int, default=20, help="candidates reranked per search")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--docs", type=int, default=400)
    p.add_argument("--method", default="hybrid", choices=["bm25", "dense", "hybrid"], help="first stage")
    p.add_argument("--reranker", type=Path, help="cross-encoder folder (default: a MiniLM-shaped one made here)")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    p.add_argument("server_args", nargs="*", help="extra arguments for both servers (after --)")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the servers are stopped on the way out
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with tempfile.TemporaryDirectory(prefix="winnow-serve-load-") as tmp:
        os.environ.setdefault("WINNOW_CACHE_DIR", str(Path(tmp) / "cache"))
        out = measure(requests=args.requests, clients=args.clients, depth=args.depth, rounds=args.rounds,
                      docs=args.docs, reranker=args.reranker, work=Path(tmp), method=args.method,
                      extra_args=args.server_args)
    out["command"] = "python -m bench.serve_load " + " ".join(argv if argv is not None else sys.argv[1:])
    out["cpus"] = len(os.sched_getaffinity(0))
    text = json.dumps(out, indent=2)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    m = out["median"]
    print(f"batched:   p50 {m['batched']['p50_ms']:.0f} ms, p99 {m['batched']['p99_ms']:.0f} ms, "
          f"{m['batched']['throughput']:.2f} req/s, {m['batched']['errors']} errors")
    print(f"unbatched: p50 {m['unbatched']['p50_ms']:.0f} ms, p99 {m['unbatched']['p99_ms']:.0f} ms, "
          f"{m['unbatched']['throughput']:.2f} req/s, {m['unbatched']['errors']} errors")
    print(f"requests per server CPU-second: batched {m['batched']['requests_per_cpu_s']:.2f}, "
          f"unbatched {m['unbatched']['requests_per_cpu_s']:.2f}")
    print(f"throughput ratio (median of rounds): {out['ratio_median']:.2f}x  rounds: "
          + ", ".join(f"{r:.2f}" for r in out["ratios"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
