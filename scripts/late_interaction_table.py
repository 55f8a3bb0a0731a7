#!/usr/bin/env python
"""The storage table of issue 15: one row per representation on a BEIR test set, as a first stage and as a
reranker of the dense (mean pooling) top ``--depth``: bytes stored per passage, index build time, query
latency p50, nDCG@10 and R@100.

    .venv/bin/python scripts/late_interaction_table.py ../shared/data/msmarco --rel 2 --colbert runs/colbert1/model \\
        [--distilled runs/bi1/model] --out runs/table-msmarco.json
    .venv/bin/python scripts/late_interaction_table.py ../shared/data/dbpedia --colbert runs/colbert1/model ...

Rows: bi-encoder CLS pooling (the [CLS] token vector of all-MiniLM-L6-v2), mean pooling (today's dense),
the distilled bi-encoder (``--distilled``), ColBERT float16 / int8 / residual-4 / residual-2 (one
multi-vector part each, centroids shared), the untrained MaxSim over the bi-encoder's token vectors
(winnow/rerank/maxsim.py, reranker only) and the cross-encoder (reranker only, with its fitted dense mix).
Where the ColBERT folder has a ``fusion.json`` (``winnow train fit-fusion`` on held-out training queries),
two more rows a compression: MaxSim mixed with the dense score as the reranker of the dense top ``--depth``,
and as a first stage over both first stages' top ``--depth`` (ColBERT's and dense's), ordered by the mix.
Test sets are reported on, never tuned on: every setting here is fixed before running.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _p50(ms: list[float]) -> float:
    return float(np.median(ms)) if ms else float("nan")


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    k = min(k, len(scores))
    idx = np.argpartition(-scores, k - 1)[:k]
    return idx[np.lexsort((idx, -scores[idx]))]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset")
    ap.add_argument("--rel", type=int, default=1, help="lowest relevant grade for R@100 (msmarco: 2)")
    ap.add_argument("--colbert", help="trained ColBERT folder (<run>/model or a shipped one)")
    ap.add_argument("--distilled", help="distilled bi-encoder folder")
    ap.add_argument("--cross-encoder", default="winnow-reranker-minilm-l6-v2")
    ap.add_argument("--depth", type=int, default=100)
    ap.add_argument("--nprobe", type=int, default=4)
    ap.add_argument("--candidates", type=int, default=1024)
    ap.add_argument("--limit-docs", type=int, default=None, help="a smoke test: the first N documents only")
    ap.add_argument("--limit-queries", type=int, default=None)
    ap.add_argument("--skip", nargs="*", default=[], help="rows to skip: cls distilled maxsim cross-encoder")
    ap.add_argument("--out", help="JSON of the rows")
    args = ap.parse_args(argv)

    from winnow.encode.bi_encoder import BiEncoder
    from winnow.evaluate.dataset import load_beir
    from winnow.evaluate.metrics import evaluate_run, parse_metrics
    from winnow.models.resolve import DEFAULT_BI_ENCODER
    from winnow.types import with_title

    ds = load_beir(args.dataset)
    docs = ds.read_corpus()[: args.limit_docs]
    ids = [d.id for d in docs]
    texts = [with_title(d.title, d.text) for d in docs]
    judged = list(ds.judged)[: args.limit_queries]
    queries = {q: ds.queries[q] for q in judged}
    measures = parse_metrics(["nDCG@10", "R@100"], rel=args.rel)
    rows: list[dict] = []

    def score(run: dict) -> dict:
        means, _ = evaluate_run(measures, ds.qrels, run, judged)
        return {"nDCG@10": round(means["nDCG@10"], 4), "R@100": round(next(v for k, v in means.items() if k.startswith("R")), 4)}

    def dense_row(name: str, encode_docs, encode_query, dim: int, keep: dict | None = None):
        t = time.perf_counter()
        matrix = np.asarray(encode_docs(texts), dtype=np.float32)
        if keep is not None:  # the dense scores a fitted mix reads
            keep["matrix"], keep["queries"] = matrix, {q: encode_query(text) for q, text in queries.items()}
        build = time.perf_counter() - t
        run, lat = {}, []
        for q, text in queries.items():
            t = time.perf_counter()
            s = matrix @ encode_query(text)
            top = _top(s, args.depth)
            lat.append((time.perf_counter() - t) * 1000)
            run[q] = [(ids[i], float(s[i])) for i in top]
        rows.append({"representation": name, "use": "first stage", "bytes_per_passage": dim * 4,
                     "build_s": round(build, 1), "p50_ms": round(_p50(lat), 1), **score(run)})
        print(rows[-1], file=sys.stderr)
        return run

    bi = BiEncoder(DEFAULT_BI_ENCODER)
    dense_vectors: dict = {}
    dense = dense_row("bi-encoder mean pooling (today's)", bi.encode_documents, bi.encode_query, bi.dim, dense_vectors)
    if "cls" not in args.skip:
        def cls(ts):  # the [CLS] row of each text's token vectors (unit length), 256 texts at a time
            return np.stack([m[0] for i in range(0, len(ts), 256) for m in bi.encode_tokens(ts[i : i + 256])])

        dense_row("bi-encoder CLS pooling", cls, lambda t: cls([t])[0], bi.dim)
    if args.distilled and "distilled" not in args.skip:
        di = BiEncoder(args.distilled)
        dense_row(f"distilled bi-encoder ({args.distilled})", di.encode_documents, di.encode_query, di.dim)
    candidates = {q: [d for d, _ in hits] for q, hits in dense.items()}
    index_of = {d: i for i, d in enumerate(ids)}

    def rerank_row(name: str, score_fn, bytes_per_passage, build_s):
        run, lat = {}, []
        for q, text in queries.items():
            t = time.perf_counter()
            s = np.asarray(score_fn(q, text), dtype=np.float64)
            lat.append((time.perf_counter() - t) * 1000)
            order = sorted(range(len(s)), key=lambda i: (-s[i], i))
            run[q] = [(candidates[q][i], float(s[i])) for i in order]
        rows.append({"representation": name, "use": f"reranker of dense top {args.depth}",
                     "bytes_per_passage": bytes_per_passage, "build_s": build_s, "p50_ms": round(_p50(lat), 1), **score(run)})
        print(rows[-1], file=sys.stderr)

    if "maxsim" not in args.skip:
        from winnow.rerank.maxsim import MaxSimReranker

        ms = MaxSimReranker(encoder=bi)
        rerank_row("untrained MaxSim (bi-encoder token vectors, encoded per query)",
                   lambda q, text: ms.score(text, [texts[index_of[d]] for d in candidates[q]]), 0, 0.0)
    if "cross-encoder" not in args.skip:
        from winnow.rerank.cross_encoder import CrossEncoderReranker
        from winnow.types import FirstStage, Hit

        ce = CrossEncoderReranker(args.cross_encoder, cache=False)

        def ce_scores(q, text):
            hits = [Hit(d, s, r + 1, text=texts[index_of[d]]) for r, (d, s) in enumerate(dense[q])]
            ranked = ce.rank(text, hits, first_stage=FirstStage.DENSE)
            by_id = {h.doc_id: h.score for h in ranked.hits}
            return [by_id[d] for d in candidates[q]]

        rerank_row(f"cross-encoder {args.cross_encoder} (dense mix)", ce_scores, 0, 0.0)

    if args.colbert:
        from winnow.encode.colbert import ColBERTEncoder
        from winnow.index.multivector import MultiVectorPart
        from winnow.index.residual import Compression, train_codebook

        from winnow.rerank.mix import MixTable
        from winnow.types import FirstStage as Stage

        enc = ColBERTEncoder(args.colbert)
        table = MixTable.from_model_dir(enc.folder)
        mix = table.for_stage(Stage.DENSE) if table is not None else None  # fitted on dev (fit-fusion)
        t = time.perf_counter()
        matrices = enc.encode_documents(texts)
        encode_s = time.perf_counter() - t
        tokens = sum(len(m) for m in matrices)
        k = min(65_536, 2 ** int(math.floor(math.log2(16 * math.sqrt(tokens)))))  # PLAID's rule of thumb
        codebooks = {}
        t = time.perf_counter()
        two = train_codebook(np.concatenate(matrices), centroids=k, bits=2, seed=0)
        codebooks[2] = (two, time.perf_counter() - t)
        t = time.perf_counter()  # the same centroids, 4-bit buckets
        codebooks[4] = (train_codebook(np.concatenate(matrices), centroids=np.asarray(two.centroids), bits=4, seed=0),
                        codebooks[2][1] + time.perf_counter() - t)
        with tempfile.TemporaryDirectory() as tmp:
            for comp in (Compression.FLOAT16, Compression.INT8, Compression.RESIDUAL_4, Compression.RESIDUAL_2):
                cb, cb_s = codebooks[comp.bits or 2]
                t = time.perf_counter()
                part = MultiVectorPart.open(MultiVectorPart.write(Path(tmp) / comp.value, matrices, cb, comp), cb)
                build = round(encode_s + cb_s + time.perf_counter() - t, 1)
                per_passage = round(tokens * comp.bytes_per_token(enc.dim) / len(matrices) + 8, 1)  # + offsets
                uses = ["first stage", "reranker"] + (["first stage, mixed with dense", "reranker, dense mix"] if mix else [])
                for use in uses:
                    run, lat = {}, []
                    for q, text in queries.items():
                        t = time.perf_counter()
                        qv = enc.encode_queries([text])[0]
                        if use.startswith("first stage"):
                            hits = part.search(qv, args.depth, nprobe=args.nprobe, candidates=args.candidates)
                            pairs = [(ids[r], float(s)) for r, s in zip(hits.rows, hits.scores)]
                            if use != "first stage":  # both first stages' top depth, ordered by the fitted mix
                                rows_ = np.union1d(hits.rows, [index_of[d] for d in candidates[q]])
                                cos = dense_vectors["matrix"][rows_] @ dense_vectors["queries"][q]
                                m = mix.apply(part.score(qv, rows_), cos)
                                pairs = [(ids[rows_[i]], float(m[i])) for i in _top(m, args.depth)]
                        else:
                            rows_ = [index_of[d] for d in candidates[q]]
                            s = part.score(qv, rows_)
                            if use != "reranker":
                                s = mix.apply(s, np.asarray([sc for _, sc in dense[q]]))
                            pairs = sorted(((candidates[q][i], float(s[i])) for i in range(len(s))), key=lambda x: -x[1])
                        lat.append((time.perf_counter() - t) * 1000)
                        run[q] = pairs
                    label = use if use.startswith("first stage") else use.replace("reranker", f"reranker of dense top {args.depth}")
                    if "mix" in use or "mixed" in use:
                        label += f" (w {mix.weight})"
                    rows.append({"representation": f"ColBERT {comp.value} ({enc.dim} dims, {k} centroids)", "use": label,
                                 "bytes_per_passage": per_passage, "bytes_per_token": comp.bytes_per_token(enc.dim),
                                 "build_s": build, "p50_ms": round(_p50(lat), 1), **score(run)})
                    print(rows[-1], file=sys.stderr)

    header = "| representation | use | bytes / passage | build s | p50 ms | nDCG@10 | R@100 |"
    print(f"\n{ds.name}: {len(docs)} passages, {len(judged)} queries, rel >= {args.rel} for R@100\n")
    print(header + "\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['representation']} | {r['use']} | {r['bytes_per_passage']} | {r['build_s']} | {r['p50_ms']} | "
              f"{r['nDCG@10']:.4f} | {r['R@100']:.4f} |")
    if args.out:
        from winnow.storage import write_json_atomic

        write_json_atomic(args.out, {"dataset": str(args.dataset), "rel": args.rel, "passages": len(docs),
                                     "queries": len(judged), "command": " ".join(sys.argv), "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
