"""Benchmark section ``segments``: what a write costs as a collection grows, now that writes add segments.

For collections of 10k, 100k and 1M chunks (the first 5,000 msmarco passages and their real embeddings;
beyond 5k, copies of them with each vector perturbed by Gaussian noise and renormalized, and the text
repeated with a copy number, so BM25 reads replicated text): time to add 1 document, add 1,000, delete 1,
delete 1,000, search p50 (dense exact, BM25, hybrid; first stage only) before and after those writes,
and the time of a full merge (``winnow optimize``). Index work only: the collection encodes through a
replay encoder that hands back the prepared vectors, and the real bi-encoder's time for 1 and 1,000
passages is measured apart. Collections here keep no HNSW graphs (``hnsw_min_rows`` above the sizes),
so dense search is exact at every size.

``python -m bench.run --sections segments`` (part of ``make bench``), or on its own:
``python -m bench.segments [--sizes 10000,100000,1000000] [--data ../shared/data/msmarco]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SECTION = "segments"
REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "msmarco"
BASE = 5000
SIGMA = 0.025
BATCH = 50_000
WRITES = (("add 1", 1), ("add 1,000", 1000), ("delete 1", 1), ("delete 1,000", 1000))


class ReplayEncoder:
    """Hands back prepared vectors for prepared texts (the corpus copies): index work measured alone."""

    def __init__(self, vectors, row_of: dict[str, int], queries) -> None:
        self.vectors, self.row_of, self.queries = vectors, row_of, queries
        self.dim = int(vectors.shape[1])

    def encode_documents(self, texts, progress: bool = False):
        import numpy as np

        return np.asarray(self.vectors[[self.row_of[t] for t in texts]], dtype=np.float32)

    def encode_queries(self, queries):
        return self.queries.encode_queries(queries)


def _copies(data: Path, n: int, work: Path):
    """Documents, their vectors (a memory-mapped array) and the queries, for a corpus of ``n`` passages."""
    import numpy as np

    from winnow.encode.bi_encoder import BiEncoder
    from winnow.evaluate.dataset import load_beir
    from winnow.types import Document

    dataset = load_beir(data)
    base = dataset.read_corpus()[:BASE]
    encoder = BiEncoder("sentence-transformers/all-MiniLM-L6-v2")
    cache = work / "base-vectors.npy"
    if cache.is_file():
        base_vectors = np.load(cache)
    else:
        base_vectors = encoder.encode_documents([d.text if not d.title else f"{d.title} {d.text}" for d in base])
        np.save(cache, base_vectors)
    docs = []
    vectors = np.lib.format.open_memmap(work / f"vectors-{n}.npy", mode="w+", dtype=np.float32, shape=(n + 2000, base_vectors.shape[1]))
    rng = np.random.default_rng(0)
    for start in range(0, n + 2000, BASE):
        stop = min(start + BASE, n + 2000)
        rows = np.arange(start, stop) % BASE
        block = base_vectors[rows]
        if start >= BASE:
            block = block + rng.normal(0, SIGMA, block.shape).astype(np.float32)
            block /= np.linalg.norm(block, axis=1, keepdims=True)
        vectors[start:stop] = block
    for i in range(n + 2000):  # 2,000 beyond n: the documents the writes add
        d = base[i % BASE]
        text = d.text if i < BASE else f"{d.text} (copy {i // BASE})"
        docs.append(Document(f"{d.id}-{i}", text, d.title))
    queries = [dataset.queries[q] for q in dataset.judged[:20]]
    return docs, vectors, queries, encoder


def _p50_search(col, queries, method: str) -> float:
    times = []
    for q in queries:
        start = time.perf_counter()
        col.search(q, method=method, top_k=10, depth=100, dense_index="exact")
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000.0


def measure_size(n: int, data: Path, work: Path) -> dict:
    from winnow.collection import Collection
    from winnow.types import with_title

    docs, vectors, queries, real = _copies(data, n, work)
    replay = ReplayEncoder(vectors, {with_title(d.title, d.text): i for i, d in enumerate(docs)}, real)
    home = work / f"home-{n}"
    Collection.create(f"c{n}", home=home, hnsw_min_rows=10**9).close()
    col = Collection.open(f"c{n}", home=home, encoder_for=lambda model: replay)
    start = time.perf_counter()
    for lo in range(0, n, BATCH):
        col.add(docs[lo : min(n, lo + BATCH)])
    build = time.perf_counter() - start
    info = col.info()
    assert info.chunks == n, f"expected one chunk per passage: {info.chunks} chunks for {n} passages"
    for q in queries[:2]:  # load segments and warm numba/numpy paths before timing
        col.search(q, method="hybrid")
    before = {m: _p50_search(col, queries, m) for m in ("dense", "bm25", "hybrid")}
    writes = {}
    extra = iter(range(n, n + 2000))
    for label, count in WRITES:
        if label.startswith("add"):
            batch = [docs[next(extra)] for _ in range(count)]
            start = time.perf_counter()
            col.add(batch)
        else:
            ids = [docs[i].id for i in range(7, 7 + count * 3, 3)]
            start = time.perf_counter()
            col.delete(ids)
        writes[label] = round(time.perf_counter() - start, 4)
    after = {m: _p50_search(col, queries, m) for m in ("dense", "bm25", "hybrid")}
    segments_before_merge = col.info().segments
    start = time.perf_counter()
    col.optimize()
    merge = time.perf_counter() - start
    merged = {m: _p50_search(col, queries, m) for m in ("dense", "bm25", "hybrid")}
    col.close()
    shutil.rmtree(home, ignore_errors=True)
    (work / f"vectors-{n}.npy").unlink(missing_ok=True)
    return {
        "chunks": n, "build_s": round(build, 1), "writes_s": writes,
        "search_p50_ms_before": {k: round(v, 2) for k, v in before.items()},
        "search_p50_ms_after": {k: round(v, 2) for k, v in after.items()},
        "search_p50_ms_merged": {k: round(v, 2) for k, v in merged.items()},
        "segments_before_merge": segments_before_merge, "merge_s": round(merge, 2),
    }


def encoding_cost(data: Path) -> dict:
    """The real bi-encoder's time for 1 and 1,000 passages (what a write adds before its index work)."""
    from winnow.encode.bi_encoder import BiEncoder
    from winnow.evaluate.dataset import load_beir

    texts = [d.text for d in load_beir(data).read_corpus()[:1000]]
    encoder = BiEncoder("sentence-transformers/all-MiniLM-L6-v2")
    encoder.encode_documents(texts[:4])
    out = {}
    for label, batch in (("1", texts[:1]), ("1,000", texts)):
        start = time.perf_counter()
        encoder.encode_documents(batch)
        out[label] = round(time.perf_counter() - start, 3)
    return out


def measure(data: Path = DEFAULT_DATA, sizes=(10_000, 100_000, 1_000_000), work: Path | None = None) -> dict:
    from winnow.models.catalog import cpu_line

    scratch = Path(tempfile.mkdtemp(prefix="winnow-segments-", dir=work))
    try:
        rows = [measure_size(n, data, scratch) for n in sizes]
        return {"cpu": cpu_line(), "sigma": SIGMA, "batch": BATCH, "encoding_s": encoding_cost(data), "sizes": rows}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run(ctx) -> dict:
    sizes = (10_000, 50_000) if ctx.quick else (10_000, 100_000, 1_000_000)
    return measure(ctx.data, sizes, ctx.work)


def markdown(result: dict) -> str:
    enc = result["encoding_s"]
    lines = [
        f"### Writes into a growing collection ({result['cpu']})", "",
        f"Index work only (encoding apart: the bi-encoder takes {enc['1']} s for 1 passage, {enc['1,000']} s for 1,000). "
        f"Beyond 5k chunks: copies of msmarco passages, vectors perturbed (sigma {result['sigma']}); dense search exact.", "",
        "| chunks | add 1 | add 1,000 | delete 1 | delete 1,000 | search p50 before (dense / bm25 / hybrid) | after the writes | "
        "segments | full merge | after the merge |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    fmt = lambda d: " / ".join(f"{d[m]:.1f}" for m in ("dense", "bm25", "hybrid")) + " ms"  # noqa: E731
    for r in result["sizes"]:
        w = r["writes_s"]
        lines.append(
            f"| {r['chunks']:,} | {w['add 1']:.3f} s | {w['add 1,000']:.3f} s | {w['delete 1']:.3f} s | {w['delete 1,000']:.3f} s | "
            f"{fmt(r['search_p50_ms_before'])} | {fmt(r['search_p50_ms_after'])} | {r['segments_before_merge']} | "
            f"{r['merge_s']:.1f} s | {fmt(r['search_p50_ms_merged'])} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--sizes", type=lambda s: [int(float(x)) for x in s.split(",")], default=[10_000, 100_000, 1_000_000])
    p.add_argument("--output", type=Path, help="also write the result as JSON here")
    args = p.parse_args()
    result = measure(args.data, args.sizes)
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(markdown(result))


if __name__ == "__main__":
    main()
