"""Training data for the reranker: reading query/positive pairs, WikiQA and mined files; splitting; and
turning examples into the column layouts the cross-encoder losses read.

One type flows through: :class:`TrainingExample` (a query, its positives, its negatives, and where known
the first stage's ranking). Mined JSONL files (written by :mod:`winnow.train.mining`) hold one example a
line::

    {"qid": "q17", "query": "...", "positive": {"id", "text", "score", "rank"},
     "negatives": [{"id", "text", "score", "rank"(, "ce_score")}, ...],
     "ranking": [[doc_id, first_stage_score], ...]}

A plain pairs file (``{"query": ..., "positive": "...", "negatives": ["...", ...]}`` a line, ``negatives``
optional; the format of every source in ``shared/data/train/*/train.jsonl.gz``) reads as examples with the
negatives the file gives. Query ids, where a file gives none, are ``<source>-q<line>``: the source is the
file's folder for generic names (``squad_v1_train/train.jsonl.gz`` -> ``squad_v1_train``), else its stem,
so ids never collide across files.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from winnow.errors import CorpusError, InvalidArgumentError, MissingDependencyError

# Column layouts of the cross-encoder losses (see winnow.train.trainer.LOSSES).
FORMATS = ("pairs", "list", "tuple")


@dataclass(frozen=True)
class Passage:
    """A passage as training sees it; ``score``/``rank`` are the first stage's, ``ce_score`` a cross-encoder's."""

    id: str
    text: str
    score: float | None = None
    rank: int | None = None
    ce_score: float | None = None


@dataclass(frozen=True)
class QueryPositive:
    """One labelled pair: a query and a passage that answers it."""

    qid: str
    query: str
    positive: str
    negatives: tuple[str, ...] = ()  # negatives the source gives (same article, same disease...)
    source: str = ""


@dataclass(frozen=True)
class TrainingExample:
    """A query with its positives and (mined or labelled) negatives.

    ``ranking`` is the first stage's list for the query, best first, where it is known (mined files);
    dev evaluation reranks it to compare the reranker with the first stage.
    """

    qid: str
    query: str
    positives: tuple[Passage, ...]
    negatives: tuple[Passage, ...] = ()
    source: str = ""
    ranking: tuple[Passage, ...] = field(default=(), repr=False)


# -- text ----------------------------------------------------------------------------------------
def fix_text(text: str) -> str:
    """Repair mojibake (MS MARCO's UTF-8 read as Latin-1, e.g. ``"â\\x80\\x93"`` -> ``"–"``) with ftfy,
    then the lone ``"â"`` left where the source lost the two middle bytes of ``’ – “ ”`` (about 1% of the
    MS MARCO training texts: ``"Whatâs"``, ``" â "``, ``"âQuoted.â"``)."""
    try:
        import ftfy
    except ImportError as exc:  # pragma: no cover - ftfy is in the train extra
        raise MissingDependencyError("fixing text needs ftfy: pip install 'winnow[train]'") from exc
    text = ftfy.fix_text(text)
    if "â" in text:
        for pattern, replacement in _LOST_BYTES:
            text = pattern.sub(replacement, text)
    return text


_LOST_BYTES = [
    (re.compile(r"(?<=\w)â(?=(?:s|t|re|ll|ve|d|m)\b)", re.IGNORECASE), "'"),  # What’s, don’t, they’re
    (re.compile(r"(?<=\s)â(?=\s)|(?<=\d)â(?=\d)"), "–"),  # a dash between words, a range 1933–2008
    (re.compile(r"(?:(?<=^)|(?<=[\s(\[]))â(?=[A-Z0-9])"), '"'),  # an opening quote
    (re.compile(r"(?<=[\w.,!?)])â(?=[\s,.;:!?)\]]|$)"), '"'),  # a closing quote
]


def passage_id(text: str) -> str:
    """A stable id for a passage known only by its text."""
    return "p" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:15]


# -- readers -------------------------------------------------------------------------------------
_GENERIC_STEMS = frozenset({"train", "dev", "test", "validation", "graded", "data", "pairs"})


def source_name(path: str | Path) -> str:
    """The data source a file belongs to: its folder for generic file names (``medquad/train.jsonl.gz`` ->
    ``medquad``), else the name before the first dot (``msmarco-dense.jsonl`` -> ``msmarco-dense``)."""
    path = Path(path)
    stem = path.name.split(".")[0]
    if stem.lower() in _GENERIC_STEMS and path.parent.name:
        return path.parent.name
    return stem


def _open_text(path: Path):
    if path.suffix == ".gz":
        import gzip

        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def _json_lines(path: Path) -> Iterator[tuple[int, dict]]:
    try:
        fh = _open_text(path)
    except OSError as exc:
        raise CorpusError(str(path), None, f"cannot read: {exc.strerror or exc}") from exc
    with fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CorpusError(str(path), line_no, f"invalid JSON ({exc.msg})") from exc
            if not isinstance(record, dict):
                raise CorpusError(str(path), line_no, f"expected a JSON object, got {type(record).__name__}")
            yield line_no, record


def _text(record: dict, key: str, path: Path, line: int) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value.strip():
        raise CorpusError(str(path), line, f"field {key!r} must be a non-empty string, got {value!r:.80}")
    return value


def read_positives(
    path: str | Path, *, fix: bool = True, limit: int | None = None, sample: int | None = None, seed: int = 0
) -> list[QueryPositive]:
    """``{"query": ..., "positive": ..., "negatives": [...]}`` a line (qid from ``qid``/``_id`` or
    ``<source>-q<line>``); ftfy-fixed by default. ``limit`` keeps the first N lines, ``sample`` a seeded
    random N of them (sources are ordered by article or topic, so the first N are few topics)."""
    path = Path(path)
    source = source_name(path)
    out: list[QueryPositive] = []
    for line, record in _json_lines(path):
        query, positive = _text(record, "query", path, line), _text(record, "positive", path, line)
        negatives = record.get("negatives") or []
        if not isinstance(negatives, list) or not all(isinstance(n, str) for n in negatives):
            raise CorpusError(str(path), line, f"'negatives' must be a list of strings, got {negatives!r:.80}")
        if fix:
            query, positive, negatives = fix_text(query), fix_text(positive), [fix_text(n) for n in negatives]
        qid = str(record.get("qid", record.get("_id", f"{source}-q{line}")))
        negs = tuple(dict.fromkeys(n.strip() for n in negatives if n.strip() and n.strip() != positive.strip()))
        out.append(QueryPositive(qid, query.strip(), positive.strip(), negs, source))
        if limit is not None and len(out) >= limit:
            break
    if not out:
        raise CorpusError(str(path), None, "no pairs in file")
    if sample is not None:
        if sample < 1:
            raise InvalidArgumentError(f"sample must be >= 1, got {sample}")
        if sample < len(out):
            keep = sorted(random.Random(seed).sample(range(len(out)), sample))
            out = [out[i] for i in keep]
    return out


def _passage(raw, path: Path, line: int, what: str) -> Passage:
    if isinstance(raw, str):
        return Passage(passage_id(raw), raw)
    if not isinstance(raw, dict) or not isinstance(raw.get("text"), str):
        raise CorpusError(str(path), line, f"{what} must be a string or an object with 'text', got {raw!r:.80}")
    return Passage(
        id=str(raw.get("id") or passage_id(raw["text"])),
        text=raw["text"],
        score=raw.get("score"),
        rank=raw.get("rank"),
        ce_score=raw.get("ce_score"),
    )


def read_mined(path: str | Path, *, source: str | None = None) -> list[TrainingExample]:
    """A mined JSONL file (or a plain pairs file) -> examples; rankings get their texts from every passage
    the file names (ids whose text the file never gives are left out of the ranking)."""
    path = Path(path)
    source = source or source_name(path)
    rows: list[tuple[TrainingExample, list]] = []
    texts: dict[str, str] = {}
    for line, record in _json_lines(path):
        query = _text(record, "query", path, line)
        if "positive" not in record:
            raise CorpusError(str(path), line, "missing field 'positive'")
        positive = _passage(record["positive"], path, line, "positive")
        negatives = record.get("negatives") or []
        if not isinstance(negatives, list):
            raise CorpusError(str(path), line, f"'negatives' must be a list, got {type(negatives).__name__}")
        negs = tuple(_passage(n, path, line, "a negative") for n in negatives)
        for p in (positive, *negs):
            texts.setdefault(p.id, p.text)
        qid = str(record.get("qid", f"{source}-q{line}"))
        rows.append((TrainingExample(qid, query, (positive,), negs, source), record.get("ranking") or []))
    if not rows:
        raise CorpusError(str(path), None, "no examples in file")
    out = []
    for example, ranking in rows:
        if ranking:
            hits = tuple(
                Passage(str(doc_id), texts[str(doc_id)], float(score), rank)
                for rank, (doc_id, score) in enumerate(ranking, start=1)
                if str(doc_id) in texts
            )
            example = TrainingExample(example.qid, example.query, example.positives, example.negatives, source, hits)
        out.append(example)
    return out


def read_wikiqa(path: str | Path, *, keep_unanswered: bool = False) -> list[TrainingExample]:
    """WikiQA TSV (question_id, question, sentence, label) -> one example per question; the other candidate
    sentences of a question are its (hard) negatives. Questions without a correct sentence are dropped."""
    path = Path(path)
    groups: dict[str, dict] = {}
    try:
        fh = open(path, encoding="utf-8", newline="")
    except OSError as exc:
        raise CorpusError(str(path), None, f"cannot read: {exc.strerror or exc}") from exc
    with fh:
        reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        want = ["question_id", "question", "sentence", "label"]
        if header != want:
            raise CorpusError(str(path), 1, f"expected the header columns {want}, got {header!r}")
        for line, row in enumerate(reader, start=2):
            if len(row) != 4 or row[3] not in ("0", "1"):
                raise CorpusError(str(path), line, f"expected 4 tab-separated fields with label 0/1, got {row!r:.120}")
            qid, question, sentence, label = row
            g = groups.setdefault(qid, {"query": question, "pos": [], "neg": []})
            p = Passage(f"wikiqa-{path.name.split('.')[0]}-{qid}-{len(g['pos']) + len(g['neg'])}", sentence)
            g["pos" if label == "1" else "neg"].append(p)
    split = path.name.split(".")[0]  # question ids repeat across WikiQA's train/dev/test files
    return [
        TrainingExample(f"wikiqa-{split}-{qid}", g["query"], tuple(g["pos"]), tuple(g["neg"]), "wikiqa")
        for qid, g in groups.items()
        if g["pos"] or keep_unanswered
    ]


def read_training_file(path: str | Path) -> list[TrainingExample]:
    """By extension: ``.tsv`` is WikiQA, ``.jsonl`` (or ``.jsonl.gz``) a mined (or pairs) file."""
    path = Path(path)
    if path.suffix == ".tsv":
        return read_wikiqa(path)
    if path.name.endswith((".jsonl", ".jsonl.gz", ".json")):
        return read_mined(path)
    raise InvalidArgumentError(
        f"training file {str(path)!r}: use a mined .jsonl (or .jsonl.gz) file or a WikiQA .tsv file"
    )


def merge_by_query(examples: Iterable[TrainingExample]) -> list[TrainingExample]:
    """One example per query id, in first-seen order: the same query mined by several first stages (one
    file each) becomes one example whose negatives alternate between the files' (hardest first from each,
    duplicates by text dropped), so a list loss sees dense and BM25 negatives together at no extra cost.
    Positives are united; the first file's source and first-stage ranking are kept."""
    merged: dict[str, list[TrainingExample]] = {}
    for e in examples:
        merged.setdefault(e.qid, []).append(e)
    out = []
    for group in merged.values():
        head = group[0]
        if len(group) == 1:
            out.append(head)
            continue
        positives = tuple({p.text: p for e in group for p in e.positives}.values())
        pos_texts = {p.text for p in positives}
        negatives: dict[str, Passage] = {}
        for i in range(max(len(e.negatives) for e in group)):
            for e in group:
                if i < len(e.negatives) and e.negatives[i].text not in pos_texts:
                    negatives.setdefault(e.negatives[i].text, e.negatives[i])
        out.append(TrainingExample(head.qid, head.query, positives, tuple(negatives.values()), head.source, head.ranking))
    return out


# -- splits --------------------------------------------------------------------------------------
def trained_model_folder(path: str | Path) -> Path:
    """``path`` as a trained model folder (one with ``config.json``), or a typed error saying what to give."""
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise InvalidArgumentError(f"{str(path)!r} is not a model folder (no config.json); give <run>/model")
    return folder


def split_dev(
    examples: Sequence[TrainingExample], n_dev: int, *, seed: int = 0
) -> tuple[list[TrainingExample], list[TrainingExample]]:
    """Hold out ``n_dev`` queries (seeded) for evaluation during training: returns (train, dev)."""
    if n_dev < 0 or n_dev >= len(examples):
        raise InvalidArgumentError(f"dev size must be in 0..{len(examples) - 1} for {len(examples)} examples, got {n_dev}")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    dev_idx = set(order[:n_dev])
    train = [e for i, e in enumerate(examples) if i not in dev_idx]
    dev = [examples[i] for i in sorted(dev_idx)]
    return train, dev


# -- datasets for the losses ---------------------------------------------------------------------
def rows(examples: Iterable[TrainingExample], fmt: str, *, negatives: int, seed: int = 0) -> dict[str, list]:
    """Columns for one loss layout:

    * ``pairs``: query, passage, label (1.0 for each positive, 0.0 for up to ``negatives`` negatives);
    * ``list``: query, docs, labels (positives and up to ``negatives`` negatives, shuffled with ``seed``);
    * ``tuple``: query, positive, negative_1..negative_n, one row per positive; examples with fewer than
      ``negatives`` negatives are skipped (``negatives=0`` gives pairs for in-batch negatives).
    """
    if fmt not in FORMATS:
        raise InvalidArgumentError(f"unknown data format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if negatives < 0:
        raise InvalidArgumentError(f"negatives must be >= 0, got {negatives}")
    rng = random.Random(seed)
    if fmt == "pairs":
        cols: dict[str, list] = {"query": [], "passage": [], "label": []}
        for e in examples:
            for p, label in [(p, 1.0) for p in e.positives] + [(n, 0.0) for n in e.negatives[:negatives]]:
                cols["query"].append(e.query)
                cols["passage"].append(p.text)
                cols["label"].append(label)
        return cols
    if fmt == "list":
        cols = {"query": [], "docs": [], "labels": []}
        for e in examples:
            if not e.positives:
                continue
            items = [(p.text, 1.0) for p in e.positives] + [(n.text, 0.0) for n in e.negatives[:negatives]]
            rng.shuffle(items)
            cols["query"].append(e.query)
            cols["docs"].append([t for t, _ in items])
            cols["labels"].append([label for _, label in items])
        return cols
    cols = {"query": [], "positive": [], **{f"negative_{i + 1}": [] for i in range(negatives)}}
    for e in examples:
        if len(e.negatives) < negatives:
            continue
        for p in e.positives:
            cols["query"].append(e.query)
            cols["positive"].append(p.text)
            for i in range(negatives):
                cols[f"negative_{i + 1}"].append(e.negatives[i].text)
    return cols


def to_dataset(columns: dict[str, list]):
    """Columns from :func:`rows` as a Hugging Face ``datasets.Dataset``."""
    try:
        from datasets import Dataset
    except ImportError as exc:  # pragma: no cover
        raise MissingDependencyError("training needs the 'datasets' package: pip install 'winnow[train]'") from exc
    return Dataset.from_dict(columns)
