"""Reranking long documents: one pass over the best chunk (winnow's default) against windows over the whole
document (FirstP, MaxP, soft max), on one BEIR set, with one score cache so every window is scored once.

Prints nDCG@10 and R@1 per reading, and the same over the queries whose relevant document's answer lies past
the first window (a long-document set's ``longdoc.json`` names each answer's page; for other sets: queries
with a relevant document longer than one window).

    OPENBLAS_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false .venv/bin/python scripts/windows_experiment.py \
        DATASET [--split dev] [--methods hybrid>rerank] [--depth 20] [--max-windows 8] [--out report.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset")
    p.add_argument("--split", default="test")
    p.add_argument("--methods", default="hybrid>rerank")
    p.add_argument("--depth", type=int, default=20)
    p.add_argument("--max-windows", type=int, default=8)
    p.add_argument("--rel", type=int, default=1)
    p.add_argument("--readings", default="chunk,firstp,maxp,softmax")
    p.add_argument("--out", type=Path)
    args = p.parse_args()

    from winnow.evaluate.dataset import load_beir
    from winnow.evaluate.metrics import parse_metrics
    from winnow.evaluate.runner import default_cache_dir, open_corpus_cache, parse_methods, run_method
    from winnow.models.resolve import default_reranker
    from winnow.rerank.cross_encoder import CrossEncoderReranker
    from winnow.rerank.reading import Reading
    from winnow.rerank.windows import Aggregation

    dataset = load_beir(args.dataset, split=args.split)
    measures = parse_metrics(["nDCG@10", "R@1"], rel=args.rel)
    reranker = CrossEncoderReranker(default_reranker(), cache=True)
    reranker.warm_up()
    col, _ = open_corpus_cache(dataset, cache_dir=default_cache_dir())
    readings = {"chunk": Reading()}
    readings.update({a.value: Reading(max_windows=args.max_windows, aggregation=a) for a in Aggregation})
    far = _past_first_window(dataset, col, reranker, args.rel)
    out: dict = {"dataset": str(dataset.path), "split": args.split, "queries": len(dataset.judged), "depth": args.depth,
                 "max_windows": args.max_windows, "past_first_window": sorted(far), "methods": {}}
    for spec in parse_methods(args.methods):
        rows = {}
        for name in args.readings.split(","):
            start = time.perf_counter()
            result = run_method(spec, col, dataset, measures, reranker=reranker, depth=args.depth, reading=readings[name])
            nd, r1 = result.per_query["nDCG@10"], result.per_query["R@1"]
            rows[name] = {
                "nDCG@10": result.metrics["nDCG@10"], "R@1": result.metrics["R@1"],
                "far_nDCG@10": _mean(nd, far), "far_R@1": _mean(r1, far), "near_nDCG@10": _mean(nd, set(nd) - far),
                "seconds": round(time.perf_counter() - start, 1), "per_query_ndcg": dict(nd),
            }
            print(f"{spec.name:16} {name:8} nDCG@10 {rows[name]['nDCG@10']:.4f}  R@1 {rows[name]['R@1']:.4f}  "
                  f"past the first window ({len(far)} q): nDCG@10 {rows[name]['far_nDCG@10']:.4f} R@1 {rows[name]['far_R@1']:.4f}  "
                  f"({rows[name]['seconds']} s)", flush=True)
        out["methods"][spec.name] = rows
    col.close()
    if args.out:
        args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0


def _mean(values: dict, qids: set) -> float:
    chosen = [values[q] for q in qids if q in values]
    return sum(chosen) / len(chosen) if chosen else float("nan")


def _past_first_window(dataset, col, reranker, rel: int) -> set[str]:
    """Queries whose relevant document's answer starts past the first window (long-document sets), or that
    have a relevant document longer than one window (other sets)."""
    reader = reranker.passage_reader
    meta_path = Path(dataset.path) / "longdoc.json"
    judged = {q: [d for d, g in dataset.qrels[q].items() if g >= rel] for q in dataset.judged}
    docs = col.get(sorted({d for ds in judged.values() for d in ds}))
    far = set()
    if meta_path.is_file():
        from winnow.evaluate.longdoc import PAGE_SEPARATOR

        pages = json.loads(meta_path.read_text(encoding="utf-8"))["answer_pages"]
        for q, ds in judged.items():
            for d in ds:
                text, page = docs[d].text, pages[q]
                before = PAGE_SEPARATOR.join(text.split(PAGE_SEPARATOR)[:page])
                room = reader.window_room(reader.count([dataset.queries[q]])[0])
                if reader.count([before])[0] >= room - 16:  # the answer starts (almost) past the first window
                    far.add(q)
        return far
    for q, ds in judged.items():
        room = reader.window_room(reader.count([dataset.queries[q]])[0])
        if any(reader.count([docs[d].title + " " + docs[d].text])[0] > room for d in ds if d in docs):
            far.add(q)
    return far


if __name__ == "__main__":
    raise SystemExit(main())
