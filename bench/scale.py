"""Benchmark section ``scale``: encoding and reranking on Ray beside the single-process path.

On a local Ray instance (this machine's cores, loopback only), in one run and in turns (the order
rotates each round, so that a noisy neighbour hits every setup alike; read the ratios), it measures:

- corpus encoding of the first ``--passages`` msmarco passages (bundled MiniLM-L6, the default backend):
  the single-process path with one thread and with every core (what ``winnow index`` does), and
  :func:`winnow.scale.ray_encode.encode_on_ray` with 1 and 2 workers (one CPU each). Ray figures are
  end to end (actors started and the model loaded in each job) and steady (after the first batch);
- reranking ``--rerank-queries`` queries x ``--depth`` passages with the shipped reranker: the
  single-process path on one thread and :func:`winnow.scale.rerank_run.rerank_on_ray` with 2 workers;

and checks that the paths agree (cosine of the vectors, identical reranked runs). docs/scale.md plans
100 M and 1 B passages from these per-core figures.

``python -m bench.run --sections scale`` (part of ``make bench``), or on its own:
``python -m bench.scale [--data ../shared/data/msmarco] [--passages 2000] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SECTION = "scale"
REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "msmarco"
MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def _corpus(data: Path):
    from winnow.evaluate.dataset import load_beir

    dataset = load_beir(data)
    return dataset, dataset.read_corpus()


def measure(data: Path = DEFAULT_DATA, *, passages: int = 2000, rounds: int = 3, rerank_queries: int = 6,
            depth: int = 100, rerank_rounds: int = 1) -> dict:
    import numpy as np

    from winnow.encode.bi_encoder import BiEncoder
    from winnow.models.catalog import cpu_line
    from winnow.scale.cluster import ray_session
    from winnow.scale.ray_encode import encode_on_ray
    from winnow.scale.rerank_run import QueryCandidates, make_reranker, rerank_here, rerank_on_ray
    from winnow.types import with_title

    dataset, docs = _corpus(data)
    texts = [with_title(d.title, d.text) for d in docs[:passages]]
    out: dict = {"cpu": cpu_line(), "cores": os.cpu_count(), "passages": len(texts), "rounds": rounds,
                 "load_average_start": round(os.getloadavg()[0], 1)}
    with ray_session("local") as cluster:
        one_thread, all_cores = BiEncoder(MODEL, threads=1), BiEncoder(MODEL)
        one_thread.encode_documents(texts[:8])  # load (and export) once, outside the timings
        all_cores.encode_documents(texts[:8])
        backend = str(one_thread.backend)
        out["backend"], out["ray_cpus"] = backend, cluster.cpus

        def on_ray(workers: int):
            return lambda: encode_on_ray(texts, model=MODEL, backend=backend, workers=workers)

        setups = {
            "single process, 1 thread": lambda: one_thread.encode_documents(texts),
            f"single process, {os.cpu_count()} threads (winnow index)": lambda: all_cores.encode_documents(texts),
            "Ray, 1 worker": on_ray(1),
            "Ray, 2 workers": on_ray(2),
        }
        names = list(setups)
        runs: dict[str, list[dict]] = {n: [] for n in names}
        vectors: dict[str, np.ndarray] = {}
        for r in range(rounds):
            for name in names[r % len(names):] + names[: r % len(names)]:  # rotate who goes first
                start = time.perf_counter()
                result = setups[name]()
                seconds = time.perf_counter() - start
                got = result if isinstance(result, np.ndarray) else result.vectors
                vectors[name] = got
                record = {"seconds": seconds}
                if not isinstance(result, np.ndarray):  # the workers' time in the model, and the rest (Ray's)
                    record |= {"per_worker_per_s": len(texts) / result.model_seconds,
                               "overhead_seconds": seconds - result.model_seconds / result.workers,
                               "duplicates": result.duplicates}
                runs[name].append(record)
        base = vectors[names[0]]
        encode = {}
        for name in names:
            rates = [len(texts) / x["seconds"] for x in runs[name]]
            row = {"per_s": statistics.median(rates), "min": min(rates), "max": max(rates),
                   "min_cosine_to_single": float(np.min(np.sum(vectors[name] * base, axis=1)))}
            if "per_worker_per_s" in runs[name][0]:
                row["per_worker_per_s"] = statistics.median(x["per_worker_per_s"] for x in runs[name])
                row["overhead_seconds"] = statistics.median(x["overhead_seconds"] for x in runs[name])
                row["duplicates"] = max(x["duplicates"] for x in runs[name])
            encode[name] = row
        single = encode[names[1]]["per_s"]
        for row in encode.values():
            row["vs_single_process"] = row["per_s"] / single
        out["encode"] = encode

        # -- reranking: query i reads passages [i*depth, (i+1)*depth) (speed depends on lengths, not relevance)
        qids = list(dataset.judged[:rerank_queries])
        items = [QueryCandidates(q, dataset.queries[q], tuple(d.id for d in chunk), tuple(0.0 for _ in chunk),
                                 tuple(d.title for d in chunk), tuple(d.text for d in chunk))
                 for i, q in enumerate(qids) for chunk in [docs[i * depth:(i + 1) * depth]]]
        reranker = make_reranker(None, threads=1)
        reranker.warm_up()
        rerank: dict[str, list] = {"single process, 1 thread": [], "Ray, 2 workers": []}
        results = {}
        for r in range(rerank_rounds):
            order = list(rerank) if r % 2 == 0 else list(reversed(rerank))
            for name in order:
                res = rerank_here(items, reranker) if name.startswith("single") else rerank_on_ray(items, workers=2)
                rerank[name].append(res)
                results[name] = res.run
        pairs = sum(len(i.doc_ids) for i in items)
        out["rerank"] = {
            "queries": len(items), "pairs": pairs, "rounds": rerank_rounds, "model": reranker.name,
            "backend": str(reranker.backend), "identical_runs": results["Ray, 2 workers"] == results["single process, 1 thread"],
            "pairs_per_s": {n: statistics.median(x.pairs_per_second for x in v) for n, v in rerank.items()},
            "per_worker_pairs_per_s": {n: statistics.median(x.pairs / x.model_seconds for x in v) for n, v in rerank.items()},
        }
    out["load_average_end"] = round(os.getloadavg()[0], 1)
    return out


def quantization(data: Path = DEFAULT_DATA, *, cache_dir: Path | None = None, k: int = 100) -> dict:
    """What compressing the vectors costs, on the whole corpus and its judged queries: exact search over
    fp32, int8 scalar quantization and product quantization (FAISS), each as bytes a vector, the share of
    exact top-``k`` it finds, and nDCG@10 / R@100 against the qrels. Vectors come from the embedding cache
    that ``winnow eval`` fills (encoded here where it is empty)."""
    import faiss
    import numpy as np

    from winnow.encode.bi_encoder import BiEncoder
    from winnow.encode.cache import EmbeddingCache
    from winnow.evaluate.metrics import evaluate_run, parse_metrics
    from winnow.evaluate.runner import default_cache_dir
    from winnow.types import with_title

    dataset, docs = _corpus(data)
    cache = EmbeddingCache(Path(cache_dir or default_cache_dir()) / ".cache" / "embeddings.sqlite")
    encoder = BiEncoder(MODEL, cache=cache)
    vectors = encoder.encode_documents([with_title(d.title, d.text) for d in docs])
    judged = list(dataset.judged)
    queries = encoder.encode_queries([dataset.queries[q] for q in judged])
    dim = vectors.shape[1]
    layouts = {
        "fp32, exact": faiss.IndexFlatIP(dim),
        "int8 scalar quantization": faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT),
        "PQ 96 x 8 bits": faiss.IndexPQ(dim, 96, 8, faiss.METRIC_INNER_PRODUCT),
        "PQ 48 x 8 bits": faiss.IndexPQ(dim, 48, 8, faiss.METRIC_INNER_PRODUCT),
    }
    measures = parse_metrics(["nDCG@10", "R@100"])
    exact_top: list[set] | None = None
    out = {"documents": len(docs), "queries": len(judged), "dim": dim, "k": k, "layouts": {}}
    for name, index in layouts.items():
        if not index.is_trained:
            index.train(vectors)  # codebooks from the corpus itself: kinder than a 1 B corpus would be
        index.add(vectors)
        _, rows = index.search(queries, k)
        run = {q: [(docs[r].id, float(k - rank)) for rank, r in enumerate(row) if r >= 0] for q, row in zip(judged, rows)}
        top = [set(row.tolist()) for row in rows]
        exact_top = exact_top or top
        means, _ = evaluate_run(measures, dataset.qrels, run, judged)
        out["layouts"][name] = {
            "bytes_per_vector": int(index.sa_code_size()) if name != "fp32, exact" else dim * 4,
            "overlap_with_exact": float(np.mean([len(a & b) / k for a, b in zip(top, exact_top)])),
            **{str(m): round(v, 4) for m, v in means.items()},
        }
    return out


def run(ctx) -> dict:
    result = measure(ctx.data, passages=1000 if ctx.quick else 2000, rounds=2 if ctx.quick else 3)
    result["quantization"] = quantization(ctx.data)
    return result


def markdown(result: dict) -> str:
    lines = [
        f"### Encoding on Ray beside the single-process path ({result['cpu']}; "
        f"{result['passages']:,} msmarco passages, {result['backend']}, median of {result['rounds']} rounds in turns; "
        f"load average {result['load_average_start']} at start, {result['load_average_end']} at end)", "",
        "| setup | passages/s end to end (min–max) | vs single process | passages/s per worker, in the model | "
        "Ray's own time per job, s | min cosine to single | rows duplicated |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in result["encode"].items():
        per_worker = f"{row['per_worker_per_s']:,.1f}" if "per_worker_per_s" in row else ""
        overhead = f"{row['overhead_seconds']:.1f}" if "overhead_seconds" in row else ""
        dup = str(row["duplicates"]) if "duplicates" in row else ""
        lines.append(f"| {name} | {row['per_s']:,.1f} ({row['min']:,.1f}–{row['max']:,.1f}) | {row['vs_single_process']:.2f}× | "
                     f"{per_worker} | {overhead} | {row['min_cosine_to_single']:.6f} | {dup} |")
    rr = result["rerank"]
    lines += ["", f"Reranking ({rr['model']}, {rr['backend']}; {rr['queries']} queries × {rr['pairs'] // rr['queries']} "
              f"passages = {rr['pairs']:,} pairs, {rr['rounds']} round(s)): "
              + "; ".join(f"{n} **{v:,.1f} pairs/s** ({rr['per_worker_pairs_per_s'][n]:,.1f} per worker in the model)"
                          for n, v in rr["pairs_per_s"].items())
              + f"; runs identical: {rr['identical_runs']}."]
    if "quantization" in result:
        lines += ["", quantization_markdown(result["quantization"])]
    return "\n".join(lines)


def quantization_markdown(q: dict) -> str:
    lines = [f"Compressed vectors ({q['documents']:,} passages, {q['queries']} judged queries, top-{q['k']}, dim {q['dim']}):", "",
             f"| layout | bytes a vector | share of exact top-{q['k']} found | nDCG@10 | R@100 |", "|---|---:|---:|---:|---:|"]
    for name, row in q["layouts"].items():
        lines.append(f"| {name} | {row['bytes_per_vector']:,} | {row['overlap_with_exact']:.3f} | {row['nDCG@10']:.4f} | {row['R@100']:.4f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--passages", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--rerank-queries", type=int, default=6)
    p.add_argument("--rerank-rounds", type=int, default=1)
    p.add_argument("--output", type=Path, help="also write the result as JSON here")
    p.add_argument("--only", choices=["ray", "quantization"], help="one part only (default both)")
    args = p.parse_args()
    result: dict = {}
    if args.only != "quantization":
        result = measure(args.data, passages=args.passages, rounds=args.rounds, rerank_queries=args.rerank_queries,
                         rerank_rounds=args.rerank_rounds)
    if args.only != "ray":
        result["quantization"] = quantization(args.data)
    text = json.dumps(result, indent=2)
    if args.output:
        args.output.write_text(text + "\n")
    print(text)
    print(markdown(result) if "encode" in result else quantization_markdown(result["quantization"]))


if __name__ == "__main__":
    main()
