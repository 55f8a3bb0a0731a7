"""A long-document test set built from training data: passages concatenated into multi-page documents,
each query's answer placed at a random page.

For the queries a training run held out (``split_dev`` of each mined file, the same count and seed as
``winnow train reranker --dev-per-file N --seed S``: never trained on), each query gets

- one **answer document**: ``pages`` passages, its positive at a page drawn uniformly (0 = first), the other
  pages filler drawn from the same file's pool of passages;
- ``distractors`` **distractor documents**: filler pages with one of its mined hard negatives at a random
  page, so that the first stage finds look-alikes and the reranker has to tell them apart.

Filler never holds a held-out query's positive or negatives (each of those passages appears once in the
corpus). The queries are split (seeded) into ``qrels/dev.tsv`` (to choose settings on) and
``qrels/test.tsv`` (to report); every answer document is judged 1 for its query. Written in BEIR layout
with ``longdoc.json`` (the recipe, and each query's answer page) beside it.

``python -m winnow.evaluate.longdoc runs/r6/mined/{msmarco,squad_v1_train,nq_qed_train,medquad}-dense.jsonl -o DIR``
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from winnow.errors import InvalidArgumentError
from winnow.storage import write_json_atomic

FORMAT_VERSION = 1
PAGE_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class LongDocRecipe:
    files: tuple[str, ...]
    dev_per_file: int = 60
    seed: int = 0  # the training run's dev seed: which queries are held out
    pages: int = 8
    distractors: int = 2
    dev_share: float = 0.5  # share of the queries in qrels/dev.tsv
    build_seed: int = 0  # placement of answers, filler and the dev/test split


@dataclass(frozen=True)
class LongDocSet:
    path: Path
    documents: int
    queries: int
    dev_queries: int
    test_queries: int
    answer_pages: dict[str, int]  # qid -> page (0-based) of its answer


def build_longdoc(recipe: LongDocRecipe, output: Path | str) -> LongDocSet:
    """Write the set described by ``recipe`` under ``output`` (a new or empty folder)."""
    from winnow.train.data import read_training_file, split_dev

    if recipe.pages < 2:
        raise InvalidArgumentError(f"pages must be >= 2 (a long document), got {recipe.pages}")
    if recipe.distractors < 0:
        raise InvalidArgumentError(f"distractors must be >= 0, got {recipe.distractors}")
    if not 0 < recipe.dev_share < 1:
        raise InvalidArgumentError(f"dev_share must be in (0, 1), got {recipe.dev_share}")
    output = Path(output)
    if output.exists() and any(output.iterdir()):
        raise InvalidArgumentError(f"output folder {str(output)!r} is not empty; give a new folder")
    rng = random.Random(recipe.build_seed)
    corpus: list[dict] = []
    queries: dict[str, str] = {}
    answers: dict[str, str] = {}
    answer_pages: dict[str, int] = {}
    for path in recipe.files:
        examples = read_training_file(path)
        held = split_dev(examples, recipe.dev_per_file, seed=recipe.seed)[1]
        reserved = {p.text for e in held for p in (*e.positives, *e.negatives)}
        pool = sorted({p.text for e in examples for p in (*e.positives, *e.negatives)} - reserved)
        if len(pool) < recipe.pages:
            raise InvalidArgumentError(f"{path}: {len(pool)} filler passages, fewer than {recipe.pages} pages")
        for e in held:
            qid = f"{Path(path).name.split('-')[0]}:{e.qid}"
            queries[qid] = e.query
            page = rng.randrange(recipe.pages)
            doc_id = f"{qid}:answer"
            corpus.append({"_id": doc_id, "title": "", "text": _document(e.positives[0].text, page, pool, recipe.pages, rng)})
            answers[qid], answer_pages[qid] = doc_id, page
            for j, negative in enumerate(e.negatives[: recipe.distractors]):
                corpus.append({"_id": f"{qid}:distractor{j}", "title": "",
                               "text": _document(negative.text, rng.randrange(recipe.pages), pool, recipe.pages, rng)})
    qids = sorted(queries)
    rng.shuffle(qids)
    n_dev = round(len(qids) * recipe.dev_share)
    splits = {"dev": sorted(qids[:n_dev]), "test": sorted(qids[n_dev:])}
    (output / "qrels").mkdir(parents=True, exist_ok=True)
    _write_lines(output / "corpus.jsonl", [json.dumps(d, ensure_ascii=False) for d in corpus])
    _write_lines(output / "queries.jsonl", [json.dumps({"_id": q, "text": queries[q]}, ensure_ascii=False) for q in sorted(queries)])
    for split, ids in splits.items():
        _write_lines(output / "qrels" / f"{split}.tsv", ["query-id\tcorpus-id\tscore", *(f"{q}\t{answers[q]}\t1" for q in ids)])
    write_json_atomic(output / "longdoc.json", {
        "format_version": FORMAT_VERSION, "recipe": asdict(recipe), "documents": len(corpus),
        "queries": {s: len(ids) for s, ids in splits.items()}, "answer_pages": answer_pages,
    }, sort_keys=True)
    return LongDocSet(output, len(corpus), len(queries), len(splits["dev"]), len(splits["test"]), answer_pages)


def _document(passage: str, page: int, pool: Sequence[str], pages: int, rng: random.Random) -> str:
    filler = rng.sample(pool, pages - 1)
    return PAGE_SEPARATOR.join([*filler[:page], passage, *filler[page:]])


def _write_lines(path: Path, lines: Sequence[str]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m winnow.evaluate.longdoc", description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", help="mined training files (the held-out queries of each are used)")
    p.add_argument("-o", "--output", required=True, help="new folder for the BEIR set")
    p.add_argument("--dev-per-file", type=int, default=60, help="queries training held out of each file (default 60)")
    p.add_argument("--seed", type=int, default=0, help="training's dev seed (default 0)")
    p.add_argument("--pages", type=int, default=8, help="passages per document (default 8)")
    p.add_argument("--distractors", type=int, default=2, help="distractor documents per query (default 2)")
    p.add_argument("--dev-share", type=float, default=0.5, help="share of queries in qrels/dev.tsv (default 0.5)")
    p.add_argument("--build-seed", type=int, default=0, help="seed of the placements and the split (default 0)")
    args = p.parse_args(argv)
    built = build_longdoc(
        LongDocRecipe(tuple(args.files), args.dev_per_file, args.seed, args.pages, args.distractors, args.dev_share, args.build_seed),
        args.output,
    )
    print(f"wrote {built.path}: {built.documents} documents, {built.dev_queries} dev and {built.test_queries} test queries")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
