"""One measurement in a fresh process, so that peak memory and start-up cost belong to it alone.

``python -m bench.worker TASK '<json config>'`` prints log lines, then one last line
``BENCH-RESULT <json>``. Tasks: ``index``, ``prepare``, ``query``, ``cross-encoder``, ``encode-queries``, ``scale``.
"""

from __future__ import annotations

import json
import math
import resource
import sys
import time
from pathlib import Path

import numpy as np

from bench.peers import DEPTH, IMPLEMENTATIONS, read_docs, timed

RESULT_PREFIX = "BENCH-RESULT "


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _impl(cfg: dict):
    docs = read_docs(Path(cfg["corpus"]), cfg.get("docs"))
    impl = IMPLEMENTATIONS[cfg["impl"]](cfg["bi_encoder"], cfg["cross_encoder"], docs)
    impl.prepare(Path(cfg["dir"]))
    return impl, docs


def task_index(cfg: dict) -> dict:
    """Load the bi-encoder, then encode (and for winnow index) the corpus."""
    impl, docs = _impl(cfg)
    _, load_ms = timed(impl.load_bi_encoder)
    rss_loaded = rss_mb()
    _, index_ms = timed(impl.index)
    impl.save(Path(cfg["dir"]))
    return {
        "docs": len(docs),
        "load_s": load_ms / 1000,
        "index_s": index_ms / 1000,
        "docs_per_s": len(docs) / (index_ms / 1000),
        "rss_after_load_mb": rss_loaded,
        "peak_rss_mb": peak_rss_mb(),
    }


def task_query(cfg: dict) -> dict:
    """Open the prepared state and both models, time the first-stage pieces per query, then the whole
    two-stage search (winnow: with its defaults, and with a dense first stage like the peers)."""
    impl, docs = _impl(cfg)
    start = time.perf_counter()
    impl.load(Path(cfg["state"]))
    impl.load_bi_encoder()
    impl.load_cross_encoder()
    load_s = time.perf_counter() - start
    rss_loaded = rss_mb()
    queries = cfg["queries"]
    winnow = impl.name == "winnow"
    impl.search(queries[0])  # warm-up: first-call costs (JIT, allocator) are not per-query costs
    if winnow:
        impl.search(queries[0], method="dense")
        impl.first_stage_hnsw(impl.encode_query(queries[0]))
        impl.first_stage_bm25(queries[0])
    out: dict[str, list] = {k: [] for k in ("encode_ms", "exact_ms", "hnsw_ms", "bm25_ms")}
    for q in queries:
        vec, ms = timed(impl.encode_query, q)
        out["encode_ms"].append(ms)
        out["exact_ms"].append(timed(impl.first_stage, vec, DEPTH)[1])
        if winnow:
            out["hnsw_ms"].append(timed(impl.first_stage_hnsw, vec, DEPTH)[1])
            out["bm25_ms"].append(timed(impl.first_stage_bm25, q, DEPTH)[1])
    e2e, e2e_dense, rerank_ms, pairs, top, top_dense, stages = [], [], [], [], [], [], []
    for q in queries:
        (ids, timings), ms = timed(impl.search, q)
        e2e.append(ms)
        top.append(ids)
        rerank_ms.append(timings["rerank"])
        pairs.append(timings["pairs"])
        stages.append(timings)
        if winnow:
            (ids, _), ms = timed(impl.search, q, method="dense")
            e2e_dense.append(ms)
            top_dense.append(ids)
    return {
        **out,
        "rerank_ms": rerank_ms,
        "pairs": pairs,
        "e2e_ms": e2e,
        "e2e_dense_ms": e2e_dense or e2e,
        "stages": stages,
        "top10": top,
        "top10_dense": top_dense or top,
        "load_s": load_s,
        "rss_after_load_mb": rss_loaded,
        "peak_rss_mb": peak_rss_mb(),
        "backends": impl.backends(),
    }


def task_prepare(cfg: dict) -> dict:
    """The searchable state every implementation queries: winnow's collection from the eval cache (built
    once per corpus and model), and its document vectors in corpus order for the peers."""
    from winnow.evaluate.dataset import BeirDataset
    from winnow.evaluate.runner import open_corpus_cache

    corpus_dir = Path(cfg["corpus_dir"])
    dataset = BeirDataset(corpus_dir.name, corpus_dir, "test", {}, {})
    col, cache = open_corpus_cache(dataset, cache_dir=Path(cfg["cache_dir"]), model=cfg.get("model_name") or cfg["bi_encoder"])
    docs = read_docs(corpus_dir / "corpus.jsonl", None)
    if cache.chunks != len(docs):
        raise SystemExit(f"the bench expects one chunk per passage; {cache.chunks} chunks for {len(docs)} documents")
    by_doc = col.segment_set.vectors_of([d["_id"] for d in docs])
    vectors = np.stack([by_doc[d["_id"]][0] for d in docs])
    col.close()
    state = Path(cfg["state"])
    for name in ("seed", "st", "winnow"):
        (state / name).mkdir(parents=True, exist_ok=True)
    for name in ("seed", "st"):
        np.save(state / name / "embeddings.npy", vectors, allow_pickle=False)
    (state / "winnow" / "collection.txt").write_text(str(cache.path))
    # One-off work that is no per-run cost (ONNX exports of both models, cached on disk): done here, so
    # the first measured run does not pay for it.
    impl = IMPLEMENTATIONS["winnow"](cfg["bi_encoder"], cfg["cross_encoder"], [])
    impl.prepare(state / "winnow")
    impl.load(state / "winnow")
    impl.load_bi_encoder()
    impl.load_cross_encoder()
    return {"collection": str(cache.path), "cached": cache.cached, "encode_seconds": cache.encode_seconds,
            "documents": cache.documents}


def task_cross_encoder(cfg: dict) -> dict:
    """A MiniLM-L6 cross-encoder with a fresh one-logit head, for speed only (its scores mean nothing)."""
    import torch
    from sentence_transformers import CrossEncoder

    torch.manual_seed(0)
    CrossEncoder(cfg["bi_encoder"], num_labels=1).save(cfg["out"])
    return {"path": cfg["out"]}


def task_encode_queries(cfg: dict) -> dict:
    from winnow.encode.bi_encoder import BiEncoder

    vectors = BiEncoder(cfg["bi_encoder"]).encode_queries(cfg["queries"])
    np.save(cfg["out"], vectors, allow_pickle=False)
    return {"shape": list(vectors.shape)}


def synthetic_vectors(base: np.ndarray, n: int, sigma: float, seed: int = 0) -> np.ndarray:
    """``n`` unit vectors: copy 0 is ``base`` itself, each further copy ``base`` plus N(0, sigma) noise,
    renormalized (cosine to its source ~ 1 / sqrt(1 + sigma^2 * dim))."""
    rng = np.random.default_rng(seed)
    base = base / np.linalg.norm(base, axis=1, keepdims=True)
    out = np.empty((n, base.shape[1]), dtype=np.float32)
    for start in range(0, n, base.shape[0]):
        rows = min(base.shape[0], n - start)
        block = base[:rows]
        if start:
            block = block + rng.normal(0.0, sigma, size=block.shape).astype(np.float32)
            block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + rows] = block
    return out


def task_scale(cfg: dict) -> dict:
    """First-stage search over ``n`` synthetic vectors with one index kind: build time, memory, latency."""
    import gc

    from winnow.runtime import limit_blas_threads

    kind, n, k = cfg["kind"], int(cfg["n"]), int(cfg.get("k", DEPTH))
    queries = np.load(cfg["queries"], allow_pickle=False)
    base = np.load(cfg["base"], allow_pickle=False).astype(np.float32)
    if kind == "semantic_search":  # libraries are not the index: load them before the baseline
        import sentence_transformers.util  # noqa: F401
    else:
        import faiss  # noqa: F401

        import winnow.index  # noqa: F401
    gc.collect()
    rss_before = rss_mb()
    vectors = synthetic_vectors(base, n, float(cfg["sigma"]))
    keys = np.arange(n, dtype=np.int64)
    start = time.perf_counter()
    if kind == "exact":
        from winnow.index.flat import FlatIndex

        index = FlatIndex(vectors.shape[1])
        index.add(keys, vectors)
        search = lambda q: index.search(q, k).keys[0]
    elif kind == "hnsw":
        from winnow.index.hnsw import HNSWIndex

        index = HNSWIndex.from_vectors(keys, vectors)
        search = lambda q: index.search(q, k).keys[0]
    elif kind == "semantic_search":
        import torch
        from sentence_transformers import util

        index = torch.from_numpy(vectors)  # shares memory with the array: the recipe's corpus tensor
        search = lambda q: np.array([h["corpus_id"] for h in util.semantic_search(torch.from_numpy(q), index, top_k=k)[0]])
    else:
        raise SystemExit(f"unknown kind {kind!r}")
    build_s = time.perf_counter() - start
    if kind != "semantic_search":
        del vectors
    gc.collect()
    rss_index = rss_mb() - rss_before
    search(queries[:1])  # warm-up
    times, found = [], []
    with limit_blas_threads() if kind != "semantic_search" else _nothing():
        for q in queries:
            keys_found, ms = timed(search, q[None, :])
            times.append(ms)
            found.append(np.asarray(keys_found, dtype=np.int64)[:k])
    found_arr = np.stack(found)
    result = {
        "kind": kind,
        "n": n,
        "build_s": build_s,
        "search_ms": times,
        "index_rss_mb": rss_index,
        "peak_rss_mb": peak_rss_mb(),
    }
    if cfg.get("save_keys"):
        np.save(cfg["save_keys"], found_arr, allow_pickle=False)
    if cfg.get("exact_keys") and Path(cfg["exact_keys"]).is_file():
        exact = np.load(cfg["exact_keys"], allow_pickle=False)
        result["recall"] = float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found_arr, exact)]))
    return result


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


TASKS = {
    "index": task_index,
    "prepare": task_prepare,
    "query": task_query,
    "cross-encoder": task_cross_encoder,
    "encode-queries": task_encode_queries,
    "scale": task_scale,
}


def main(argv: list[str]) -> int:
    task, cfg = argv[0], json.loads(argv[1])
    result = TASKS[task](cfg)
    print(RESULT_PREFIX + json.dumps(result, allow_nan=True, default=_default), flush=True)
    return 0


def _default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return None if math.isnan(value) else float(value)
    raise TypeError(type(value).__name__)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
