"""Benchmark section ``int8``: winnow's default scoring path beside sentence-transformers' own int8 ONNX route,
on the same models, in one process (ratios count; absolute times are the machine's and its neighbours').

The peer route is what sentence-transformers documents for fast CPU inference: load with ``backend="onnx"``
(its optimum export), ``export_dynamic_quantized_onnx_model(model, "<cpu>", folder)`` with the config that
fits this CPU (``avx512_vnni`` where the CPU has VNNI, else ``avx2``), load that file, ``encode`` /
``predict`` with its default batch size (32). winnow's side is what a user gets by default:

* **rerank**: the shipped reranker (``winnow-reranker-minilm-l6-v2``: int8 ONNX as ``winnow train ship`` wrote
  it, rows run alone, one stream per core); the peer quantizes the **same weights** (the run's torch folder,
  ``--torch-reranker``, default ``runs/r6/model``, which ``scripts/train_reranker.sh`` writes). Without that
  folder the section says so and measures the bi-encoder only.
* **encode**: ``all-MiniLM-L6-v2`` (bundled) on winnow's ``onnx-int8`` backend against the peer's int8 export;
  winnow's default backend (fp32 ONNX, ``auto``) is reported beside them.

Work is cut into slices that the implementations take turns on, the order rotating, so that a noisy neighbour
hits them alike. Quality: dense nDCG@10 of exact search with each implementation's document vectors (the
query vectors from the same implementation), and nDCG@10 of each reranker over the same dense top-100
(winnow's fp32 vectors; msmarco counts grade >= 2 as relevant for binary measures, nDCG uses the grades).
Compute: multiply-adds of the tokens actually scored (no padding counted), as GOP/s and as a share of an int8
GEMM peak (ONNX Runtime ``MatMulInteger``, the FFN's shape) measured in the same run.

``python -m bench.int8_peer [--data ../shared/data/msmarco] [--docs 5000] [--output FILE.json]``, or
``python -m bench.run --sections int8`` (part of ``make bench``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

SECTION = "int8"
log = logging.getLogger("bench.int8_peer")
REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "msmarco"
DEFAULT_TORCH_RERANKER = REPO / "runs" / "r6" / "model"
DEPTH = 100
ST_BATCH = 32  # sentence-transformers' default batch size for encode and predict


def peer_config() -> str:
    """The quantization config sentence-transformers offers that fits this CPU."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        flags = ""
    return "avx512_vnni" if "avx512_vnni" in flags else "avx512" if "avx512f" in flags else "avx2"


def peer_models(bi_encoder: str, torch_reranker: Path | None, work: Path, config: str) -> dict:
    """sentence-transformers' int8 route: ONNX export, dynamic quantization, the quantized file loaded back."""
    from sentence_transformers import CrossEncoder, SentenceTransformer, export_dynamic_quantized_onnx_model

    file_name = f"onnx/model_qint8_{config}.onnx"
    out: dict = {}
    bi_dir = work / "st-bi"
    if not (bi_dir / file_name).is_file():
        st = SentenceTransformer(bi_encoder, device="cpu", backend="onnx", local_files_only=True)
        st.save(str(bi_dir))
        export_dynamic_quantized_onnx_model(st, config, str(bi_dir))
    out["bi"] = SentenceTransformer(str(bi_dir), device="cpu", backend="onnx", local_files_only=True,
                                    model_kwargs={"file_name": file_name})
    if torch_reranker is not None:
        ce_dir = work / "st-ce"
        if not (ce_dir / file_name).is_file():
            ce = CrossEncoder(str(torch_reranker), device="cpu", backend="onnx", local_files_only=True)
            ce.save(str(ce_dir))
            export_dynamic_quantized_onnx_model(ce, config, str(ce_dir))
        out["ce"] = CrossEncoder(str(ce_dir), device="cpu", backend="onnx", local_files_only=True,
                                 max_length=_max_length(), model_kwargs={"file_name": file_name})
    return out


def _max_length() -> int:
    """The shipped reranker's max_length: both sides read the same tokens."""
    from winnow.models.resolve import SHIPPED_RERANKER, resolve_model
    from winnow.rerank.cross_encoder import CrossEncoderReranker

    return CrossEncoderReranker(str(resolve_model(SHIPPED_RERANKER).path), cache=False).max_length


def _turns(names: list[str], n: int) -> list[str]:
    k = n % len(names)
    return names[k:] + names[:k]


def encode(texts: list[str], queries: dict[str, str], peer, bi_encoder: str, slices: int) -> dict:
    from winnow.encode.bi_encoder import BiEncoder

    ours = {"winnow onnx-int8": BiEncoder(bi_encoder, backend="onnx-int8"), "winnow default (auto)": BiEncoder(bi_encoder)}
    for enc in ours.values():
        enc.encode_documents(texts[:8])  # export/load, untimed
    peer.encode(texts[:8], batch_size=ST_BATCH, show_progress_bar=False)
    docs = {"sentence-transformers int8": lambda tx: peer.encode(tx, batch_size=ST_BATCH, normalize_embeddings=True,
                                                                show_progress_bar=False)}
    docs.update({k: (lambda e: lambda tx: e.encode_documents(tx))(e) for k, e in ours.items()})
    qenc = {"sentence-transformers int8": lambda tx: peer.encode(tx, batch_size=ST_BATCH, normalize_embeddings=True,
                                                                show_progress_bar=False)}
    qenc.update({k: (lambda e: lambda tx: e.encode_queries(tx))(e) for k, e in ours.items()})
    seconds = {k: 0.0 for k in docs}
    parts: dict[str, list] = {k: [] for k in docs}
    bounds = np.linspace(0, len(texts), slices + 1).astype(int)
    for s, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        for name in _turns(list(docs), s):
            start = time.perf_counter()
            parts[name].append(np.asarray(docs[name](texts[lo:hi]), dtype=np.float32))
            seconds[name] += time.perf_counter() - start
        log.info("encode slice %d/%d: %s", s + 1, slices, {k: round(v, 1) for k, v in seconds.items()})
    vectors = {k: np.concatenate(v) for k, v in parts.items()}
    qids = list(queries)
    qvec = {k: np.asarray(f([queries[q] for q in qids]), dtype=np.float32) for k, f in qenc.items()}
    return {"docs_per_s": {k: len(texts) / v for k, v in seconds.items()}, "vectors": vectors, "query_vectors": qvec,
            "qids": qids}


def dense_runs(vectors: np.ndarray, qvec: np.ndarray, qids: list[str], ids: list[str], depth: int) -> dict:
    scores = qvec @ vectors.T
    top = np.argsort(-scores, axis=1)[:, :depth]
    return {q: {ids[i]: float(scores[n, i]) for i in top[n]} for n, q in enumerate(qids)}


def rerank(queries: dict[str, str], texts: list[str], ids: list[str], candidates: dict[str, list[int]], peer) -> dict:
    from winnow.models.resolve import SHIPPED_RERANKER
    from winnow.rerank.cross_encoder import CrossEncoderReranker

    ours = CrossEncoderReranker(SHIPPED_RERANKER, cache=False, use_mix=False)
    ours.raw_scores("warm up", ["a passage"])
    peer.predict([("warm up", "a passage")], batch_size=ST_BATCH, show_progress_bar=False)
    runners = {
        "sentence-transformers int8": lambda q, d: peer.predict([(q, x) for x in d], batch_size=ST_BATCH,
                                                                show_progress_bar=False),
        "winnow default (shipped int8)": lambda q, d: ours.raw_scores(q, d),
    }
    seconds = {k: 0.0 for k in runners}
    runs: dict[str, dict] = {k: {} for k in runners}
    tokens: list[int] = []
    for n, q in enumerate(candidates):
        docs = [texts[i] for i in candidates[q]]
        tokens += [len(e.ids) for e in ours._runner.tokenize([(queries[q], d) for d in docs])]
        for name in _turns(list(runners), n):
            start = time.perf_counter()
            s = np.asarray(runners[name](queries[q], docs), dtype=np.float64).reshape(len(docs), -1)[:, 0]
            seconds[name] += time.perf_counter() - start
            runs[name][q] = {ids[i]: float(x) for i, x in zip(candidates[q], s)}
        if (n + 1) % 10 == 0:
            log.info("rerank %d/%d: %s", n + 1, len(candidates), {k: round(v, 1) for k, v in seconds.items()})
    pairs = len(tokens)
    from bench.speed import pair_flops

    flops = pair_flops(ours.resolved.path, np.asarray(tokens))
    return {"pairs": pairs, "mean_pair_tokens": float(np.mean(tokens)), "gop_per_pair": flops / pairs / 1e9,
            "pairs_per_s": {k: pairs / v for k, v in seconds.items()},
            "gops": {k: flops / v / 1e9 for k, v in seconds.items()}, "runs": runs, "streams": ours._runner.streams}


def measure(data: Path = DEFAULT_DATA, *, docs: int = 5000, slices: int = 10, torch_reranker: Path | None = DEFAULT_TORCH_RERANKER,
            work: Path | None = None) -> dict:
    import tempfile

    from bench.speed import gemm_peak, ndcg10, read_beir
    from winnow.models.catalog import cpu_line
    from winnow.models.resolve import DEFAULT_BI_ENCODER, resolve_model

    work = work or Path(tempfile.mkdtemp(prefix="winnow-int8-"))
    if torch_reranker is not None and not (Path(torch_reranker) / "config.json").is_file():
        log.warning("no torch reranker at %s: the rerank comparison is skipped (train one: scripts/train_reranker.sh)", torch_reranker)
        torch_reranker = None
    config = peer_config()
    bi = str(resolve_model(DEFAULT_BI_ENCODER).path)
    ids, texts, queries, qrels = read_beir(Path(data), docs)
    start = time.perf_counter()
    peer = peer_models(bi, Path(torch_reranker) if torch_reranker else None, work, config)
    out: dict = {"cpu": cpu_line(), "data": str(data), "docs": len(texts), "queries": len(queries), "peer_config": config,
                 "peer_export_s": round(time.perf_counter() - start, 1), "loadavg_start": os.getloadavg(),
                 "torch_reranker": str(torch_reranker) if torch_reranker else None}
    enc = encode(texts, queries, peer["bi"], bi, slices)
    dense = {k: dense_runs(v, enc["query_vectors"][k], enc["qids"], ids, DEPTH) for k, v in enc["vectors"].items()}
    out["encode"] = {"docs_per_s": enc["docs_per_s"], "ndcg10": {k: ndcg10(r, qrels) for k, r in dense.items()}}
    if "ce" in peer:
        base = "winnow default (auto)"
        candidates = {q: [ids.index(d) for d in sorted(r, key=r.get, reverse=True)] for q, r in dense[base].items()}
        rr = rerank(queries, texts, ids, candidates, peer["ce"])
        rr["ndcg10"] = {k: ndcg10(r, qrels) for k, r in rr.pop("runs").items()}
        rr["first_stage_ndcg10"] = out["encode"]["ndcg10"][base]
        out["rerank"] = rr
    out["gemm_peak"] = gemm_peak()
    out["loadavg_end"] = os.getloadavg()
    return out


def run(ctx) -> dict:
    return measure(ctx.data, docs=ctx.docs, work=ctx.work / "int8")


def _f(x: float, fmt: str = "{:.1f}") -> str:
    return fmt.format(x)


def markdown(r: dict) -> str:
    peak = r["gemm_peak"]["int8_gops"]
    st = "sentence-transformers int8"
    lines = [f"### winnow's default path vs sentence-transformers' int8 ONNX route ({r['peer_config']})", "",
             f"CPU: {r['cpu']}; {r['docs']} passages, {r['queries']} judged queries of {r['data']}; load average "
             f"{r['loadavg_start'][0]:.2f} at the start, {r['loadavg_end'][0]:.2f} at the end. int8 GEMM peak measured in "
             f"this run: {peak:.0f} GOP/s (fp32 {r['gemm_peak']['fp32_gops']:.0f} GFLOP/s).", "",
             "| encode (all-MiniLM-L6-v2) | docs/s | × peer | dense nDCG@10 |", "|---|---:|---:|---:|"]
    e = r["encode"]
    for k, v in e["docs_per_s"].items():
        lines.append(f"| {k} | {_f(v)} | {v / e['docs_per_s'][st]:.2f}× | {e['ndcg10'][k]:.4f} |")
    if "rerank" in r:
        rr = r["rerank"]
        lines += ["", f"| rerank dense top-{DEPTH} ({rr['pairs']} pairs, {rr['mean_pair_tokens']:.0f} tokens a pair) | pairs/s "
                  f"| × peer | nDCG@10 | GOP/s | share of int8 peak |", "|---|---:|---:|---:|---:|---:|"]
        for k, v in rr["pairs_per_s"].items():
            lines.append(f"| {k} | {_f(v)} | {v / rr['pairs_per_s'][st]:.2f}× | {rr['ndcg10'][k]:.4f} | "
                         f"{rr['gops'][k]:.0f} | {rr['gops'][k] / peak:.0%} |")
        lines.append(f"\nFirst stage (winnow dense, fp32) nDCG@10 {rr['first_stage_ndcg10']:.4f}; winnow ran "
                     f"{rr['streams']} streams of one thread each.")
    else:
        lines.append("\nRerank comparison skipped: no torch weights of the shipped reranker (`--torch-reranker`).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.int8_peer", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--docs", type=int, default=5000)
    p.add_argument("--slices", type=int, default=10)
    p.add_argument("--torch-reranker", type=Path, default=DEFAULT_TORCH_RERANKER,
                   help="the shipped reranker's torch weights, for the peer's export (default runs/r6/model)")
    p.add_argument("--output", type=Path, help="write the JSON result here (and .md beside it)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if not (args.data / "corpus.jsonl").is_file():
        print(f"bench.int8_peer: skipped: no BEIR data at {args.data}")
        return 0
    result = measure(args.data, docs=args.docs, slices=args.slices, torch_reranker=args.torch_reranker)
    result["command"] = "python -m bench.int8_peer " + " ".join(argv if argv is not None else sys.argv[1:])
    text = markdown(result)
    print(text)
    if args.output:
        from winnow.storage import write_json_atomic, write_text_atomic

        write_json_atomic(args.output, result)
        write_text_atomic(args.output.with_suffix(".md"), text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
