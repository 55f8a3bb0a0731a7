"""Indexes: exact answers by hand, HNSW against exact search, tombstones, save/load, BM25 on real text."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from winnow.errors import InvalidArgumentError
from winnow.index import (
    BM25Index,
    FlatIndex,
    HNSWIndex,
    IncompatibleIndexError,
    SearchResult,
    load_index,
)

# Short passages from the MS MARCO corpus.
PASSAGES = {
    101: "Woodrow Wilson - 28th President of the United States; led the United States in World War I "
    "and secured the formation of the League of Nations (1856-1924).",
    102: "There are many types of Mexican food. Tacos, burritos and salsa are the most widely known in "
    "the United States.",
    103: "Montego Bay: Live Weather. Live weather in Montego Bay. The latest and today's weather in "
    "Montego Bay, Jamaica updated regularly.",
    104: "There are two different types of water conducting tissues in vascular plants, both of which "
    "are constituted as xylem, they are tracheids, and vessel elements.",
    105: "Charles de Gaulle International Airport. Paris, France. IATA airport code CDG. ICAO airport "
    "code LFPG.",
    106: "Shellfish are a common cause of food poisoning. Abdominal bloating is a common symptom of food "
    "poisoning, accompanied by nausea, diarrhea, chills and vomiting.",
    107: "Red or coralline algae are the algae that are responsible for building coral reefs.",
    108: "The United States in World War I declared war on the German Empire on April 6, 1917. The U.S. "
    "was an independent power and did not officially join the Allies.",
}


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def random_set():
    """5,000 seeded random unit vectors (384-d) under scattered keys, 50 random unit queries."""
    rng = np.random.default_rng(7)
    vectors = unit(rng.standard_normal((5000, 384)))
    queries = unit(rng.standard_normal((50, 384)))
    keys = np.arange(5000, dtype=np.int64) * 3 + 11
    return keys, vectors, queries


@pytest.fixture(scope="module")
def flat_5k(random_set):
    keys, vectors, _ = random_set
    index = FlatIndex(384)
    index.add(keys, vectors)
    return index


@pytest.fixture(scope="module")
def hnsw_5k(random_set):
    keys, vectors, _ = random_set
    return HNSWIndex.from_vectors(keys, vectors)


def small_vectors(n: int = 300, dim: int = 16, seed: int = 3):
    rng = np.random.default_rng(seed)
    return np.arange(n, dtype=np.int64) + 1000, unit(rng.standard_normal((n, dim)))


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([len(set(x) & set(y)) / len(y) for x, y in zip(a.tolist(), b.tolist())]))


# --- flat -------------------------------------------------------------------------------------


def test_flat_exact_order_padding_and_remove():
    index = FlatIndex(2)
    index.add([10, 20, 30], [[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    result = index.search(np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32), 2)
    assert isinstance(result, SearchResult)
    assert result.keys.dtype == np.int64 and result.scores.dtype == np.float32
    assert result.keys.tolist() == [[10, 20], [30, 20]]
    np.testing.assert_allclose(result.scores, [[1.0, 0.6], [1.0, 0.8]], rtol=1e-6)

    padded = index.search([0.6, 0.8], 5)  # one 1-d query, k > rows
    assert padded.keys.tolist() == [[20, 30, 10, -1, -1]]
    np.testing.assert_allclose(padded.scores[0, :3], [1.0, 0.8, 0.6], rtol=1e-6)
    assert np.isneginf(padded.scores[0, 3:]).all()

    assert index.remove([20, 999]) == 1
    assert len(index) == 2
    assert index.search([0.6, 0.8], 3).keys.tolist() == [[30, 10, -1]]


def test_flat_rejects_bad_arguments():
    index = FlatIndex(2)
    index.add([1], [[1.0, 0.0]])
    with pytest.raises(InvalidArgumentError, match="already in the index"):
        index.add([1], [[0.0, 1.0]])
    with pytest.raises(InvalidArgumentError, match="duplicate"):
        index.add([2, 2], [[0.0, 1.0], [0.0, 1.0]])
    with pytest.raises(InvalidArgumentError, match="k must be"):
        index.search([1.0, 0.0], 0)
    with pytest.raises(InvalidArgumentError, match=r"\(n, 2\)"):
        index.search([[1.0, 0.0, 0.0]], 1)
    with pytest.raises(InvalidArgumentError, match=">= 0"):
        index.add([-1], [[0.0, 1.0]])
    assert len(index) == 1


def test_empty_flat_returns_padding():
    result = FlatIndex(3).search(np.ones((2, 3), dtype=np.float32), 4)
    assert result.keys.shape == (2, 4) and (result.keys == -1).all() and np.isneginf(result.scores).all()


# --- HNSW -------------------------------------------------------------------------------------


def test_hnsw_matches_exact_top100(random_set, flat_5k, hnsw_5k):
    _, _, queries = random_set
    approx, exact = hnsw_5k.search(queries, 100), flat_5k.search(queries, 100)
    assert overlap(approx.keys, exact.keys) >= 0.99
    assert (approx.keys >= 0).all()
    np.testing.assert_array_equal(approx.scores, -np.sort(-approx.scores, axis=1))  # best first


def test_hnsw_tombstones_are_excluded_and_k_live_hits_returned():
    keys, vectors = small_vectors()
    index = HNSWIndex.from_vectors(keys, vectors, m=16)
    flat = FlatIndex(16)
    flat.add(keys, vectors)
    gone = keys[::20]  # 5%: stays as tombstones
    assert index.remove(np.concatenate([gone, [7]])) == gone.size
    flat.remove(gone)
    assert index.tombstones == gone.size and len(index) == keys.size - gone.size

    queries = vectors[:10]  # removed rows' own vectors among them
    result = index.search(queries, 100)
    assert not np.isin(result.keys, gone).any()
    assert (result.keys >= 0).all()  # k live hits
    assert overlap(result.keys, flat.search(queries, 100).keys) >= 0.99

    everything = index.search(queries[:2], len(index))  # k above ef_search, all live rows
    assert all(sorted(row) == sorted(index.keys.tolist()) for row in everything.keys.tolist())

    more = keys[1::4]  # past 20% dead: the graph is rebuilt without them
    index.remove(more)
    assert index.tombstones == 0
    live = len(index)
    assert live == keys.size - np.union1d(gone, more).size
    padded = index.search(queries[:1], live + 5)
    assert (padded.keys[0, :live] >= 0).all() and (padded.keys[0, live:] == -1).all()
    assert not np.isin(padded.keys, np.union1d(gone, more)).any()


def test_hnsw_add_is_incremental_and_checks_keys():
    keys, vectors = small_vectors(100)
    index = HNSWIndex(16, m=8, ef_construction=40)
    index.add(keys[:60], vectors[:60])
    index.add(keys[60:], vectors[60:])
    assert len(index) == 100
    assert index.search(vectors[75], 1).keys.tolist() == [[keys[75]]]
    with pytest.raises(InvalidArgumentError, match="already in the index"):
        index.add(keys[:1], vectors[:1])
    index.remove(keys[:1])
    index.add(keys[:1], vectors[:1])  # a removed key may come back
    assert index.search(vectors[0], 1).keys.tolist() == [[keys[0]]]


# --- BM25 -------------------------------------------------------------------------------------


def bm25(**kwargs) -> BM25Index:
    return BM25Index.build(list(PASSAGES), list(PASSAGES.values()), backend="numpy", **kwargs)


def test_bm25_ranks_the_matching_passage_first():
    index = bm25()
    result = index.search(
        ["symptoms of food poisoning", "airport code for paris", "what tissues conduct water in plants"], 3
    )
    assert result.keys[:, 0].tolist() == [106, 105, 104]
    np.testing.assert_array_equal(result.scores, -np.sort(-result.scores, axis=1))  # best first
    # Stemming: "declaring wars" matches "declared war".
    assert index.search(["declaring wars on germany"], 1).keys[0, 0] == 108


def test_bm25_no_match_padding_and_remove():
    index = bm25()
    result = index.search(["zzyzx qwerty", "the of and"], 4)  # unknown terms; only stopwords
    assert (result.keys == -1).all() and np.isneginf(result.scores).all()
    top = index.search("united states world war", 8)
    assert set(top.keys[0, :3].tolist()) == {101, 102, 108}
    assert (top.keys[0, 3:] == -1).all()  # only matching passages come back
    assert index.remove([108, 555]) == 1 and len(index) == 7
    after = index.search("united states world war", 8)
    assert 108 not in after.keys and set(after.keys[0, :2].tolist()) == {101, 102}


def test_bm25_rejects_bad_settings():
    with pytest.raises(InvalidArgumentError, match="lucene"):
        bm25(method="okapi")
    with pytest.raises(InvalidArgumentError, match="english"):
        bm25(stemmer="klingon")
    with pytest.raises(InvalidArgumentError, match="2 keys for 1 texts"):
        BM25Index.build([1, 2], ["one text"])


@pytest.mark.slow  # numba compiles bm25s's retrieval on first use: several seconds
def test_bm25_numba_backend_matches_numpy():
    queries = ["food poisoning", "united states war", "coral reefs algae", "nothing matches zzz"]
    numpy_result = bm25().search(queries, 5)
    numba_index = BM25Index.build(list(PASSAGES), list(PASSAGES.values()), backend="numba")
    numba_result = numba_index.search(queries, 5)
    assert numba_index._retriever.backend == "numba"
    np.testing.assert_array_equal(numba_result.keys, numpy_result.keys)
    np.testing.assert_allclose(numba_result.scores, numpy_result.scores, rtol=1e-6)


# --- save / load ------------------------------------------------------------------------------


def assert_same(a: SearchResult, b: SearchResult) -> None:
    np.testing.assert_array_equal(a.keys, b.keys)
    np.testing.assert_array_equal(a.scores, b.scores)


@pytest.mark.parametrize("mmap", [True, False])
def test_flat_round_trip(tmp_path, mmap):
    keys, vectors = small_vectors(50)
    index = FlatIndex(16)
    index.add(keys, vectors)
    index.remove(keys[:5])
    index.save(tmp_path)
    loaded = FlatIndex.load(tmp_path, mmap=mmap)
    assert isinstance(loaded._vectors, np.memmap) == mmap
    assert_same(index.search(vectors[:8], 10), loaded.search(vectors[:8], 10))
    loaded.add([1], vectors[:1])  # a memory-mapped index still takes adds
    assert len(loaded) == 46
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.json", "keys.npy", "vectors.npy"]


def test_hnsw_round_trip_keeps_tombstones(tmp_path):
    keys, vectors = small_vectors(200)
    index = HNSWIndex.from_vectors(keys, vectors, m=16, ef_search=64)
    index.remove(keys[:10])
    index.save(tmp_path)
    loaded = load_index(tmp_path)
    assert isinstance(loaded, HNSWIndex)
    assert (loaded.m, loaded.ef_search, loaded.tombstones, len(loaded)) == (16, 64, 10, 190)
    assert_same(index.search(vectors[:8], 20), loaded.search(vectors[:8], 20))


def test_bm25_round_trip(tmp_path):
    index = bm25(stopwords=None)
    index.remove([103])
    index.save(tmp_path)
    loaded = load_index(tmp_path, mmap=True)
    assert isinstance(loaded, BM25Index) and len(loaded) == 7
    assert loaded.settings == index.settings
    queries = ["weather in montego bay", "the united states", "types of food"]
    assert_same(index.search(queries, 5), loaded.search(queries, 5))
    files = {p.name for p in (tmp_path / "bm25s").iterdir()}
    assert not any(name.startswith("corpus") for name in files)  # texts are not saved
    assert {p.suffix for p in (tmp_path / "bm25s").iterdir()} == {".npy", ".json"}


def test_load_rejects_wrong_kind_version_and_unknown(tmp_path):
    FlatIndex(4).save(tmp_path)
    with pytest.raises(IncompatibleIndexError, match="'flat' index, not 'hnsw'"):
        HNSWIndex.load(tmp_path)
    manifest = json.loads((tmp_path / "index.json").read_text())
    (tmp_path / "index.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(IncompatibleIndexError, match="format version 99"):
        load_index(tmp_path)
    (tmp_path / "index.json").write_text(json.dumps({**manifest, "kind": "annoy"}))
    with pytest.raises(IncompatibleIndexError, match=r"'annoy'.*\['bm25', 'flat', 'hnsw'\]"):
        load_index(tmp_path)
    with pytest.raises(IncompatibleIndexError, match="index.json is missing"):
        load_index(tmp_path / "nowhere")


def test_save_leaves_no_temporary_files_and_overwrites(tmp_path):
    keys, vectors = small_vectors(20)
    index = FlatIndex(16)
    index.add(keys, vectors)
    index.save(tmp_path)
    index.remove(keys[:10])
    index.save(tmp_path)  # over the first save
    assert len(load_index(tmp_path)) == 10
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_importing_winnow_index_loads_no_backend():
    code = "import sys, winnow.index; print(sorted(m for m in ('faiss', 'bm25s', 'numba') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
