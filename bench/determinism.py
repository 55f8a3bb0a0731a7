"""Benchmark section ``determinism``: what one-row-a-run costs the int8 backends, and what it buys.

Dynamically quantized (int8) ONNX models compute activation scales per run over the whole batch, so a
row's output depends on its batch neighbours. winnow runs int8 rows one at a time (``OnnxRunner``
``rows_alone``). This section measures, in one process and in turns (ratios, not absolute times), the
speed of the shipped reranker and the bundled bi-encoder with rows batched and alone, and how far a
pair's score moves between alone and in a batch of neighbours either way.

``python -m bench.run --sections determinism`` (part of ``make bench``), or on its own:
``python -m bench.determinism [--data ../shared/data/msmarco]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SECTION = "determinism"
REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "msmarco"


def _passages(data: Path, n: int) -> tuple[str, list[str]]:
    from winnow.evaluate.dataset import load_beir
    from winnow.types import with_title

    dataset = load_beir(data)
    docs = dataset.read_corpus()[:n]
    return dataset.queries[dataset.judged[0]], [with_title(d.title, d.text) for d in docs]


def measure(data: Path = DEFAULT_DATA, *, pairs: int = 100, rounds: int = 5) -> dict:
    import numpy as np

    from winnow.encode.bi_encoder import BiEncoder
    from winnow.models.catalog import cpu_line
    from winnow.models.resolve import DEFAULT_RERANKER, SHIPPED_RERANKER
    from winnow.rerank.cross_encoder import CrossEncoderReranker

    query, texts = _passages(data, pairs)
    reranker = CrossEncoderReranker(DEFAULT_RERANKER or SHIPPED_RERANKER, cache=False)
    encoder = BiEncoder("sentence-transformers/all-MiniLM-L6-v2", backend="onnx-int8")
    reranker.score(query, texts[:2])
    encoder.encode_documents(texts[:2])
    models = {
        "reranker": (reranker._runner, lambda: reranker.score(query, texts), "pairs/s"),
        "bi-encoder": (encoder._runner, lambda: encoder.encode_documents(texts), "docs/s"),
    }
    out: dict = {"cpu": cpu_line(), "items": len(texts), "rounds": rounds, "models": {}}
    for name, (runner, run, unit) in models.items():
        times: dict[bool, list[float]] = {False: [], True: []}
        outputs: dict[bool, np.ndarray] = {}
        for _ in range(rounds):  # the two modes take turns, so a noisy neighbour hits both alike
            for alone in (False, True):
                runner.rows_alone = alone
                start = time.perf_counter()
                outputs[alone] = np.asarray(run())
                times[alone].append(time.perf_counter() - start)
        runner.rows_alone = True
        batched_rate = len(texts) / statistics.median(times[False])
        alone_rate = len(texts) / statistics.median(times[True])
        # how far a row moves between alone and batched (batched: each row's neighbours change its output)
        moved = float(np.max(np.abs(outputs[False] - outputs[True])))
        out["models"][name] = {
            "unit": unit,
            "batched": round(batched_rate, 1),
            "alone": round(alone_rate, 1),
            "alone_vs_batched": round(alone_rate / batched_rate, 3),
            "max_change_batched_vs_alone": round(moved, 5),
        }
    return out


def run(ctx) -> dict:
    return measure(ctx.data, rounds=3 if ctx.quick else 5)


def markdown(result: dict) -> str:
    lines = [f"### int8 rows alone vs batched ({result['cpu']}; {result['items']} items, median of {result['rounds']})", "",
             "| model | batched | alone | alone / batched | largest change of an output, batched vs alone |",
             "|---|---|---|---|---|"]
    for name, m in result["models"].items():
        lines.append(f"| {name} | {m['batched']:,.0f} {m['unit']} | {m['alone']:,.0f} {m['unit']} | "
                     f"{m['alone_vs_batched']:.2f}x | {m['max_change_batched_vs_alone']} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    result = measure(args.data, rounds=args.rounds)
    print(json.dumps(result, indent=2))
    print(markdown(result))


if __name__ == "__main__":
    main()
