"""The ``winnow`` command: a fast --help and a light ``import winnow``, indexing, searching (with the
reranker's movement columns), listing, deleting, dropping, and clean failures on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from winnow.cli import main
from winnow.models.resolve import DEFAULT_RERANKER, SHIPPED_RERANKER

DEMO_CORPUS = Path(__file__).resolve().parents[1] / "examples" / "demo_corpus.jsonl"

HEAVY = ("torch", "transformers", "faiss", "bm25s", "sentence_transformers", "onnxruntime", "fastapi")
PY_QUERY = "How is Python used in machine learning?"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def cli_home(tmp_path_factory) -> Path:
    """A home with the demo corpus indexed through ``winnow index``."""
    home = tmp_path_factory.mktemp("cli-home")
    assert main(["--data", str(home), "index", str(DEMO_CORPUS), "--collection", "demo", "--quiet"]) == 0
    return home


# -- start-up ------------------------------------------------------------------------------------------
def test_help_loads_no_heavy_module():
    """`winnow --help` starts fast because it imports none of the heavy libraries (timed in benchmarks, not
    here: a shared machine makes wall-clock asserts flaky)."""
    code = (
        "import sys\n"
        "from winnow.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = ('torch', 'transformers', 'sentence_transformers', 'faiss', 'onnxruntime', 'bm25s', 'numba', 'fastapi')\n"
        "print('HEAVY', sorted(m for m in heavy if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout, proc.stdout[-300:]
    for command in ("index", "search", "collections", "delete-docs", "drop", "eval", "serve", "train", "models"):
        assert command in proc.stdout


def test_importing_winnow_loads_no_heavy_library():
    code = (
        "import json, sys\n"
        "import winnow, winnow.cli, winnow.collection, winnow.pipeline, winnow.store, winnow.corpus, winnow.index\n"
        "import winnow.models.resolve, winnow.encode.bi_encoder, winnow.retrieve.fusion, winnow.retrieve.hybrid\n"
        "import winnow.retrieve.dense, winnow.retrieve.lexical, winnow.rerank.cross_encoder, winnow.rerank.maxsim\n"
        "winnow.cli.build_parser()\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


# -- index and search ----------------------------------------------------------------------------------------
def test_index_reports_and_re_index_skips_unchanged(cli_home, capsys):
    code, out, err = run(capsys, "--data", str(cli_home), "index", str(DEMO_CORPUS), "-c", "demo", "-q")
    assert code == 0, err
    assert "read 40 documents" in err
    assert "+0 added, 0 updated, 40 unchanged" in out and "now 40 documents" in out


def test_search_json(cli_home, capsys):
    code, out, err = run(capsys, "--data", str(cli_home), "search", "demo", PY_QUERY, "--method", "dense", "--top-k", "3", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["query"] == PY_QUERY
    assert [h["rank"] for h in result["hits"]] == [1, 2, 3]
    top = result["hits"][0]
    assert top["doc_id"] == "py-ml" and top["title"] == "Python in machine learning" and top["text"]
    assert top["first_stage_rank"] == 1 and top["rerank_score"] is None
    assert set(result["timings_ms"]) == {"dense", "fetch"}


def test_search_text_with_a_reranker_shows_the_movement(cli_home, tiny_cross_encoder_path, capsys):
    code, out, err = run(
        capsys, "--data", str(cli_home), "search", "demo", PY_QUERY,
        "--method", "hybrid", "--rerank", str(tiny_cross_encoder_path), "--depth", "20", "--top-k", "5",
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(f"query: {PY_QUERY!r}") and "first stage: hybrid" in lines[0] and "reranked" in lines[0]
    assert "1st stage" in lines[1] and "change" in lines[1]
    rows = lines[2:7]
    assert [int(r.split()[0]) for r in rows] == [1, 2, 3, 4, 5]
    for row in rows:
        assert "#" in row and "[" in row  # first-stage rank and [doc id]
        assert any(word in row for word in (" up ", " down ", " = ", " new "))
    assert lines[7].startswith("changes in ranking:") and "of 5 hits moved" in lines[7]
    assert lines[8].startswith("time:") and "rerank" in lines[8] and "fetch" in lines[8]


def test_search_with_a_cascade_and_first_stage_probabilities(cli_home, tiny_cross_encoder_path, capsys):
    """--cascade puts a small reranker in front (here the tiny seeded one reads 20, the shipped default the
    best 5: the same order as the library's with_cascade); a first-stage-only search with --probabilities
    shows the shipped first-stage calibrator's P(rel)."""
    from winnow.collection import Collection
    from winnow.models.resolve import SHIPPED_RERANKER
    from winnow.rerank.cascade import with_cascade
    from winnow.rerank.cross_encoder import CrossEncoderReranker

    code, out, err = run(
        capsys, "--data", str(cli_home), "search", "demo", PY_QUERY, "--method", "hybrid", "--rerank",
        "--cascade", str(tiny_cross_encoder_path), "--cascade-depth", "5", "--depth", "20", "--top-k", "5", "--json",
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["reranker"] == f"{tiny_cross_encoder_path}@20 > {SHIPPED_RERANKER}@5"
    with Collection.open("demo", home=cli_home) as col:
        cascade = with_cascade(CrossEncoderReranker(SHIPPED_RERANKER), str(tiny_cross_encoder_path), first_depth=20, depth=5)
        expected = col.search(PY_QUERY, method="hybrid", top_k=5, depth=20, reranker=cascade)
    assert [h["doc_id"] for h in result["hits"]] == expected.doc_ids
    code, out, err = run(capsys, "--data", str(cli_home), "search", "demo", PY_QUERY, "--method", "dense", "--top-k", "3",
                         "--probabilities")
    assert code == 0, err
    lines = out.splitlines()
    assert "P(rel)" in lines[1] and all(0 < float(r.split()[2]) < 1 for r in lines[2:5])


def test_search_with_the_same_json_and_reranker_carries_both_stages(cli_home, tiny_cross_encoder_path, capsys):
    code, out, _ = run(
        capsys, "--data", str(cli_home), "search", "demo", "bread", "--method", "bm25",
        "--rerank", str(tiny_cross_encoder_path), "--depth", "10", "--top-k", "3", "--sigmoid", "--json",
    )
    assert code == 0
    for hit in json.loads(out)["hits"]:
        assert 0 < hit["rerank_score"] < 1 and hit["score"] == hit["rerank_score"]
        assert 1 <= hit["first_stage_rank"] <= 10


def test_search_errors_are_clean(cli_home, capsys):
    code, _, err = run(capsys, "--data", str(cli_home), "search", "nope", "bread")
    assert code == 2 and "no collection named 'nope'" in err and "demo" in err
    code, _, err = run(capsys, "--data", str(cli_home), "search", "demo", "bread", "--top-k", "0")
    assert code == 2 and "top_k must be an integer >= 1" in err
    code, _, err = run(capsys, "--data", str(cli_home), "search", "demo", "bread", "--rerank", "winnow-tests/none",
                       "--top-k", "3")
    assert code == 2 and "winnow-tests/none" in err
    assert "Traceback" not in err
    # --rerank without a model: winnow's default reranker, which ships inside the package
    code, out, _ = run(capsys, "--data", str(cli_home), "search", "demo", "bread", "--top-k", "3", "--rerank", "--json")
    assert code == 0 and json.loads(out)["reranker"] == DEFAULT_RERANKER
    assert all(h["rerank_score"] is not None for h in json.loads(out)["hits"])


def test_search_with_winnows_shipped_reranker_by_name(cli_home, capsys):
    code, out, _ = run(
        capsys, "--data", str(cli_home), "search", "demo", PY_QUERY, "--method", "dense",
        "--rerank", SHIPPED_RERANKER, "--depth", "10", "--top-k", "3", "--json",
    )
    assert code == 0
    result = json.loads(out)
    hits = result["hits"]
    assert len(hits) == 3 and result["model_load_ms"] > 0 and "rerank" in result["timings_ms"]
    assert all(1 <= h["first_stage_rank"] <= 10 for h in hits)
    # the shipped model mixes its score with the first stage's (fusion.json): the final score is the mix
    assert any(h["score"] != h["rerank_score"] for h in hits)


def test_collections_lists_them(cli_home, capsys):
    code, out, _ = run(capsys, "--data", str(cli_home), "collections")
    assert code == 0
    header, row = out.splitlines()[:2]
    assert header.split()[:3] == ["name", "documents", "chunks"]
    assert row.split()[:3] == ["demo", "40", "40"]
    code, out, _ = run(capsys, "--data", str(cli_home), "collections", "--json")
    [info] = json.loads(out)
    assert (info["name"], info["documents"], info["generation"]) == ("demo", 40, 1)
    assert info["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    code, out, _ = run(capsys, "--data", str(cli_home / "empty"), "collections")
    assert code == 0 and "no collections" in out


def test_indexing_with_another_model_into_a_collection_is_refused(cli_home, tiny_cross_encoder_path, capsys):
    code, _, err = run(capsys, "--data", str(cli_home), "index", str(DEMO_CORPUS), "-c", "demo", "-q",
                       "--model", str(tiny_cross_encoder_path))
    assert code == 2 and "was built with model" in err


# -- delete-docs and drop ---------------------------------------------------------------------------------------
@pytest.fixture()
def small_home(tmp_path, capsys) -> Path:
    corpus = tmp_path / "small.jsonl"
    corpus.write_text(
        "\n".join(
            json.dumps({"_id": i, "title": t, "text": x})
            for i, t, x in [
                ("a", "Apples", "Apples grow on trees in orchards."),
                ("b", "Boats", "Boats float because they displace water."),
                ("c", "Clocks", "Clocks measure time with gears or quartz crystals."),
            ]
        ),
        encoding="utf-8",
    )
    home = tmp_path / "home"
    assert run(capsys, "--data", str(home), "index", str(corpus), "-c", "small", "-q")[0] == 0
    return home


def test_delete_docs(small_home, tmp_path, capsys):
    code, out, err = run(capsys, "--data", str(small_home), "delete-docs", "small", "a", "zzz")
    assert code == 0
    assert "deleted 1 documents from 'small'; 2 remain" in out
    assert "not found (1): zzz" in err
    ids = tmp_path / "ids.txt"
    ids.write_text("b\n\n c \n", encoding="utf-8")
    code, out, _ = run(capsys, "--data", str(small_home), "delete-docs", "small", "--ids-file", str(ids))
    assert code == 0 and "deleted 2 documents" in out and "0 remain" in out
    code, out, _ = run(capsys, "--data", str(small_home), "search", "small", "boats", "--json")
    assert json.loads(out)["hits"] == []


def test_delete_docs_errors(small_home, tmp_path, capsys):
    code, _, err = run(capsys, "--data", str(small_home), "delete-docs", "small")
    assert code == 2 and "no document ids given" in err
    code, _, err = run(capsys, "--data", str(small_home), "delete-docs", "small", "--ids-file", str(tmp_path / "nope.txt"))
    assert code == 2 and "cannot read ids file" in err and "nope.txt" in err


def test_drop(small_home, capsys):
    code, out, _ = run(capsys, "--data", str(small_home), "drop", "small")
    assert code == 0 and "dropped collection 'small'" in out
    assert [p.name for p in small_home.iterdir() if p.name != ".cache"] == []  # .cache: the home's embedding cache
    code, _, err = run(capsys, "--data", str(small_home), "drop", "small")
    assert code == 2 and "no collection named 'small'" in err


# -- bad input -----------------------------------------------------------------------------------------------
GOOD = '{"_id": "ok", "text": "A fine document."}\n'
BAD_INPUTS = {
    "malformed-json": (GOOD + '{"_id": "x", "text": "unterminated}\n').encode(),
    "missing-id": (GOOD + '{"text": "no id here"}\n').encode(),
    "missing-text": (GOOD + '{"_id": "x", "title": "only a title"}\n').encode(),
    "empty-text": (GOOD + '{"_id": "x", "text": "   "}\n').encode(),
    "not-utf8": GOOD.encode() + b'{"_id": "x", "text": "caf\xe9"}\n',
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_fails_cleanly_and_writes_nothing(case, tmp_path, capsys):
    corpus = tmp_path / f"{case}.jsonl"
    corpus.write_bytes(BAD_INPUTS[case])
    home = tmp_path / "home"
    code, out, err = run(capsys, "--data", str(home), "index", str(corpus), "-c", "fresh", "-q")
    assert code == 2
    assert err.startswith("winnow: error: ") and "Traceback" not in err
    assert str(corpus) in err and "line 2" in err, err
    assert not home.exists() or list(home.iterdir()) == []  # no collection, not even an empty one


def test_bad_input_leaves_an_existing_collection_untouched(small_home, tmp_path, capsys):
    corpus = tmp_path / "bad.jsonl"
    corpus.write_bytes(BAD_INPUTS["not-utf8"])
    before = sorted(p.name for p in (small_home / "small").iterdir())
    code, _, err = run(capsys, "--data", str(small_home), "index", str(corpus), "-c", "small", "-q")
    assert code == 2 and "not valid UTF-8" in err
    assert sorted(p.name for p in (small_home / "small").iterdir()) == before
    code, out, _ = run(capsys, "--data", str(small_home), "collections", "--json")
    assert json.loads(out)[0]["generation"] == 1


# -- the rough edges a new user hit ----------------------------------------------------------------------------
def test_data_is_accepted_after_the_subcommand(cli_home, capsys):
    code, out, _ = run(capsys, "search", "demo", PY_QUERY, "--method", "bm25", "--json", "--data", str(cli_home))
    assert code == 0 and json.loads(out)["hits"]
    code, out, _ = run(capsys, "collections", "--data", str(cli_home))
    assert code == 0 and "demo" in out


def test_upserts_are_said_and_no_upsert_refuses(small_home, tmp_path, capsys):
    corpus = tmp_path / "changed.jsonl"
    corpus.write_text(json.dumps({"_id": "a", "title": "Apples", "text": "Apples are red or green."}) + "\n", encoding="utf-8")
    code, _, err = run(capsys, "--data", str(small_home), "index", str(corpus), "-c", "small", "-q", "--no-upsert")
    assert code == 2 and "already" in err and "--no-upsert" in err
    code, out, err = run(capsys, "--data", str(small_home), "index", str(corpus), "-c", "small", "-q")
    assert code == 0 and "1 updated" in out
    assert "1 document(s) had ids already in the collection and replaced the stored version" in err


def test_a_document_over_the_size_limit_is_refused_with_the_servers_message(tmp_path, capsys):
    corpus = tmp_path / "big.jsonl"
    corpus.write_text(json.dumps({"_id": "big", "text": "word " * 400}) + "\n", encoding="utf-8")
    home = tmp_path / "home"
    code, _, err = run(capsys, "--data", str(home), "index", str(corpus), "-c", "big", "-q", "--max-document-chars", "1000")
    assert code == 2 and "document 'big' has 2,000 characters, over the limit of 1,000 per document (max_document_chars" in err
    assert not (home / "big").exists() or json.loads(run(capsys, "--data", str(home), "collections", "--json")[1])[0]["documents"] == 0


def test_serve_without_the_serve_extra_says_what_to_install(tmp_path):
    """As the other extras do: a typed error with the pip command, not an ImportError's traceback."""
    shadow = tmp_path / "shadow" / "fastapi"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'fastapi'\", name='fastapi')\n")
    env = {**__import__("os").environ, "PYTHONPATH": str(shadow.parent)}
    proc = subprocess.run([sys.executable, "-m", "winnow", "serve", "--port", "0", "--data", str(tmp_path / "d")],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2, proc.stderr
    assert "winnow serve needs fastapi and uvicorn (fastapi is missing): pip install 'winnow[serve]'" in proc.stderr
    assert "Traceback" not in proc.stderr
