"""Segments, tombstones and merges: a collection written in many small batches searches exactly like one
built fresh from the same documents; BM25 with collection-wide statistics against bm25s; readers keep
their view through merges; collections of format 1 open; damaged collections stay local and repair."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import numpy as np
import pytest

from winnow.collection import Collection, list_collections
from winnow.collection_check import check_collection, repair_collection
from winnow.collection_files import stale_files
from winnow.collection_merge import FLOOR_ROWS, MERGE_FACTOR, plan_merge
from winnow.errors import CollectionDamagedError
from winnow.index.postings import Postings, live_stats, score_segments, tokenize
from winnow.types import Document

from _collection_helpers import METHODS, assert_same_ranking, copy_collection

QUERIES = ["how do plants make food", "planets orbiting the sun", "python programming language", "ocean tides moon"]
FILTER = {"topic": 1}


def searches(col: Collection, *, dense_index: str = "exact") -> dict:
    """Every query by every method, with and without a metadata filter, to the full depth."""
    n = max(len(col), 1)
    return {
        (q, m, f is not None): col.search(q, method=m, top_k=n, depth=n, dense_index=dense_index if m != "bm25" else "auto", filter=f)
        for q in QUERIES for m in METHODS for f in (None, FILTER)
    }


def assert_like_rebuild(col: Collection, docs: dict[str, Document], step: str, *, dense_index: str = "exact") -> None:
    home = col.path.parent
    name = f"ref-{abs(hash(step)) % 10**8}"
    ref = Collection.create(name, home=home, window=col.manifest["chunking"]["window"], overlap=col.manifest["chunking"]["overlap"])
    try:
        if docs:
            ref.add(list(docs.values()))
        assert (len(col), col.info().chunks) == (len(ref), ref.info().chunks), step
        got, want = searches(col, dense_index=dense_index), searches(ref)
        for key in want:
            try:
                assert_same_ranking(got[key], want[key], atol=1e-5)
            except AssertionError as exc:
                raise AssertionError(f"after {step}: {key} differs from a fresh rebuild: {exc}") from None
    finally:
        ref.close()
        from winnow.collection import drop_collection

        drop_collection(name, home=home)


def tagged(doc: Document, i: int) -> Document:
    return replace(doc, metadata={**dict(doc.metadata), "topic": i % 3})


# -- BM25 with global statistics, against bm25s ---------------------------------------------------------------
def test_postings_score_like_bm25s(demo_documents):
    from winnow.index.bm25 import BM25Index

    texts = [d.text for d in demo_documents]
    reference = BM25Index.build(np.arange(len(texts)), texts, method="lucene")
    postings = Postings.build(texts)
    live = np.ones(len(texts), dtype=bool)
    stats = live_stats([(postings, live)])
    queries = [*QUERIES, "what makes bread rise", "the the and of", "photosynthesis chlorophyll light"]
    for query, terms in zip(queries, tokenize(queries, postings.settings)):
        want = reference.search([query], len(texts))
        scores = score_segments(terms, [(postings, postings.term_ids(), live)], stats)[0]
        got_rows = np.flatnonzero(scores > 0)
        want_rows = want.keys[0][want.keys[0] >= 0]
        assert sorted(got_rows.tolist()) == sorted(want_rows.tolist()), query
        np.testing.assert_allclose(scores[want_rows], want.scores[0][: want_rows.size], rtol=1e-5, atol=1e-5)


def test_split_postings_with_tombstones_score_like_one_built_from_the_live_rows(demo_documents):
    texts = [d.text for d in demo_documents]
    whole = Postings.build(texts)
    parts = [Postings.build(texts[:13]), Postings.build(texts[13:30]), Postings.build(texts[30:])]
    dead = {2, 17, 31, 35}
    masks = [np.asarray([i not in dead for i in range(lo, hi)]) for lo, hi in ((0, 13), (13, 30), (30, len(texts)))]
    live_texts = [t for i, t in enumerate(texts) if i not in dead]
    fresh = Postings.build(live_texts)
    fresh_live = np.ones(len(live_texts), dtype=bool)
    merged = Postings.merge(list(zip(parts, masks)))
    assert merged.n_rows == fresh.n_rows and whole.n_rows == len(texts)
    for terms in tokenize(QUERIES, whole.settings):
        split = np.concatenate(score_segments(terms, [(p, p.term_ids(), m) for p, m in zip(parts, masks)],
                                              live_stats(list(zip(parts, masks)))))
        want = score_segments(terms, [(fresh, fresh.term_ids(), fresh_live)], live_stats([(fresh, fresh_live)]))[0]
        got_merged = score_segments(terms, [(merged, merged.term_ids(), fresh_live)], live_stats([(merged, fresh_live)]))[0]
        keep = np.asarray([i not in dead for i in range(len(texts))])
        np.testing.assert_allclose(split[keep], want, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(got_merged, want, rtol=1e-6, atol=1e-6)
        assert not split[~keep].any()  # dead rows never score


# -- the merge policy --------------------------------------------------------------------------------------------
def test_the_tiered_policy_merges_a_full_tier_and_rewrites_mostly_dead_segments():
    assert plan_merge([10] * (MERGE_FACTOR - 1), [0] * (MERGE_FACTOR - 1)) == []
    small = [5, 3, 9, 1, 7, 2, 8, 4, 6, 10, 11]
    picked = plan_merge(small, [0] * len(small))
    assert len(picked) == MERGE_FACTOR and sorted(small[i] for i in picked) == sorted(small)[:MERGE_FACTOR]
    # a big segment and nine small ones: different tiers, nothing to do
    assert plan_merge([FLOOR_ROWS * MERGE_FACTOR * 5] + [10] * (MERGE_FACTOR - 1), [0] * MERGE_FACTOR) == []
    assert plan_merge([100, 40], [0, 60]) == [1]  # 60 % dead: rewritten alone to purge its tombstones


# -- the property test: random writes and merges equal a fresh rebuild ----------------------------------------
@pytest.mark.parametrize("seed", [0, 1])
def test_random_writes_and_merges_search_like_a_fresh_rebuild(seed, demo_documents, tmp_path):
    rng = random.Random(seed)
    pool = [tagged(d, i) for i, d in enumerate(demo_documents)]
    col = Collection.create("prop", home=tmp_path / "home", hnsw_min_rows=6 if seed else 10**9)
    current: dict[str, Document] = {}
    try:
        for step in range(14):
            op = rng.choice(["add", "add", "upsert", "delete", "merge"]) if current else "add"
            if op == "add":
                fresh = [d for d in pool if d.id not in current]
                batch = rng.sample(fresh, min(len(fresh), rng.randint(1, 5)))
                col.add(batch)
                current.update({d.id: d for d in batch})
            elif op == "upsert":
                ids = rng.sample(sorted(current), min(len(current), rng.randint(1, 3)))
                batch = [replace(current[i], text=current[i].text + f" Revised in step {step}.",
                                 metadata={**dict(current[i].metadata), "topic": rng.randint(0, 2)}) for i in ids]
                report = col.add(batch)
                assert report.updated == len(batch)
                current.update({d.id: d for d in batch})
            elif op == "delete":
                ids = rng.sample(sorted(current), min(len(current), rng.randint(1, 3)))
                assert col.delete(ids).deleted == len(ids)
                for i in ids:
                    del current[i]
            else:
                col.optimize()
                assert len(col.manifest["segments"]) <= 1 and col.manifest["tombstones"] is None
            assert stale_files(col.path, col.manifest) == []
            assert_like_rebuild(col, current, f"seed {seed} step {step} ({op})")
            if seed:  # segments of 6+ chunks carry HNSW graphs, walked with the tombstones masked
                assert_like_rebuild(col, current, f"seed {seed} step {step} ({op}, hnsw)", dense_index="hnsw")
        assert len(col.manifest["segments"]) >= 1
    finally:
        col.close()


def test_many_small_writes_are_merged_by_the_policy_and_deletes_never_take_a_slot(demo_documents, tmp_path):
    col = Collection.create("tiers", home=tmp_path / "home")
    for d in demo_documents[: MERGE_FACTOR + 2]:
        col.add([d])
    assert len(col.manifest["segments"]) < MERGE_FACTOR  # ten one-document segments were folded into one
    gone = [d.id for d in demo_documents[:5]]
    col.delete(gone)
    assert col.info().tombstones > 0
    for method in METHODS:
        ranking = col.search("anything at all about the world", method=method, top_k=20, depth=20)
        assert not set(ranking.doc_ids) & set(gone)
    top = col.search(demo_documents[6].text, method="dense", top_k=3, dense_index="exact")
    assert len(top) == 3 and top.doc_ids[0] == demo_documents[6].id
    report = col.optimize()
    assert (report.segments_after, report.tombstones_purged) == (1, col.info().chunks and report.tombstones_purged)
    assert col.info().tombstones == 0 and col.info().segments == 1
    col.close()


def test_a_reader_keeps_its_view_while_a_merge_removes_the_segments_it_reads(demo_documents, tmp_path):
    home = tmp_path / "home"
    writer = Collection.create("view", home=home)
    for i in range(0, 12, 3):
        writer.add(demo_documents[i : i + 3])
    reader = Collection.open("view", home=home)
    retrievers = {m: reader.retriever(m) for m in METHODS}
    before = {m: r.search("how do plants make food", 12) for m, r in retrievers.items()}
    old = set(writer.manifest["segments"])
    writer.optimize()
    writer.add(demo_documents[12:14])
    assert not any((home / "view" / "segments" / s).exists() for s in old)  # the merge removed them
    for m, r in retrievers.items():  # built before: same answers from the segments it had loaded
        assert [h.doc_id for h in r.search("how do plants make food", 12).hits] == [h.doc_id for h in before[m].hits]
    assert len(reader.search("how do plants make food", top_k=14)) == 14  # a new search sees the commits
    reader.close()
    writer.close()


# -- format 1 collections ------------------------------------------------------------------------------------------
def write_format_1(col: Collection) -> None:
    """Turn a (format 2) collection into the layout format 1 wrote: gen-N/ with flat/, hnsw/ and bm25/."""
    from winnow.index.bm25 import BM25Index
    from winnow.index.flat import FlatIndex
    from winnow.index.hnsw import HNSWIndex

    segments = col.segment_set
    keys = segments.live_keys()
    vectors = np.concatenate([np.asarray(s.vectors)[np.isin(s.keys, keys)] for s in segments.segments])
    key_order = np.concatenate([s.keys[np.isin(s.keys, keys)] for s in segments.segments])
    gen = col.generation
    folder = col.path / f"gen-{gen}"
    flat = FlatIndex(vectors.shape[1])
    flat.add(key_order, vectors)
    flat.save(folder / "flat")
    HNSWIndex.from_vectors(key_order, vectors).save(folder / "hnsw")
    contents = list(col.store.iter_chunk_contents(gen))
    BM25Index.build(np.asarray([k for k, _ in contents]), [t for _, t in contents]).save(folder / "bm25")
    manifest = {k: v for k, v in col.manifest.items() if k not in ("segments", "tombstones", "index")}
    manifest["format_version"] = 1
    manifest["counts"] = {"documents": manifest["counts"]["documents"], "chunks": manifest["counts"]["chunks"]}
    import shutil

    shutil.rmtree(col.path / "segments")
    for p in col.path.glob("dead-*.npy"):
        p.unlink()
    (col.path / "manifest.json").write_text(json.dumps(manifest))


def test_a_format_1_collection_is_upgraded_in_place_without_encoding(demo_collection, demo_documents, tmp_path):
    want = searches(demo_collection)
    path = copy_collection(demo_collection.path, tmp_path / "home" / "demo")
    with Collection(path) as old:
        write_format_1(old)
    assert json.loads((path / "manifest.json").read_text())["format_version"] == 1
    cache = path.parent / ".cache"
    assert not cache.exists()  # no embedding cache in this home: an upgrade that encoded would create one
    with Collection.open("demo", home=path.parent) as col:
        assert col.manifest["format_version"] == 2 and not list(path.glob("gen-*"))
        got = searches(col)
        for key in want:
            assert_same_ranking(got[key], want[key], atol=1e-5)
        assert not cache.exists()
        col.add([Document("late", "Submarines explore the deep ocean trenches.")])
        assert col.search("submarines deep ocean", method="bm25", top_k=1).doc_ids == ["late"]


# -- damage stays local ------------------------------------------------------------------------------------------
DAMAGES = {
    "truncated-manifest": lambda p: (p / "manifest.json").write_text((p / "manifest.json").read_text()[:40]),
    "missing-segment": lambda p: __import__("shutil").rmtree(p / "segments" / json.loads((p / "manifest.json").read_text())["segments"][0]),
    "missing-tombstones": lambda p: (p / json.loads((p / "manifest.json").read_text())["tombstones"]).unlink(),
    "truncated-vectors": lambda p: _truncate(p / "segments" / json.loads((p / "manifest.json").read_text())["segments"][-1] / "vectors.npy"),
}


def _truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.fixture(scope="module")
def healthy(tmp_path_factory, demo_documents):
    """A collection of three segments with tombstones (and the documents it holds), to damage copies of."""
    home = tmp_path_factory.mktemp("healthy")
    col = Collection.create("hurt", home=home)
    docs = [tagged(d, i) for i, d in enumerate(demo_documents)]
    col.add(docs[:20])
    col.add(docs[20:])
    col.add([replace(docs[3], text=docs[3].text + " Revised.")])
    col.delete([docs[7].id, docs[25].id])
    current = {d.id: d for d in docs if d.id not in (docs[7].id, docs[25].id)}
    current[docs[3].id] = replace(docs[3], text=docs[3].text + " Revised.")
    assert len(col.manifest["segments"]) == 3 and col.manifest["tombstones"]
    col.close()
    return {"path": home / "hurt", "docs": current}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_collection_is_named_the_others_work_and_repair_restores_it(damage, healthy, demo_collection, tmp_path, capsys):
    from winnow.cli import main

    home = tmp_path / "home"
    path = copy_collection(healthy["path"], home / "hurt")
    copy_collection(demo_collection.path, home / "fine")
    DAMAGES[damage](path)

    listed = {i.name: i for i in list_collections(home)}
    assert listed["fine"].problem is None and listed["fine"].documents == len(demo_collection)
    assert listed["hurt"].problem and "winnow repair hurt" in listed["hurt"].problem
    assert main(["--data", str(home), "collections"]) == 0
    out = capsys.readouterr().out
    assert "DAMAGED" in out and "fine" in out

    report = check_collection(path)
    assert not report.ok and "winnow repair hurt" in report.problems[0]
    assert main(["--data", str(home), "check", "hurt"]) == 1
    capsys.readouterr()
    with pytest.raises(CollectionDamagedError, match="winnow repair hurt"):
        with Collection.open("hurt", home=home) as col:
            col.search("plants", method="hybrid")

    assert main(["--data", str(home), "repair", "hurt", "--quiet"]) == 0
    assert "rebuilt from its store" in capsys.readouterr().out
    assert check_collection(path).ok
    with Collection.open("hurt", home=home) as col:
        assert_like_rebuild(col, healthy["docs"], f"repair of {damage}")


def test_the_server_lists_a_damaged_collection_and_answers_its_searches_with_409(healthy, demo_collection, tmp_path):
    httpx = pytest.importorskip("httpx")
    from winnow.serve.process import ServerProcess

    home = tmp_path / "home"
    path = copy_collection(healthy["path"], home / "hurt")
    copy_collection(demo_collection.path, home / "fine")
    DAMAGES["truncated-manifest"](path)
    server = ServerProcess(home, [], log_path=tmp_path / "server.log").start()
    try:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            r = http.get("/collections")
            assert r.status_code == 200, r.text
            listed = {c["name"]: c for c in r.json()["collections"]}
            assert listed["fine"]["problem"] is None and listed["fine"]["documents"] == len(demo_collection)
            assert "winnow repair hurt" in listed["hurt"]["problem"]
            bad = http.post("/collections/hurt/search", json={"query": "plants"})
            assert bad.status_code == 409 and "winnow repair hurt" in bad.text
            ok = http.post("/collections/fine/search", json={"query": "plants", "method": "bm25"})
            assert ok.status_code == 200 and ok.json()["hits"]
    finally:
        server.stop()


def test_the_server_serves_searches_while_writes_and_a_merge_commit(demo_documents, tmp_path):
    """Searches from another thread during adds, deletes and an optimize: every one answers 200 with hits
    (bounded: 8 writes, searches until the writes are done, at most 400)."""
    import threading

    httpx = pytest.importorskip("httpx")
    from winnow.serve.process import ServerProcess

    server = ServerProcess(tmp_path / "data", [], log_path=tmp_path / "server.log").start()
    docs = [{"id": d.id, "text": d.text, "title": d.title} for d in demo_documents]
    statuses: list[int] = []
    done = threading.Event()

    def search_until_done(url: str) -> None:
        with httpx.Client(base_url=url, timeout=120) as client:
            while not done.is_set() and len(statuses) < 400:
                r = client.post("/collections/live/search", json={"query": "how do plants make food", "method": "hybrid"})
                statuses.append(r.status_code if r.status_code != 200 or r.json()["hits"] else -1)

    try:
        with httpx.Client(base_url=server.url, timeout=300) as http:
            assert http.post("/collections", json={"name": "live"}).status_code == 201
            assert http.post("/collections/live/documents", json={"documents": docs[:10]}).status_code == 200
            reader = threading.Thread(target=search_until_done, args=(server.url,))
            reader.start()
            for i in range(10, 40, 6):
                assert http.post("/collections/live/documents", json={"documents": docs[i : i + 6]}).status_code == 200
            assert http.post("/collections/live/documents:delete", json={"ids": [docs[12]["id"], docs[20]["id"]]}).status_code == 200
            r = http.post("/collections/live:optimize")
            assert r.status_code == 200, r.text
            merged = r.json()
            assert merged["segments_after"] == 1 and merged["tombstones_purged"] >= 2
            done.set()
            reader.join(timeout=300)
            stats = http.get("/collections/live").json()
            assert (stats["documents"], stats["segments"], stats["tombstones"]) == (38, 1, 0)
    finally:
        done.set()
        server.stop()
    assert statuses and set(statuses) == {200}, statuses


def test_a_filter_chooses_which_documents_return_not_how_they_score(demo_documents, tmp_path):
    col = Collection.create("scores", home=tmp_path / "home")
    docs = [tagged(d, i) for i, d in enumerate(demo_documents)]
    col.add(docs[:25])
    col.add(docs[25:])
    col.delete([docs[2].id])
    query = "python search engines data energy light plants water planets"
    for method in ("bm25", "dense"):
        whole = {h.doc_id: h.score for h in col.search(query, method=method, top_k=40, depth=40).hits}
        some = col.search(query, method=method, top_k=40, depth=40, filter=FILTER)
        assert len(some) >= 3 and all(h.metadata["topic"] == 1 for h in some.hits), (method, some.doc_ids)
        for h in some.hits:
            assert h.score == pytest.approx(whole[h.doc_id], abs=1e-6), (method, h.doc_id)
    col.close()
