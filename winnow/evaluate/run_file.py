"""Reading TREC run files (``qid Q0 docid rank score tag``, whitespace-separated); writing them is
:func:`winnow.evaluate.report.write_run`'s.

Each query's results come back in the run's order: by rank, then by the order of the lines. A
malformed line raises :class:`~winnow.errors.CorpusError` naming the file and the line.
"""

from __future__ import annotations

from pathlib import Path

from winnow.errors import CorpusError


def read_run(path: str | Path) -> dict[str, list[tuple[str, float]]]:
    """``{qid: [(doc_id, score), ...]}`` in rank order, queries in the order they first appear."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(path, None, "no such run file (a TREC run: one 'qid Q0 docid rank score tag' line per result)")
    ranked: dict[str, list[tuple[int, int, str, float]]] = {}
    seen: set[tuple[str, str]] = set()
    text = path.read_bytes().decode("utf-8", errors="strict").removeprefix("\ufeff")
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 6:
            raise CorpusError(path, number, f"expected 6 fields 'qid Q0 docid rank score tag', got {len(parts)}: {line[:80]!r}")
        qid, _, doc_id, rank, score, _ = parts
        try:
            rank_value, score_value = int(rank), float(score)
        except ValueError:
            raise CorpusError(path, number, f"rank must be an integer and score a number, got {rank!r} and {score!r}") from None
        if (qid, doc_id) in seen:
            raise CorpusError(path, number, f"document {doc_id!r} listed twice for query {qid!r}")
        seen.add((qid, doc_id))
        ranked.setdefault(qid, []).append((rank_value, number, doc_id, score_value))
    if not ranked:
        raise CorpusError(path, None, "contains no results")
    return {qid: [(doc_id, score) for _, _, doc_id, score in sorted(rows)] for qid, rows in ranked.items()}
