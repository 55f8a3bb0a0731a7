"""``winnow eval DATASET --methods bm25,dense,hybrid``: measure retrieval setups on a BEIR dataset."""

from __future__ import annotations

from pathlib import Path

from winnow.evaluate.metrics import DEFAULT_METRICS, split_names


def register(subparsers) -> None:
    s = subparsers.add_parser(
        "eval",
        help="measure retrieval setups on a BEIR dataset (nDCG@10, RR@10, R@100 ... with ir-measures)",
        description=(
            "Evaluate first stages and reranked pipelines on a BEIR folder (corpus.jsonl, queries.jsonl, "
            "qrels/<split>.tsv). The corpus is indexed once per bi-encoder and cached; only queries with "
            "judgments are evaluated. Writes report.json, report.md, quality-latency.png and TREC run files."
        ),
    )
    s.add_argument("dataset", help="BEIR dataset folder")
    s.add_argument(
        "--methods",
        default="bm25,dense,hybrid",
        help="comma-separated: bm25, dense, hybrid, X>rerank for each (the reranker with its mix fitted for X, "
        "where it has one) and X>rerank-alone (its score alone); with --late-interaction also late, X>late (MaxSim "
        "over the stored token vectors, with the ColBERT model's fitted mix) and X>late-alone; quote the '>'. The "
        "first is the baseline of the significance tests (default: bm25,dense,hybrid)",
    )
    s.add_argument("--split", default="test", help="qrels/<split>.tsv (default test)")
    s.add_argument("--depth", type=int, default=100, help="candidates the reranker reads (default 100)")
    s.add_argument("--run-depth", type=int, default=1000, help="results per query of first-stage methods (default 1000)")
    s.add_argument("--rerank", metavar="MODEL",
                   help="cross-encoder name, id or folder for the X>rerank methods (default: winnow's default reranker)")
    s.add_argument("--max-length", type=int, default=None, help="reranker max tokens per pair")
    s.add_argument(
        "--metrics", default=",".join(DEFAULT_METRICS), help=f"ir-measures names (default {','.join(DEFAULT_METRICS)})"
    )
    s.add_argument(
        "--rel", type=int, default=1, metavar="N",
        help="lowest grade counted relevant by binary measures (RR, R, P, AP); TREC DL uses 2 (default 1)",
    )
    s.add_argument("--output", "-o", metavar="DIR", help="where to write the report (default ./eval-<dataset>)")
    s.add_argument("--cache-dir", metavar="DIR", help="corpus index cache (default $WINNOW_HOME/.eval-cache)")
    s.add_argument("--store", default=None, metavar="STORE",
                   help="first stage of the corpus cache: local segments (default), milvus-lite:PATH or milvus://HOST:PORT")
    s.add_argument("--model", default=None, help="bi-encoder id or folder (default all-MiniLM-L6-v2)")
    s.add_argument("--late-interaction", metavar="MODEL", default=None,
                   help="a ColBERT model whose token vectors the corpus cache keeps, for the late methods")
    s.add_argument("--compression", choices=["residual-2", "residual-4", "int8", "float16"], default=None,
                   help="with --late-interaction: how token vectors are stored (default residual-2)")
    s.add_argument(
        "--backend", choices=["auto", "torch", "onnx", "onnx-int8"], default=None,
        help="bi-encoder and reranker backend (default: winnow's choice for this machine)",
    )
    s.add_argument("--dense-index", choices=["auto", "exact", "hnsw"], default="auto")
    s.add_argument(
        "--batch-size", type=int, default=1,
        help="queries searched together; 1 (default) times each query on its own, more is faster but latencies are amortized",
    )
    s.add_argument("--quiet", "-q", action="store_true", help="no progress bar while encoding")
    from winnow.rerank.options import add_rerank_options

    add_rerank_options(s)
    s.set_defaults(func=cmd_eval)


def cmd_eval(args) -> int:
    from winnow.evaluate.dataset import load_beir
    from winnow.evaluate.report import format_table, write_report
    from winnow.evaluate.runner import default_cache_dir, evaluate, parse_methods
    from winnow.rerank.options import budget_from_args, reading_from_args

    parse_methods(args.methods)  # fail on a bad name before reading anything
    dataset = load_beir(args.dataset, split=args.split)
    cache_dir = Path(args.cache_dir) if args.cache_dir else default_cache_dir(getattr(args, "data", None))
    output = Path(args.output) if args.output else Path(f"eval-{dataset.name}")
    report = evaluate(
        dataset,
        args.methods,
        cache_dir=cache_dir,
        metrics=split_names(args.metrics),
        rel=args.rel,
        depth=args.depth,
        run_depth=args.run_depth,
        rerank=args.rerank,
        model=args.model,
        backend=args.backend,
        batch_size=args.batch_size,
        dense_index=args.dense_index,
        max_length=args.max_length,
        progress=not args.quiet,
        reading=reading_from_args(args),
        budget=budget_from_args(args, k=10),  # candidates out of reach of the top 10 (nDCG@10's) are not read
        store=args.store,
        cascade=args.cascade,
        cascade_depth=args.cascade_depth,
        late_interaction=args.late_interaction,
        compression=args.compression,
    )
    paths = write_report(report, output)
    print(format_table(report))
    print()
    print(f"wrote {paths['json']}, {paths['markdown']}, {paths['plot']} and {len(report.methods)} run files in {output / 'runs'}")
    return 0
