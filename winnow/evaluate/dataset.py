"""A BEIR dataset folder: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``.

Qrels are ``query-id  corpus-id  score`` lines, tab-separated, with or without BEIR's header line
(detected: a first line whose score is not an integer is a header). Grades are kept as integers
(graded relevance; 0 means judged not relevant). Every problem raises
:class:`~winnow.errors.CorpusError` naming the file and the line.

Only *judged* queries (those with at least one qrels line) are evaluated; :attr:`BeirDataset.judged`
lists them in the order of ``queries.jsonl``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from types import MappingProxyType
from functools import cached_property
from pathlib import Path
from typing import Mapping

from winnow.errors import CorpusError

log = logging.getLogger(__name__)

HEADER_SCORE_NAMES = ("score", "relevance", "label", "rel", "grade")


@dataclass(frozen=True)
class BeirDataset:
    """Queries and graded judgments of one split; the corpus is read on demand (it can be large)."""

    name: str
    path: Path
    split: str
    queries: Mapping[str, str]
    qrels: Mapping[str, Mapping[str, int]]

    def __post_init__(self) -> None:
        object.__setattr__(self, "queries", MappingProxyType(dict(self.queries)))
        frozen = {q: MappingProxyType(dict(d)) for q, d in self.qrels.items()}
        object.__setattr__(self, "qrels", MappingProxyType(frozen))

    @property
    def corpus_path(self) -> Path:
        return self.path / "corpus.jsonl"

    @cached_property
    def judged(self) -> tuple[str, ...]:
        """Ids of the queries that have judgments, in the order of ``queries.jsonl``."""
        return tuple(q for q in self.queries if q in self.qrels)

    @property
    def unknown_judged(self) -> tuple[str, ...]:
        """Query ids in the qrels that ``queries.jsonl`` lacks (ignored, but worth a warning)."""
        return tuple(q for q in self.qrels if q not in self.queries)

    @cached_property
    def corpus_hash(self) -> str:
        """A content hash of ``corpus.jsonl`` (so a copied or touched file maps to the same cache)."""
        return file_hash(self.corpus_path)

    def read_corpus(self):
        from winnow.corpus import read_documents

        return read_documents(self.corpus_path, format="beir")


def file_hash(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def load_beir(path: str | Path, split: str = "test") -> BeirDataset:
    """Read a BEIR folder's queries and ``qrels/<split>.tsv`` (the corpus is read later, see
    :meth:`BeirDataset.read_corpus`)."""
    path = Path(path)
    if not path.is_dir():
        raise CorpusError(path, None, "not a folder; a BEIR dataset is a folder with corpus.jsonl, queries.jsonl, qrels/")
    for name in ("corpus.jsonl", "queries.jsonl"):
        if not (path / name).is_file():
            raise CorpusError(path, None, f"no {name} in this folder (a BEIR dataset holds corpus.jsonl, queries.jsonl, qrels/<split>.tsv)")
    qrels_path = path / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        found = sorted(p.stem for p in (path / "qrels").glob("*.tsv")) if (path / "qrels").is_dir() else []
        raise CorpusError(
            qrels_path, None, f"no qrels for split {split!r}; splits found: {', '.join(found) or 'none'}"
        )
    queries = read_queries(path / "queries.jsonl")
    qrels = read_qrels(qrels_path)
    dataset = BeirDataset(path.resolve().name, path, split, queries, qrels)
    if dataset.unknown_judged:
        log.warning(
            "%d judged query id(s) in %s are not in queries.jsonl (ignored), e.g. %s",
            len(dataset.unknown_judged), qrels_path, list(dataset.unknown_judged[:3]),
        )
    return dataset


def read_queries(path: Path) -> dict[str, str]:
    """``{"_id", "text"}`` per line -> ``{id: text}`` in file order."""
    out: dict[str, str] = {}
    text = path.read_bytes().decode("utf-8", errors="strict").removeprefix("\ufeff")
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(path, number, f"malformed JSON: {exc.msg} (column {exc.colno})") from None
        if not isinstance(record, dict):
            raise CorpusError(path, number, f"expected a JSON object, got {type(record).__name__}")
        qid, qtext = record.get("_id"), record.get("text")
        if isinstance(qid, bool) or not isinstance(qid, (str, int)) or not str(qid).strip():
            raise CorpusError(path, number, f"field '_id' must be a non-empty string or integer, got {qid!r}")
        if not isinstance(qtext, str) or not qtext.strip():
            raise CorpusError(path, number, f"field 'text' must be a non-empty string, got {qtext!r}")
        qid = str(qid)
        if qid in out:
            raise CorpusError(path, number, f"duplicate query id {qid!r}")
        out[qid] = qtext
    if not out:
        raise CorpusError(path, None, "contains no queries")
    return out


_INT = re.compile(r"^[+-]?\d+$")


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """BEIR qrels (``qid<TAB>docid<TAB>grade``, header optional) -> ``{qid: {docid: grade}}``.

    TREC's four-column form (``qid 0 docid grade``, whitespace-separated) is read too.
    """
    out: dict[str, dict[str, int]] = {}
    text = path.read_bytes().decode("utf-8", errors="strict").removeprefix("\ufeff")
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        fields = line.rstrip("\r").split("\t") if "\t" in line else line.split()
        if len(fields) == 4:  # TREC qrels: qid iteration docid grade
            fields = [fields[0], fields[2], fields[3]]
        if len(fields) != 3:
            raise CorpusError(
                path, number, f"expected 3 tab-separated fields (query-id, corpus-id, score), got {len(fields)}"
            )
        qid, docid, grade = (f.strip() for f in fields)
        if not _INT.match(grade):
            if number == 1 and not out:
                log.debug("%s: line 1 is a header (%r)", path, line)
                continue
            raise CorpusError(path, number, f"score must be an integer grade, got {grade!r}")
        if not qid or not docid:
            raise CorpusError(path, number, "empty query-id or corpus-id")
        out.setdefault(qid, {})[docid] = int(grade)
    if not out:
        raise CorpusError(path, None, "contains no judgments")
    return out
