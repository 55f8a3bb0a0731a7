"""The ``winnow`` command. Each subcommand imports its code only when it runs, so ``--help`` is instant."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from pathlib import Path

from winnow.errors import WinnowError

log = logging.getLogger("winnow")


def _home(args) -> Path | None:
    return Path(args.data) if args.data else None


# -- index ---------------------------------------------------------------------------------------
def cmd_index(args) -> int:
    from winnow.collection import Collection
    from winnow.corpus import read_documents

    docs = read_documents(
        args.path,
        format=args.format,
        id_field=args.id_field,
        text_field=args.text_field,
        title_field=args.title_field,
    )
    print(f"read {len(docs)} documents from {args.path}", file=sys.stderr)
    on_ray = contextlib.nullcontext(None)
    if args.ray is not None:  # encode on a Ray cluster; the collection commits as always
        from winnow.scale.ray_encode import ray_encoder_for

        on_ray = ray_encoder_for(args.ray, home=_home(args), collection=args.collection, backend=args.backend)
    with on_ray as encoder_for, Collection.open_or_create(
        args.collection, home=_home(args), model=args.model, window=args.window, overlap=args.overlap,
        encoder_for=encoder_for, store=args.store, late_interaction=args.late_interaction, compression=args.compression,
    ) as col:
        if args.store is not None and col.info().store != args.store.split(":", 1)[0]:
            raise WinnowError(f"collection {args.collection!r} already exists with its first stage in "
                              f"{col.info().store!r}; --store applies to new collections only")
        _check_late_matches(col, args.late_interaction, args.compression)
        report = col.use_backend(args.backend).add(
            docs, upsert=not args.no_upsert, progress=not args.quiet, max_chars=args.max_document_chars
        )
        info = col.info()
    print(
        f"collection {info.name!r}: +{report.added} added, {report.updated} updated, {report.unchanged} unchanged; "
        f"{report.chunks_encoded} chunks encoded in {report.seconds:.1f} s; now {info.documents} documents, "
        f"{info.chunks} chunks ({info.path})"
    )
    if report.updated:
        print(f"note: {report.updated} document(s) had ids already in the collection and replaced the stored "
              f"version (--no-upsert refuses them instead)", file=sys.stderr)
    return 0


def _check_late_matches(col, model: str | None, compression: str | None) -> None:
    """An existing collection given --late-interaction/--compression must already keep those token vectors."""
    if model is None and compression is None:
        return
    from winnow.collection_files import same_model

    have = col.late_settings
    if have is None:
        raise WinnowError(f"collection {col.name!r} was created without late interaction; --late-interaction applies to "
                          f"new collections: index into a new one (--collection NEW --late-interaction MODEL)")
    if model is not None and not same_model({"name": have.model, "fingerprint": have.fingerprint}, model):
        raise WinnowError(f"collection {col.name!r} keeps token vectors of {have.model!r}, not {model!r}; "
                          f"index into a new collection for {model!r}")
    if compression is not None and have.compression.value != compression:
        raise WinnowError(f"collection {col.name!r} stores token vectors as {have.compression.value}, not {compression}; "
                          f"--compression applies to new collections")


# -- search --------------------------------------------------------------------------------------
def cmd_search(args) -> int:
    from winnow.collection import Collection
    from winnow.rerank.options import budget_from_args

    reranker = None
    if args.late_rerank and (args.rerank is not None or args.cascade):
        raise WinnowError("--late-rerank reranks by the collection's stored token vectors: leave out --rerank and --cascade")
    if args.rerank is not None:
        from winnow.models.resolve import default_reranker
        from winnow.rerank.cross_encoder import CrossEncoderReranker

        from winnow.rerank.options import reading_from_args

        reranker = CrossEncoderReranker(
            args.rerank or default_reranker(), max_length=args.max_length, sigmoid=args.sigmoid, backend=args.backend,
            reading=reading_from_args(args),
        )
        if args.cascade:
            from winnow.rerank.cascade import with_cascade

            reranker = with_cascade(reranker, args.cascade, first_depth=args.depth, depth=args.cascade_depth)
    elif args.max_windows > 1 or args.budget_ms is not None or args.cascade:
        raise WinnowError("--max-windows, --budget-ms and --cascade set how the reranker reads: add --rerank")
    with Collection.open(args.collection, home=_home(args)) as col:
        col.use_backend(args.backend)
        if args.late_rerank:
            reranker = col.late_reranker()
        load_ms = _load_models(col, args.method, reranker)
        asked = args.probabilities or args.min_probability is not None
        ranking = col.search(
            args.query,
            method=args.method,
            top_k=args.top_k,
            depth=args.depth,
            reranker=reranker,
            dense_index=args.dense_index,
            budget=budget_from_args(args),
            first_stage_calibrator=col.first_stage_calibrator(args.method) if asked and reranker is None else None,
        )
    if args.min_probability is not None:
        from winnow.rerank.calibration import keep_probable

        ranking = keep_probable(ranking, args.min_probability)
    if args.json:
        reranker_name = reranker.name if reranker is not None else None
        print(json.dumps({**ranking_to_json(ranking), "reranker": reranker_name, "model_load_ms": load_ms},
                         indent=2, ensure_ascii=False))
    else:
        print(format_ranking(ranking, method=args.method, reranked=reranker is not None, top_k=args.top_k,
                             probabilities=args.probabilities))
        if load_ms:
            print(f"(loading the indexes and models took {load_ms:.0f} ms before that: once per process, not counted above)")
    return 0


def _load_models(col, method: str, reranker) -> float:
    """Load the indexes and models a search will use, so that its timings are the search's own;
    milliseconds taken."""
    start = time.perf_counter()
    col.warm_up(method)
    if reranker is not None:
        reranker.warm_up()
    return round((time.perf_counter() - start) * 1000.0, 1)


def ranking_to_json(ranking) -> dict:
    return {
        "query": ranking.query,
        "timings_ms": {k: round(v, 3) for k, v in ranking.timings_ms.items()},
        "hits": [h.to_json() for h in ranking.hits],
    }


def movement(hit, top_k: int) -> str:
    """How a hit moved between the first stage and the final list: up, down, same, or new to the top k."""
    if hit.first_stage_rank is None:
        return ""
    if hit.first_stage_rank > top_k:
        return "new"
    delta = hit.first_stage_rank - hit.rank
    return "=" if delta == 0 else (f"up {delta}" if delta > 0 else f"down {-delta}")


def format_ranking(ranking, *, method: str, reranked: bool, top_k: int, width: int = 72, probabilities: bool = False) -> str:
    lines = [f"query: {ranking.query!r}   first stage: {method}" + ("   reranked" if reranked else "")]
    if not ranking.hits:
        lines.append("(no results)")
    shown = probabilities and any(h.probability is not None for h in ranking.hits)
    header = f"{'#':>3}  {'score':>8}  " + (f"{'P(rel)':>6}  " if shown else "") + f"{'1st stage':>9}  {'change':<8}  document"
    lines.append(header)
    for h in ranking.hits:
        snippet = (f"{h.title}: {h.text}" if h.title else h.text).replace("\n", " ")
        if len(snippet) > width:
            snippet = snippet[: width - 1] + "…"
        first = f"#{h.first_stage_rank}" if h.first_stage_rank is not None else "-"
        change = movement(h, top_k) if reranked else ""
        prob = (f"{h.probability:>6.3f}  " if h.probability is not None else f"{'-':>6}  ") if shown else ""
        lines.append(f"{h.rank:>3}  {h.score:>8.4f}  {prob}{first:>9}  {change:<8}  [{h.doc_id}] {snippet}")
    if reranked:
        moved = [h for h in ranking.hits if movement(h, top_k) not in ("=", "")]
        lines.append(f"changes in ranking: {len(moved)} of {len(ranking.hits)} hits moved")
    total = sum(ranking.timings_ms.values())
    parts = " · ".join(f"{k} {v:.1f} ms" for k, v in ranking.timings_ms.items())
    lines.append(f"time: {parts} · total {total:.1f} ms")
    return "\n".join(lines)


# -- collections ---------------------------------------------------------------------------------
def cmd_collections(args) -> int:
    from winnow.collection import default_home, list_collections

    infos = list_collections(_home(args))
    if args.json:
        print(json.dumps([{**i.__dict__, "path": str(i.path)} for i in infos], indent=2))
        return 0
    if not infos:
        print(f"no collections in {_home(args) or default_home()}")
        return 0
    print(f"{'name':<20} {'documents':>9} {'chunks':>8}  {'first stage':<12} {'model':<40} updated")
    for i in infos:
        if i.problem is not None:
            print(f"{i.name:<20} {'DAMAGED':>9}  {i.problem}")
            continue
        where = f"{i.segments} segment{'s' if i.segments != 1 else ''}" if i.store == "local" else i.store
        print(f"{i.name:<20} {i.documents:>9} {i.chunks:>8}  {where:<12} {i.model:<40} {i.updated}")
        if i.late_interaction:
            print(f"{'':<20} {'':>9} {'':>8}  {'+ late':<12} {i.late_interaction}")
    return 0


def cmd_delete_docs(args) -> int:
    from winnow.collection import Collection

    ids = list(args.ids)
    if args.ids_file:
        try:
            text = Path(args.ids_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise WinnowError(f"cannot read ids file {args.ids_file!r}: {exc}") from None
        ids += [line.strip() for line in text.splitlines() if line.strip()]
    if not ids:
        raise WinnowError("no document ids given: pass ids as arguments or --ids-file FILE")
    with Collection.open(args.collection, home=_home(args)) as col:
        report = col.delete(ids)
        n = len(col)
    print(f"deleted {report.deleted} documents from {args.collection!r}; {n} remain")
    if report.missing:
        print(f"not found ({len(report.missing)}): {', '.join(report.missing[:20])}", file=sys.stderr)
    return 0


def cmd_drop(args) -> int:
    from winnow.collection import drop_collection

    path = drop_collection(args.collection, home=_home(args))
    print(f"dropped collection {args.collection!r} ({path})")
    return 0


# -- parser --------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from winnow.limits import MAX_DOCUMENT_CHARS

    data_help = "collections folder (default: $WINNOW_HOME or ~/.local/share/winnow)"
    p = argparse.ArgumentParser(prog="winnow", description="Two-stage search: a fast first stage, then a reranker.")
    p.add_argument("--data", metavar="DIR", help=data_help)
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # --data is accepted after the subcommand too (winnow search C q --data DIR), as serve takes it
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data", metavar="DIR", default=argparse.SUPPRESS, help=data_help)
    fmt = _DefaultsShown

    def command(name: str, **kw):
        return sub.add_parser(name, parents=[common], formatter_class=fmt, **kw)

    s = command("index", help="read a corpus and add it to a collection (created if new)")
    s.add_argument("path", help="BEIR folder or corpus.jsonl, a .jsonl/.csv file, or a folder of .txt/.md files")
    s.add_argument("--collection", "-c", required=True, metavar="NAME", help="collection to add to (created if new)")
    s.add_argument("--format", choices=["beir", "jsonl", "csv", "folder"], help="corpus format (default: detected from the path)")
    s.add_argument("--id-field", default="_id", help="field holding each document's id (jsonl, csv, beir)")
    s.add_argument("--text-field", default="text", help="field holding the text")
    s.add_argument("--title-field", default="title", help="field holding the title (optional in the data)")
    s.add_argument("--model", default=None, help="bi-encoder id or path (new collections; default all-MiniLM-L6-v2)")
    s.add_argument("--window", type=int, default=256, help="chunk window in tokens (new collections)")
    s.add_argument("--overlap", type=int, default=32, help="chunk overlap in tokens (new collections)")
    s.add_argument("--store", default=None, metavar="STORE",
                   help="where a new collection's first stage lives: local segments (default), milvus-lite:PATH "
                   "(embedded Milvus in one file) or milvus://HOST:PORT (a Milvus server)")
    s.add_argument("--late-interaction", metavar="MODEL", default=None,
                   help="a new collection also keeps every chunk's ColBERT token vectors from MODEL (winnow train colbert; "
                   "a folder or shipped name), for --method late and --late-rerank (docs/late-interaction.md)")
    s.add_argument("--compression", choices=["residual-2", "residual-4", "int8", "float16"], default=None,
                   help="with --late-interaction: how token vectors are stored (default residual-2: 26 bytes a token at 96 dims)")
    s.add_argument("--no-upsert", action="store_true",
                   help="refuse documents whose id is already in the collection (default: replace them, and say so)")
    s.add_argument("--max-document-chars", type=int, default=MAX_DOCUMENT_CHARS,
                   help="refuse a document longer than this (the server's limit too)")
    s.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    s.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="encode across the workers of a Ray cluster (HOST:6379, ray://HOST:10001, auto); "
                   "--ray alone starts a local one (needs the ray extra; docs/scale.md)")
    _add_backend_option(s)
    s.set_defaults(func=cmd_index)

    s = command("search", help="search a collection, optionally reranking the first stage's candidates")
    s.add_argument("collection", metavar="NAME", help="collection to search")
    s.add_argument("query", help="the query text")
    s.add_argument("--method", choices=["bm25", "dense", "hybrid", "late"], default="hybrid",
                   help="first stage: BM25, dense (bi-encoder), both fused by reciprocal rank, or late: MaxSim over "
                   "the stored ColBERT token vectors (collections indexed with --late-interaction)")
    s.add_argument("--rerank", metavar="MODEL", nargs="?", const="",
                   help="rerank with this cross-encoder (name, id or path); --rerank alone: winnow's default "
                   "reranker; omit for the first stage only")
    s.add_argument("--late-rerank", action="store_true",
                   help="rerank by exact MaxSim over the collection's stored token vectors (collections indexed with "
                   "--late-interaction; only the query is encoded)")
    s.add_argument("--depth", type=int, default=100, help="candidates the reranker reads")
    s.add_argument("--top-k", type=int, default=10, help="hits to show")
    s.add_argument("--max-length", type=int, default=None, help="reranker tokens per pair (default: the model's)")
    _add_backend_option(s)
    s.add_argument("--sigmoid", action="store_true",
                   help="show reranker scores in 0..1 (the order is the same: ranking uses the logits)")
    s.add_argument("--probabilities", action="store_true",
                   help="show each hit's calibrated probability of relevance (rerankers that ship calibration.json)")
    s.add_argument("--min-probability", type=float, default=None, metavar="P",
                   help="keep only hits at least this likely relevant (0..1; needs a calibrated reranker)")
    s.add_argument("--dense-index", choices=["auto", "exact", "hnsw"], default="auto",
                   help="dense search: exact, or auto/hnsw: the HNSW graphs of segments of 20,000+ chunks, exact elsewhere")
    s.add_argument("--json", action="store_true", help="print the ranking as JSON")
    from winnow.rerank.options import add_rerank_options

    add_rerank_options(s)
    s.set_defaults(func=cmd_search)

    s = command("collections", help="list collections")
    s.add_argument("--json", action="store_true", help="print the list as JSON")
    s.set_defaults(func=cmd_collections)

    s = command("delete-docs", help="delete documents from a collection by id")
    s.add_argument("collection", metavar="NAME", help="collection to delete from")
    s.add_argument("ids", nargs="*", metavar="ID", help="document ids")
    s.add_argument("--ids-file", metavar="FILE", help="a file with one id per line")
    s.set_defaults(func=cmd_delete_docs)

    s = command("drop", help="delete a whole collection (its folder and every index)")
    s.add_argument("collection", metavar="NAME", help="collection to delete")
    s.set_defaults(func=cmd_drop)

    for register in _extensions():
        register(sub)
    return p


class _DefaultsShown(argparse.HelpFormatter):
    """Help that shows each option's default, unless it has none (None/False) or the help already says it."""

    def _get_help_string(self, action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def _add_backend_option(parser) -> None:
    parser.add_argument(
        "--backend",
        choices=["auto", "torch", "onnx", "onnx-int8"],
        default="auto",
        help="model runtime: torch, ONNX Runtime fp32, or ONNX Runtime int8 (default auto: fastest that keeps quality here)",
    )


def _extensions():
    """Subcommands living beside their code (eval, serve, train ...): each module registers its own."""
    import importlib

    for module in ("winnow.cli_maintain", "winnow.evaluate.cli", "winnow.serve.cli", "winnow.train.cli", "winnow.models.cli",
                   "winnow.scale.cli"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        yield mod.register


def configure_logging(verbosity: int = 0) -> None:
    """Logging for the command line (never done on import). The level is set on the handler too,
    because some libraries (bm25s) force their own loggers to DEBUG."""
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbosity, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setLevel(level)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return args.func(args)
    except WinnowError as exc:
        print(f"winnow: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("winnow: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
