"""``make bench`` / ``python -m bench.run``: winnow beside the seed notebook and the sentence-transformers
recipe, on ../shared/data/msmarco, in the same run (ratios count, not absolute times).

Every measurement runs in a fresh worker process (``bench.worker``) so that peak memory is its own; the
implementations take turns within each repeat (the order rotates) so that a noisy neighbour hits all of
them alike. Figures are medians over ``--repeats`` runs, with min and max. Results go to
``bench/results/<date>.json`` and ``.md``.

Sections: ``pipeline`` (the side-by-side figures), ``scaling`` (exact vs HNSW at growing sizes on
synthetic copies of the real embeddings), and any optional module named in :data:`OPTIONAL_SECTIONS`
that imports (see :mod:`bench` for the protocol).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench import tables
from bench.peers import DEPTH, IMPLEMENTATIONS, TOP_K

log = logging.getLogger("bench")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "msmarco"
RESULTS = REPO / "bench" / "results"
OPTIONAL_SECTIONS = ("bench.speed", "bench.int8_peer", "bench.determinism", "bench.budget", "bench.segments", "bench.scale", "bench.milvus")  # modules other work adds; each is skipped while it does not exist
ORDER = ("seed", "st", "winnow")
WORKER_ENV = {"OPENBLAS_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}


class WorkerError(RuntimeError):
    pass


@dataclass
class BenchContext:
    """What a section gets: the data, the models, the sizes, a scratch folder and a worker runner."""

    data: Path
    work: Path
    bi_encoder: str
    cross_encoder: str
    cross_encoder_note: str
    docs: int
    queries: list[str]
    repeats: int
    quick: bool
    args: argparse.Namespace
    shared: dict = field(default_factory=dict)  # sections leave things for later ones (e.g. embeddings)

    def worker(self, task: str, config: dict, *, timeout: float | None = None) -> dict:
        return run_worker(task, config, timeout=timeout)


LOAD_SAMPLES: list[float] = []  # the 1-minute load average as each worker starts: how busy the machine was


def run_worker(task: str, config: dict, *, timeout: float | None = None) -> dict:
    """Run ``bench.worker TASK`` in a fresh interpreter and return its result (raises WorkerError)."""
    LOAD_SAMPLES.append(os.getloadavg()[0])
    env = {**os.environ, **WORKER_ENV}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "bench.worker", task, json.dumps(config)]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise WorkerError(f"{task} worker passed its {timeout:.0f} s limit") from None
    lines = [l for l in proc.stdout.splitlines() if l.startswith("BENCH-RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stderr or proc.stdout).splitlines()[-15:])
        raise WorkerError(f"{task} worker failed (exit {proc.returncode}):\n{tail}")
    log.debug("%s worker took %.1f s", task, time.perf_counter() - start)
    return json.loads(lines[-1][len("BENCH-RESULT ") :])


# -- statistics -----------------------------------------------------------------------------------


def spread(values) -> dict | None:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and np.isnan(v))]
    if not vals:
        return None
    return {"median": float(np.median(vals)), "min": min(vals), "max": max(vals), "runs": vals}


def pct(values, q) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


# -- the side-by-side section ---------------------------------------------------------------------

FIGURES = (  # key, label, better ("lower"/"higher"), who has it
    ("encode_docs_per_s", "corpus encode: docs/s (winnow: chunk + encode + exact/HNSW/BM25 indexes)", "higher", ORDER),
    ("encode_peak_rss_mb", "corpus encode: peak RSS MB", "lower", ORDER),
    ("query_encode_ms", "single-query encode ms (median)", "lower", ORDER),
    ("exact_ms", "first stage, exact dense top-100 ms (median)", "lower", ORDER),
    ("hnsw_ms", "first stage, HNSW top-100 ms (median)", "lower", ("winnow",)),
    ("bm25_ms", "first stage, BM25 top-100 ms (median)", "lower", ("winnow",)),
    ("rerank_pairs_per_s", "reranker pairs/s", "higher", ORDER),
    ("rerank_ms", "rerank top-100 ms (median)", "lower", ORDER),
    ("e2e_p50_ms", "end-to-end two-stage p50 ms (winnow defaults: hybrid)", "lower", ORDER),
    ("e2e_p95_ms", "end-to-end two-stage p95 ms (winnow defaults: hybrid)", "lower", ORDER),
    ("e2e_dense_p50_ms", "end-to-end two-stage p50 ms (winnow dense, like the peers)", "lower", ORDER),
    ("e2e_dense_p95_ms", "end-to-end two-stage p95 ms (winnow dense, like the peers)", "lower", ORDER),
    ("serve_rss_mb", "memory: RSS with models + index loaded, MB", "lower", ORDER),
    ("serve_peak_rss_mb", "memory: peak RSS while querying, MB", "lower", ORDER),
    ("startup_s", "start-up: load models + index, s", "lower", ORDER),
)


def per_repeat_figures(index: dict, query: dict) -> dict:
    med = lambda key: float(np.median(query[key])) if query.get(key) else None
    pairs_per_s = [p / (ms / 1000) for p, ms in zip(query["pairs"], query["rerank_ms"]) if ms > 0]
    return {
        "encode_docs_per_s": index["docs_per_s"],
        "encode_peak_rss_mb": index["peak_rss_mb"],
        "query_encode_ms": med("encode_ms"),
        "exact_ms": med("exact_ms"),
        "hnsw_ms": med("hnsw_ms"),
        "bm25_ms": med("bm25_ms"),
        "rerank_pairs_per_s": float(np.median(pairs_per_s)) if pairs_per_s else None,
        "rerank_ms": med("rerank_ms"),
        "e2e_p50_ms": pct(query["e2e_ms"], 50),
        "e2e_p95_ms": pct(query["e2e_ms"], 95),
        "e2e_dense_p50_ms": pct(query["e2e_dense_ms"], 50),
        "e2e_dense_p95_ms": pct(query["e2e_dense_ms"], 95),
        "serve_rss_mb": query["rss_after_load_mb"],
        "serve_peak_rss_mb": query["peak_rss_mb"],
        "startup_s": query["load_s"],
    }


def overlap(a: list[list[str]], b: list[list[str]]) -> float:
    return float(np.mean([len(set(x) & set(y)) / max(1, len(y)) for x, y in zip(a, b)])) if a else float("nan")


def prepare_state(ctx: BenchContext) -> Path:
    """Index the corpus once (through winnow's eval cache) and hand every implementation the same vectors."""
    state = ctx.work / "state"
    corpus_dir = ctx.data
    cache_dir = ctx.args.cache_dir
    total = sum(1 for line in open(ctx.data / "corpus.jsonl", encoding="utf-8") if line.strip())
    if ctx.docs < total:  # a smaller corpus: its own folder and a scratch cache
        corpus_dir = ctx.work / f"{ctx.data.name}-{ctx.docs}"
        corpus_dir.mkdir(parents=True, exist_ok=True)
        with open(ctx.data / "corpus.jsonl", encoding="utf-8") as src:
            lines = [l for l in src if l.strip()][: ctx.docs]
        (corpus_dir / "corpus.jsonl").write_text("".join(lines), encoding="utf-8")
        cache_dir = ctx.work / "cache"
    if cache_dir is None:
        from winnow.evaluate.runner import default_cache_dir

        cache_dir = default_cache_dir()
    log.info("preparing the searchable state: %d passages, cache %s", ctx.docs, cache_dir)
    from winnow.models.resolve import DEFAULT_BI_ENCODER

    res = run_worker("prepare", {"corpus_dir": str(corpus_dir), "cache_dir": str(cache_dir), "model_name": DEFAULT_BI_ENCODER,
                                 "bi_encoder": ctx.bi_encoder, "cross_encoder": ctx.cross_encoder, "state": str(state)})
    log.info("  collection %s (%s)", res["collection"], "from the cache" if res["cached"] else "built now")
    ctx.shared["base_embeddings"] = state / "seed" / "embeddings.npy"
    ctx.shared["state_corpus"] = corpus_dir / "corpus.jsonl"
    return state


def section_pipeline(ctx: BenchContext) -> dict:
    corpus = ctx.data / "corpus.jsonl"
    state = prepare_state(ctx)
    runs: dict[str, list[dict]] = {name: [] for name in ORDER}
    tops: dict[str, list] = {}
    stages: dict[str, list] = {}
    backends: dict[str, dict] = {}
    for r in range(ctx.repeats):
        order = ORDER[r % 3 :] + ORDER[: r % 3]
        for name in order:
            directory = ctx.work / f"index-{name}-r{r}"
            directory.mkdir(parents=True, exist_ok=True)
            common = {"impl": name, "bi_encoder": ctx.bi_encoder, "cross_encoder": ctx.cross_encoder, "corpus": str(corpus)}
            log.info("repeat %d/%d: %s: encoding %d documents", r + 1, ctx.repeats, name, ctx.args.encode_docs)
            index = run_worker("index", {**common, "docs": ctx.args.encode_docs, "dir": str(directory)})
            shutil.rmtree(directory, ignore_errors=True)
            log.info("  %.1f docs/s, peak RSS %.0f MB; querying %d queries", index["docs_per_s"], index["peak_rss_mb"], len(ctx.queries))
            query = run_worker("query", {**common, "docs": ctx.docs, "dir": str(state / name), "state": str(state / name),
                                         "queries": ctx.queries})
            runs[name].append(per_repeat_figures(index, query))
            tops[name] = (query["top10"], query["top10_dense"])
            backends[name] = query.get("backends")
            stages[name] = query["stages"]
            log.info("  e2e p50 %.0f ms", runs[name][-1]["e2e_p50_ms"])
    figures = {key: {name: spread(run[key] for run in runs[name]) for name in who} for key, _, _, who in FIGURES}
    ratios = {}
    for key, _, better, who in FIGURES:
        w = figures[key].get("winnow")
        for peer in ("seed", "st"):
            p = figures[key].get(peer)
            if w and p and p["median"]:
                ratios.setdefault(key, {})[f"winnow/{peer}"] = w["median"] / p["median"]
    agreement = {
        "seed vs st (top-10 overlap)": overlap(tops["seed"][0], tops["st"][0]),
        "winnow dense vs st": overlap(tops["winnow"][1], tops["st"][0]),
        "winnow hybrid vs st": overlap(tops["winnow"][0], tops["st"][0]),
    }
    return {
        "figures": figures,
        "ratios": ratios,
        "labels": {key: {"label": label, "better": better} for key, label, better, _ in FIGURES},
        "implementations": {name: IMPLEMENTATIONS[name].describe for name in ORDER},
        "top10_agreement": agreement,
        "per_repeat": runs,
        "stages_last_run": stages,
        "backends": backends,
    }


# -- scaling --------------------------------------------------------------------------------------


def section_scaling(ctx: BenchContext) -> dict:
    args = ctx.args
    base = ctx.shared.get("base_embeddings")
    if base is None or not Path(base).is_file():
        prepare_state(ctx)
        base = ctx.shared["base_embeddings"]
    queries_npy = ctx.work / "scaling-queries.npy"
    all_queries = read_queries(ctx.data, None)
    run_worker("encode-queries", {"bi_encoder": ctx.bi_encoder, "queries": all_queries, "out": str(queries_npy)})
    n_base = int(np.load(base, mmap_mode="r").shape[0])
    rows = []
    hnsw_rate, prev_n = None, 0  # seconds per (n log n) from the last HNSW build, to predict the next
    for n in args.sizes:
        row: dict = {"n": n, "copies": -(-n // n_base)}
        exact_keys = ctx.work / f"exact-{n}.npy"
        for kind in ("exact", "hnsw", "semantic_search"):
            cfg = {"kind": kind, "n": n, "base": str(base), "queries": str(queries_npy), "sigma": args.sigma}
            if kind == "exact":
                cfg["save_keys"] = str(exact_keys)
            if kind == "hnsw":
                cfg["exact_keys"] = str(exact_keys)
                if hnsw_rate is not None:
                    predicted = hnsw_rate * n * np.log(n)
                    if predicted > args.hnsw_budget:
                        row[kind] = {"skipped": f"predicted build {predicted / 60:.0f} min > budget {args.hnsw_budget / 60:.0f} min (from the {prev_n:,} build)"}
                        log.info("scaling %s n=%d: %s", kind, n, row[kind]["skipped"])
                        continue
            log.info("scaling: %s over %d vectors", kind, n)
            try:
                res = run_worker("scale", cfg, timeout=args.hnsw_budget * 1.5 + 300)
            except WorkerError as exc:
                row[kind] = {"skipped": str(exc).splitlines()[0]}
                log.warning("scaling %s n=%d failed: %s", kind, n, exc)
                continue
            times = res.pop("search_ms")
            res.update(p50_ms=pct(times, 50), p95_ms=pct(times, 95))
            row[kind] = res
            if kind == "hnsw":
                hnsw_rate, prev_n = res["build_s"] / (n * np.log(n)), n
        rows.append(row)
    return {
        "base_documents": n_base,
        "sigma": args.sigma,
        "queries": len(all_queries),
        "note": (
            f"Sizes above {n_base:,} are synthetic: the {n_base:,} real msmarco passage embeddings replicated, "
            f"each further copy perturbed with N(0, {args.sigma}) noise per dimension and renormalized "
            f"(cosine to its source ~{1 / np.sqrt(1 + args.sigma**2 * 384):.2f}). Latency: one query at a time, top-100. "
            "Memory: RSS growth of a fresh process holding the index (the source array freed)."
        ),
        "rows": rows,
    }


# -- plumbing -------------------------------------------------------------------------------------


def read_queries(data: Path, limit: int | None) -> list[str]:
    out = []
    with open(data / "queries.jsonl", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                out.append(json.loads(line)["text"])
    return out[:limit] if limit else out


def environment() -> dict:
    import importlib.metadata as md

    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    versions = {}
    for pkg in ("sentence-transformers", "torch", "transformers", "faiss-cpu", "bm25s", "numpy"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = None
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(),
        "git_commit": commit,
        "worker_env": WORKER_ENV,
        **versions,
    }


def cross_encoder_for(ctx_args, work: Path, bi_encoder: str) -> tuple[str, str]:
    if ctx_args.rerank:
        return ctx_args.rerank, f"{ctx_args.rerank} (given with --rerank)"
    # Not winnow's shipped reranker: it ships as one int8 ONNX file, which sentence-transformers (the
    # reference the speed section compares against) cannot load. Pass --rerank RUN/model for its weights.
    out = work / "cross-encoder"
    run_worker("cross-encoder", {"bi_encoder": bi_encoder, "out": str(out)})
    return str(out), (
        "stand-in: all-MiniLM-L6-v2 weights with a fresh one-logit head (the shape of "
        "cross-encoder/ms-marco-MiniLM-L6-v2; speed only, its scores mean nothing)"
    )


def load_optional_sections() -> list:
    mods = []
    for name in OPTIONAL_SECTIONS:
        try:
            mods.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            log.info("optional section %s not present: skipped", name)
    return mods


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small and fast: 300 docs (100 encoded), 3 queries, 1 repeat, sizes 5k and 50k")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"BEIR folder (default {DEFAULT_DATA})")
    p.add_argument("--docs", type=int, help="documents of the corpus to use (default all 5,000)")
    p.add_argument("--encode-docs", type=int, help="documents each implementation encodes per run for docs/s and peak RSS (default 1000)")
    p.add_argument("--queries", type=int, help="queries timed per run (default 20)")
    p.add_argument("--repeats", type=int, help="runs of each implementation (default 3)")
    p.add_argument("--sizes", type=lambda s: [int(float(x)) for x in s.split(",")],
                   help="scaling sizes (default 5000,50000,500000,1000000)")
    p.add_argument("--sigma", type=float, default=0.025, help="noise per dimension of the synthetic copies")
    p.add_argument("--hnsw-budget", type=float, help="seconds an HNSW build may take (predicted) before it is skipped (default 600)")
    p.add_argument("--sections", help="comma-separated: pipeline, scaling, and optional ones (default all)")
    p.add_argument("--rerank", metavar="MODEL", help="cross-encoder folder or id (default: winnow's, else a MiniLM-L6 stand-in)")
    p.add_argument("--cache-dir", type=Path, help="winnow's corpus cache (default: winnow eval's, $WINNOW_HOME/.eval-cache)")
    p.add_argument("--output", type=Path, default=RESULTS, help=f"results folder (default {RESULTS})")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    quick = args.quick
    args.docs = args.docs or (300 if quick else 5000)
    args.queries = args.queries or (3 if quick else 20)
    args.encode_docs = min(args.encode_docs or (100 if quick else 1000), args.docs)
    args.repeats = args.repeats or (1 if quick else 3)
    args.sizes = args.sizes or ([5000, 50000] if quick else [5000, 50000, 500000, 1000000])
    args.hnsw_budget = args.hnsw_budget or (120.0 if quick else 600.0)
    if not (args.data / "corpus.jsonl").is_file():
        print(f"bench: skipped: no BEIR data at {args.data} (corpus.jsonl missing); pass --data DIR to point at a copy")
        return 0
    from winnow.models.resolve import DEFAULT_BI_ENCODER, resolve_model

    bi_encoder = str(resolve_model(DEFAULT_BI_ENCODER).path)
    optional = load_optional_sections()
    known = ["pipeline", "scaling", *(getattr(m, "SECTION", m.__name__.rsplit(".", 1)[-1]) for m in optional)]
    wanted = args.sections.split(",") if args.sections else known
    unknown = [s for s in wanted if s not in known]
    if unknown:
        print(f"bench: unknown section(s) {unknown}; choose from: {', '.join(known)}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="winnow-bench-"))
    started = dt.datetime.now()
    load_start = os.getloadavg()
    args.output.mkdir(parents=True, exist_ok=True)
    stem = started.strftime("%Y-%m-%d") + ("-quick" if quick else "")
    sections: dict[str, dict] = {}
    result: dict = {}
    ce_note = None

    def save() -> str:
        """Write what has been measured so far (after every section: a long run that dies keeps its figures)."""
        result.update({
            "date": started.strftime("%Y-%m-%d"),
            "started": started.isoformat(timespec="seconds"),
            "seconds": round((dt.datetime.now() - started).total_seconds(), 1),
            "command": "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:]),
            "config": {"data": str(args.data), "docs": args.docs, "encode_docs": args.encode_docs,
                       "queries": args.queries, "repeats": args.repeats, "depth": DEPTH, "top_k": TOP_K,
                       "sizes": args.sizes, "sigma": args.sigma, "hnsw_budget_s": args.hnsw_budget, "quick": quick},
            "cross_encoder": ce_note,
            "environment": {**environment(), "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
                            "loadavg_during": spread(LOAD_SAMPLES)},
            "sections": sections,
        })
        markdown = tables.render(result, optional)
        _write(args.output / f"{stem}.json", json.dumps(result, indent=2) + "\n")
        _write(args.output / f"{stem}.md", markdown)
        return markdown

    try:
        ce_path, ce_note = cross_encoder_for(args, work, bi_encoder)
        ctx = BenchContext(
            data=args.data, work=work, bi_encoder=bi_encoder, cross_encoder=ce_path, cross_encoder_note=ce_note,
            docs=args.docs, queries=read_queries(args.data, args.queries), repeats=args.repeats, quick=quick, args=args,
        )
        steps = [("pipeline", section_pipeline), ("scaling", section_scaling)]
        steps += [(getattr(m, "SECTION", m.__name__.rsplit(".", 1)[-1]), m.run) for m in optional]
        for name, step in steps:
            if name not in wanted:
                continue
            log.info("== section %s", name)
            try:
                sections[name] = step(ctx)
            except Exception as exc:  # one broken section must not cost the others' figures
                log.exception("section %s failed", name)
                sections[name] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
            save()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    markdown = save()
    print(markdown)
    print(f"wrote {args.output / (stem + '.json')} and {args.output / (stem + '.md')}")
    return 1 if any("error" in s for s in sections.values()) else 0


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
