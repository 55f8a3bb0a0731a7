"""A collection whose first stage lives in Milvus (embedded milvus-lite): the same dense top-k as winnow's exact
index, BM25 and hybrid and filters through Milvus, writes and deletes reflected, an interrupted write's rows
never seen, dropping removes them; served unchanged. Skips where pymilvus/milvus-lite cannot start here."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pymilvus", reason="the Milvus store needs pymilvus and milvus-lite: pip install 'winnow[milvus]'")
pytest.importorskip("milvus_lite", reason="the Milvus store's embedded mode needs milvus-lite: pip install milvus-lite")

from winnow.collection import Collection, drop_collection  # noqa: E402
from winnow.errors import CollectionError, InvalidArgumentError  # noqa: E402
from winnow.index.milvus import StoreKind, StoreSpec, filter_expression  # noqa: E402
from winnow.retrieve.filters import check_filter  # noqa: E402
from winnow.types import Document  # noqa: E402

QUERIES = ["how do plants make food", "planets orbiting the sun", "python programming language", "what makes bread rise"]


def tagged(docs):
    return [replace(d, metadata={"topic": i % 3, "lang": "en" if i % 2 else "de"}) for i, d in enumerate(docs)]


@pytest.fixture(scope="module")
def pair(tmp_path_factory, demo_documents):
    """The demo documents in a native collection and in a milvus-lite one (same home: encoded once)."""
    home = tmp_path_factory.mktemp("milvus")
    docs = tagged(demo_documents)
    native = Collection.create("native", home=home)
    native.add(docs)
    try:
        remote = Collection.create("remote", home=home, store=f"milvus-lite:{home / 'milvus.db'}")
    except CollectionError as exc:  # pragma: no cover - a machine where milvus-lite cannot start
        pytest.skip(f"milvus-lite cannot start here: {exc}")
    remote.add(docs)
    yield {"native": native, "remote": remote, "home": home, "docs": docs}
    native.close()
    remote.close()


def test_store_specs_parse_and_bad_ones_name_the_choices(tmp_path):
    assert StoreSpec.parse(None).kind is StoreKind.LOCAL
    lite = StoreSpec.parse("milvus-lite:x.db")
    assert lite.kind is StoreKind.MILVUS_LITE and Path(lite.uri).is_absolute()
    assert StoreSpec.parse("milvus://10.0.0.5:19530").uri == "http://10.0.0.5:19530"
    for bad in ("qdrant:x", "milvus://nohost", "milvus-lite:"):
        with pytest.raises(InvalidArgumentError, match="milvus"):
            StoreSpec.parse(bad)
    assert filter_expression(check_filter({"lang": "en", "topic": {"$in": [1, 2]}})) == \
        'metadata["lang"] == "en" and (metadata["topic"] == 1 or metadata["topic"] == 2)'


def test_dense_top_k_equals_the_exact_index_and_bm25_hybrid_work(pair):
    native, remote = pair["native"], pair["remote"]
    assert remote.info().store == "milvus-lite" and remote.info().segments == 0 and len(remote) == len(native)
    for q in QUERIES:
        want = native.search(q, method="dense", top_k=10, dense_index="exact")
        got = remote.search(q, method="dense", top_k=10)
        assert got.doc_ids == want.doc_ids, q
        np.testing.assert_allclose([h.score for h in got.hits], [h.score for h in want.hits], atol=1e-5)
        assert got.hits[0].text == want.hits[0].text  # hits hydrated from the store as for a local collection
        lexical = remote.search(q, method="bm25", top_k=5)
        assert lexical.hits and all(h.score > 0 for h in lexical.hits)
        assert lexical.doc_ids[0] == native.search(q, method="bm25", top_k=1).doc_ids[0], q
        assert remote.search(q, method="hybrid", top_k=10).doc_ids[0] == native.search(q, method="hybrid", top_k=10).doc_ids[0]


def test_check_passes_and_repair_refuses_a_milvus_backed_collection(pair):
    from winnow.collection_check import check_collection, repair_collection
    from winnow.errors import CollectionDamagedError

    assert check_collection(pair["remote"].path).ok
    with pytest.raises(CollectionDamagedError, match="keeps its first stage in Milvus"):
        repair_collection(pair["remote"].path)
    assert pair["remote"].search("how do plants make food", method="dense", top_k=1).hits  # untouched


def test_filters_apply_inside_milvus_before_top_k(pair):
    native, remote = pair["native"], pair["remote"]
    flt = {"lang": "en", "topic": {"$in": [0, 2]}}
    for method in ("dense", "bm25"):
        got = remote.search("how do plants make food", method=method, top_k=10, filter=flt)
        assert got.hits and all(h.metadata["lang"] == "en" and h.metadata["topic"] in (0, 2) for h in got.hits)
    want = native.search("how do plants make food", method="dense", top_k=10, filter=flt, dense_index="exact")
    assert remote.search("how do plants make food", method="dense", top_k=10, filter=flt).doc_ids == want.doc_ids


def test_writes_deletes_and_an_interrupted_write(pair, demo_documents):
    home = pair["home"]
    col = Collection.create("writes", home=home, store=f"milvus-lite:{home / 'milvus.db'}")
    docs = tagged(demo_documents)
    col.add(docs[:20])
    col.add([replace(docs[3], text="Submarines explore the deep ocean trenches far below the waves.")])
    col.delete([docs[5].id])
    assert len(col) == 19
    top = col.search("submarines deep ocean", method="dense", top_k=3)
    assert top.doc_ids[0] == docs[3].id
    everything = col.search("anything about the world", method="dense", top_k=40, depth=40)
    assert docs[5].id not in everything.doc_ids and len(everything) == 19
    assert len({h.doc_id for h in everything.hits}) == 19  # the replaced version's row is gone too

    # an interrupted write: rows of generation G+1 in Milvus, never committed
    gen = col.generation
    vec = np.asarray(col.encoder.encode_documents(["A ghost row about submarines."]), dtype=np.float32)
    col.remote.insert(gen + 1, np.asarray([10**9]), ["ghost"], np.asarray([0]), vec, ["A ghost row about submarines."], [{}])
    assert "ghost" not in col.search("ghost row submarines", method="bm25", top_k=5).doc_ids
    col.close()
    with Collection.open("writes", home=home) as again:  # recovery deletes the uncommitted rows
        assert again.remote.client.query(again.remote.collection, filter="key == 1000000000") == []
        milvus_name = again.manifest["store"]["collection"]
        again.optimize()  # nothing to merge: Milvus compacts its own
        assert again.generation == gen
    drop_collection("writes", home=home)
    from winnow.index.milvus import MilvusStore

    probe = MilvusStore(StoreSpec.parse(f"milvus-lite:{home / 'milvus.db'}"), milvus_name)
    assert not probe.client.has_collection(milvus_name)
    probe.close()


def test_a_second_process_on_the_same_milvus_lite_file_is_told_why(pair, tmp_path):
    import subprocess
    import sys

    code = (
        "from winnow.collection import Collection\n"
        f"Collection.open('remote', home={str(pair['home'])!r}).search('plants', method='dense')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "milvus-lite lets one process open a file at a time" in proc.stderr


def test_the_server_serves_a_milvus_backed_collection_unchanged(demo_documents, tmp_path):
    httpx = pytest.importorskip("httpx")
    from winnow.serve.process import ServerProcess

    home = tmp_path / "home"
    with Collection.create("served", home=home, store=f"milvus-lite:{tmp_path / 'served.db'}") as col:
        col.add(tagged(demo_documents))
        want = {m: col.search("how do plants make food", method=m, top_k=5, depth=20) for m in ("dense", "bm25", "hybrid")}
    server = ServerProcess(home, [], log_path=tmp_path / "server.log").start()  # the file is free: the server opens it
    try:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            listed = http.get("/collections").json()["collections"]
            assert [(c["name"], c["store"], c["documents"]) for c in listed] == [("served", "milvus-lite", 40)]
            for method, ranking in want.items():
                r = http.post("/collections/served/search", json={"query": "how do plants make food", "method": method, "top_k": 5, "depth": 20})
                assert r.status_code == 200, r.text
                got = [h["doc_id"] for h in r.json()["hits"]]
                if method == "dense":  # exact (FLAT): the same list
                    assert got == ranking.doc_ids
                else:  # Milvus's BM25 statistics after reopening the file may tie-break differently
                    assert got[0] == ranking.doc_ids[0] and len(set(got) & set(ranking.doc_ids)) >= 3, method
            added = http.post("/collections/served/documents", json={"documents": [
                {"id": "sub", "text": "Submarines explore the deep ocean trenches far below the waves."}]})
            assert added.status_code == 200 and added.json()["added"] == 1
            hit = http.post("/collections/served/search", json={"query": "submarines deep ocean trenches", "method": "dense", "top_k": 1})
            assert [h["doc_id"] for h in hit.json()["hits"]] == ["sub"]
    finally:
        server.stop()
