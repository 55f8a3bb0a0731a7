"""``winnow serve``: the HTTP API on uvicorn. Imports FastAPI and the models only when run."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_PORT = 8080


def register(subparsers) -> None:
    s = subparsers.add_parser(
        "serve",
        help="serve collections, search, rerank and embeddings over HTTP (OpenAPI at /docs)",
        description="Serve winnow over HTTP. Binds 127.0.0.1 unless told otherwise; any other host needs an API key.",
    )
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 picks a free one)")
    s.add_argument("--data", dest="serve_data", metavar="DIR", help="collections folder (default: winnow --data, "
                   "$WINNOW_HOME or ~/.local/share/winnow)")
    s.add_argument("--api-key", default=None, help="require this key (Authorization: Bearer KEY); default "
                   "$WINNOW_API_KEY. Required when the host is not loopback")
    s.add_argument("--rerank-model", action="append", default=None, metavar="MODEL",
                   help="cross-encoder to serve besides the rerankers winnow ships (repeatable; the first is the "
                   "default; default: winnow's default reranker, else the one it ships)")
    s.add_argument("--embed-model", action="append", default=None, metavar="MODEL",
                   help="bi-encoder to serve on /v1/embeddings (repeatable; default all-MiniLM-L6-v2)")
    s.add_argument("--rerank-max-length", type=int, default=None,
                   help="reranker tokens per pair (default: the model's own, as the library and CLI use)")
    s.add_argument("--max-documents", type=int, default=1000, help="documents/texts per request (default 1000)")
    s.add_argument("--max-chars", type=int, default=20_000,
                   help="characters per query, rerank document or embedding input (default 20000)")
    s.add_argument("--max-document-chars", type=int, default=None,
                   help="characters per collection document (default 1000000, as winnow index)")
    s.add_argument("--max-body-bytes", type=int, default=8 * 1024 * 1024, help="bytes per request body (default 8 MiB)")
    s.add_argument("--no-batching", action="store_true", help="every request calls the model itself (for comparison)")
    s.add_argument("--batch-wait-ms", type=float, default=5.0, help="how long a request waits for others (default 5)")
    s.add_argument("--batch-tokens", type=int, default=32_768, help="estimated tokens per model call (default 32768)")
    s.add_argument("--batch-workers", type=int, default=None, help="model calls running at once (default: one per core)")
    s.add_argument("--model-threads", type=int, default=1,
                   help="threads inside one model call (default 1; 0 = every core, lower latency when idle)")
    s.add_argument("--reports", metavar="DIR", default=None,
                   help="a winnow eval output folder, or a folder of them, to show at GET /reports and on the page")
    s.add_argument("--port-file", metavar="FILE", help="write the bound port here once serving (with --port 0)")
    s.set_defaults(func=cmd_serve)


def settings_from_args(args: argparse.Namespace):
    from winnow.collection import default_home
    from winnow.models.resolve import DEFAULT_BI_ENCODER, DEFAULT_RERANKER
    from winnow.serve.settings import Batching, Limits, ServeSettings, api_key_from_env

    home = args.serve_data or getattr(args, "data", None)
    return ServeSettings(
        home=Path(home) if home else default_home(),
        host=args.host,
        port=args.port,
        api_key=args.api_key if args.api_key is not None else api_key_from_env(),
        rerank_models=tuple(args.rerank_model or ((DEFAULT_RERANKER,) if DEFAULT_RERANKER else ())),
        embed_models=tuple(args.embed_model or (DEFAULT_BI_ENCODER,)),
        rerank_max_length=args.rerank_max_length,
        model_threads=args.model_threads or None,
        reports=Path(args.reports) if args.reports else None,
        limits=Limits(
            max_documents=args.max_documents, max_chars=args.max_chars, max_body_bytes=args.max_body_bytes,
            **({"max_document_chars": args.max_document_chars} if args.max_document_chars else {}),
        ),
        batching=Batching(
            enabled=not args.no_batching,
            max_wait_ms=args.batch_wait_ms,
            max_tokens=args.batch_tokens,
            **({"workers": args.batch_workers} if args.batch_workers else {}),
        ),
    )


def cmd_serve(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)  # refuses a non-loopback host without a key, before anything binds
    from winnow.serve.server import run

    run(settings, port_file=Path(args.port_file) if args.port_file else None)
    return 0
