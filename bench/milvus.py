"""Benchmark section ``milvus``: a Milvus-backed collection (embedded milvus-lite) beside a native one.

For each BEIR set (msmarco and dbpedia from ../shared/data): the same documents in a native collection and
in one created with ``store="milvus-lite:PATH"`` (encoded once: they share the home's embedding cache),
then every judged query through both: first-stage search p50 per method (dense, BM25, hybrid; one query
at a time, first stage only, top-100), nDCG@10 (msmarco at rel 2 for binary measures, as elsewhere), and
for dense the share of queries whose top-10 ids are identical to the native exact index's. Milvus's dense
index here is FLAT (exact inner product); its BM25 is Milvus's own analyzer and statistics.

``python -m bench.run --sections milvus`` (part of ``make bench``), or on its own:
``python -m bench.milvus [--data ../shared/data]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SECTION = "milvus"
REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
SETS = (("msmarco", 2), ("dbpedia", 1))
METHODS = ("dense", "bm25", "hybrid")


def measure_set(folder: Path, rel: int, work: Path, max_queries: int | None = None) -> dict:
    from winnow.collection import Collection
    from winnow.evaluate.dataset import load_beir
    from winnow.evaluate.metrics import evaluate_run, parse_metrics

    dataset = load_beir(folder)
    docs = dataset.read_corpus()
    queries = list(dataset.judged)[:max_queries]
    home = work / folder.name
    out: dict = {"documents": len(docs), "queries": len(queries), "stores": {}}
    runs: dict = {}
    for store in ("native", "milvus-lite"):
        spec = None if store == "native" else f"milvus-lite:{home / 'milvus.db'}"
        col = Collection.create(store.replace("-", "_"), home=home, store=spec)
        start = time.perf_counter()
        col.add(docs)
        build = time.perf_counter() - start
        for q in queries[:3]:
            for m in METHODS:
                col.search(dataset.queries[q], method=m, top_k=100)
        stats = {"build_s": round(build, 1)}
        for m in METHODS:
            times, run = [], {}
            for q in queries:
                t = time.perf_counter()
                ranking = col.search(dataset.queries[q], method=m, top_k=100, dense_index="exact")
                times.append(time.perf_counter() - t)
                run[q] = [(h.doc_id, h.score) for h in ranking.hits]
            means, _ = evaluate_run(parse_metrics(["nDCG@10", "R@100"], rel=rel), dataset.qrels, run, queries)
            stats[m] = {"p50_ms": round(statistics.median(times) * 1000, 2), "nDCG@10": round(means["nDCG@10"], 4),
                        "R@100": round(means[next(k for k in means if k.startswith("R"))], 4)}
            runs[(store, m)] = run
        col.close()
        out["stores"][store] = stats
    same = sum(1 for q in queries if [d for d, _ in runs[("native", "dense")][q][:10]] == [d for d, _ in runs[("milvus-lite", "dense")][q][:10]])
    out["dense_top10_identical"] = round(same / len(queries), 4)
    return out


def measure(data: Path = DEFAULT_DATA, work: Path | None = None, max_queries: int | None = None) -> dict:
    from winnow.models.catalog import cpu_line

    scratch = Path(tempfile.mkdtemp(prefix="winnow-milvus-", dir=work))
    try:
        sets = {name: measure_set(data / name, rel, scratch, max_queries) for name, rel in SETS if (data / name / "corpus.jsonl").is_file()}
        return {"cpu": cpu_line(), "sets": sets}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run(ctx) -> dict:
    return measure(ctx.data.parent, ctx.work, 20 if ctx.quick else None)


def markdown(result: dict) -> str:
    lines = [f"### Milvus-backed (milvus-lite, FLAT) vs native first stage ({result['cpu']})", "",
             "| set | store | build s | dense p50 ms / nDCG@10 / R@100 | bm25 p50 ms / nDCG@10 / R@100 | hybrid p50 ms / nDCG@10 / R@100 | dense top-10 identical |",
             "|---|---|---|---|---|---|---|"]
    for name, s in result["sets"].items():
        for store, st in s["stores"].items():
            cells = [f"{st[m]['p50_ms']:.1f} / {st[m]['nDCG@10']:.4f} / {st[m]['R@100']:.4f}" for m in METHODS]
            same = f"{s['dense_top10_identical']:.0%}" if store != "native" else ""
            lines.append(f"| {name} ({s['documents']:,} docs, {s['queries']} queries) | {store} | {st['build_s']} | " + " | ".join(cells) + f" | {same} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding msmarco/ and dbpedia/")
    p.add_argument("--queries", type=int, default=None, help="judged queries per set (default all)")
    p.add_argument("--output", type=Path)
    args = p.parse_args()
    result = measure(args.data, max_queries=args.queries)
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(markdown(result))


if __name__ == "__main__":
    main()
