"""Speed on a CPU, side by side with sentence-transformers, in one run (section ``speed`` of ``make bench``;
also ``python -m bench.speed``).

What it measures (ratios count, absolute times are the machine's and its neighbours'):

1. corpus encoding: ``SentenceTransformer.encode`` (torch fp32, batch 32) against winnow's
   ``BiEncoder`` on each backend (torch, onnx, onnx-int8), the corpus cut into slices that the
   implementations take turns on (a noisy neighbour slows them alike); cosine of each backend's vectors
   to sentence-transformers', and dense nDCG@10 of exact search with each backend's vectors;
2. one query: encode + exact top-100 over the corpus vectors, p50/p95;
3. reranking the dense top-100 of every judged query: ``CrossEncoder.predict`` (torch fp32, batch 32)
   against ``CrossEncoderReranker`` on each backend; pairs/s, nDCG@10, and GFLOP/s achieved against a
   GEMM peak measured here (int8 ``MatMulInteger`` and fp32 ``MatMul`` in ONNX Runtime, FFN shapes);
4. the score cache: the rerank stage of a repeated query;
5. peak memory encoding a large corpus (passages cycled to the size asked), in a fresh process each.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

from winnow.types import with_title  # noqa: E402

SECTION = "speed"
log = logging.getLogger("bench.speed")
REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "msmarco"
BACKENDS = ("torch", "onnx", "onnx-int8")
DEPTH = 100


@dataclass
class Plan:
    data: Path
    bi_encoder: str
    cross_encoder: str
    cross_encoder_note: str
    docs: int
    rerank_queries: int | None  # None: every judged query
    slices: int
    memory_docs: tuple[int, ...]
    query_repeats: int
    work: Path


# -- data -------------------------------------------------------------------------------------------
def read_beir(data: Path, docs: int):
    """The first ``docs`` passages (title + text, as winnow's chunks read them), the judged queries and
    their judgments, through winnow's own BEIR reader."""
    from winnow.evaluate.dataset import load_beir

    dataset = load_beir(data)
    corpus = dataset.read_corpus()[:docs]
    ids, texts = [d.id for d in corpus], [with_title(d.title, d.text) for d in corpus]
    qrels = {q: dict(j) for q, j in dataset.qrels.items()}
    return ids, texts, {q: dataset.queries[q] for q in dataset.judged}, qrels


def ndcg10(run: dict[str, dict[str, float]], qrels) -> float:
    import ir_measures
    from ir_measures import nDCG

    return float(ir_measures.calc_aggregate([nDCG @ 10], qrels, run)[nDCG @ 10])


# -- 1. corpus encoding -----------------------------------------------------------------------------
def encode_corpus(plan: Plan, texts: list[str]) -> dict:
    import torch
    from sentence_transformers import SentenceTransformer

    from winnow.encode.bi_encoder import BiEncoder

    st = SentenceTransformer(plan.bi_encoder, device="cpu", local_files_only=True)
    ours = {b: BiEncoder(plan.bi_encoder, backend=b) for b in BACKENDS}
    export_s = {}
    for b, enc in ours.items():  # exports (once) and loads, untimed: what a second run finds on disk
        start = time.perf_counter()
        enc.encode_documents(texts[:8])
        export_s[b] = time.perf_counter() - start
    st.encode(texts[:8], batch_size=32, show_progress_bar=False)
    runners = {"st": lambda tx: st.encode(tx, batch_size=32, normalize_embeddings=True, show_progress_bar=False)}
    runners.update({b: (lambda e: lambda tx: e.encode_documents(tx))(e) for b, e in ours.items()})
    seconds = {k: 0.0 for k in runners}
    parts = {k: [] for k in runners}
    bounds = np.linspace(0, len(texts), plan.slices + 1).astype(int)
    names = list(runners)
    for s, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        part = texts[lo:hi]
        for name in names[s % len(names) :] + names[: s % len(names)]:  # rotate who goes first
            start = time.perf_counter()
            parts[name].append(np.asarray(runners[name](part), dtype=np.float32))
            seconds[name] += time.perf_counter() - start
        log.info("encode slice %d/%d: %s", s + 1, plan.slices, {k: round(v, 1) for k, v in seconds.items()})
    vectors = {k: np.concatenate(v) for k, v in parts.items()}
    return {
        "vectors": vectors,
        "encoders": ours,
        "st": st,
        "docs_per_s": {k: len(texts) / v for k, v in seconds.items()},
        "speedup_vs_st": {k: seconds["st"] / v for k, v in seconds.items()},
        "cosine_to_st": {
            k: {"mean": float(np.mean(np.sum(v * vectors["st"], 1))), "min": float(np.min(np.sum(v * vectors["st"], 1)))}
            for k, v in vectors.items()
        },
        "first_call_s": export_s,
        "torch_threads": torch.get_num_threads(),
    }


def dense_quality(enc: dict, ids: list[str], queries: dict[str, str], qrels) -> tuple[dict, dict]:
    """nDCG@10 of exact dense search with each implementation's vectors; and the st top-100 candidates."""
    out, candidates = {}, {}
    qids = list(queries)
    qtexts = [queries[q] for q in qids]
    for name, vectors in enc["vectors"].items():
        if name == "st":
            qv = enc["st"].encode(qtexts, normalize_embeddings=True, show_progress_bar=False)
        else:
            qv = enc["encoders"][name].encode_queries(qtexts)
        scores = np.asarray(qv, dtype=np.float32) @ vectors.T
        run = {}
        for qi, q in enumerate(qids):
            top = np.argsort(-scores[qi], kind="stable")[:DEPTH]
            run[q] = {ids[i]: float(scores[qi, i]) for i in top}
            if name == "st":
                candidates[q] = [int(i) for i in top]
        out[name] = ndcg10(run, qrels)
    return out, candidates


# -- 2. one query -----------------------------------------------------------------------------------
def query_latency(plan: Plan, enc: dict, queries: dict[str, str]) -> dict:
    from winnow.index.flat import FlatIndex
    from winnow.runtime import limit_blas_threads

    from winnow.encode.bi_encoder import BiEncoder

    texts = list(queries.values())
    result = {}
    one_thread = BiEncoder(plan.bi_encoder, backend="onnx-int8", threads=1)  # the shared-machine setting
    one_thread.encode_query("warm up")
    for name in ["st", *BACKENDS, "onnx-int8 (1 thread)"]:
        vectors = enc["vectors"][name.split(" ")[0]]
        index = FlatIndex(vectors.shape[1])
        index.add(np.arange(len(vectors), dtype=np.int64), vectors)
        if name == "st":
            model = enc["st"]
            encode = lambda q: model.encode([q], normalize_embeddings=True, show_progress_bar=False)[0]  # noqa: E731
        elif name.endswith("(1 thread)"):
            encode = one_thread.encode_query
        else:
            encode = enc["encoders"][name].encode_query
        times, encode_times = [], []
        with limit_blas_threads():
            for _ in range(plan.query_repeats):
                for q in texts:
                    start = time.perf_counter()
                    v = encode(q)
                    mid = time.perf_counter()
                    index.search(v, DEPTH)
                    end = time.perf_counter()
                    times.append((end - start) * 1000)
                    encode_times.append((mid - start) * 1000)
        result[name] = {
            "p50_ms": float(np.percentile(times, 50)),
            "p95_ms": float(np.percentile(times, 95)),
            "encode_p50_ms": float(np.percentile(encode_times, 50)),
            "queries": len(times),
        }
    return result


# -- 3. reranking -----------------------------------------------------------------------------------
def rerank(plan: Plan, ids, texts, queries, qrels, candidates) -> dict:
    from sentence_transformers import CrossEncoder

    from winnow.rerank.cross_encoder import CrossEncoderReranker

    qids = list(queries)[: plan.rerank_queries] if plan.rerank_queries else list(queries)
    st = CrossEncoder(plan.cross_encoder, device="cpu", local_files_only=True)
    ours = {b: CrossEncoderReranker(plan.cross_encoder, backend=b, cache=False) for b in BACKENDS}
    first_call = {}
    for b, r in ours.items():
        start = time.perf_counter()
        r.score("warm up", ["a passage"])
        first_call[b] = time.perf_counter() - start
    st.predict([("warm up", "a passage")], batch_size=32, show_progress_bar=False)
    runners = {"st": lambda q, docs: st.predict([(q, d) for d in docs], batch_size=32, show_progress_bar=False)}
    runners.update({b: (lambda r: lambda q, docs: r.score(q, docs))(r) for b, r in ours.items()})
    seconds = {k: 0.0 for k in runners}
    runs = {k: {} for k in runners}
    pairs = 0
    useful_tokens = []
    tokenizer = ours["onnx-int8"]._runner if ours["onnx-int8"].backend != "torch" else None
    names = list(runners)
    for n, q in enumerate(qids):
        cand = candidates[q]
        docs = [texts[i] for i in cand]
        pairs += len(docs)
        if tokenizer is not None:
            useful_tokens += [len(e.ids) for e in tokenizer.tokenize([(queries[q], d) for d in docs])]
        for name in names[n % len(names) :] + names[: n % len(names)]:
            start = time.perf_counter()
            scores = np.asarray(runners[name](queries[q], docs), dtype=np.float64).reshape(len(docs), -1)[:, 0]
            seconds[name] += time.perf_counter() - start
            runs[name][q] = {ids[i]: float(s) for i, s in zip(cand, scores)}
        if (n + 1) % 10 == 0:
            log.info("rerank %d/%d queries: %s", n + 1, len(qids), {k: round(v, 1) for k, v in seconds.items()})
    agreement = {}
    for name in runners:  # label-free: does each backend order the candidates as sentence-transformers does?
        top_overlap, rho = [], []
        for q in qids:
            ref = runs["st"][q]
            mine = runs[name][q]
            keys = list(ref)
            a = np.asarray([ref[k] for k in keys])
            b = np.asarray([mine[k] for k in keys])
            top_overlap.append(len(set(np.argsort(-a)[:10]) & set(np.argsort(-b)[:10])) / 10)
            ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
            rho.append(float(np.corrcoef(ra, rb)[0, 1]))
        agreement[name] = {"top10_overlap": float(np.mean(top_overlap)), "spearman": float(np.mean(rho))}
    judged = {q: qrels[q] for q in qids}
    first_stage = {q: {ids[i]: float(DEPTH - r) for r, i in enumerate(candidates[q])} for q in qids}
    result = {
        "queries": len(qids),
        "pairs": pairs,
        "max_length": ours["onnx"].max_length,
        "pairs_per_s": {k: pairs / v for k, v in seconds.items()},
        "ms_per_query": {k: 1000 * v / len(qids) for k, v in seconds.items()},
        "speedup_vs_st": {k: seconds["st"] / v for k, v in seconds.items()},
        "ndcg10": {k: ndcg10(v, judged) for k, v in runs.items()},
        "first_stage_ndcg10": ndcg10(first_stage, judged),
        "agreement_with_st": agreement,
        "first_call_s": first_call,
    }
    if useful_tokens:
        flops = pair_flops(ours["onnx"].resolved.path, np.asarray(useful_tokens))
        result["gflop_per_pair"] = flops / pairs / 1e9
        result["gflops_achieved"] = {k: flops / v / 1e9 for k, v in seconds.items()}
        result["mean_pair_tokens"] = float(np.mean(useful_tokens))
    return result


def pair_flops(model_dir: Path, lengths: np.ndarray) -> float:
    """Multiply-add FLOPs of a BERT-shaped encoder over sequences of ``lengths`` (no padding counted):
    per layer 2·L·(4h² + 2·h·i) for the projections and feed-forward, 4·L²·h for attention."""
    cfg = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    h, i, layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    L = lengths.astype(np.float64)
    return float(layers * np.sum(2 * L * (4 * h * h + 2 * h * i) + 4 * L * L * h))


def gemm_peak(m: int = 4096, k: int = 384, n: int = 1536, repeats: int = 15) -> dict:
    """GOP/s of one ONNX Runtime GEMM with the FFN's shape: int8 (MatMulInteger, u8 x s8) and fp32."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from winnow.encode.onnx import session_options

    rng = np.random.default_rng(0)
    out = {}
    for kind in ("int8", "fp32"):
        if kind == "int8":
            b = numpy_helper.from_array(rng.integers(-64, 64, (k, n), dtype=np.int8), "B")
            node = helper.make_node("MatMulInteger", ["A", "B"], ["Y"])
            a_type, y_type, a = TensorProto.UINT8, TensorProto.INT32, rng.integers(0, 255, (m, k), dtype=np.uint8)
        else:
            b = numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), "B")
            node = helper.make_node("MatMul", ["A", "B"], ["Y"])
            a_type, y_type, a = TensorProto.FLOAT, TensorProto.FLOAT, rng.standard_normal((m, k)).astype(np.float32)
        graph = helper.make_graph(
            [node], "gemm", [helper.make_tensor_value_info("A", a_type, [m, k])],
            [helper.make_tensor_value_info("Y", y_type, [m, n])], initializer=[b],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
        sess = ort.InferenceSession(model.SerializeToString(), session_options(), providers=["CPUExecutionProvider"])
        sess.run(None, {"A": a})
        best = []
        for _ in range(repeats):
            start = time.perf_counter()
            sess.run(None, {"A": a})
            best.append(time.perf_counter() - start)
        out[f"{kind}_gops"] = 2 * m * k * n / float(np.min(best)) / 1e9  # min: the peak, not the typical
        out[f"{kind}_gops_median"] = 2 * m * k * n / float(np.median(best)) / 1e9
    out["shape"] = [m, k, n]
    return out


# -- 4. score cache ---------------------------------------------------------------------------------
def score_cache(plan: Plan, texts, queries, candidates) -> dict:
    from winnow.rerank.cross_encoder import CrossEncoderReranker
    from winnow.types import Hit

    reranker = CrossEncoderReranker(plan.cross_encoder)  # default backend and cache
    first, second = [], []
    for q in list(queries)[: min(10, len(queries))]:
        hits = [Hit(doc_id=str(i), score=float(DEPTH - r), rank=r + 1, text=texts[i]) for r, i in enumerate(candidates[q])]
        first.append(reranker.rank(queries[q], hits, top_k=10).timings_ms["rerank"])
        second.append(reranker.rank(queries[q], hits, top_k=10).timings_ms["rerank"])
    return {
        "backend": reranker.backend,
        "first_ms_p50": float(np.median(first)),
        "repeat_ms_p50": float(np.median(second)),
        "repeat_ms_max": float(np.max(second)),
        "cache": reranker.cache.stats().__dict__,
    }


# -- 5. memory --------------------------------------------------------------------------------------
def memory_child(cfg: dict) -> dict:
    """In a fresh process: encode ``docs`` passages (the corpus cycled) and report RSS figures."""
    import psutil

    from winnow.encode.bi_encoder import BiEncoder

    _, texts, _, _ = read_beir(Path(cfg["data"]), 10**9)
    corpus = [texts[i % len(texts)] for i in range(cfg["docs"])]
    enc = BiEncoder(cfg["bi_encoder"], backend=cfg["backend"], max_tokens=cfg["max_tokens"])
    enc.encode_documents(corpus[:64])  # load the model and warm the session's memory arena
    proc = psutil.Process()
    before = proc.memory_info().rss
    start = time.perf_counter()
    vectors = enc.encode_documents(corpus)
    seconds = time.perf_counter() - start
    peak = vm_hwm()
    return {
        "docs": cfg["docs"],
        "backend": enc.backend,
        "max_tokens": enc.max_tokens,
        "rss_loaded_mb": before / 2**20,
        "peak_rss_mb": peak / 2**20,
        "output_mb": vectors.nbytes / 2**20,
        "working_mb": (peak - before - vectors.nbytes) / 2**20,
        "docs_per_s": cfg["docs"] / seconds,
    }


def vm_hwm() -> int:
    """Peak RSS of this process in bytes (VmHWM: unlike ru_maxrss, not inherited from the forking parent)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory(plan: Plan) -> list[dict]:
    from winnow.encode.batching import DEFAULT_MAX_TOKENS

    rows = []
    for n in plan.memory_docs:
        cfg = {"data": str(plan.data), "docs": n, "bi_encoder": plan.bi_encoder, "backend": "auto",
               "max_tokens": DEFAULT_MAX_TOKENS}
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        log.info("memory: encoding %d passages in a fresh process", n)
        proc = subprocess.run([sys.executable, "-m", "bench.speed", "--memory-child", json.dumps(cfg)],
                              cwd=REPO, env=env, capture_output=True, text=True)
        lines = [l for l in proc.stdout.splitlines() if l.startswith("SPEED-RESULT ")]
        if proc.returncode != 0 or not lines:
            rows.append({"docs": n, "error": (proc.stderr or proc.stdout).strip().splitlines()[-1:]})
            continue
        rows.append(json.loads(lines[-1][len("SPEED-RESULT "):]))
    return rows


# -- the section ------------------------------------------------------------------------------------
def measure(plan: Plan) -> dict:
    started = time.time()
    ids, texts, queries, qrels = read_beir(plan.data, plan.docs)
    log.info("speed: %d passages, %d judged queries", len(texts), len(queries))
    enc = encode_corpus(plan, texts)
    quality, candidates = dense_quality(enc, ids, queries, qrels)
    latency = query_latency(plan, enc, queries)
    reranking = rerank(plan, ids, texts, queries, qrels, candidates)
    reranking["gemm_peak"] = gemm_peak()
    if "gflops_achieved" in reranking:
        peak = reranking["gemm_peak"]
        reranking["share_of_peak"] = {
            k: v / (peak["fp32_gops"] if k in ("st", "torch", "onnx") else peak["int8_gops"])
            for k, v in reranking["gflops_achieved"].items()
        }
    cache = score_cache(plan, texts, queries, candidates)
    mem = memory(plan)
    from winnow.models.backends import cpu_features, default_backend, quantization_config
    from winnow.runtime import cpu_count

    enc_out = {k: v for k, v in enc.items() if k not in ("vectors", "encoders", "st")}
    enc_out["dense_ndcg10"] = quality
    return {
        "docs": len(texts),
        "judged_queries": len(queries),
        "cross_encoder": plan.cross_encoder_note,
        "machine": {
            "cores": cpu_count(),
            "vnni": sorted(cpu_features() & {"avx512_vnni", "avx_vnni", "amx_int8", "asimddp"}),
            "avx2": "avx2" in cpu_features(),
            "default_backend": default_backend(),
            "quantization": quantization_config().__dict__ | {"operators": list(quantization_config().operators)},
            "loadavg": os.getloadavg(),
        },
        "encode": enc_out,
        "query": latency,
        "rerank": reranking,
        "score_cache": cache,
        "memory": mem,
        "seconds": time.time() - started,
    }


def run(ctx) -> dict:
    """Entry for ``bench.run`` (see :mod:`bench`)."""
    quick = bool(getattr(ctx, "quick", False))
    plan = Plan(
        data=ctx.data,
        bi_encoder=ctx.bi_encoder,
        cross_encoder=ctx.cross_encoder,
        cross_encoder_note=ctx.cross_encoder_note,
        docs=ctx.docs,
        rerank_queries=3 if quick else None,
        slices=2 if quick else 10,
        memory_docs=(2000,) if quick else (5000, 100_000),
        query_repeats=1 if quick else 3,
        work=ctx.work,
    )
    return measure(plan)


def _f(x, fmt="{:.2f}") -> str:
    return "–" if x is None else fmt.format(x)


def markdown(r: dict) -> str:
    e, q, rr, c, m = r["encode"], r["query"], r["rerank"], r["score_cache"], r["machine"]
    names = ["st", *BACKENDS]
    label = {"st": "sentence-transformers (torch fp32, batch 32)", "torch": "winnow torch fp32",
             "onnx": "winnow ONNX fp32", "onnx-int8": "winnow ONNX int8"}
    out = [
        "## Speed on a CPU (section `speed`)",
        "",
        f"{r['docs']:,} msmarco passages, {r['judged_queries']} judged queries; {m['cores']} cores, VNNI: "
        f"{', '.join(m['vnni']) or 'none'}; int8 config `{m['quantization']['name']}` "
        f"(reduce_range={m['quantization']['reduce_range']}, ops {m['quantization']['operators']}); "
        f"auto backend here: `{m['default_backend']}`. Load average at the end: {m['loadavg'][0]:.1f}.",
        "",
        "| implementation | encode docs/s | × ST | cosine to ST mean / min | dense nDCG@10 | query p50 ms (p95) | "
        "rerank pairs/s | × ST | rerank nDCG@10 | GFLOP/s (share of peak) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in names:
        cos = e["cosine_to_st"][n]
        gf = rr.get("gflops_achieved", {}).get(n)
        share = rr.get("share_of_peak", {}).get(n)
        out.append(
            f"| {label[n]} | {e['docs_per_s'][n]:.1f} | {e['speedup_vs_st'][n]:.2f}× | {cos['mean']:.4f} / {cos['min']:.4f} | "
            f"{e['dense_ndcg10'][n]:.4f} | {q[n]['p50_ms']:.1f} ({q[n]['p95_ms']:.1f}) | {rr['pairs_per_s'][n]:.1f} | "
            f"{rr['speedup_vs_st'][n]:.2f}× | {rr['ndcg10'][n]:.4f} | {_f(gf, '{:.0f}')} ({_f(share, '{:.0%}')}) |"
        )
    agree = rr.get("agreement_with_st", {})
    if agree:
        out += ["", "Reranker agreement with sentence-transformers' scores over the same candidates (label-free): "
                + "; ".join(f"{label[k]}: top-10 overlap {v['top10_overlap']:.3f}, Spearman {v['spearman']:.4f}"
                            for k, v in agree.items() if k != "st") + "."]
    one = q.get("onnx-int8 (1 thread)")
    peak = rr.get("gemm_peak", {})
    if one:
        out += ["", f"One query with ONNX int8 on one intra-op thread (`threads=1` / `WINNOW_THREADS=1`, for shared "
                f"machines and servers running queries side by side): p50 {one['p50_ms']:.1f} ms (p95 {one['p95_ms']:.1f})."]
    out += [
        "",
        f"Reranking: dense top-{DEPTH} of {rr['queries']} queries ({rr['pairs']:,} pairs, {rr.get('mean_pair_tokens', 0):.0f} "
        f"tokens a pair, max_length {rr['max_length']}, {rr.get('gflop_per_pair', 0):.2f} GFLOP a pair); first-stage nDCG@10 "
        f"{rr['first_stage_ndcg10']:.4f}. Reranker: {r['cross_encoder']}. GEMM peak measured here (ONNX Runtime, "
        f"{peak.get('shape')}): int8 {peak.get('int8_gops', 0):.0f} GOP/s, fp32 {peak.get('fp32_gops', 0):.0f} GFLOP/s; "
        "share of peak: fp32 implementations against the fp32 peak, int8 against the int8 peak.",
        "",
        f"Score cache (backend `{c['backend']}`, rank(..., top_k=10) as the pipeline calls it): rerank stage of a query's first run p50 {c['first_ms_p50']:.1f} ms, "
        f"of the same query again p50 {c['repeat_ms_p50']:.3f} ms (max {c['repeat_ms_max']:.3f} ms).",
        "",
        "Peak memory encoding N passages (fresh process, auto backend, token budget per batch):",
        "",
        "| passages | backend | RSS loaded MB | peak RSS MB | output MB | working MB (peak − loaded − output) | docs/s |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for row in r["memory"]:
        if "error" in row:
            out.append(f"| {row['docs']:,} | failed: {row['error']} | | | | | |")
            continue
        out.append(
            f"| {row['docs']:,} | {row['backend']} (max_tokens {row['max_tokens']}) | {row['rss_loaded_mb']:.0f} | "
            f"{row['peak_rss_mb']:.0f} | {row['output_mb']:.0f} | {row['working_mb']:.0f} | {row['docs_per_s']:.1f} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.speed", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--docs", type=int, default=5000)
    p.add_argument("--rerank-queries", type=int, default=None, help="judged queries reranked (default all)")
    p.add_argument("--slices", type=int, default=10)
    p.add_argument("--memory-docs", default="5000,100000", help="comma-separated corpus sizes ('' for none)")
    p.add_argument("--query-repeats", type=int, default=3)
    p.add_argument("--rerank", metavar="MODEL", help="cross-encoder (default: a MiniLM-L6 stand-in)")
    p.add_argument("--output", type=Path, help="write the JSON result here (and .md beside it)")
    p.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_child:
        print("SPEED-RESULT " + json.dumps(memory_child(json.loads(args.memory_child))))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if not (args.data / "corpus.jsonl").is_file():
        print(f"bench.speed: skipped: no BEIR data at {args.data}")
        return 0
    import tempfile

    from winnow.models.resolve import DEFAULT_BI_ENCODER, resolve_model

    work = Path(tempfile.mkdtemp(prefix="winnow-speed-"))
    bi = str(resolve_model(DEFAULT_BI_ENCODER).path)
    if args.rerank:
        ce, note = args.rerank, args.rerank
    else:
        ce, note = str(stand_in_cross_encoder(bi, work)), (
            "stand-in: all-MiniLM-L6-v2 weights with a fresh one-logit head (torch.manual_seed(0)); the shape of "
            "cross-encoder/ms-marco-MiniLM-L6-v2; its scores mean nothing, so nDCG compares backends, not quality")
    plan = Plan(args.data, bi, ce, note, args.docs, args.rerank_queries, args.slices,
                tuple(int(x) for x in args.memory_docs.split(",") if x.strip()), args.query_repeats, work)
    result = measure(plan)
    result["command"] = "python -m bench.speed " + " ".join(argv if argv is not None else sys.argv[1:])
    text = markdown(result)
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        args.output.with_suffix(".md").write_text(text + "\n", encoding="utf-8")
    return 0


def stand_in_cross_encoder(bi_encoder: str, work: Path) -> Path:
    import torch
    from sentence_transformers import CrossEncoder

    path = work / "cross-encoder"
    torch.manual_seed(0)
    CrossEncoder(bi_encoder, num_labels=1, local_files_only=True).save(str(path))
    return path


if __name__ == "__main__":
    sys.exit(main())
