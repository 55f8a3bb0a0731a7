"""Writing an :class:`~winnow.evaluate.runner.EvalReport`: terminal table, report.json, TREC run files,
a markdown table and a quality-against-latency plot. Every file is written to a temporary name and
moved into place."""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import re
from pathlib import Path

from winnow.evaluate.runner import EvalReport, MethodResult
from winnow.storage import replacing, write_text_atomic

log = logging.getLogger(__name__)

RUNS_DIR = "runs"


def _write_text(path: Path, text: str) -> None:
    write_text_atomic(path, text)


def run_file_name(method: str) -> str:
    """``dense>rerank`` -> ``dense-rerank.trec``."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", method) + ".trec"


# -- TREC run files --------------------------------------------------------------------------------


def format_run(run, tag: str) -> str:
    """``qid Q0 docid rank score tag`` lines, ranks 1-based in the given order."""
    lines = []
    tag = re.sub(r"\s+", "_", tag)
    for qid, hits in run.items():
        for rank, (doc_id, score) in enumerate(hits, start=1):
            if any(c.isspace() for c in qid + doc_id):
                log.warning("id with whitespace cannot be written to a TREC run: %r / %r", qid, doc_id)
            lines.append(f"{qid} Q0 {doc_id} {rank} {float(score)!r} {tag}")  # repr: exact round trip
    return "\n".join(lines) + ("\n" if lines else "")


def write_run(path: Path, run, tag: str) -> Path:
    _write_text(Path(path), format_run(run, tag))
    return Path(path)


# -- report.json -----------------------------------------------------------------------------------


def _num(x: float | None, digits: int = 6):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    return round(float(x), digits)


def report_to_json(report: EvalReport) -> dict:
    def method(m: MethodResult) -> dict:
        return {
            "method": m.method,
            "run_file": f"{RUNS_DIR}/{run_file_name(m.method)}",
            "metrics": {k: _num(v) for k, v in m.metrics.items()},
            "latency_ms": {
                stage: {"p50": _num(v.p50, 3), "p95": _num(v.p95, 3), "mean": _num(v.mean, 3)}
                for stage, v in m.latency_ms.items()
            },
            "queries_without_results": m.no_results,
            "calibration": None if m.calibration is None else {
                "ece_10_bins": _num(m.calibration.ece), "hits": m.calibration.pairs,
                "reliability": [{"mean_probability": _num(c), "fraction_relevant": _num(f), "hits": n}
                                for c, f, n in m.calibration.bins],
            },
            "significance": {
                metric: {
                    "baseline": report.baseline,
                    "test": "paired randomization (sign flip), two-sided",
                    "n": t.n,
                    "mean_difference": _num(t.mean_difference),
                    "p": _num(t.p_randomization),
                    "p_exact": t.exact,
                    "p_paired_ttest": _num(t.p_ttest),
                }
                for metric, t in m.tests.items()
            },
            "per_query": {metric: {q: _num(v) for q, v in values.items()} for metric, values in m.per_query.items()},
        }

    c = report.corpus
    return {
        "dataset": report.dataset,
        "dataset_path": report.dataset_path,
        "split": report.split,
        "queries": report.queries,
        "judged_queries": report.judged,
        "evaluated_queries": report.judged,
        "metrics": list(report.metrics),
        "rel": report.rel,
        "rerank_depth": report.depth,
        "first_stage_depth": report.run_depth,
        "batch_size": report.batch_size,
        "latency_note": (
            "per query, one query at a time" if report.batch_size == 1
            else f"amortized: batches of {report.batch_size} queries, batch time / batch size"
        ),
        "reranker": report.reranker,
        "corpus": {
            "cache": c.name,
            "path": str(c.path),
            "model": c.model,
            "backend": c.backend,
            "documents": c.documents,
            "chunks": c.chunks,
            "cached": c.cached,
            "encode_seconds": _num(c.encode_seconds, 3),
        },
        "methods": [method(m) for m in report.methods],
        "query_texts": dict(report.query_texts),  # judged qid -> text, for reading per_query values
        "created": report.created,
        "environment": _environment(),
    }


def _environment() -> dict:
    import importlib.metadata as md

    versions = {}
    for pkg in ("winnow", "sentence-transformers", "torch", "ir-measures", "bm25s", "faiss-cpu"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    return {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(), **versions}


# -- tables ----------------------------------------------------------------------------------------


def _p(m: MethodResult, metric: str) -> str:
    t = m.tests.get(metric)
    if t is None:
        return "(base)"
    if math.isnan(t.p_randomization):
        return ""
    return "<0.001" if t.p_randomization < 0.001 else f"{t.p_randomization:.3f}"


def table_rows(report: EvalReport) -> tuple[list[str], list[list[str]]]:
    primary = report.primary_metric
    calibrated = any(m.calibration is not None for m in report.methods)
    header = ["method", *report.metrics, f"p ({primary} vs {report.baseline})", *(["ECE"] if calibrated else []),
              "p50 ms", "p95 ms"]
    rows = []
    for m in report.methods:
        total = m.latency_ms["total"]
        ece = ([f"{m.calibration.ece:.4f}" if m.calibration is not None else ""] if calibrated else [])
        rows.append(
            [m.method, *(f"{m.metrics[k]:.4f}" for k in report.metrics), _p(m, primary), *ece,
             f"{total.p50:.1f}", f"{total.p95:.1f}"]
        )
    return header, rows


def _summary(report: EvalReport) -> str:
    c = report.corpus
    how = "cached, not re-encoded" if c.cached else "encoded now"
    return (
        f"{report.dataset} ({report.split}): {report.judged} of {report.queries} queries have judgments and are "
        f"evaluated; corpus {c.documents} documents / {c.chunks} chunks ({how}; indexing took {c.encode_seconds:.1f} s; "
        f"{c.model.split('/')[-1]} on {c.backend}); "
        f"binary measures count grade >= {report.rel} as relevant"
    )


def format_table(report: EvalReport) -> str:
    header, rows = table_rows(report)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    out = [_summary(report), "", line(header), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    out.append("")
    out.append(f"p: paired randomization test against {report.baseline} (two-sided); latency: {_latency_note(report)}")
    return "\n".join(out)


def _latency_note(report: EvalReport) -> str:
    if report.batch_size == 1:
        return "whole search per query, one query at a time"
    return f"batch time / batch size ({report.batch_size} queries a batch)"


def format_markdown(report: EvalReport) -> str:
    header, rows = table_rows(report)
    out = [f"# winnow eval: {report.dataset}", "", _summary(report) + ".", ""]
    out.append("| " + " | ".join(header) + " |")
    out.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
    out += ["| " + " | ".join(r) + " |" for r in rows]
    out += [
        "",
        f"p: paired randomization test against {report.baseline} (two-sided). Latency: {_latency_note(report)}.",
        "",
        "Stages (p50 / p95 ms):",
        "",
    ]
    for m in report.methods:
        parts = [f"{s} {v.p50:.1f} / {v.p95:.1f}" for s, v in m.latency_ms.items()]
        out.append(f"- {m.method}: " + ", ".join(parts))
    return "\n".join(out) + "\n"


# -- plot ------------------------------------------------------------------------------------------


def write_plot(report: EvalReport, path: Path, metric: str | None = None) -> Path:
    """Quality (``metric``, default nDCG@10 or the first) against p50 query latency, one point per method."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    metric = metric or ("nDCG@10" if "nDCG@10" in report.metrics else report.primary_metric)
    fig = Figure(figsize=(6.4, 4.4), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for m in report.methods:
        x = max(m.latency_ms["total"].p50, 1e-3)
        y = m.metrics[metric]
        ax.scatter([x], [y], s=40)
        ax.annotate(m.method, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=9)
    ax.set_xscale("log")
    ax.set_xlabel("query latency p50 (ms, log scale)")
    ax.set_ylabel(metric)
    ax.set_title(f"{report.dataset}: {metric} against latency ({report.judged} queries)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    with replacing(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


# -- everything ------------------------------------------------------------------------------------


def write_report(report: EvalReport, output: Path | str) -> dict[str, Path]:
    """Write report.json, report.md, plot.png and runs/<method>.trec into ``output``; returns the paths."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for m in report.methods:
        paths[f"run:{m.method}"] = write_run(output / RUNS_DIR / run_file_name(m.method), m.run, f"winnow-{m.method}")
    paths["json"] = output / "report.json"
    _write_text(paths["json"], json.dumps(report_to_json(report), indent=2, ensure_ascii=False) + "\n")
    paths["markdown"] = output / "report.md"
    _write_text(paths["markdown"], format_markdown(report))
    paths["plot"] = write_plot(report, output / "quality-latency.png")
    for m in report.methods:
        if m.calibration is not None:
            name = run_file_name(m.method).removesuffix(".trec")
            paths[f"reliability:{m.method}"] = write_reliability(m, report, output / f"reliability-{name}.png")
    return paths


def write_reliability(m: MethodResult, report: EvalReport, path: Path) -> Path:
    """A reliability diagram: fraction relevant against mean predicted probability per bin (the diagonal is
    perfect calibration), with each bin's count of hits (unjudged hits count as not relevant)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    c = m.calibration
    fig = Figure(figsize=(4.8, 4.4), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    ax.plot([b[0] for b in c.bins], [b[1] for b in c.bins], marker="o")
    for x, y, n in c.bins:
        ax.annotate(str(n), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted probability of relevance")
    ax.set_ylabel(f"fraction relevant (grade >= {report.rel})")
    ax.set_title(f"{report.dataset} {m.method}: ECE {c.ece:.3f} over {c.pairs} hits", fontsize=9)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    with replacing(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)
