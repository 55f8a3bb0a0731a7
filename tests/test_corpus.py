"""Corpus readers and the chunker, on real files in tmp_path and the bundled MiniLM tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from winnow.corpus import FORMATS, Chunker, detect_format, read_documents
from winnow.errors import CorpusError, InvalidArgumentError
from winnow.types import Document

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

PARAGRAPH = (
    "Daniel Gabriel Fahrenheit was the German physicist who invented the alcohol thermometer in 1709 "
    "and the mercury thermometer in 1714. In 1724 he introduced the temperature scale that bears his "
    "name; it was used to record changes in temperature in an accurate fashion. Ça va, naïve café!\n\n"
)


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def corpus_error(path, **kwargs) -> str:
    with pytest.raises(CorpusError) as info:
        read_documents(path, **kwargs)
    return str(info.value)


# --- formats ----------------------------------------------------------------------------------------


def test_beir_folder_and_file(tmp_path):
    write_jsonl(
        tmp_path / "corpus.jsonl",
        [
            {"_id": "d1", "title": "One", "text": "first text", "metadata": {"url": "u1"}},
            {"_id": 2, "text": "second text"},
        ],
    )
    (tmp_path / "queries.jsonl").write_text("")
    for path in (tmp_path, tmp_path / "corpus.jsonl"):
        docs = read_documents(path)
        assert docs == [
            Document("d1", "first text", "One", {"url": "u1"}),
            Document("2", "second text", ""),
        ]


def test_jsonl_custom_fields_and_metadata(tmp_path):
    path = write_jsonl(
        tmp_path / "docs.jsonl",
        [{"id": 7, "body": "hello world", "name": "Greeting", "lang": "en", "year": 2020}],
    )
    docs = read_documents(path, id_field="id", text_field="body", title_field="name")
    assert docs == [Document("7", "hello world", "Greeting", {"lang": "en", "year": 2020})]
    only_lang = read_documents(
        path, id_field="id", text_field="body", title_field="name", metadata_fields=["lang"]
    )
    assert dict(only_lang[0].metadata) == {"lang": "en"}


def test_jsonl_skips_blank_lines(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text('\n{"_id": "a", "text": "x"}\n   \n\n{"_id": "b", "text": "y"}\n\n', encoding="utf-8")
    assert [d.id for d in read_documents(path)] == ["a", "b"]


def test_csv_and_tsv(tmp_path):
    csv_path = tmp_path / "docs.csv"
    csv_path.write_text('doc,body,head,src\n1,"multi\nline, text",T1,web\n2,plain,,book\n', encoding="utf-8")
    docs = read_documents(csv_path, id_field="doc", text_field="body", title_field="head")
    assert docs == [
        Document("1", "multi\nline, text", "T1", {"src": "web"}),
        Document("2", "plain", "", {"src": "book"}),
    ]
    tsv_path = tmp_path / "docs.tsv"
    tsv_path.write_text("_id\ttext\ttitle\na\tcomma, inside\tA\n", encoding="utf-8")
    assert read_documents(tsv_path) == [Document("a", "comma, inside", "A")]


def test_folder(tmp_path, caplog):
    root = tmp_path / "notes"
    (root / "guides").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "guides" / "install.md").write_text(
        "Intro line\n```bash\n# not a title\n```\n# Installing winnow #\nbody\n", encoding="utf-8"
    )
    (root / "readme.txt").write_text("# plain text, not markdown\n", encoding="utf-8")
    (root / "a.md").write_text("## only a subheading\n", encoding="utf-8")
    (root / "script.py").write_text("print('ignored')\n")
    (root / ".git" / "HEAD.txt").write_text("hidden\n")
    with caplog.at_level("INFO", logger="winnow.corpus.readers"):
        docs = read_documents(root)
    # ids start with the folder's name: notes/README.md and docs/README.md indexed together stay two documents
    assert [(d.id, d.title) for d in docs] == [
        ("notes/a.md", "a"),
        ("notes/guides/install.md", "Installing winnow"),
        ("notes/readme.txt", "readme"),
    ]
    assert docs[1].text == (root / "guides" / "install.md").read_text(encoding="utf-8")
    assert "skipped 1 file(s) that are not .txt/.md: script.py" in caplog.text  # said, with -v


def test_jsonl_mistakes_get_hints(tmp_path):
    array = tmp_path / "docs.jsonl"
    array.write_text(json.dumps([{"_id": "a", "text": "x"}, {"_id": "b", "text": "y"}]) + "\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="JSON Lines.*not a JSON array"):
        read_documents(array)
    no_id = tmp_path / "ids.jsonl"
    no_id.write_text(json.dumps({"id": "a", "text": "x"}) + "\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="missing field '_id'.*--id-field"):
        read_documents(no_id)
    assert read_documents(no_id, id_field="id")[0].id == "a"


@pytest.mark.parametrize(
    ("name", "expected"),
    [("beir_dir", "beir"), ("corpus.jsonl", "beir"), ("plain_dir", "folder"), ("x.jsonl", "jsonl"),
     ("x.json", "jsonl"), ("x.csv", "csv"), ("x.TSV", "csv")],
)
def test_detect_format(tmp_path, name, expected):
    if name == "beir_dir":
        (tmp_path / name).mkdir()
        (tmp_path / name / "corpus.jsonl").write_text("")
    elif name == "plain_dir":
        (tmp_path / name).mkdir()
    else:
        (tmp_path / name).write_text("")
    assert detect_format(tmp_path / name) == expected


def test_unknown_format_and_suffix(tmp_path):
    path = write_jsonl(tmp_path / "docs.jsonl", [{"_id": "a", "text": "x"}])
    with pytest.raises(InvalidArgumentError, match="'parquet'.*beir, jsonl, csv, folder"):
        read_documents(path, format="parquet")
    odd = tmp_path / "docs.xml"
    odd.write_text("<doc/>")
    assert "docs.xml" in corpus_error(odd) and "format=" in corpus_error(odd)
    with pytest.raises(InvalidArgumentError, match=r"\['url'\]"):
        read_documents(path, metadata_fields="url")
    assert set(FORMATS) == {"beir", "jsonl", "csv", "folder"}


# --- bad input --------------------------------------------------------------------------------------


GOOD = '{"_id": "a", "title": "t", "text": "fine"}'


@pytest.mark.parametrize(
    ("third_line", "message"),
    [
        ('{"_id": "b", "text": ', "line 3: malformed JSON"),
        ('["_id", "text"]', "line 3: expected a JSON object, got list"),
        ('{"title": "t", "text": "x"}', "line 3: missing field '_id' (fields present: title, text)"),
        ('{"_id": "b", "title": "t"}', "line 3: missing field 'text' (fields present: _id, title)"),
        ('{"_id": "b", "text": "  \\n "}', "line 3: field 'text' is empty"),
        ('{"_id": "b", "text": 5}', "line 3: field 'text' must be a string, got int"),
        ('{"_id": null, "text": "x"}', "line 3: field '_id' must be a string or an integer, got null"),
        ('{"_id": "b", "text": "x", "title": 3}', "line 3: field 'title' must be a string, got int"),
        ('{"_id": "a", "text": "again"}', "line 3: duplicate id 'a' (first seen at line 1)"),
    ],
)
def test_jsonl_errors_name_file_and_line(tmp_path, third_line, message):
    path = tmp_path / "corpus.jsonl"
    path.write_text(f"{GOOD}\n\n{third_line}\n", encoding="utf-8")
    assert corpus_error(path).startswith(f"{path}, {message}")


def test_beir_metadata_must_be_object(tmp_path):
    path = write_jsonl(tmp_path / "corpus.jsonl", [{"_id": "a", "text": "x", "metadata": [1]}])
    assert corpus_error(path) == f"{path}, line 1: field 'metadata' must be an object, got list"


def test_non_utf8_names_line_and_byte_offset(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_bytes(GOOD.encode() + b'\n{"_id": "b", "text": "caf\xe9"}\n')
    message = corpus_error(path)
    assert message.startswith(f"{path}, line 2: not valid UTF-8: byte 0xe9 at byte offset 25")


def test_json_array_gets_a_hint(tmp_path):
    path = tmp_path / "docs.json"
    path.write_text('[\n{"_id": "a", "text": "x"}\n]\n')
    assert "line 1: malformed JSON" in corpus_error(path) and "not a JSON array" in corpus_error(path)


def test_csv_errors(tmp_path):
    path = tmp_path / "docs.csv"
    path.write_text("_id,body\n1,x\n", encoding="utf-8")
    assert corpus_error(path) == f"{path}, line 1: missing column 'text' in the header (columns: _id, body)"
    path.write_text('_id,text\n1,"two\nlines"\n2,x,extra\n', encoding="utf-8")
    assert corpus_error(path) == f"{path}, line 4: row has 3 fields, the header has 2"
    path.write_text("_id,text\n1,x\n2, \n", encoding="utf-8")
    assert corpus_error(path) == f"{path}, line 3: field 'text' is empty; every document needs text"
    path.write_text('_id,text\n1,x\n2,"unterminated\n3,y\n', encoding="utf-8")
    assert corpus_error(path).startswith(f"{path}, line 3: malformed CSV")
    path.write_bytes(b"_id,text\n1,\xff\n")
    assert corpus_error(path).startswith(f"{path}, line 2: not valid UTF-8")


def test_missing_paths_and_empty_inputs(tmp_path):
    assert corpus_error(tmp_path / "nope.jsonl") == f"{tmp_path / 'nope.jsonl'}: no such file or directory"
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    assert corpus_error(empty) == f"{empty}: contains no documents"
    folder = tmp_path / "docs"
    folder.mkdir()
    assert "no .txt or .md files" in corpus_error(folder)
    (folder / "blank.md").write_text(" \n")
    assert corpus_error(folder) == f"{folder / 'blank.md'}: file is empty; every document needs text"
    (folder / "blank.md").write_bytes(b"ok\n\xc3(\n")
    expected = f"{folder / 'blank.md'}, line 2: not valid UTF-8: byte 0xc3 at byte offset 0"
    assert corpus_error(folder).startswith(expected)
    assert "no corpus.jsonl" in corpus_error(folder, format="beir")


def test_reads_shared_msmarco_corpus():
    corpus = SHARED_DATA / "msmarco" / "corpus.jsonl"
    if not corpus.is_file():
        pytest.skip(f"shared MS MARCO sample not found at {corpus}")
    docs = read_documents(corpus.parent)
    assert len(docs) == 5000
    assert len({d.id for d in docs}) == 5000


# --- chunking ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chunker() -> Chunker:
    return Chunker.for_model(window=64, overlap=16)


def count_tokens(chunker: Chunker, text: str) -> int:
    return len(chunker._tokenizer.encode(text, add_special_tokens=False).ids)


def test_short_document_is_one_chunk(chunker):
    doc = Document("d", "  A short text.  ", "Title")
    (only,) = chunker.chunk(doc)
    fields = (only.doc_id, only.index, only.text, only.start, only.end, only.title)
    assert fields == ("d", 0, doc.text, 0, 17, "Title")
    assert only.id == "d#0"


def test_long_document_invariants_and_overlap(chunker):
    doc = Document("long", PARAGRAPH * 12, "Fahrenheit")
    total = count_tokens(chunker, doc.text)
    chunks = chunker.chunk(doc)
    assert total > 4 * chunker.window  # truncation is off: the whole text is tokenized
    assert len(chunks) == 1 + -(-(total - chunker.window) // (chunker.window - chunker.overlap))
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert chunks[0].start == 0 and chunks[-1].end == len(doc.text)
    for c in chunks:
        assert c.text == doc.text[c.start : c.end] and c.title == "Fahrenheit"
        assert count_tokens(chunker, c.text) <= chunker.window + 2
    for a, b in zip(chunks, chunks[1:]):
        assert b.start < a.end  # overlapping, hence no gap
        shared = count_tokens(chunker, doc.text[b.start : a.end])
        assert abs(shared - chunker.overlap) <= 2


def test_zero_overlap_still_covers_text(chunker):
    doc = Document("d", PARAGRAPH * 5)
    chunks = Chunker(chunker.tokenizer_file, window=32, overlap=0).chunk(doc)
    assert len(chunks) > 3
    assert "".join(c.text for c in chunks) == doc.text


def test_chunk_many_matches_chunk(chunker):
    docs = [Document("a", PARAGRAPH * 4), Document("b", "tiny"), Document("c", PARAGRAPH * 2, "T")]
    assert chunker.chunk_many(docs) == [c for d in docs for c in chunker.chunk(d)]


@pytest.mark.parametrize(
    ("window", "overlap", "match"),
    [(4, 0, r"window=4 .*>= 8"), (64, 64, r"overlap=64 .*0 <= overlap < window \(64\)"),
     (64, -1, r"overlap=-1"), (64.0, 8, r"window=64.0")],
)
def test_chunker_rejects_bad_sizes(chunker, window, overlap, match):
    with pytest.raises(InvalidArgumentError, match=match):
        Chunker(chunker.tokenizer_file, window=window, overlap=overlap)


def test_chunker_missing_tokenizer(tmp_path):
    with pytest.raises(InvalidArgumentError, match="tokenizer file"):
        Chunker(tmp_path / "tokenizer.json")
    with pytest.raises(InvalidArgumentError, match="no tokenizer.json"):
        Chunker.for_model(tmp_path)
