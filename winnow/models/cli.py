"""``winnow models``: what runs offline here, with measured quality and speed, to pick by."""

from __future__ import annotations

import json


def cmd_models(args) -> int:
    from winnow.models.catalog import TEST_SETS, cpu_line, list_models, measure, remember

    entries = list_models()
    if args.measure:
        from dataclasses import replace

        measured = []
        for e in entries:
            speed = measure(e)
            remember(e.name, speed)
            measured.append(replace(e, speed=speed))
        entries = measured
    if args.json:
        print(json.dumps([e.to_json() for e in entries], indent=2))
        return 0
    header = ["kind", "name", "source", "MB", *(f"{s} nDCG@10" for s in TEST_SETS), "speed", "measured on"]
    rows = []
    for e in entries:
        name = e.name + (" (default)" if e.default else "")
        quality = [f"{e.quality[s]:.4f}" if s in e.quality else "-" for s in TEST_SETS]
        speed = f"{e.speed.value:,.0f} {e.speed.unit} ({e.speed.backend})" if e.speed else "-"
        rows.append([e.kind.value, name, e.source.value, f"{e.size_bytes / 1e6:.0f}", *quality, speed,
                     e.speed.cpu if e.speed else "-"])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    print(f"\nnDCG@10: rerankers rerank the dense top 100 (late-interaction models: by MaxSim over stored token "
          f"vectors, with their fitted dense mix), bi-encoders are the dense first stage "
          f"(winnow eval on the MS MARCO TREC DL and DBpedia-Entity test subsets, docs/reranker.md). This machine: {cpu_line()}.")
    if not args.measure:
        print("Speeds are from each model's card unless measured here: `winnow models --measure` times them on this CPU.")
    return 0


def register(subparsers) -> None:
    s = subparsers.add_parser(
        "models",
        help="list the models that run offline here, with their measured quality and speed",
        description="Rerankers winnow ships, bi-encoders bundled in installed packages, and models already in the "
        "Hugging Face cache: each with nDCG@10 on the test sets from its card and its speed (pairs/s or docs/s) "
        "with the CPU it was measured on.",
    )
    s.add_argument("--measure", action="store_true", help="time every model on this CPU now (a few seconds each)")
    s.add_argument("--json", action="store_true", help="print the list as JSON")
    s.set_defaults(func=cmd_models)
