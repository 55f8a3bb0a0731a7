"""Late interaction inside a collection (winnow.index.late): token vectors stored per segment, the ``late``
first stage, the stored-vector reranker, incremental writes and merges, check and repair, the CLI and
the server. The ColBERT model is the session's untrained one (real token vectors, arbitrary quality), so
the tests compare against references (MaxSim of freshly encoded texts, exact search over every document,
a fresh rebuild), never against relevance."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from winnow.collection import Collection
from winnow.errors import InvalidArgumentError

QUERIES = ["How is Python used in machine learning?", "what makes bread rise", "planets orbiting stars"]


def _exact(encoder, query: str, docs) -> dict[str, float]:
    """The reference: MaxSim of the query against each document's freshly encoded token vectors."""
    from winnow.index.multivector import maxsim_many
    from winnow.types import with_title

    q = encoder.encode_queries([query])[0]
    mats = encoder.encode_documents([with_title(d.title, d.text) for d in docs])
    offsets = np.concatenate([[0], np.cumsum([len(m) for m in mats])])
    return dict(zip([d.id for d in docs], maxsim_many(q, np.concatenate(mats), offsets).tolist()))


def _stored_scores(col: Collection, query: str) -> dict[str, float]:
    """Exact MaxSim over the stored vectors of every live document (the late reranker over all of them)."""
    q = col.late_encoder.encode_queries([query])[0]
    col.load()
    return col.late_view().score_documents(q, list(col.metadata_map))


@pytest.fixture(scope="module")
def late_collection(tmp_path_factory, demo_documents, colbert_model_path):
    """The demo corpus (every document one chunk) with float16 token vectors, written once. Read-only."""
    col = Collection.create("late", home=tmp_path_factory.mktemp("late-home"), late_interaction=str(colbert_model_path),
                            compression="float16")
    col.add(demo_documents)
    yield col
    col.close()


def test_stored_vectors_score_as_the_model_does(late_collection, demo_documents):
    """float16 storage: the stored-vector MaxSim of every document equals MaxSim over freshly encoded texts."""
    enc = late_collection.late_encoder
    for query in QUERIES:
        want = _exact(enc, query, demo_documents)
        got = _stored_scores(late_collection, query)
        assert got.keys() == want.keys()
        assert max(abs(got[d] - want[d]) for d in want) < 0.02  # float16 rounding over 16 query tokens


@pytest.mark.parametrize("compression", ["residual-2", "int8"])
def test_the_late_first_stage_finds_what_exact_search_finds(tmp_path, demo_documents, colbert_model_path, compression):
    """PLAID-style candidates against brute force over the same stored vectors: every returned score is the
    exact one, the best document is found, and the top 10 mostly agree."""
    col = Collection.create("c", home=tmp_path, late_interaction=str(colbert_model_path), compression=compression)
    col.add(demo_documents)
    manifest = json.loads((col.path / "manifest.json").read_text())
    assert manifest["late_interaction"]["compression"] == compression
    assert (col.path / manifest["late_interaction"]["codebook"] / "codebook.json").is_file()
    for query in QUERIES:
        exact = _stored_scores(col, query)
        order = sorted(exact, key=lambda d: (-exact[d], d))
        ranking = col.search(query, method="late", top_k=10)
        assert ranking.doc_ids[0] == order[0]
        assert len(set(ranking.doc_ids) & set(order[:10])) >= 8
        for h in ranking.hits:
            assert h.score == pytest.approx(exact[h.doc_id], abs=1e-5)
            assert h.chunk is not None and h.chunk.doc_id == h.doc_id
    col.close()


def test_the_late_reranker_scores_dense_candidates_by_stored_maxsim(late_collection):
    query = QUERIES[0]
    exact = _stored_scores(late_collection, query)
    ranking = late_collection.search(query, method="dense", depth=20, top_k=20,
                                     reranker=late_collection.late_reranker(use_mix=False))
    first = late_collection.search(query, method="dense", top_k=20)
    assert sorted(ranking.doc_ids) == sorted(first.doc_ids)
    assert [h.rerank_score for h in ranking.hits] == sorted((h.rerank_score for h in ranking.hits), reverse=True)
    for h in ranking.hits:
        assert h.rerank_score == pytest.approx(exact[h.doc_id], abs=1e-5)
        assert h.first_stage_rank == first.doc_ids.index(h.doc_id) + 1
    from winnow.types import Hit

    with pytest.raises(InvalidArgumentError, match="not live documents of collection 'late'"):
        late_collection.late_reranker().rank(query, [Hit("nope", 1.0, 1, text="x")])


def test_incremental_writes_and_merges_match_a_fresh_rebuild(tmp_path, demo_documents, colbert_model_path):
    """Batches, an update, a delete and a merge: the stored-vector scores equal a fresh build's of the
    final documents (float16: the same vectors, up to float32 sums over other batch paddings), and a merge
    copies codes bit for bit (residual-2)."""
    model = str(colbert_model_path)
    col = Collection.create("inc", home=tmp_path / "a", late_interaction=model, compression="float16")
    for i in range(0, 40, 10):
        col.add(demo_documents[i : i + 10])
    revised = [replace(d, text=d.text + " Revised with a note on submarines.") for d in demo_documents[:3]]
    col.add(revised)
    col.delete([demo_documents[5].id, demo_documents[25].id])
    assert len(col.manifest["segments"]) == 5
    final = [*revised, *(d for d in demo_documents[3:] if d.id not in {demo_documents[5].id, demo_documents[25].id})]
    fresh = Collection.create("fresh", home=tmp_path / "b", late_interaction=model, compression="float16")
    fresh.add(final)
    for query in [*QUERIES, "submarines"]:
        want = _stored_scores(fresh, query)
        before = _stored_scores(col, query)
        assert before.keys() == want.keys() and max(abs(before[d] - want[d]) for d in want) < 1e-4
    col.optimize()
    assert len(col.manifest["segments"]) == 1
    for query in [*QUERIES, "submarines"]:
        after = _stored_scores(col, query)
        want = _stored_scores(fresh, query)
        assert max(abs(after[d] - want[d]) for d in want) < 1e-4
        assert col.search(query, method="late", top_k=1).doc_ids == [max(after, key=lambda d: (after[d], d))]
    col.close()
    fresh.close()

    coded = Collection.create("codes", home=tmp_path / "c", late_interaction=model)  # residual-2
    coded.add(demo_documents[:20])
    coded.add(demo_documents[20:])
    codebook = coded.late_codebook()

    def codes_by_key(c):
        out = {}
        for seg in c.segment_set.segments:
            part = seg.late_part(codebook)
            for row, key in enumerate(seg.keys.tolist()):
                stored = part.stored([row])
                out[key] = (stored.centroid.tobytes(), stored.store.tobytes())
        return out

    before = codes_by_key(coded)
    name = coded.manifest["late_interaction"]["codebook"]
    coded.optimize()
    assert codes_by_key(coded) == before and coded.manifest["late_interaction"]["codebook"] == name
    coded.close()


def test_late_interaction_errors_say_what_to_do(tmp_path, demo_collection, colbert_model_path, tiny_cross_encoder_path):
    with pytest.raises(InvalidArgumentError, match="keeps no token vectors.*--late-interaction"):
        demo_collection.search("bread", method="late")
    with pytest.raises(InvalidArgumentError, match="keeps no token vectors"):
        demo_collection.late_reranker()
    with pytest.raises(InvalidArgumentError, match="give a late_interaction model too"):
        Collection.create("x", home=tmp_path, compression="int8")
    with pytest.raises(InvalidArgumentError, match="unknown compression 'int4'; choose one of: float16, int8"):
        Collection.create("x", home=tmp_path, late_interaction=str(colbert_model_path), compression="int4")
    with pytest.raises(InvalidArgumentError, match="not a ColBERT model folder"):
        Collection.create("x", home=tmp_path, late_interaction=str(tiny_cross_encoder_path))
    with pytest.raises(InvalidArgumentError, match="cannot have them"):
        Collection.create("x", home=tmp_path, late_interaction=str(colbert_model_path), store=f"milvus-lite:{tmp_path}/m.db")
    empty = Collection.create("empty", home=tmp_path, late_interaction=str(colbert_model_path))
    with pytest.raises(InvalidArgumentError, match="holds no documents yet"):
        empty.search("bread", method="late")
    assert not (tmp_path / "x").exists()


def test_check_finds_damaged_token_vectors_and_repair_rebuilds_them(tmp_path, demo_documents, colbert_model_path):
    from winnow.collection_check import check_collection, repair_collection

    col = Collection.create("rep", home=tmp_path, late_interaction=str(colbert_model_path), compression="float16")
    col.add(demo_documents[:20])
    want = {q: _stored_scores(col, q) for q in QUERIES}
    seg = col.manifest["segments"][0]
    col.close()
    assert check_collection(tmp_path / "rep").ok
    (tmp_path / "rep" / "segments" / seg / "multivector" / "float16.npy").write_bytes(b"not numpy")
    report = check_collection(tmp_path / "rep")
    assert not report.ok and "token vectors cannot be read" in report.problems[0]
    repair_collection(tmp_path / "rep")
    assert check_collection(tmp_path / "rep").ok
    with Collection.open("rep", home=tmp_path) as col:
        for q in QUERIES:
            got = _stored_scores(col, q)
            assert max(abs(got[d] - want[q][d]) for d in want[q]) < 1e-5


def test_cli_index_and_search_late(tmp_path, capsys, colbert_model_path):
    from winnow.cli import main

    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("\n".join(json.dumps({"_id": f"d{i}", "text": t}) for i, t in enumerate([
        "Paris is the capital of France.", "Berlin is the capital of Germany.",
        "Bread rises because yeast makes carbon dioxide.", "The planets orbit the sun."])) + "\n")
    home = ["--data", str(tmp_path / "home")]
    assert main([*home, "index", str(corpus), "-c", "li", "-q", "--late-interaction", str(colbert_model_path),
                 "--compression", "int8"]) == 0
    capsys.readouterr()
    assert main([*home, "search", "li", "what makes bread rise", "--method", "late", "--json"]) == 0
    late = json.loads(capsys.readouterr().out)
    with Collection.open("li", home=tmp_path / "home") as col:
        lib = col.search("what makes bread rise", method="late", top_k=10)
        assert [h["doc_id"] for h in late["hits"]] == lib.doc_ids
        reranked = col.search("what makes bread rise", method="bm25", reranker=col.late_reranker(), top_k=10)
    assert main([*home, "search", "li", "what makes bread rise", "--method", "bm25", "--late-rerank", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [h["doc_id"] for h in out["hits"]] == reranked.doc_ids and out["reranker"].startswith("late:")
    assert main([*home, "search", "li", "q", "--late-rerank", "--rerank"]) != 0
    assert "leave out --rerank" in capsys.readouterr().err
    assert main([*home, "index", str(corpus), "-c", "li", "-q", "--compression", "float16"]) != 0
    assert "stores token vectors as int8, not float16" in capsys.readouterr().err
    assert main([*home, "collections"]) == 0
    assert f"+ late       {colbert_model_path} (int8)" in capsys.readouterr().out


def test_the_server_searches_and_reranks_late_as_the_library_does(late_collection):
    import httpx

    from winnow.serve.process import ServerProcess

    with ServerProcess(late_collection.path.parent, []) as server, httpx.Client(base_url=server.url, timeout=300) as client:
        for body, kwargs in [({"method": "late", "rerank": False}, {"method": "late"}),
                             ({"method": "dense", "rerank": "late"}, {"method": "dense", "reranker": late_collection.late_reranker()})]:
            r = client.post("/collections/late/search", json={"query": QUERIES[1], "top_k": 5, **body})
            assert r.status_code == 200, r.text
            want = late_collection.search(QUERIES[1], top_k=5, **kwargs)
            assert [h["doc_id"] for h in r.json()["hits"]] == want.doc_ids
            assert [h["score"] for h in r.json()["hits"]] == pytest.approx([h.score for h in want.hits], abs=1e-4)
        r = client.post("/collections/late/search", json={"query": "q", "method": "nearest"})
        assert r.status_code == 422 and "late" in r.text


def test_eval_measures_the_late_methods_through_the_corpus_cache(tmp_path, colbert_model_path):
    """``winnow eval --late-interaction``: the late first stage and X>late(-alone) run on a corpus cache that
    keeps token vectors; X>late-alone's run is the library's dense top 5 reranked by stored MaxSim."""
    from test_evaluate import make_dataset

    from winnow.evaluate.dataset import load_beir
    from winnow.evaluate.report import write_report
    from winnow.evaluate.runner import evaluate, open_corpus_cache

    dataset = load_beir(make_dataset(tmp_path / "tiny"))
    with pytest.raises(InvalidArgumentError, match="late, dense>late read stored token vectors: pass --late-interaction"):
        evaluate(dataset, "dense,late,dense>late", cache_dir=tmp_path / "cache")
    kw = {"late_interaction": str(colbert_model_path), "compression": "float16"}
    report = evaluate(dataset, "dense,late,dense>late,dense>late-alone", cache_dir=tmp_path / "cache", depth=5,
                      metrics=["nDCG@10", "R@100"], **kw)
    assert [m.method for m in report.methods] == ["dense", "late", "dense>late", "dense>late-alone"]
    write_report(report, tmp_path / "out")
    col, cache = open_corpus_cache(dataset, cache_dir=tmp_path / "cache", **kw)
    assert cache.cached and col.late_settings.compression.value == "float16"
    alone = next(m for m in report.methods if m.method == "dense>late-alone")
    for qid in dataset.judged:
        want = col.search(dataset.queries[qid], method="dense", depth=5, top_k=5, reranker=col.late_reranker(use_mix=False))
        assert [d for d, _ in alone.run[qid]] == want.doc_ids
    col.close()
