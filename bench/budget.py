"""Benchmark section ``budget``: what a rerank latency budget costs in nDCG@10, and whether it holds.

On each BEIR set (msmarco, and dbpedia beside it when present) every judged query goes through the first
stage (hybrid, winnow's default, 100 deep) and then the shipped reranker with no budget (the full 100-deep
rerank) and with each budget (``--budget-ms``: 100, 200 and 400 ms by default), the settings taking turns
query by query (so a noisy neighbour hits them alike), with no score cache. Per setting: the rerank stage's
p50/p95 milliseconds as ``rank`` times it, candidates read (mean and min), why it stopped, and nDCG@10 with
its loss against the full rerank. With ``--cascade MODEL`` (a small reranker, ``winnow train small-reranker``)
one more setting: the small reranker reads the 100, the default reranker the best 20 of its order
(``--cascade-depth``), no budget.

``python -m bench.run --sections budget`` (part of ``make bench``), or on its own:
``python -m bench.budget [--data ../shared/data/msmarco ../shared/data/dbpedia] [--budgets 100,200,400]``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SECTION = "budget"
REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = (REPO.parent / "shared" / "data" / "msmarco", REPO.parent / "shared" / "data" / "dbpedia")
BUDGETS = (100.0, 200.0, 400.0)
REL = {"msmarco": 2}  # TREC DL counts grade 2 and up as relevant (binary measures only; nDCG uses the grades)


def measure(datasets=DEFAULT_DATA, *, budgets=BUDGETS, method: str = "hybrid", depth: int = 100, k: int = 10,
            queries: int | None = None, cache_dir: Path | None = None, cascade: str | None = None,
            cascade_depth: int = 20) -> dict:
    import numpy as np

    from winnow.evaluate.dataset import load_beir
    from winnow.evaluate.metrics import evaluate_run, parse_metrics
    from winnow.evaluate.runner import default_cache_dir, open_corpus_cache
    from winnow.models.catalog import cpu_line
    from winnow.models.resolve import default_reranker
    from winnow.pipeline import Pipeline
    from winnow.rerank.budget import Budget
    from winnow.rerank.cross_encoder import CrossEncoderReranker

    reranker = CrossEncoderReranker(default_reranker(), cache=False).warm_up()
    settings = {"full": None, **{f"{b:g} ms": Budget(b, k=k) for b in budgets}}
    rerankers = {name: reranker for name in settings}
    if cascade:
        from winnow.rerank.cascade import with_cascade

        name = f"cascade {depth} > {cascade_depth}"
        settings[name] = None
        rerankers[name] = with_cascade(reranker, cascade, first_depth=depth, depth=cascade_depth, cache=False)
    out: dict = {"cpu": cpu_line(), "method": method, "depth": depth, "k": k, "reranker": reranker.name,
                 "loadavg_start": os.getloadavg(), "cascade": cascade, "sets": {}}
    for path in datasets:
        path = Path(path)
        if not (path / "corpus.jsonl").is_file():
            continue
        dataset = load_beir(path)
        col, _ = open_corpus_cache(dataset, cache_dir=cache_dir or default_cache_dir())
        retriever = col.retriever(method)
        pipelines = {name: Pipeline(retriever, rerankers[name], depth=depth, top_k=depth, hydrate=col.hydrate, budget=b)
                     for name, b in settings.items()}
        qids = list(dataset.judged)[:queries] if queries else list(dataset.judged)
        for q in qids[:3]:  # warm-up: loads, JIT, and the cost model's first lessons (not recorded)
            for p in pipelines.values():
                p.search(dataset.queries[q])
        runs = {name: {} for name in settings}
        ms = {name: [] for name in settings}
        read = {name: [] for name in settings}
        stops = {name: {} for name in settings}
        names = list(settings)
        for turn, q in enumerate(qids):
            for name in names[turn % len(names):] + names[: turn % len(names)]:  # rotate who goes first
                ranking = pipelines[name].search(dataset.queries[q])
                runs[name][q] = tuple((h.doc_id, float(h.score)) for h in ranking.hits)
                ms[name].append(ranking.timings_ms["rerank"])
                stats = ranking.rerank_stats
                read[name].append(stats.read)
                stops[name][str(stats.stop)] = stops[name].get(str(stats.stop), 0) + 1
        col.close()
        measures = parse_metrics(["nDCG@10"], rel=REL.get(dataset.name, 1))
        rows = {}
        for name in names:
            means, _ = evaluate_run(measures, dataset.qrels, runs[name], qids)
            rows[name] = {
                "nDCG@10": round(means["nDCG@10"], 4),
                "rerank_ms_p50": round(float(np.percentile(ms[name], 50)), 1),
                "rerank_ms_p95": round(float(np.percentile(ms[name], 95)), 1),
                "rerank_ms_max": round(float(np.max(ms[name])), 1),
                "read_mean": round(float(np.mean(read[name])), 1),
                "read_min": int(np.min(read[name])),
                "stops": stops[name],
            }
        for name in names:
            rows[name]["ndcg_lost"] = round(rows["full"]["nDCG@10"] - rows[name]["nDCG@10"], 4)
        out["sets"][dataset.name] = {"queries": len(qids), "settings": rows}
    out["ms_per_token_learned"] = round(reranker.cost_model.ms_per_token, 5)
    out["loadavg_end"] = os.getloadavg()
    return out


def run(ctx) -> dict:
    data = [ctx.data, ctx.data.parent / "dbpedia"]
    return measure(data, queries=5 if ctx.quick else None, cache_dir=getattr(ctx.args, "cache_dir", None))


def markdown(result: dict) -> str:
    lines = [f"### Rerank latency budgets ({result['cpu']}; {result['method']} top {result['depth']}, {result['reranker']}, "
             f"out of reach of the top {result['k']}; 1-minute load average {result['loadavg_start'][0]:.1f} at the start, "
             f"{result['loadavg_end'][0]:.1f} at the end)", "",
             "| set | setting | rerank p50 ms | rerank p95 ms | max ms | candidates read (mean / min) | stopped by | nDCG@10 | lost vs full |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, s in result["sets"].items():
        for setting, r in s["settings"].items():
            stops = ", ".join(f"{k} {v}" for k, v in sorted(r["stops"].items()))
            lines.append(f"| {name} ({s['queries']} q) | {setting} | {r['rerank_ms_p50']} | {r['rerank_ms_p95']} | {r['rerank_ms_max']} | "
                         f"{r['read_mean']} / {r['read_min']} | {stops} | {r['nDCG@10']:.4f} | {r['ndcg_lost']:+.4f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, nargs="+", default=list(DEFAULT_DATA))
    p.add_argument("--budgets", type=lambda s: [float(x) for x in s.split(",")], default=list(BUDGETS))
    p.add_argument("--method", choices=["bm25", "dense", "hybrid"], default="hybrid")
    p.add_argument("--queries", type=int, default=None, help="judged queries per set (default all)")
    p.add_argument("--cascade", metavar="MODEL", help="also a cascade: this small reranker reads the 100, the default the best 20")
    p.add_argument("--cascade-depth", type=int, default=20)
    p.add_argument("--out", type=Path, help="write the result as JSON here too")
    args = p.parse_args()
    result = measure(args.data, budgets=args.budgets, method=args.method, queries=args.queries, cascade=args.cascade,
                     cascade_depth=args.cascade_depth)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    print(markdown(result))


if __name__ == "__main__":
    main()
