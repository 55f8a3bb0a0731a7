"""``winnow optimize``, ``winnow check`` and ``winnow repair``: keeping a collection's files in shape."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict


def register(sub) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data", metavar="DIR", default=argparse.SUPPRESS,
                        help="collections folder (default: $WINNOW_HOME or ~/.local/share/winnow)")
    common.add_argument("collection", metavar="NAME", help="the collection")
    common.add_argument("--json", action="store_true", help="print the report as JSON")

    s = sub.add_parser("optimize", parents=[common],
                       help="merge a collection's segments into one and purge deleted chunks (searches go on meanwhile)")
    s.set_defaults(func=cmd_optimize)
    s = sub.add_parser("check", parents=[common],
                       help="read every file of a collection and report what is damaged (exit 1 if anything is)")
    s.set_defaults(func=cmd_check)
    s = sub.add_parser("repair", parents=[common],
                       help="rebuild a damaged collection's manifest and indexes from its store")
    s.add_argument("--backend", choices=["auto", "torch", "onnx", "onnx-int8"], default="auto",
                   help="bi-encoder runtime for chunks whose vectors were lost")
    s.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_repair)


def _path(args):
    from winnow.cli import _home
    from winnow.collection import check_name, default_home
    from winnow.collection_files import MANIFEST
    from winnow.errors import CollectionNotFoundError

    home = _home(args) or default_home()
    path = home / check_name(args.collection)
    if not (path / MANIFEST).exists() and not (path / "store.sqlite").exists():
        raise CollectionNotFoundError(f"no collection named {args.collection!r} in {home}")
    return path


def _print(args, report, text: str) -> None:
    if args.json:
        print(json.dumps(asdict(report), indent=2, default=str))
    else:
        print(text)


def cmd_optimize(args) -> int:
    from winnow.cli import _home
    from winnow.collection import Collection

    with Collection.open(args.collection, home=_home(args)) as col:
        r = col.optimize()
    _print(args, r, f"{args.collection}: {r.segments_before} segment(s) -> {r.segments_after}, {r.rows_written} chunks "
                    f"written, {r.tombstones_purged} deleted chunks purged, in {r.seconds:.1f} s (generation {r.generation})")
    return 0


def cmd_check(args) -> int:
    from winnow.collection_check import check_collection

    report = check_collection(_path(args))
    lines = [f"{args.collection}: ok"] if report.ok else [f"{args.collection}: damaged"] + [f"  - {p}" for p in report.problems]
    _print(args, report, "\n".join(lines))
    return 0 if report.ok else 1


def cmd_repair(args) -> int:
    from winnow.collection_check import repair_collection

    r = repair_collection(_path(args), backend=args.backend, progress=not args.quiet)
    _print(args, r, f"{args.collection}: rebuilt from its store: {r.chunks} chunks ({r.vectors_reused} vectors reused, "
                    f"{r.vectors_encoded} encoded again){', manifest rebuilt' if r.manifest_rebuilt else ''}, "
                    f"in {r.seconds:.1f} s (generation {r.generation})")
    return 0
