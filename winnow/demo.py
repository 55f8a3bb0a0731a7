"""``make demo``: index the bundled demo corpus and show the first stage against the reranked list
(winnow's default reranker, which ships inside the package).

Runs offline. Collections go to ``$WINNOW_HOME`` if set, else ``./demo-home`` (rebuilt each run).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from winnow.cli import configure_logging, format_ranking

CORPUS = Path(__file__).resolve().parent.parent / "examples" / "demo_corpus.jsonl"
QUERIES = [
    "How is Python used in machine learning?",
    "what makes bread rise",
    "why do planets go around the sun",
]


def main() -> int:
    configure_logging()
    from winnow.collection import Collection
    from winnow.corpus import read_documents
    from winnow.models.resolve import DEFAULT_RERANKER, SHIPPED_RERANKER
    from winnow.rerank.cross_encoder import CrossEncoderReranker

    home = Path(os.environ.get("WINNOW_HOME") or "demo-home")
    if (home / "demo").exists():
        shutil.rmtree(home / "demo")
    docs = read_documents(CORPUS)
    print(f"== indexing {len(docs)} documents from {CORPUS.name} into {home / 'demo'}")
    start = time.perf_counter()
    col = Collection.create("demo", home=home)
    report = col.add(docs, progress=True)
    print(f"   {report.chunks_encoded} chunks encoded and written as one segment (vectors + BM25 postings) in "
          f"{time.perf_counter() - start:.1f} s\n")

    name = DEFAULT_RERANKER or SHIPPED_RERANKER
    reranker = CrossEncoderReranker(name)
    print(f"== reranking with {name}" + (" (winnow's default reranker)" if name == DEFAULT_RERANKER else ""))
    for query in QUERIES:
        for method in ("bm25", "dense"):
            ranking = col.search(query, method=method, top_k=3)
            print(f"-- first stage only ({method}): {', '.join(ranking.doc_ids)}")
        ranking = col.search(query, method="hybrid", top_k=5, depth=20, reranker=reranker)
        print(format_ranking(ranking, method="hybrid", reranked=True, top_k=5))
        print()
    col.close()
    print("Try it yourself:")
    print(f"  .venv/bin/winnow --data {home} search demo \"how do search engines rank pages\" --method hybrid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
