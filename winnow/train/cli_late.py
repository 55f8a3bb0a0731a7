"""``winnow train colbert`` and ``winnow train bi-encoder``: late interaction and distillation on the
command line (registered by :mod:`winnow.train.cli`)."""

from __future__ import annotations

import random
import sys
from pathlib import Path

from winnow.errors import InvalidArgumentError


def _distill_data(args, negatives: int, last_checkpoint):
    """(train, dev) from the mined files: dev is the same held-out queries the reranker training held out
    (``--dev-per-file`` and ``--seed`` as there), removed from training; train is sampled to ``--limit``
    (seeded) and scored by the teacher, chunk by chunk into ``<output>/teacher``. ``--resume`` with no
    checkpoint (``last_checkpoint(output)`` None) is an error before anything is scored."""
    if args.resume and last_checkpoint(args.output) is None:
        raise InvalidArgumentError(f"--resume: no checkpoint in {Path(args.output) / 'checkpoints'}; start without --resume")
    from winnow.train.cli import _held_out
    from winnow.train.data import merge_by_query, read_training_file
    from winnow.train.teacher import score_examples, teacher_reranker

    files = [(Path(p), read_training_file(p)) for p in args.train]
    dev = []
    if args.dev_per_file:
        dev = [e for p, examples in files if not p.name.endswith(".tsv") for e in _held_out(p, examples, args.dev_per_file, args.seed)]
    dev = merge_by_query(dev)
    dev_qids = {e.qid for e in dev}
    train = merge_by_query(e for _, examples in files for e in examples if e.qid not in dev_qids)
    train = [e for e in train if e.positives and len(e.negatives) >= negatives]
    random.Random(args.seed).shuffle(train)
    if args.limit is not None:
        train = train[: args.limit]
    if args.dev_limit is not None:
        by_source: dict[str, list] = {}
        for e in dev:
            by_source.setdefault(e.source, []).append(e)
        dev = [e for v in by_source.values() for e in v[: args.dev_limit]]
    print(f"{len(train)} training queries, {len(dev)} dev queries; scoring with teacher {args.teacher or 'winnow reranker'}",
          file=sys.stderr)
    teacher = teacher_reranker(args.teacher)
    scored = score_examples(train, teacher.raw_scores, negatives=negatives, cache=Path(args.output) / "teacher",
                            progress=not args.quiet)
    return scored, dev


def _card(args, words: tuple[str, ...]) -> dict:
    from winnow.train.card import file_digest
    from winnow.train.cli import _command

    return {"command": _command(args, *words),
            "data_files": [{"path": str(p), "sha256": file_digest(p)} for p in args.train],
            "teacher": args.teacher or "winnow-reranker-minilm-l6-v2"}


def _print_result(result) -> None:
    """The model folder, steps and time, and dev nDCG@10 before and after (ColBERT and bi-encoder runs)."""
    print(f"model: {result.model_dir} ({result.steps} steps, {result.seconds:.0f} s)")
    for label, d in (("before", result.dev_before), ("after", result.dev_after)):
        if d:
            print(f"  dev nDCG@10 {label}: {d['model_ndcg@10']:.4f} (first stage {d['first_stage_ndcg@10']:.4f}, {d['queries']} queries)")


def cmd_train_colbert(args) -> int:
    from winnow.train.cli import config_from_args
    from winnow.train.colbert import ColBERTTrainConfig, last_checkpoint, train_colbert

    config = config_from_args(ColBERTTrainConfig, args, base_model=args.base, learning_rate=args.lr)
    scored, dev = _distill_data(args, config.negatives, last_checkpoint)
    result = train_colbert(scored, args.output, config, dev=dev, resume=args.resume, progress=not args.quiet,
                           card=_card(args, ("train", "colbert")))
    _print_result(result)
    return 0


def cmd_train_bi_encoder(args) -> int:
    from winnow.train.cli import config_from_args
    from winnow.train.distill import BiEncoderDistillConfig, train_bi_encoder
    from winnow.train.teacher import drop_false_negatives
    from winnow.train.trainer import last_checkpoint

    config = config_from_args(BiEncoderDistillConfig, args, base_model=args.base, learning_rate=args.lr)
    scored, dev = _distill_data(args, config.negatives, last_checkpoint)
    kept = drop_false_negatives(scored, margin=args.teacher_margin)
    print(f"teacher filter (margin {args.teacher_margin}): {len(kept)} of {len(scored)} queries keep a negative", file=sys.stderr)
    result = train_bi_encoder(kept, args.output, config, dev=dev, resume=args.resume, progress=not args.quiet,
                              card=_card(args, ("train", "bi-encoder")))
    _print_result(result)
    return 0


def cmd_train_small_reranker(args) -> int:
    from winnow.train.cli import config_from_args
    from winnow.train.trainer import TrainConfig, last_checkpoint, train_reranker

    config = config_from_args(TrainConfig, args, base_model=args.base, loss="mse", learning_rate=args.lr,
                              eval_steps=args.eval_steps or 10**9, fit_fusion=False)
    scored, dev = _distill_data(args, config.negatives, last_checkpoint)
    result = train_reranker(scored, args.output, config, dev=dev, resume=args.resume, progress=not args.quiet,
                            card=_card(args, ("train", "small-reranker")))
    print(f"model: {result.model_dir} ({result.steps} steps, {result.seconds:.0f} s, {result.train_pairs} teacher-scored pairs)")
    for name, value in sorted(result.dev_metrics.items()):
        if name.endswith("ndcg@10"):
            print(f"  {name}: {value:.4f}")
    return 0


def cmd_ship_colbert(args) -> int:
    from winnow.train.ship_colbert import ship_colbert

    shipped = ship_colbert(args.model, args.output, reports=args.report or ())
    print(f"wrote {shipped.folder} ({shipped.size_bytes / 1e6:.1f} MB); int8 vs torch token vectors: min cosine "
          f"{shipped.min_cosine:.4f}, same MaxSim order: {'yes' if shipped.same_order else 'NO'}")
    return 0


def _common(p) -> None:
    p.add_argument("--train", nargs="+", required=True, metavar="FILE", help="mined .jsonl files (winnow mine-negatives)")
    p.add_argument("--output", "-o", required=True, metavar="DIR", help="run folder (teacher/, checkpoints/, model/)")
    p.add_argument("--teacher", metavar="MODEL", default=None,
                   help="cross-encoder whose scores are distilled (default winnow's shipped reranker)")
    p.add_argument("--dev-per-file", type=int, default=60, metavar="N",
                   help="queries held out of every file for dev, as the reranker's training held them out (default 60)")
    p.add_argument("--dev-limit", type=int, default=None, metavar="N", help="evaluate on the first N dev queries of each source")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="a seeded sample of N training queries (the teacher scores only these)")
    p.add_argument("--base", default="all-MiniLM-L6-v2", help="base model id or folder (default the bundled all-MiniLM-L6-v2)")
    p.add_argument("--negatives", "-n", type=int, default=3, help="mined negatives per query (default 3)")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--max-steps", type=int, default=-1, help="stop after N steps (overrides --epochs)")
    p.add_argument("--batch-size", type=int, default=16, help="queries per step")
    p.add_argument("--warmup-ratio", type=float, default=0.1)
    p.add_argument("--save-steps", type=int, default=50)
    p.add_argument("--save-total-limit", type=int, default=2)
    p.add_argument("--eval-steps", type=int, default=0, help="dev evaluation every N steps (0: before and after only)")
    p.add_argument("--logging-steps", type=int, default=10)
    p.add_argument("--eval-depth", type=int, default=20, help="mined first-stage candidates reranked per dev query")
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in <output>/checkpoints")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")


def register(tsub) -> None:
    c = tsub.add_parser(
        "colbert",
        help="train a ColBERT late-interaction model, distilled from winnow's reranker",
        description="A ColBERT model from the base (projection, query/document markers, [MASK] query padding), "
        "trained on mined negatives with the teacher's scores (KL or MarginMSE) plus in-batch negatives; dev: "
        "held-out training queries' mined lists reranked by MaxSim. Never point it at a test set.",
    )
    _common(c)
    c.add_argument("--dim", type=int, choices=[96, 128], default=96, help="token vector size (default 96)")
    c.add_argument("--query-length", type=int, default=32, help="query tokens, padded with [MASK] (default 32)")
    c.add_argument("--document-length", type=int, default=180, help="document tokens kept (default 180)")
    c.add_argument("--loss", choices=["kl", "margin-mse"], default="kl")
    c.add_argument("--temperature", type=float, default=1.0, help="KL: teacher scores / T before the softmax")
    c.add_argument("--in-batch-weight", type=float, default=1.0, help="weight of the in-batch cross-entropy (0: off)")
    c.add_argument("--lr", type=float, default=3e-5)
    c.add_argument("--projection-lr", type=float, default=1e-3)
    c.set_defaults(func=cmd_train_colbert)

    b = tsub.add_parser(
        "bi-encoder",
        help="distil winnow's reranker into the bi-encoder (MarginMSE on teacher-filtered hard negatives)",
        description="sentence-transformers' trainer with MarginMSELoss: (query, positive, negative) rows labelled "
        "with the teacher's margin; negatives mined by the bi-encoder (high first-stage score) and kept only where "
        "the teacher scores them --teacher-margin below the positive (the seeds' recipe). Never a test set.",
    )
    _common(b)
    b.add_argument("--teacher-margin", type=float, default=1.0, help="keep negatives the teacher scores this far below the positive")
    b.add_argument("--max-length", type=int, default=256, help="tokens per text (default 256)")
    b.add_argument("--scale", type=float, default=10.0,
                   help="the student's similarity is scale x cosine, on the teacher's logit scale (default 10)")
    b.add_argument("--in-batch-weight", type=float, default=0.0,
                   help="add this x MultipleNegativesRankingLoss (in-batch + hard negatives) to MarginMSE (default 0: off)")
    b.add_argument("--in-batch-scale", type=float, default=20.0, help="that loss's cosine scale (default 20)")
    b.add_argument("--lr", type=float, default=2e-5)
    b.set_defaults(func=cmd_train_bi_encoder)

    r = tsub.add_parser(
        "small-reranker",
        help="distil winnow's reranker into a smaller cross-encoder (a cascade's first reader)",
        description="A cross-encoder with the base's first --layers layers (give the teacher's own torch weights as "
        "--base to start from them), trained with pointwise MSE to reproduce the teacher's raw logits on mined "
        "positives and hard negatives; dev: the held-out training queries' mined lists, reranked. Ship it with "
        "`winnow train ship` and use it with --cascade. Never a test set.",
    )
    _common(r)
    r.add_argument("--layers", type=int, default=3, help="transformer layers kept from the base (default 3)")
    r.add_argument("--max-length", type=int, default=192, help="tokens per (query, passage) pair (default 192, the teacher's)")
    r.add_argument("--lr", type=float, default=5e-5)
    r.set_defaults(func=cmd_train_small_reranker)

    s = tsub.add_parser(
        "ship-colbert",
        help="pack a trained ColBERT model as int8 ONNX (encoder) + projection.npy + tokenizer + card",
        description="Export <run>/model's encoder to ONNX, quantize it to int8 (portable config), copy the projection, "
        "tokenizer, colbert.json and card, check the token vectors and MaxSim order against torch, write OUTPUT.",
    )
    s.add_argument("model", help="trained ColBERT folder (<run>/model)")
    s.add_argument("--output", "-o", required=True, metavar="DIR", help="the ONNX-only folder to write")
    s.add_argument("--report", nargs="+", metavar="REPORT",
                   help="winnow eval --late-interaction report.json files whose test results the card shows")
    s.set_defaults(func=cmd_ship_colbert)
