"""``winnow rerank-run RUNFILE --queries Q --corpus C -o OUT [--ray [ADDRESS]]``: rerank a TREC run."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    s = subparsers.add_parser(
        "rerank-run",
        help="rerank a TREC run's candidates for many queries, here or across a Ray cluster",
        description=(
            "Read a TREC run (qid Q0 docid rank score tag), the queries (BEIR queries.jsonl) and the corpus its "
            "ids name, rerank each query's first --depth candidates with a cross-encoder and write the reranked "
            "run. With --ray the queries are spread over the workers of a Ray cluster (one reranker per worker); "
            "scores and order are the same as without."
        ),
    )
    s.add_argument("run", metavar="RUNFILE", help="TREC run file of the first stage")
    s.add_argument("--queries", required=True, metavar="FILE", help="BEIR queries.jsonl ({_id, text} per line)")
    s.add_argument("--corpus", required=True, metavar="PATH",
                   help="the documents the run names: BEIR folder or corpus.jsonl, a .jsonl/.csv file, or a folder")
    s.add_argument("--output", "-o", required=True, metavar="FILE", help="where to write the reranked run")
    s.add_argument("--rerank", metavar="MODEL", default=None,
                   help="cross-encoder name, id or folder (default: winnow's default reranker)")
    s.add_argument("--depth", type=int, default=100, help="candidates reranked per query (default 100)")
    s.add_argument("--first-stage", choices=["bm25", "dense", "hybrid"], default=None,
                   help="what made the run: ranks by the reranker's mix fitted for it, where it has one "
                   "(default: the reranker's score alone)")
    s.add_argument("--max-length", type=int, default=None, help="reranker tokens per pair (default: the model's)")
    s.add_argument("--backend", choices=["auto", "torch", "onnx", "onnx-int8"], default="auto",
                   help="model runtime (default auto)")
    s.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="rerank across a Ray cluster (HOST:6379, ray://HOST:10001, auto); --ray alone starts a "
                   "local one (needs the ray extra; docs/scale.md)")
    s.add_argument("--workers", type=int, default=None, help="Ray workers (default: one per CPU of the cluster)")
    s.add_argument("--tag", default="winnow-rerank", help="the run tag written in the last column (default winnow-rerank)")
    s.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_rerank_run)


def cmd_rerank_run(args) -> int:
    from pathlib import Path

    from winnow.corpus import read_documents
    from winnow.evaluate.dataset import read_queries
    from winnow.evaluate.report import write_run
    from winnow.evaluate.run_file import read_run
    from winnow.scale.rerank_run import candidates_from_run, make_reranker, rerank_here, rerank_on_ray
    from winnow.types import FirstStage

    first_stage = FirstStage(args.first_stage) if args.first_stage else None
    run = read_run(args.run)
    items = candidates_from_run(run, read_queries(Path(args.queries)), read_documents(args.corpus), depth=args.depth)
    print(f"read {len(items)} queries, {sum(len(i.doc_ids) for i in items)} candidates from {args.run}", file=sys.stderr)
    if args.ray is None:
        reranker = make_reranker(args.rerank, backend=args.backend, max_length=args.max_length)
        result = rerank_here(items, reranker, first_stage=first_stage, progress=not args.quiet)
    else:
        from winnow.scale.cluster import ray_session

        with ray_session(args.ray):
            result = rerank_on_ray(
                items, model=args.rerank, backend=args.backend, max_length=args.max_length, first_stage=first_stage,
                workers=args.workers, progress=not args.quiet,
            )
    write_run(Path(args.output), result.run, args.tag)
    where = f"{result.workers} Ray workers" if result.workers else "this process"
    print(f"reranked {result.queries} queries ({result.pairs} pairs) on {where} in {result.seconds:.1f} s "
          f"({result.pairs_per_second:.0f} pairs/s); wrote {args.output}")
    return 0
