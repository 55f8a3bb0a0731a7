"""``winnow mine-negatives`` and ``winnow train reranker``: the reranker's training tools on the command line."""

from __future__ import annotations

import json
import random
import shlex
import sys
from pathlib import Path

from winnow.errors import InvalidArgumentError


def config_from_args(cls, args, **given):
    """A config dataclass from parsed options: each field from ``given``, else from the option of the same
    name, else the field's default (one place for the argparse -> dataclass copying)."""
    from dataclasses import fields

    values = {f.name: given[f.name] if f.name in given else getattr(args, f.name) for f in fields(cls)
              if f.name in given or hasattr(args, f.name)}
    return cls(**values)


def meta_path(mined: str | Path) -> Path:
    """The sidecar recipe file of a mined JSONL file."""
    mined = Path(mined)
    return mined.with_name(mined.name + ".meta.json")


def _command(args, *words: str) -> str:
    """The command line that reproduces ``args`` (rebuilt from the parsed options, so it is right however
    the command was called: the console script, ``python -m winnow`` or in-process)."""
    parts = ["winnow", *words]
    for key, value in vars(args).items():
        if key in ("func", "command", "what", "verbose", "data") or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if key == "pairs":
            parts.append(shlex.quote(str(value)))
        elif value is True:
            parts.append(flag)
        elif isinstance(value, list):
            parts += [flag, *(shlex.quote(str(v)) for v in value)]
        else:
            parts += [flag, shlex.quote(str(value))]
    return " ".join(parts)


# -- mine-negatives --------------------------------------------------------------------------------
def cmd_mine(args) -> int:
    from winnow.storage import cache_root, write_json_atomic, write_lines_atomic
    from winnow.train.data import read_positives
    from winnow.train.mining import MiningConfig, mine_negatives, mining_meta

    config = config_from_args(
        MiningConfig, args,
        relative_margin=None if args.relative_margin < 0 else args.relative_margin,
        keep_ranking=not args.no_ranking,
    )
    pairs = read_positives(args.pairs, fix=not args.no_fix_text, limit=args.limit, sample=args.sample, seed=args.seed)
    corpus = []
    if args.pool:
        from winnow.corpus import read_documents

        corpus = read_documents(args.pool)
    home = Path(args.cache) if args.cache else cache_root() / "mining"
    print(f"mining {config.negatives} negatives for {len(pairs)} queries with {config.method} "
          f"(ranks {config.skip_top + 1}-{config.max_rank}, seed {config.seed})", file=sys.stderr)
    records, report = mine_negatives(pairs, home=home, corpus=corpus, config=config, progress=not args.quiet)
    n = write_lines_atomic(args.output, records)
    write_json_atomic(
        meta_path(args.output),
        mining_meta(
            config, report, pairs=str(args.pairs), pool=str(args.pool) if args.pool else None,
            command=_command(args, "mine-negatives"),
        ),
    )
    print(
        f"wrote {n} queries to {args.output}: {report.negatives} negatives, {report.short} queries short of "
        f"{config.negatives}; positive within the first {config.max_rank}: {report.positive_in_ranking}/{report.queries}; "
        f"skipped {report.skipped_margin} by margin, {report.skipped_cross_encoder} by the cross-encoder; "
        f"pool {report.pool} passages; {report.seconds:.1f} s"
    )
    return 0


# -- train reranker --------------------------------------------------------------------------------
def cmd_train_reranker(args) -> int:
    from winnow.train.card import file_digest
    from winnow.train.data import merge_by_query, read_training_file
    from winnow.train.trainer import TrainConfig, last_checkpoint, train_reranker

    config = config_from_args(
        TrainConfig, args,
        base_model=args.base,
        learning_rate=args.lr,
        fit_fusion=not args.no_fusion,
        length_buckets=not args.no_length_buckets,
    )
    if args.resume and last_checkpoint(args.output) is None:
        raise InvalidArgumentError(
            f"--resume: no checkpoint in {Path(args.output) / 'checkpoints'}; start without --resume"
        )
    files = [(Path(p), read_training_file(p)) for p in args.train]
    dev = _held_out(files[0][0], files[0][1], args.dev_queries, args.seed) if args.dev_queries else []
    if args.dev_per_file:
        dev += [e for p, examples in files if not p.name.endswith(".tsv") for e in _held_out(p, examples, args.dev_per_file, args.seed)]
    dev_files = [(Path(p), read_training_file(p)) for p in args.dev]
    dev += [e for _, examples in dev_files for e in examples]
    dev = merge_by_query(dev)
    dev_qids = {e.qid for e in dev}
    train = merge_by_query(e for _, examples in files for e in examples if e.qid not in dev_qids)
    if args.limit is not None:
        random.Random(args.seed).shuffle(train)
        train = train[: args.limit]
    used = {}
    for e in train:
        used[e.source] = used.get(e.source, 0) + 1
    card = {
        "name": args.name,
        "command": _command(args, "train", "reranker"),
        "data_files": [
            {"path": str(p), "sha256": file_digest(p), "examples": used.get(ex[0].source, 0) if ex else 0}
            for p, ex in files
        ]
        + [{"path": str(p), "sha256": file_digest(p), "examples": len(ex), "role": "dev"} for p, ex in dev_files],
        "mining": [
            {"file": str(p), **json.loads(meta_path(p).read_text(encoding="utf-8"))}
            for p, _ in files
            if meta_path(p).is_file()
        ],
    }
    print(f"training on {len(train)} examples ({', '.join(f'{k} {v}' for k, v in used.items())}), "
          f"{len(dev)} dev queries; loss {config.loss}, output {args.output}", file=sys.stderr)
    result = train_reranker(
        train, args.output, config, dev=dev, resume=args.resume, progress=not args.quiet, card=card,
        fusion_stage=_mined_stage(files[0][0]),
    )
    print(f"model: {result.model_dir} ({result.steps} steps, {result.seconds:.0f} s)")
    for k, v in sorted(result.dev_metrics.items()):
        print(f"  {k}: {v:.4f}")
    for stage, fit in (result.fusion or {}).get("first_stages", {}).items():
        d = fit["dev_ndcg@10"]
        print(f"  {stage} mix (weight {fit['weight_reranker']}): nDCG@10 {d['mix']:.4f} "
              f"(first stage {d['first_stage']:.4f}, reranker {d['reranker']:.4f})")
    return 0


def _mined_stage(path: Path):
    """The first stage a mined file's rankings came from (its meta.json), dense where unknown."""
    from winnow.types import FirstStage

    meta = meta_path(path)
    if meta.is_file():
        method = json.loads(meta.read_text(encoding="utf-8")).get("config", {}).get("method")
        if method in {s.value for s in FirstStage}:
            return FirstStage(method)
    return FirstStage.DENSE


def _held_out(path, examples, n: int, seed: int):
    """The ``n`` queries of ``examples`` (read from ``path``) that training holds out for dev, seeded: the
    same file, count and seed give the same queries in ``train reranker`` and ``train fit-fusion``."""
    from winnow.train.data import split_dev

    if not 0 < n < len(examples):
        raise InvalidArgumentError(
            f"--dev-queries {n} must be between 1 and {len(examples) - 1}: {path} has {len(examples)} queries"
        )
    return split_dev(examples, n, seed=seed)[1]


def cmd_ship(args) -> int:
    from winnow.train.ship import ship_reranker

    shipped = ship_reranker(args.model, args.output, max_length=args.max_length, reports=args.report or ())
    print(
        f"wrote {shipped.folder} ({shipped.size_bytes / 1e6:.1f} MB); int8 vs torch on check pairs: "
        f"max |diff| {shipped.max_abs_diff}, same order: {'yes' if shipped.same_order else 'NO'}"
    )
    return 0


def cmd_fit_fusion(args) -> int:
    from winnow.rerank.mix import FILENAME, merge_fusion
    from winnow.storage import write_json_atomic
    from winnow.train.data import merge_by_query, read_training_file, trained_model_folder
    from winnow.train.fusion_fit import fit_on_dev
    from winnow.types import FirstStage

    model_dir = trained_model_folder(args.model)
    score = _raw_scorer(model_dir)
    stage = FirstStage(args.first_stage)
    for p in args.dev:
        mined = _mined_stage(Path(p)) if meta_path(p).is_file() else None
        if mined is not None and mined is not stage:
            raise InvalidArgumentError(f"--dev {p} holds {mined.value} lists; the {stage.value} mix is fitted on {stage.value} lists")
    n = args.dev_per_file or args.dev_queries
    dev = merge_by_query(e for p in args.dev for e in _held_out(p, read_training_file(p), n, args.seed))
    fit = fit_on_dev(score, dev, depth=args.eval_depth)
    if fit is None:
        raise InvalidArgumentError(f"{args.dev!r} hold no first-stage rankings to fit on (mine them without --no-ranking)")
    entry = {**fit.to_json(), "dev_files": [str(p) for p in args.dev], "dev_per_file": n, "dev_seed": args.seed}
    path = model_dir / FILENAME
    existing = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    fusion = merge_fusion(existing, stage, entry)
    write_json_atomic(path, fusion)
    if (model_dir / "training.json").is_file():
        info = json.loads((model_dir / "training.json").read_text(encoding="utf-8"))
        _card_writer(model_dir)(model_dir, {**info, "fusion": fusion})
    print(f"{path}: {stage.value} weight {fit.weight} on {fit.queries} dev queries; nDCG@10 first stage "
          f"{fit.first_stage:.4f}, reranker {fit.reranker:.4f}, mix {fit.best:.4f}")
    return 0


def _card_writer(model_dir: Path):
    """How a model folder's card is written: a ColBERT folder's (it has ``colbert.json``) or a reranker's."""
    from winnow.encode.colbert import CONFIG_FILE

    if (model_dir / CONFIG_FILE).is_file():
        from winnow.train.colbert import write_colbert_card

        return write_colbert_card
    from winnow.train.card import write_card

    return write_card


def _raw_scorer(model_dir: Path):
    """What ``fit-fusion`` mixes: a ColBERT folder's MaxSim (it has ``colbert.json``), else a cross-encoder's logits."""
    from winnow.encode.colbert import CONFIG_FILE

    if (model_dir / CONFIG_FILE).is_file():
        from winnow.rerank.colbert import ColBERTReranker

        return ColBERTReranker(str(model_dir), use_mix=False).raw_scores
    from sentence_transformers import CrossEncoder

    from winnow.train.fusion_fit import cross_encoder_scores

    return cross_encoder_scores(CrossEncoder(str(model_dir), local_files_only=True))


def cmd_calibrate(args) -> int:
    from winnow.rerank.calibration import FILENAME
    from winnow.rerank.cross_encoder import CrossEncoderReranker
    from winnow.storage import write_json_atomic
    from winnow.train.calibrate import calibration_payload
    from winnow.train.card import write_card
    from winnow.train.data import merge_by_query, read_training_file

    folder = Path(args.model)
    if not (folder / "config.json").is_file():
        raise InvalidArgumentError(f"{args.model!r} is not a model folder (no config.json); give <run>/model or a shipped folder")
    by_stage: dict = {}
    for p in args.dev:
        held = _held_out(p, read_training_file(p), args.dev_per_file, args.seed)
        by_stage.setdefault(_mined_stage(Path(p)), []).extend(held)
    by_stage = {stage: merge_by_query(examples) for stage, examples in by_stage.items()}
    reranker = CrossEncoderReranker(str(folder), cache=False, use_mix=False)
    payload = calibration_payload(reranker.raw_scores, by_stage, depth=args.eval_depth, seed=args.seed)
    payload["dev_files"] = [str(p) for p in args.dev]
    write_json_atomic(folder / FILENAME, payload)
    if (folder / "training.json").is_file():
        info = json.loads((folder / "training.json").read_text(encoding="utf-8"))
        write_card(folder, {**info, "calibration": payload})
    r = payload["reranker"]
    print(f"{folder / FILENAME}: reranker {r['method']} (held-out log-loss {r['dev_log_loss']}) on {r['dev_pairs']} pairs; "
          + ", ".join(f"{k} {v['method']}" for k, v in payload["first_stages"].items()))
    print("held-out ECE of the reranker's probabilities (10 bins; each source's queries scored by a calibrator "
          "fitted without them): " + ", ".join(f"{k} {v['ece']:.4f}" for k, v in r["held_out_ece"].items()))
    return 0


def _no_reranker(args) -> int:
    raise InvalidArgumentError(
        "say what to do: winnow train reranker --train FILE --output DIR, winnow train fit-fusion MODEL --dev FILE, "
        "winnow train calibrate MODEL --dev FILE, winnow train ship MODEL --output DIR, "
        "winnow train colbert --train FILE --output DIR, or winnow train bi-encoder --train FILE --output DIR"
    )


def register(subparsers) -> None:
    from winnow.models.resolve import DEFAULT_BI_ENCODER

    s = subparsers.add_parser(
        "mine-negatives",
        help="mine hard negatives for query/positive pairs with the first stage (JSONL out)",
        description="Index the passage pool (every positive, plus --pool) into a cached collection, search each "
        "query with the first stage, and sample negatives from ranks skip-top+1..max-rank that are not the "
        "positive and not too close to its score. Same inputs and seed give the same file.",
    )
    s.add_argument("pairs", help='JSONL (or .jsonl.gz) of {"query", "positive", "negatives"?} (e.g. '
                   'msmarco-dev-small-positives.jsonl, squad_v1_train/train.jsonl.gz); given negatives join the pool')
    s.add_argument("--output", "-o", required=True, metavar="FILE", help="mined JSONL (a FILE.meta.json is written beside it)")
    s.add_argument("--pool", metavar="CORPUS", help="extra passages to mine from (BEIR folder, .jsonl, .csv, folder)")
    s.add_argument("--method", choices=["dense", "bm25", "hybrid"], default="dense")
    s.add_argument("--model", default=DEFAULT_BI_ENCODER, help="bi-encoder of the pool collection")
    s.add_argument("--skip-top", type=int, default=3, help="ranks never used as negatives (default 3)")
    s.add_argument("--max-rank", type=int, default=50, help="deepest rank used (default 50)")
    s.add_argument("--negatives", "-n", type=int, default=8, help="negatives per query (default 8)")
    s.add_argument("--relative-margin", type=float, default=0.05,
                   help="skip candidates scoring above positive*(1-margin) (default 0.05; negative: off)")
    s.add_argument("--absolute-margin", type=float, default=None, help="skip candidates scoring above positive-margin")
    s.add_argument("--sampling", choices=["random", "top"], default="random")
    s.add_argument("--cross-encoder", metavar="MODEL", help="drop candidates this cross-encoder scores near the positive")
    s.add_argument("--ce-margin", type=float, default=0.0, help="with --cross-encoder: keep if ce(neg) <= ce(pos)-margin")
    s.add_argument("--no-ranking", action="store_true", help="do not store each query's first-stage ranking")
    s.add_argument("--no-fix-text", action="store_true", help="keep the text as is (default: repair mojibake with ftfy)")
    s.add_argument("--limit", type=int, default=None, help="only the first N pairs")
    s.add_argument("--sample", type=int, default=None, metavar="N",
                   help="a seeded random N of the pairs (sources are ordered by topic: better than --limit)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--cache", metavar="DIR", help="pool collections (default $WINNOW_CACHE_DIR/mining or ~/.cache/winnow/mining)")
    s.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_mine)

    t = subparsers.add_parser("train", help="train winnow's models (reranker, colbert, bi-encoder)")
    tsub = t.add_subparsers(dest="what", metavar="WHAT")
    t.set_defaults(func=_no_reranker)
    r = tsub.add_parser(
        "reranker",
        help="fine-tune a cross-encoder reranker on mined negatives and/or WikiQA",
        description="Fine-tune a one-logit cross-encoder with sentence-transformers' trainer; evaluate on held-out "
        "training queries (reranking their first-stage lists); write <output>/model with a model card. "
        "Train only on training data: never on the evaluation sets.",
    )
    r.add_argument("--train", nargs="+", required=True, metavar="FILE", help="mined .jsonl and/or WikiQA .tsv files")
    r.add_argument("--output", "-o", required=True, metavar="DIR", help="run folder (checkpoints/, model/)")
    r.add_argument("--dev", nargs="+", default=[], metavar="FILE",
                   help="more dev files, e.g. wikiqa/dev.tsv (added to the held-out queries)")
    r.add_argument("--dev-queries", type=int, default=200,
                   help="queries of the first --train file held out for dev (default 200; 0: none)")
    r.add_argument("--dev-per-file", type=int, default=0, metavar="N",
                   help="also hold out N queries of every mined --train file (seeded; the same query mined by "
                   "several first stages is held out of all)")
    r.add_argument("--base", default="all-MiniLM-L6-v2", help="base model id or folder (default all-MiniLM-L6-v2)")
    r.add_argument("--loss", default="bce", choices=["bce", "lambda", "listnet", "ranknet", "mnrl", "cmnrl"])
    r.add_argument("--negatives", "-n", type=int, default=4, help="negatives per query used (default 4)")
    r.add_argument("--epochs", type=float, default=1.0)
    r.add_argument("--max-steps", type=int, default=-1, help="stop after N steps (overrides --epochs)")
    r.add_argument("--batch-size", type=int, default=16)
    r.add_argument("--lr", type=float, default=3e-5)
    r.add_argument("--warmup-ratio", type=float, default=0.1)
    r.add_argument("--max-length", type=int, default=256, help="tokens per query+passage pair (default 256)")
    r.add_argument("--layers", type=int, default=None, help="keep only the base model's first N layers")
    r.add_argument("--pooler-init", choices=["auto", "identity", "keep"], default="auto")
    r.add_argument("--eval-steps", type=int, default=500)
    r.add_argument("--save-steps", type=int, default=500)
    r.add_argument("--save-total-limit", type=int, default=2)
    r.add_argument("--logging-steps", type=int, default=50)
    r.add_argument("--eval-depth", type=int, default=30, help="first-stage candidates per dev query (default 30)")
    r.add_argument("--best-by", metavar="METRIC", help="keep the checkpoint best on this dev metric, e.g. "
                   "dev-wikiqa_ndcg@10 (default: the last); --save-steps must be a multiple of --eval-steps")
    r.add_argument("--limit", type=int, default=None, help="train on N examples (seeded sample)")
    r.add_argument("--no-fusion", action="store_true", help="do not fit the mix with the first stage")
    r.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                   help="auto (default): bf16 autocast where the CPU (avx512_bf16/AMX) or GPU has it, else fp32")
    r.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto (default): cuda when available")
    r.add_argument("--no-length-buckets", action="store_true",
                   help="random batches (default: rows of similar length batched together, less padding)")
    r.add_argument("--name", default="winnow reranker", help="title of the model card")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--resume", action="store_true", help="continue from the last checkpoint in <output>/checkpoints")
    r.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    r.set_defaults(func=cmd_train_reranker)

    f = tsub.add_parser(
        "fit-fusion",
        help="fit a trained reranker's mix with one first stage (fusion.json) on held-out mined queries",
        description="Hold out the same queries training held out (same count and --seed, from mined files of the "
        "first stage you will rerank), rerank their first-stage lists, and pick the z-score mixing weight by "
        "nDCG@10; writes that stage's entry of MODEL/fusion.json (the other stages' are kept) and updates the "
        "model card. Never point it at a test set.",
    )
    f.add_argument("model", help="trained model folder (<run>/model)")
    f.add_argument("--dev", required=True, nargs="+", metavar="FILE",
                   help="mined .jsonl files (all of --first-stage) whose held-out queries to fit on")
    f.add_argument("--first-stage", choices=["dense", "bm25", "hybrid"], default="dense",
                   help="the first stage these lists come from; its mix is fitted and written (default dense)")
    f.add_argument("--dev-queries", type=int, default=200, help="queries held out of each file, as in training (default 200)")
    f.add_argument("--dev-per-file", type=int, default=0, metavar="N", help="the same as --dev-queries (as train reranker names it)")
    f.add_argument("--eval-depth", type=int, default=30, help="first-stage candidates per query (default 30)")
    f.add_argument("--seed", type=int, default=0, help="the training run's seed (default 0)")
    f.set_defaults(func=cmd_fit_fusion)

    c = tsub.add_parser(
        "calibrate",
        help="fit calibrated relevance probabilities (calibration.json) on held-out mined queries",
        description="Score the held-out queries' first-stage lists (the same queries training held out: same count "
        "and --seed) and fit, by held-out log-loss, Platt scaling or isotonic regression to the reranker's logits "
        "and to each first stage's scores. Calibrate the folder that ships (its logits are the ones searches see: "
        "int8 moves them). Never point it at a test set.",
    )
    c.add_argument("model", help="model folder: <run>/model or a shipped (ONNX) folder")
    c.add_argument("--dev", required=True, nargs="+", metavar="FILE", help="mined .jsonl files (dense, bm25, hybrid lists)")
    c.add_argument("--dev-per-file", type=int, default=60, metavar="N", help="queries held out of each file, as in training")
    c.add_argument("--eval-depth", type=int, default=20, help="first-stage candidates per query")
    c.add_argument("--seed", type=int, default=0, help="the training run's seed")
    c.set_defaults(func=cmd_calibrate)

    p = tsub.add_parser(
        "ship",
        help="pack a trained reranker as one int8 ONNX file plus its tokenizer, card and fusion (tens of MB)",
        description="Export <run>/model to ONNX, quantize it to int8 (portable config), copy the tokenizer, model "
        "card and fusion.json, check the scores against torch, and write it to OUTPUT (e.g. "
        "winnow/shipped/<name>, where model resolution finds it by <name>).",
    )
    p.add_argument("model", help="trained model folder (<run>/model)")
    p.add_argument("--output", "-o", required=True, metavar="DIR", help="the ONNX-only model folder to write")
    p.add_argument("--max-length", type=int, default=None, help="tokens per pair the shipped model reads (default: the model's)")
    p.add_argument("--report", nargs="+", metavar="REPORT_JSON",
                   help="winnow eval report.json files of this model on test sets, shown in the shipped model card")
    p.set_defaults(func=cmd_ship)

    from winnow.train.cli_late import register as register_late  # train colbert, train bi-encoder

    register_late(tsub)
