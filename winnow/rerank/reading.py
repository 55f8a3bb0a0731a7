"""What a reranker reads of each candidate: one pass cut at one end, or the whole passage as windows.

:class:`Reading` is the choice (per reranker, or per call of ``rank``); :class:`PassageReader` turns a query
and its candidates' (title, text) into what the model scores, one :class:`PassageRead` per candidate: the
texts to score with the query (one per window) and how many of the passage's tokens were read and cut.

- One pass (``max_windows=1``), cut at the right (``Truncation.RIGHT``, the default and TEI's): the passage
  goes to the model as it is and the tokenizer cuts it (longest first) to the model's length: exactly what
  winnow has always scored. ``Truncation.LEFT`` keeps the title and the text's end instead.
- Windows (``max_windows > 1``): the text is cut at word boundaries into windows of the tokens a pass leaves
  for the passage (:func:`winnow.rerank.windows.window_spans`), each read with the title in front; the
  windows' scores are aggregated (:class:`~winnow.rerank.windows.Aggregation`).
- ``truncate=False`` (TEI's ``truncate: false``): a passage that would lose tokens raises
  :class:`PassageTooLongError` before anything is scored.

A window-reading pipeline needs each candidate's whole document, not its best chunk:
:func:`document_hydrator` fills hits in from a collection's ``get``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Mapping, Sequence

from winnow.choices import Choice
from winnow.errors import InvalidArgumentError, TooLargeError
from winnow.rerank.windows import Aggregation, covered, window_spans
from winnow.types import Document, Ranking, with_title

MAX_WINDOWS = 64  # windows one passage may be read as (a bound on the work one candidate can cost)
DEFAULT_OVERLAP = 32  # tokens two neighbouring windows share


class Truncation(Choice):
    """Which end of a passage too long for one pass is cut (TEI's ``truncation_direction``)."""

    RIGHT = "right"  # keep the beginning
    LEFT = "left"  # keep the end

    @classmethod
    def label(cls) -> str:
        return "truncation direction"


class PassageTooLongError(TooLargeError):
    """A passage has more tokens than the reranker reads and cutting it was not allowed (``truncate=False``)."""


@dataclass(frozen=True)
class Reading:
    """How a reranker reads each candidate (see the module docstring)."""

    max_windows: int = 1
    overlap: int = DEFAULT_OVERLAP
    aggregation: Aggregation = Aggregation.MAXP
    truncation: Truncation = Truncation.RIGHT
    truncate: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.max_windows, bool) or not isinstance(self.max_windows, int) or not 1 <= self.max_windows <= MAX_WINDOWS:
            raise InvalidArgumentError(f"max_windows must be an integer in 1..{MAX_WINDOWS}, got {self.max_windows!r}")
        if isinstance(self.overlap, bool) or not isinstance(self.overlap, int) or self.overlap < 0:
            raise InvalidArgumentError(f"window overlap must be an integer >= 0 tokens, got {self.overlap!r}")
        object.__setattr__(self, "aggregation", Aggregation.parse(self.aggregation))
        object.__setattr__(self, "truncation", Truncation.parse(self.truncation))
        if not isinstance(self.truncate, bool):
            raise InvalidArgumentError(f"truncate must be true or false, got {self.truncate!r}")

    @property
    def windowed(self) -> bool:
        """True when passages are read as windows (then a pipeline hands the reranker whole documents)."""
        return self.max_windows > 1


ONE_PASS = Reading()  # winnow's default: one pass, cut at the right


@dataclass(frozen=True)
class PassageRead:
    """What the reranker reads of one candidate: ``texts`` (scored with the query, in reading order; one
    unless read as windows), and the passage's tokens (title and text), those read and those cut.
    Token counts are None where the reranker has no tokenizer to count with."""

    texts: tuple[str, ...]
    tokens: int | None = None
    read_tokens: int | None = None
    truncated_tokens: int | None = None
    cost_tokens: int | None = None  # tokens the model runs over: every window's query, passage and special tokens


def passage_kept(query_tokens: int, passage_tokens: int, room: int) -> int:
    """Passage tokens a pair keeps when the tokenizer cuts query + passage to ``room`` tokens longest first
    (Hugging Face tokenizers' ``longest_first``: the shorter side, the query on a tie, is kept whole when it
    fits in half the room and the longer side gets the rest; otherwise the shorter side gets the floor of
    half the room and the longer side the ceiling)."""
    q, p = query_tokens, passage_tokens
    if q + p <= room:
        return p
    shorter_is_query = q <= p
    shorter = q if shorter_is_query else p
    if 2 * shorter <= room:
        return room - q if shorter_is_query else p
    return room - room // 2 if shorter_is_query else room // 2


class PassageReader:
    """Reads candidates for one model: its fast tokenizer (a ``tokenizers.Tokenizer``) and ``max_length``."""

    def __init__(self, tokenizer, max_length: int) -> None:
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        pair = len(tokenizer.encode("a", "b").ids)
        plain = len(tokenizer.encode("a", add_special_tokens=False).ids) + len(tokenizer.encode("b", add_special_tokens=False).ids)
        self.specials = pair - plain  # [CLS] query [SEP] passage [SEP]: 3 for BERT
        self.room = self.max_length - self.specials  # tokens a pass holds for query + passage
        if self.room < 8:
            raise InvalidArgumentError(f"max_length {max_length} leaves {self.room} tokens for query and passage; use >= {pair - plain + 8}")

    def count(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text alone (no special tokens)."""
        return [len(e.ids) for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def read(self, query: str, passages: Sequence[tuple[str, str]], reading: Reading = ONE_PASS) -> list[PassageRead]:
        """One :class:`PassageRead` per (title, text), in order. Raises :class:`PassageTooLongError` (naming the
        first such passage) where ``reading.truncate`` is False and a passage would lose tokens."""
        q = self.count([query])[0]
        if reading.windowed or reading.truncation is Truncation.LEFT:
            reads = self._read_windows(q, passages, reading)
        else:
            reads = self._read_one_pass(q, passages)
        if not reading.truncate:
            for i, r in enumerate(reads):
                if r.truncated_tokens:
                    per_pass = self.window_room(q)
                    raise PassageTooLongError(
                        f"document {i} has {r.tokens} tokens; with this query the reranker reads {per_pass} a window "
                        f"and {reading.max_windows} window(s) ({r.read_tokens} of its tokens): allow truncation "
                        f"(truncate=true), read more windows (at most {MAX_WINDOWS}), or send a shorter text"
                    )
        return reads

    def window_room(self, query_tokens: int) -> int:
        """Tokens one pass leaves for a window beside the query: all the rest when the query fits in half a
        pass, else half a pass (and the tokenizer cuts the query to the other half)."""
        return self.room - query_tokens if 2 * query_tokens <= self.room else self.room // 2

    def _read_one_pass(self, q: int, passages: Sequence[tuple[str, str]]) -> list[PassageRead]:
        joined = [with_title(title, text) for title, text in passages]
        out = []
        for text, n in zip(joined, self.count(joined)):
            kept = passage_kept(q, n, self.room)
            out.append(PassageRead((text,), n, kept, n - kept, min(q + n, self.room) + self.specials))
        return out

    def _read_windows(self, q: int, passages: Sequence[tuple[str, str]], reading: Reading) -> list[PassageRead]:
        room = self.window_room(q)
        titles = self.count([t for t, _ in passages])
        encodings = self.tokenizer.encode_batch([text for _, text in passages], add_special_tokens=False)
        out = []
        for (title, text), t, enc in zip(passages, titles, encodings):
            n = len(enc.ids)
            size = room - t if title else room
            if size < 8:  # a title that fills the pass: read the titled passage in one pass, cut at the right
                joined = with_title(title, text)
                kept = passage_kept(q, t + n, self.room)
                out.append(PassageRead((joined,), t + n, kept, t + n - kept, min(q + t + n, self.room) + self.specials))
                continue
            if reading.windowed:
                spans = window_spans(n, size, min(reading.overlap, size - 1), reading.max_windows)
            else:  # one pass cut at the left: the text's last tokens
                spans = [(max(0, n - size), n)]
            spans = [_snap(enc.word_ids, s, e, n) for s, e in spans]
            texts = tuple(with_title(title, _cut(text, enc.offsets, s, e)) for s, e in spans)
            read = (t if title else 0) + covered(spans)
            cost = sum(min(q + t + e - s, self.room) + self.specials for s, e in spans)
            out.append(PassageRead(texts, t + n, read, t + n - read, cost))
        return out


def _snap(word_ids: Sequence[int | None], start: int, end: int, n: int) -> tuple[int, int]:
    """Move a window's ends to word boundaries (inward), so its text tokenizes into the same tokens."""
    s, e = start, end
    while 0 < s < e and word_ids[s] is not None and word_ids[s] == word_ids[s - 1]:
        s += 1
    while s < e < n and word_ids[e] is not None and word_ids[e] == word_ids[e - 1]:
        e -= 1
    return (start, end) if s >= e else (s, e)


def _cut(text: str, offsets: Sequence[tuple[int, int]], start: int, end: int) -> str:
    if end <= start:
        return "" if not offsets else text
    return text[offsets[start][0] : offsets[end - 1][1]]


def document_hydrator(get: Callable[[Sequence[str]], Mapping[str, Document]]) -> Callable[[Ranking], Ranking]:
    """A pipeline ``hydrate`` that gives each hit its whole document's text, title and metadata (what a
    window-reading reranker reads), from ``get`` (e.g. ``collection.get``). Hits whose document is gone are
    dropped, as :meth:`Collection.hydrate` drops them."""

    def hydrate(ranking: Ranking) -> Ranking:
        docs = get([h.doc_id for h in ranking.hits])
        hits = tuple(
            replace(h, text=docs[h.doc_id].text, title=docs[h.doc_id].title, metadata=docs[h.doc_id].metadata)
            for h in ranking.hits
            if h.doc_id in docs
        )
        return Ranking(ranking.query, hits, ranking.timings_ms)

    return hydrate
