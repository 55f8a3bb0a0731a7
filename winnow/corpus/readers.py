"""Read a corpus from disk into :class:`~winnow.types.Document` objects, validating everything first.

Formats (pick one by name, or let :func:`read_documents` detect it):

- ``beir``: a BEIR folder holding ``corpus.jsonl``, or that file itself; one JSON object per line with
  ``_id``, ``text``, optional ``title`` and an optional ``metadata`` object (which becomes the
  document's metadata, plus any top-level ``metadata_fields``).
- ``jsonl``: one JSON object per line with the chosen id/text/title fields; the other fields (or only
  ``metadata_fields`` when given) become metadata.
- ``csv``: a header row, then one document per row (``.tsv`` files are read with a tab delimiter).
- ``folder``: every ``.txt``/``.md`` file under a directory, recursively, in sorted order. The id is
  the file's path relative to the folder, with ``/`` separators and its suffix kept
  (``guides/install.md``), so ids are unique and lead back to the file. The title is the first
  ``# heading`` of a markdown file, else the file's stem. Hidden files and folders are skipped.

Every problem raises :class:`~winnow.errors.CorpusError` naming the file and the line, before any
document is returned.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Sequence

from winnow.errors import CorpusError, InvalidArgumentError
from winnow.types import Document

log = logging.getLogger(__name__)

FOLDER_SUFFIXES = (".txt", ".md")


class _Fields(NamedTuple):
    """The field names a reader looks for; ``meta`` is ``None`` for "every other field"."""

    id: str
    text: str
    title: str
    meta: Sequence[str] | None


# --- shared helpers ---------------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    """The file decoded as UTF-8 (a leading BOM dropped); bad bytes name their line and offset."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        line = data.count(b"\n", 0, exc.start) + 1
        raise CorpusError(
            path,
            line,
            f"not valid UTF-8: byte 0x{data[exc.start]:02x} at byte offset {exc.start - line_start} of "
            f"the line ({exc.reason}); re-encode the file as UTF-8",
        ) from None
    return text.removeprefix("\ufeff")


def _require_text(value: Any, field: str, path: Path, where: int | str | None) -> str:
    if not isinstance(value, str):
        got = "null" if value is None else type(value).__name__
        raise CorpusError(path, where, f"field {field!r} must be a string, got {got}")
    if not value.strip():
        raise CorpusError(path, where, f"field {field!r} is empty; every document needs text")
    return value


def _make_id(value: Any, field: str, path: Path, where: int | str | None) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        got = "null" if value is None else type(value).__name__
        raise CorpusError(path, where, f"field {field!r} must be a string or an integer, got {got}")
    doc_id = str(value)
    if not doc_id.strip():
        raise CorpusError(path, where, f"field {field!r} is empty; every document needs an id")
    return doc_id


def _document(record: dict[str, Any], f: _Fields, meta: dict[str, Any], path: Path, where) -> Document:
    """Build one document from a parsed record (JSON object or CSV row)."""
    for name, option in ((f.id, "--id-field"), (f.text, "--text-field")):
        if name not in record:
            present = ", ".join(map(str, record)) or "none"
            raise CorpusError(
                path, where, f"missing field {name!r} (fields present: {present}); name the field that holds it "
                f"with {option} (or {option[2:].replace('-', '_')}= in Python)"
            )
    title = record.get(f.title)
    if title is None:
        title = ""
    elif not isinstance(title, str):
        raise CorpusError(path, where, f"field {f.title!r} must be a string, got {type(title).__name__}")
    return Document(
        id=_make_id(record[f.id], f.id, path, where),
        text=_require_text(record[f.text], f.text, path, where),
        title=title,
        metadata=meta,
    )


def _pick_meta(record: dict[str, Any], f: _Fields) -> dict[str, Any]:
    if f.meta is None:
        return {k: v for k, v in record.items() if k not in (f.id, f.text, f.title)}
    return {k: record[k] for k in f.meta if k in record}


def _unique(docs: Iterable[tuple[Document, Path, int | str | None]], path: Path) -> list[Document]:
    """Collect documents, raising on the first duplicate id (naming where it was first seen)."""
    seen: dict[str, tuple[Path, int | str | None]] = {}
    out: list[Document] = []
    for doc, file, where in docs:
        if doc.id in seen:
            first_file, first_where = seen[doc.id]
            first = f"line {first_where}" if isinstance(first_where, int) else str(first_file)
            raise CorpusError(file, where, f"duplicate id {doc.id!r} (first seen at {first})")
        seen[doc.id] = (file, where)
        out.append(doc)
    if not out:
        raise CorpusError(path, None, "contains no documents")
    return out


# --- formats ----------------------------------------------------------------------------------------


def _json_records(path: Path) -> Iterator[tuple[dict[str, Any], int]]:
    """Yield (object, line number) for each non-blank line of a JSON Lines file."""
    for number, line in enumerate(_read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            hint = ""
            if number == 1 and line.lstrip().startswith("["):
                hint = "; expected one JSON object per line (JSON Lines), not a JSON array"
            raise CorpusError(path, number, f"malformed JSON: {exc.msg} (column {exc.colno}){hint}") from None
        if not isinstance(record, dict):
            hint = "; expected one JSON object per line (JSON Lines), not a JSON array" if isinstance(record, list) else ""
            raise CorpusError(path, number, f"expected a JSON object, got {type(record).__name__}{hint}")
        yield record, number


def _read_jsonl(path: Path, f: _Fields):
    if path.is_dir():
        raise CorpusError(path, None, "is a directory; the 'jsonl' format reads one .jsonl file")
    for record, number in _json_records(path):
        yield _document(record, f, _pick_meta(record, f), path, number), path, number


def _read_beir(path: Path, f: _Fields):
    if path.is_dir():
        if not (path / "corpus.jsonl").is_file():
            raise CorpusError(path, None, "no corpus.jsonl in this folder (a BEIR folder holds corpus.jsonl)")
        path = path / "corpus.jsonl"
    for record, number in _json_records(path):
        meta = record.get("metadata") or {}
        if not isinstance(meta, dict):
            raise CorpusError(path, number, f"field 'metadata' must be an object, got {type(meta).__name__}")
        meta = {**meta, **{k: record[k] for k in f.meta or () if k in record}}
        yield _document(record, f, meta, path, number), path, number


def _read_csv(path: Path, f: _Fields):
    if path.is_dir():
        raise CorpusError(path, None, "is a directory; the 'csv' format reads one .csv or .tsv file")
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.reader(io.StringIO(_read_text(path), newline=""), delimiter=delimiter, strict=True)
    limit = csv.field_size_limit(sys.maxsize)  # long documents exceed the 128 KiB default
    try:
        rows: list[tuple[int, list[str]]] = []
        for row in reader:
            rows.append((reader.line_num, row))
    except csv.Error as exc:
        start = rows[-1][0] + 1 if rows else 1  # the line where the bad record begins
        raise CorpusError(path, start, f"malformed CSV: {exc} (check the quotes of this record)") from None
    finally:
        csv.field_size_limit(limit)
    header, out, previous_end = None, [], 0
    for end, row in rows:
        start, previous_end = previous_end + 1, end  # a quoted field may span lines: name the first
        if not row:
            continue
        if header is None:
            header = _csv_header(row, f, path, start)
            continue
        if len(row) != len(header):
            raise CorpusError(path, start, f"row has {len(row)} fields, the header has {len(header)}")
        record = dict(zip(header, row))
        out.append((_document(record, f, _pick_meta(record, f), path, start), path, start))
    return out


def _csv_header(row: list[str], f: _Fields, path: Path, line: int) -> list[str]:
    header = [name.strip() for name in row]
    columns = ", ".join(header)
    for name in (f.id, f.text, *(f.meta or ())):
        if name not in header:
            raise CorpusError(path, line, f"missing column {name!r} in the header (columns: {columns})")
    return header


_HEADING = re.compile(r"^#\s+(.+?)\s*#*\s*$")


def _markdown_title(text: str) -> str | None:
    """The first level-1 ATX heading outside fenced code blocks."""
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        elif not fenced and (match := _HEADING.match(line)):
            return match.group(1)
    return None


def _read_folder(path: Path, f: _Fields):
    if not path.is_dir():
        raise CorpusError(path, None, "is not a directory; the 'folder' format reads a directory of files")
    visible = sorted(
        p for p in path.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    files = [p for p in visible if p.suffix.lower() in FOLDER_SUFFIXES]
    skipped = [p.relative_to(path).as_posix() for p in visible if p.suffix.lower() not in FOLDER_SUFFIXES]
    if skipped:
        log.info("skipped %d file(s) that are not %s: %s%s", len(skipped), "/".join(FOLDER_SUFFIXES),
                 ", ".join(skipped[:10]), " ..." if len(skipped) > 10 else "")
    if not files:
        raise CorpusError(path, None, f"no {' or '.join(FOLDER_SUFFIXES)} files found under this folder")
    for file in files:
        text = _read_text(file)
        if not text.strip():
            raise CorpusError(file, None, "file is empty; every document needs text")
        title = (_markdown_title(text) if file.suffix.lower() == ".md" else None) or file.stem
        # the id starts with the folder's own name: a/README.md and b/README.md indexed into one collection
        # stay two documents
        doc = Document(id=f"{path.resolve().name}/{file.relative_to(path).as_posix()}", text=text, title=title)
        yield doc, file, None


FORMATS: dict[str, Callable[[Path, _Fields], Iterable[tuple[Document, Path, Any]]]] = {
    "beir": _read_beir,
    "jsonl": _read_jsonl,
    "csv": _read_csv,
    "folder": _read_folder,
}


def detect_format(path: str | Path) -> str:
    """Guess the format: a folder with corpus.jsonl (or that file) is ``beir``, another folder is
    ``folder``, ``.jsonl``/``.json`` is ``jsonl``, ``.csv``/``.tsv`` is ``csv``."""
    path = Path(path)
    if path.is_dir():
        return "beir" if (path / "corpus.jsonl").is_file() else "folder"
    suffix = path.suffix.lower()
    if path.name == "corpus.jsonl":
        return "beir"
    if suffix in (".jsonl", ".json"):
        return "jsonl"
    if suffix in (".csv", ".tsv"):
        return "csv"
    raise CorpusError(
        path, None, f"cannot tell the format from the suffix {suffix or '(none)'!r}; "
        f"pass format= one of {', '.join(FORMATS)}"
    )


def read_documents(
    path: str | Path,
    *,
    format: str | None = None,
    id_field: str = "_id",
    text_field: str = "text",
    title_field: str = "title",
    metadata_fields: Sequence[str] | None = None,
) -> list[Document]:
    """Read and validate a whole corpus; nothing is returned unless every record is valid.

    ``format`` is one of :data:`FORMATS` or ``None`` to detect it (see :func:`detect_format`). The field
    names apply to ``beir``, ``jsonl`` and ``csv``; ``metadata_fields`` limits metadata to those fields.
    """
    if format is not None and format not in FORMATS:
        raise InvalidArgumentError(f"unknown corpus format {format!r}; use one of: {', '.join(FORMATS)}")
    if isinstance(metadata_fields, str):
        raise InvalidArgumentError(
            f"metadata_fields must be a list of field names, not the string {metadata_fields!r}; "
            f"write [{metadata_fields!r}]"
        )
    path = Path(path)
    if not path.exists():
        raise CorpusError(path, None, "no such file or directory")
    name = format or detect_format(path)
    meta = None if metadata_fields is None else list(metadata_fields)
    fields = _Fields(id_field, text_field, title_field, meta)
    docs = _unique(FORMATS[name](path, fields), path)
    log.info("read %d documents from %s (format %s)", len(docs), path, name)
    return docs
