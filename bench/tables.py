"""Markdown for a bench result: the side-by-side table with ratio columns, and the scaling table."""

from __future__ import annotations

NAMES = {"seed": "seed notebook", "st": "sentence-transformers recipe", "winnow": "winnow"}


def _num(x: float | None) -> str:
    if x is None:
        return "–"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def cell(s: dict | None) -> str:
    if not s:
        return "n/a"
    if len(s["runs"]) == 1:
        return _num(s["median"])
    return f"{_num(s['median'])} ({_num(s['min'])}–{_num(s['max'])})"


def ratio(x: float | None) -> str:
    return "" if x is None else f"{x:.2f}×"


def pipeline_table(section: dict, result: dict) -> list[str]:
    cfg = result["config"]
    out = [
        "## winnow beside the seed notebook and the sentence-transformers recipe",
        "",
        f"{cfg['docs']:,} msmarco passages searched ({cfg['encode_docs']:,} encoded per run for the corpus rows), "
        f"{cfg['queries']} queries one at a time, top-{cfg['depth']} candidates reranked to top-{cfg['top_k']}; each cell: median over {cfg['repeats']} run(s) (min–max). Ratios are winnow / peer "
        "(medians): below 1 is better for times and memory, above 1 for throughput.",
        "",
        "| figure | better | " + " | ".join(NAMES.values()) + " | winnow/seed | winnow/ST |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for key, meta in section["labels"].items():
        fig = section["figures"][key]
        r = section["ratios"].get(key, {})
        out.append(
            f"| {meta['label']} | {meta['better']} | "
            + " | ".join(cell(fig.get(name)) for name in NAMES)
            + f" | {ratio(r.get('winnow/seed'))} | {ratio(r.get('winnow/st'))} |"
        )
    out += ["", "Implementations:", ""]
    backends = section.get("backends", {})
    for name, text in section["implementations"].items():
        b = backends.get(name) or {}
        on = f" (bi-encoder on {b.get('bi_encoder')}, cross-encoder on {b.get('cross_encoder')})" if b else ""
        out.append(f"- {NAMES[name]}: {text}{on}")
    agree = section.get("top10_agreement", {})
    if agree:
        out += ["", "Top-10 agreement of the final lists (share of ids in common, last run): "
                + "; ".join(f"{k} {v:.2f}" for k, v in agree.items())]
    return out


def scaling_table(section: dict) -> list[str]:
    out = [
        "## First-stage scaling: exact vs HNSW",
        "",
        section["note"],
        "",
        "| documents | exact p50 / p95 ms | exact MB | HNSW build s | HNSW p50 / p95 ms | HNSW MB | HNSW recall@100 "
        "| ST semantic_search p50 / p95 ms | ST MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    notes = []
    for row in section["rows"]:
        cells = [f"{row['n']:,}"]
        for kind in ("exact", "hnsw", "semantic_search"):
            r = row.get(kind) or {"skipped": "not run"}
            if "skipped" in r:
                width = {"exact": 2, "hnsw": 4, "semantic_search": 2}[kind]
                cells += ["skipped"] + [""] * (width - 1)
                notes.append(f"{row['n']:,} {kind}: {r['skipped']}")
                continue
            lat = f"{_num(r['p50_ms'])} / {_num(r['p95_ms'])}"
            if kind == "hnsw":
                cells += [_num(r["build_s"]), lat, _num(r["index_rss_mb"]),
                          f"{r['recall']:.3f}" if r.get("recall") is not None else "–"]
            else:
                cells += [lat, _num(r["index_rss_mb"])]
        out.append("| " + " | ".join(cells) + " |")
    if notes:
        out += ["", "Skipped: " + "; ".join(notes) + "."]
    return out


def render(result: dict, optional_modules=()) -> str:
    env = result["environment"]
    during = env.get("loadavg_during")
    load = (f"1-minute load average {during['median']:.1f} (median of {len(during['runs'])} samples, "
            f"{during['min']:.1f}–{during['max']:.1f})" if during else
            f"load average {env['loadavg_start'][0]:.1f} at start, {env['loadavg_end'][0]:.1f} at end")
    out = [
        f"# winnow bench, {result['date']}",
        "",
        f"Command: `{result['command']}` ({result['seconds'] / 60:.0f} min). Machine: {env['cpu']}, {env['cores']} cores "
        f"({load}: a shared machine, so read the ratios, not the absolute times); torch {env.get('torch')}, sentence-transformers "
        f"{env.get('sentence-transformers')}, {', '.join(f'{k}={v}' for k, v in env['worker_env'].items())}.",
        "",
        f"Reranker: {result['cross_encoder']}.",
        "",
    ]
    sections = result["sections"]
    for name, section in sections.items():
        if "error" in section:
            out += [f"## {name}", "", f"Section failed: {section['error']}", ""]
    if "pipeline" in sections and "error" not in sections["pipeline"]:
        out += pipeline_table(sections["pipeline"], result) + [""]
    if "scaling" in sections and "error" not in sections["scaling"]:
        out += scaling_table(sections["scaling"]) + [""]
    for mod in optional_modules:
        name = getattr(mod, "SECTION", mod.__name__.rsplit(".", 1)[-1])
        if name in sections and "error" not in sections[name] and hasattr(mod, "markdown"):
            out += [mod.markdown(sections[name]), ""]
    return "\n".join(out)
