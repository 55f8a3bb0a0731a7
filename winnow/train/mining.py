"""Hard-negative mining with winnow's own first stage.

The passage pool is indexed into a collection (named after its content, so a second run reuses the
encoded pool), every query is searched with the chosen first stage, and negatives are drawn, with a
fixed seed per query, from ranks ``skip_top+1 .. max_rank`` of its ranking:

* the positive itself, and any passage with the positive's exact text, is never a negative;
* the top ``skip_top`` ranks are skipped: that is where unlabelled relevant passages (false negatives)
  crowd;
* a candidate scoring too close to the positive (``score > positive - absolute_margin`` or
  ``score > positive * (1 - relative_margin)``) is skipped too; the positive's score is its score in the
  ranking, or for dense retrieval its exact similarity when it ranks below ``max_rank``;
* with a cross-encoder given, a candidate the cross-encoder scores within ``ce_margin`` of the positive
  (or above it) is dropped: high first-stage score, low cross-encoder score is what a hard negative is.

The same inputs and seed always give the same file.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Sequence

from winnow.errors import InvalidArgumentError
from winnow.models.resolve import DEFAULT_BI_ENCODER
from winnow.train.data import Passage, QueryPositive, passage_id
from winnow.types import Document

log = logging.getLogger(__name__)

METHODS = ("dense", "bm25", "hybrid")
SAMPLINGS = ("random", "top")


@dataclass(frozen=True)
class MiningConfig:
    method: str = "dense"
    skip_top: int = 3
    max_rank: int = 50
    negatives: int = 8
    relative_margin: float | None = 0.05
    absolute_margin: float | None = None
    sampling: str = "random"
    seed: int = 0
    model: str = DEFAULT_BI_ENCODER
    cross_encoder: str | None = None
    ce_margin: float = 0.0
    ce_max_length: int | None = 256
    keep_ranking: bool = True
    batch_size: int = 256

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InvalidArgumentError(f"unknown first stage {self.method!r}; choose one of: {', '.join(METHODS)}")
        if self.sampling not in SAMPLINGS:
            raise InvalidArgumentError(f"unknown sampling {self.sampling!r}; choose one of: {', '.join(SAMPLINGS)}")
        if self.skip_top < 0 or self.max_rank <= self.skip_top:
            raise InvalidArgumentError(
                f"need 0 <= skip_top < max_rank, got skip_top={self.skip_top}, max_rank={self.max_rank}"
            )
        if self.negatives < 1:
            raise InvalidArgumentError(f"negatives must be >= 1, got {self.negatives}")
        if self.relative_margin is not None and not 0.0 <= self.relative_margin < 1.0:
            raise InvalidArgumentError(f"relative_margin must be in [0, 1) or None, got {self.relative_margin}")
        if self.absolute_margin is not None and self.absolute_margin < 0:
            raise InvalidArgumentError(f"absolute_margin must be >= 0 or None, got {self.absolute_margin}")
        if self.batch_size < 1:
            raise InvalidArgumentError(f"batch_size must be >= 1, got {self.batch_size}")


@dataclass(frozen=True)
class MiningReport:
    queries: int
    written: int
    negatives: int
    short: int  # queries that got fewer negatives than asked
    positive_in_ranking: int  # queries whose positive the first stage ranked within max_rank
    skipped_margin: int
    skipped_cross_encoder: int
    pool: int
    collection: str
    seconds: float


def build_pool(
    pairs: Sequence[QueryPositive], corpus: Sequence[Document] = ()
) -> tuple[list[Document], dict[str, str]]:
    """The passage pool (``corpus``, every positive and every negative the pairs give, deduplicated by
    exact text; the first id wins) and each query's positive id."""
    docs: list[Document] = []
    by_text: dict[str, str] = {}
    for d in corpus:
        if d.text not in by_text:
            by_text[d.text] = d.id
            docs.append(d)
    positive_ids: dict[str, str] = {}
    for p in pairs:
        if p.positive not in by_text:
            by_text[p.positive] = passage_id(p.positive)
            docs.append(Document(id=by_text[p.positive], text=p.positive))
        positive_ids[p.qid] = by_text[p.positive]
    for p in pairs:
        for text in p.negatives:
            if text not in by_text:
                by_text[text] = passage_id(text)
                docs.append(Document(id=by_text[text], text=text))
    return docs, positive_ids


def pool_collection_name(docs: Sequence[Document], model: str) -> str:
    digest = hashlib.sha1(model.encode())
    for d in docs:
        digest.update(b"\0" + d.id.encode() + b"\1" + d.title.encode() + b"\2" + d.text.encode())
    return f"pool-{digest.hexdigest()[:16]}"


def mine_negatives(
    pairs: Sequence[QueryPositive],
    *,
    home: str | Path,
    corpus: Sequence[Document] = (),
    config: MiningConfig = MiningConfig(),
    progress: bool = False,
) -> tuple[list[dict], MiningReport]:
    """Mine negatives for every pair: returns the JSONL records (see :mod:`winnow.train.data`) and a report."""
    from winnow.collection import Collection

    start = time.perf_counter()
    if not pairs:
        raise InvalidArgumentError("no pairs to mine negatives for")
    seen = set()
    for p in pairs:
        if p.qid in seen:
            raise InvalidArgumentError(f"duplicate query id {p.qid!r} in the pairs")
        seen.add(p.qid)
    docs, positive_ids = build_pool(pairs, corpus)
    if len(docs) < 2:
        raise InvalidArgumentError(f"the passage pool has {len(docs)} passage(s); mining needs at least 2")
    texts = {d.id: d.text for d in docs}
    ids = {d.text: d.id for d in docs}
    # a query given on several lines (one per answer: SelQA, TrecQA, MEDIQA) has several positives: none
    # of them may be another line's negative
    answers: dict[str, set[str]] = {}
    for p in pairs:
        answers.setdefault(p.query, set()).add(positive_ids[p.qid])
    name = pool_collection_name(docs, config.model)
    with Collection.open_or_create(name, home=Path(home), model=config.model) as col:
        report = col.add(docs, upsert=True, progress=progress)
        if report.chunks_encoded:
            log.info("indexed the pool: %d passages, %d chunks in %.1f s", len(docs), report.chunks_encoded, report.seconds)
        retriever = col.retriever(config.method, dense_index="exact")
        exact = config.method == "dense"  # the positive's and given negatives' exact scores, ranked or not
        ce = _cross_encoder(config)
        counters = dict(skipped_margin=0, skipped_ce=0, short=0, found=0, negatives=0)
        records: list[dict] = []
        bar = _progress(len(pairs), progress)
        try:
            for batch in _batches(pairs, config.batch_size):
                rankings = retriever.search_many([p.query for p in batch], config.max_rank)
                wanted = [[positive_ids[p.qid], *(ids[t] for t in p.negatives)] for p in batch]
                exact_scores = col.similarities([p.query for p in batch], wanted) if exact else None
                for i, (pair, ranking) in enumerate(zip(batch, rankings)):
                    hits = [Passage(h.doc_id, texts[h.doc_id], round(float(h.score), 6), h.rank) for h in ranking.hits]
                    known = {} if exact_scores is None else dict(zip(wanted[i], exact_scores[i]))
                    given = [Passage(ids[t], t, known.get(ids[t])) for t in pair.negatives]
                    records.append(
                        _mine_one(pair, positive_ids[pair.qid], texts, hits, known.get(positive_ids[pair.qid]), given,
                                  answers[pair.query], ce, config, counters)
                    )
                bar.update(len(batch))
        finally:
            bar.close()
        collection_path = str(col.path)
    written = sum(1 for r in records if r["negatives"])
    out = MiningReport(
        queries=len(pairs),
        written=written,
        negatives=counters["negatives"],
        short=counters["short"],
        positive_in_ranking=counters["found"],
        skipped_margin=counters["skipped_margin"],
        skipped_cross_encoder=counters["skipped_ce"],
        pool=len(docs),
        collection=collection_path,
        seconds=time.perf_counter() - start,
    )
    return records, out


def _mine_one(pair, pos_id, texts, hits, fallback_score, given, answers, ce, config: MiningConfig, counters) -> dict:
    """One query's record. ``given`` are the source's own negatives (exact dense scores where known): those
    the ranking holds compete at their rank; the rest follow the ranked candidates, under the same margin
    rule (the false-negative filter: SQuAD's given paragraph sometimes holds the answer too). ``answers``
    are the ids of every positive of the same query text: never negatives."""
    pos_hit = next((h for h in hits if h.id == pos_id), None)
    if pos_hit is not None:
        counters["found"] += 1
    pos_score = pos_hit.score if pos_hit is not None else fallback_score
    positive = Passage(pos_id, texts[pos_id], pos_score, pos_hit.rank if pos_hit else None)
    candidates = []
    for h in hits:
        if h.rank <= config.skip_top or h.id == pos_id or h.id in answers or h.text == positive.text:
            continue
        if pos_score is not None and _too_close(h.score, pos_score, config):
            counters["skipped_margin"] += 1
            continue
        candidates.append(h)
    ranked = {h.id for h in hits}
    for g in given:
        if g.id in ranked or g.id == pos_id or g.id in answers or g.text == positive.text:
            continue
        if pos_score is not None and g.score is not None and _too_close(round(float(g.score), 6), pos_score, config):
            counters["skipped_margin"] += 1
            continue
        candidates.append(Passage(g.id, g.text, None if g.score is None else round(float(g.score), 6), None))
    ce_pos = None
    if ce is not None and candidates:
        scores = ce.score(pair.query, [positive.text] + [c.text for c in candidates])
        ce_pos = round(float(scores[0]), 6)
        kept = []
        for c, s in zip(candidates, scores[1:].tolist()):
            if s > ce_pos - config.ce_margin:
                counters["skipped_ce"] += 1
                continue
            kept.append(Passage(c.id, c.text, c.score, c.rank, round(float(s), 6)))
        candidates = kept
    rng = random.Random(f"{config.seed}:{pair.qid}")
    if config.sampling == "top" or len(candidates) <= config.negatives:
        chosen = candidates[: config.negatives]
    else:
        chosen = sorted(rng.sample(candidates, config.negatives), key=lambda c: (c.rank is None, c.rank or 0))
    if len(chosen) < config.negatives:
        counters["short"] += 1
    counters["negatives"] += len(chosen)
    record = {
        "qid": pair.qid,
        "query": pair.query,
        "positive": _passage_json(positive, ce_pos),
        "negatives": [_passage_json(c, c.ce_score) for c in chosen],
    }
    if config.keep_ranking:
        record["ranking"] = [[h.id, h.score] for h in hits]
    return record


def _too_close(score: float, pos_score: float, config: MiningConfig) -> bool:
    if config.absolute_margin is not None and score > pos_score - config.absolute_margin:
        return True
    if config.relative_margin is not None and score > pos_score - abs(pos_score) * config.relative_margin:
        return True
    return False


def _passage_json(p: Passage, ce_score: float | None) -> dict:
    out = {"id": p.id, "text": p.text, "score": p.score, "rank": p.rank}
    if ce_score is not None:
        out["ce_score"] = ce_score
    return out


def _cross_encoder(config: MiningConfig):
    if config.cross_encoder is None:
        return None
    from winnow.rerank.cross_encoder import CrossEncoderReranker

    return CrossEncoderReranker(config.cross_encoder, max_length=config.ce_max_length)


def _batches(items: Sequence, size: int) -> Iterator[Sequence]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="query", desc="mining", disable=not enabled)


def mining_meta(config: MiningConfig, report: MiningReport, **extra) -> dict:
    """What a mined file's sidecar ``<file>.meta.json`` records: the recipe and what it produced."""
    return {"config": asdict(config), "report": asdict(report), **extra}
