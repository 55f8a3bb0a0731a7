"""Teacher scores for distillation: winnow's reranker scores each training query's positive and negatives.

One type flows on: :class:`DistillExample` (a query, its passages with the positive first, and the
teacher's raw logit for each). Scoring is the costly step (a cross-encoder pass per pair), so it runs in
chunks of ``chunk`` queries, each written atomically to ``<cache>/part-NNNNN.jsonl`` as it finishes: an
interrupted run, started again, scores only the chunks it has not written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from winnow.errors import InvalidArgumentError
from winnow.train.data import TrainingExample

# (query, texts) -> one raw teacher score per text (e.g. CrossEncoderReranker.raw_scores)
Scorer = Callable[[str, Sequence[str]], np.ndarray]


@dataclass(frozen=True)
class DistillExample:
    qid: str
    query: str
    texts: tuple[str, ...]  # the positive first, then negatives (hardest first, as mined)
    teacher: tuple[float, ...]  # the teacher's raw score of each text
    source: str = ""

    def to_json(self) -> dict:
        return {"qid": self.qid, "query": self.query, "texts": list(self.texts), "teacher": list(self.teacher),
                "source": self.source}

    @classmethod
    def from_json(cls, d: dict) -> "DistillExample":
        return cls(d["qid"], d["query"], tuple(d["texts"]), tuple(float(x) for x in d["teacher"]), d.get("source", ""))


def teacher_reranker(model: str | None = None):
    """The teacher: winnow's shipped reranker (or ``model``), raw logits, no mix, no score cache."""
    from winnow.models.resolve import SHIPPED_RERANKER
    from winnow.rerank.cross_encoder import CrossEncoderReranker

    return CrossEncoderReranker(model or SHIPPED_RERANKER, cache=False, use_mix=False)


def score_examples(
    examples: Sequence[TrainingExample],
    scorer: Scorer,
    *,
    negatives: int,
    cache: str | Path | None = None,
    chunk: int = 256,
    progress: bool = False,
) -> list[DistillExample]:
    """Each example's first positive and first ``negatives`` negatives, scored by ``scorer``. Examples with
    fewer negatives keep the ones they have. ``cache``: a folder of finished chunks (see the module doc);
    a chunk whose query ids differ from the examples' (another sample, another order) is an error, not
    silently reused."""
    from winnow.storage import write_lines_atomic

    if negatives < 1:
        raise InvalidArgumentError(f"negatives must be >= 1 to distil a margin, got {negatives}")
    if chunk < 1:
        raise InvalidArgumentError(f"chunk must be >= 1, got {chunk}")
    todo = [e for e in examples if e.positives and e.negatives]
    out: list[DistillExample] = []
    bar = _bar(len(todo), progress)
    for n, start in enumerate(range(0, len(todo), chunk)):
        part = todo[start : start + chunk]
        path = Path(cache) / f"part-{n:05d}.jsonl" if cache is not None else None
        if path is not None and path.is_file():
            done = [DistillExample.from_json(json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines()]
            if [d.qid for d in done] != [e.qid for e in part]:
                raise InvalidArgumentError(
                    f"{path} holds teacher scores of other queries; remove {Path(cache)} or use another run folder"
                )
            if [len(d.texts) for d in done] != [1 + min(negatives, len(e.negatives)) for e in part]:
                raise InvalidArgumentError(
                    f"{path} holds teacher scores of another number of negatives than {negatives}; "
                    f"remove {Path(cache)} or use another run folder"
                )
        else:
            done = []
            for e in part:
                texts = (e.positives[0].text, *(p.text for p in e.negatives[:negatives]))
                scores = np.asarray(scorer(e.query, list(texts)), dtype=np.float32)
                done.append(DistillExample(e.qid, e.query, texts, tuple(round(float(s), 5) for s in scores), e.source))
            if path is not None:
                write_lines_atomic(path, (d.to_json() for d in done))
        out += done
        if bar is not None:
            bar.update(len(part))
    if bar is not None:
        bar.close()
    return out


def teacher_pairs(examples: Iterable[DistillExample]) -> dict[str, list]:
    """Columns for a pointwise distillation loss: one (query, passage, label) row per scored text, the
    label the teacher's raw logit (the student learns the teacher's scale as well as its order)."""
    cols: dict[str, list] = {"query": [], "passage": [], "label": []}
    for e in examples:
        for text, score in zip(e.texts, e.teacher):
            cols["query"].append(e.query)
            cols["passage"].append(text)
            cols["label"].append(float(score))
    return cols


def drop_false_negatives(examples: Iterable[DistillExample], *, margin: float) -> list[DistillExample]:
    """The seeds' filter: keep a negative only where the teacher scores it at least ``margin`` below the
    positive (a high first-stage score and a low reranker score); examples left with none are dropped."""
    out = []
    for e in examples:
        pos = e.teacher[0]
        keep = [i for i in range(1, len(e.texts)) if e.teacher[i] <= pos - margin]
        if keep:
            out.append(DistillExample(e.qid, e.query, (e.texts[0], *(e.texts[i] for i in keep)),
                                      (pos, *(e.teacher[i] for i in keep)), e.source))
    return out


def _bar(total: int, progress: bool):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="teacher scores", unit="query")
