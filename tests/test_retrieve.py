"""First stages: fusion functions with hand-computed answers, chunk-to-document collapsing, and the
bm25/dense/hybrid retrievers over the demo collection."""

from __future__ import annotations

import numpy as np
import pytest

from winnow.errors import InvalidArgumentError
from winnow.retrieve.base import collapse, search_documents
from winnow.retrieve.fusion import (
    FUSIONS,
    NORMALIZATIONS,
    convex_combination,
    get_fusion,
    reciprocal_rank_fusion,
)
from winnow.types import ChunkRef, Hit, Ranking


def ranking(query: str, scored: list[tuple[str, float]], stage: str = "leg") -> Ranking:
    hits = [Hit(doc_id=d, score=s, rank=i, chunk=ChunkRef(d, 0)) for i, (d, s) in enumerate(scored, start=1)]
    return Ranking(query, hits, {stage: 1.0})


# A: a > b > c (scores 3, 2, 1); B: c > a > d (scores 10, 6, 2)
A = ranking("q", [("a", 3.0), ("b", 2.0), ("c", 1.0)], "bm25")
B = ranking("q", [("c", 10.0), ("a", 6.0), ("d", 2.0)], "dense")


# -- fusion ------------------------------------------------------------------------------------------
def test_rrf_k60_matches_hand_computed_scores():
    fused = reciprocal_rank_fusion([A, B])
    expected = {
        "a": 1 / 61 + 1 / 62,
        "c": 1 / 63 + 1 / 61,
        "b": 1 / 62,
        "d": 1 / 63,
    }
    assert fused.doc_ids == ["a", "c", "b", "d"]
    assert [h.rank for h in fused.hits] == [1, 2, 3, 4]
    for hit in fused.hits:
        assert hit.score == pytest.approx(expected[hit.doc_id], abs=1e-12)
    assert fused.query == "q"
    assert dict(fused.timings_ms) == {"bm25": 1.0, "dense": 1.0}
    assert str(fused.hits[0].chunk) == "a#0"


def test_rrf_other_k_top_k_and_ties_broken_by_id():
    fused = reciprocal_rank_fusion([A, B], k=0, top_k=2)
    assert fused.doc_ids == ["a", "c"]  # a: 1/1 + 1/2, c: 1/3 + 1/1
    assert [h.score for h in fused.hits] == pytest.approx([1.5, 1 + 1 / 3])
    tied = reciprocal_rank_fusion([ranking("q", [("y", 1.0)]), ranking("q", [("x", 1.0)])])
    assert tied.doc_ids == ["x", "y"]
    with pytest.raises(InvalidArgumentError, match="k must be >= 0"):
        reciprocal_rank_fusion([A], k=-1)
    with pytest.raises(InvalidArgumentError, match="at least one ranking"):
        reciprocal_rank_fusion([])


def test_convex_minmax_matches_hand_computed_scores():
    # minmax: A -> a 1, b .5, c 0 ; B -> c 1, a .5, d 0 ; a missing doc gets its ranking's floor (0)
    fused = convex_combination([A, B], normalization="minmax")
    expected = {"a": 0.75, "c": 0.5, "b": 0.25, "d": 0.0}
    assert fused.doc_ids == ["a", "c", "b", "d"]
    for hit in fused.hits:
        assert hit.score == pytest.approx(expected[hit.doc_id])
    weighted = convex_combination([A, B], weights=[0.2, 0.8])
    assert weighted.doc_ids[0] == "c"  # 0.8 * 1
    assert weighted.hits[0].score == pytest.approx(0.8)


def test_convex_zscore_matches_hand_computed_scores():
    z = np.sqrt(1.5)  # [3, 2, 1] and [10, 6, 2] both standardize to [z, 0, -z]
    fused = convex_combination([A, B], normalization="zscore")
    expected = {"a": 0.5 * z, "c": 0.0, "b": -0.5 * z, "d": -z}
    assert fused.doc_ids == ["a", "c", "b", "d"]
    for hit in fused.hits:
        assert hit.score == pytest.approx(expected[hit.doc_id])


def test_convex_degenerate_rankings():
    single = ranking("q", [("a", 5.0)])
    assert convex_combination([single], normalization="minmax").hits[0].score == pytest.approx(1.0)
    assert convex_combination([single], normalization="zscore").hits[0].score == pytest.approx(0.0)
    empty = Ranking("q", (), {})
    assert convex_combination([empty, A]).doc_ids == ["a", "b", "c"]
    with pytest.raises(InvalidArgumentError, match="at least one ranking"):
        convex_combination([])


def test_fusion_errors_list_valid_choices():
    with pytest.raises(InvalidArgumentError, match="unknown fusion 'borda'.*rrf, convex"):
        get_fusion("borda")
    with pytest.raises(InvalidArgumentError, match="unknown normalization 'l2'.*minmax, zscore"):
        convex_combination([A, B], normalization="l2")
    with pytest.raises(InvalidArgumentError, match="weights must be 2 non-negative numbers"):
        convex_combination([A, B], weights=[1.0])
    with pytest.raises(InvalidArgumentError, match="weights must be 2"):
        convex_combination([A, B], weights=[1.0, -0.5])
    assert set(FUSIONS) == {"rrf", "convex"} and set(NORMALIZATIONS) == {"minmax", "zscore"}


def test_fusion_leaves_its_inputs_untouched():
    before = [(h.doc_id, h.score, h.rank) for r in (A, B) for h in r.hits]
    rankings = [A, B]
    reciprocal_rank_fusion(rankings)
    convex_combination(rankings, normalization="zscore")
    assert rankings == [A, B]
    assert [(h.doc_id, h.score, h.rank) for r in (A, B) for h in r.hits] == before


# -- chunk collapsing ----------------------------------------------------------------------------------
# keys 0-9: ten chunks of doc "a" (the ten best); key 10: doc "b"; key 11: doc "c"
KEYMAP = {**{i: ("a", i) for i in range(10)}, 10: ("b", 0), 11: ("c", 0)}
CHUNK_SCORES = np.array([0.99 - 0.01 * i for i in range(10)] + [0.5, 0.4], dtype=np.float32)


def chunk_search(calls: list[int]):
    def search(queries, n):
        calls.append(n)
        order = np.argsort(-CHUNK_SCORES, kind="stable")[:n]
        keys = np.tile(order.astype(np.int64), (len(queries), 1))
        return keys, np.tile(CHUNK_SCORES[order], (len(queries), 1))

    return search


def test_collapse_keeps_each_documents_best_chunk_and_skips_padding_and_unknown_keys():
    keys = np.array([3, 7, -1, 99, 10, 11], dtype=np.int64)
    scores = np.array([0.9, 0.8, -np.inf, 0.7, 0.6, 0.5], dtype=np.float32)
    hits = collapse(keys, scores, KEYMAP, k=5)
    assert [(h.doc_id, h.rank, str(h.chunk)) for h in hits] == [("a", 1, "a#3"), ("b", 2, "b#0"), ("c", 3, "c#0")]
    assert hits[0].score == pytest.approx(0.9)
    assert len(collapse(keys, scores, KEYMAP, k=1)) == 1


def test_collapse_orders_exact_ties_by_document_id_not_storage_order():
    keymap = {0: ("b", 0), 1: ("a", 0), 2: ("c", 0)}
    scores = np.array([0.5, 0.5, 0.4], dtype=np.float32)
    for keys in ([0, 1, 2], [1, 0, 2]):  # the index stored the tied documents either way round
        hits = collapse(np.array(keys, dtype=np.int64), scores, keymap, k=3)
        assert [(h.doc_id, h.rank) for h in hits] == [("a", 1), ("b", 2), ("c", 3)]


def test_search_documents_reads_deeper_until_k_documents_are_found():
    calls: list[int] = []
    [result] = search_documents(
        ["q"], 2, search_chunks=chunk_search(calls), keymap=KEYMAP, n_chunks=12, n_docs=3, stage="test"
    )
    assert calls == [8, 12]  # k * 4 chunks were all doc "a": read deeper
    assert result.doc_ids == ["a", "b"]
    assert result.hits[0].score == pytest.approx(0.99) and str(result.hits[0].chunk) == "a#0"
    assert "test" in result.timings_ms


def test_search_documents_stops_when_every_chunk_was_read():
    calls: list[int] = []
    [result] = search_documents(
        ["q"], 10, search_chunks=chunk_search(calls), keymap=KEYMAP, n_chunks=12, n_docs=3, stage="test"
    )
    assert calls == [12]
    assert result.doc_ids == ["a", "b", "c"]


@pytest.mark.parametrize("k", [0, -1, 2.5, "3", None])
def test_bad_k_is_refused(k):
    with pytest.raises(InvalidArgumentError, match="k must be an integer >= 1"):
        search_documents(["q"], k, search_chunks=chunk_search([]), keymap=KEYMAP, n_chunks=12, n_docs=3, stage="t")


# -- retrievers over the demo collection ----------------------------------------------------------
QUERIES = ["How is Python used in machine learning?", "what makes bread rise", "why do planets orbit the sun"]


@pytest.mark.parametrize("method", ["bm25", "dense", "hybrid"])
def test_retrievers_return_ranked_unique_documents_without_text(demo_collection, method):
    retriever = demo_collection.retriever(method)
    ranking = retriever.search(QUERIES[0], 6)
    assert len(ranking) == 6
    assert len(set(ranking.doc_ids)) == 6
    assert [h.rank for h in ranking.hits] == list(range(1, 7))
    scores = [h.score for h in ranking.hits]
    assert scores == sorted(scores, reverse=True)
    assert all(h.text == "" for h in ranking.hits)  # the collection hydrates only what it shows
    assert ranking.doc_ids[0] == "py-ml"
    expected_timings = {"bm25": {"bm25"}, "dense": {"dense"}, "hybrid": {"bm25", "dense", "fusion"}}[method]
    assert set(ranking.timings_ms) == expected_timings


@pytest.mark.parametrize("method", ["bm25", "dense", "hybrid"])
def test_search_many_equals_one_query_at_a_time(demo_collection, method):
    retriever = demo_collection.retriever(method)
    many = retriever.search_many(QUERIES, 5)
    assert [r.query for r in many] == QUERIES
    for query, batch in zip(QUERIES, many):
        single = retriever.search(query, 5)
        assert batch.doc_ids == single.doc_ids
        np.testing.assert_allclose([h.score for h in batch], [h.score for h in single], atol=1e-5)


def test_k_beyond_the_collection_returns_every_document_once(demo_collection):
    ranking = demo_collection.retriever("dense").search("anything at all", 500)
    assert sorted(ranking.doc_ids) == sorted(demo_collection.get([h.doc_id for h in ranking]).keys())
    assert len(ranking) == len(demo_collection) == 40
    hybrid = demo_collection.retriever("hybrid").search("bread", 500)
    assert len(hybrid) == 40 and len(set(hybrid.doc_ids)) == 40


def test_bm25_returns_only_documents_sharing_a_term(demo_collection):
    ranking = demo_collection.retriever("bm25").search("sourdough", 10)
    assert 0 < len(ranking) < 10
    assert demo_collection.retriever("bm25").search("zzzqqqxxy", 10).hits == ()


def test_hnsw_agrees_with_exact_search_on_a_small_collection(demo_collection):
    exact = demo_collection.retriever("dense", dense_index="exact")
    hnsw = demo_collection.retriever("dense", dense_index="hnsw")
    for query in QUERIES:
        a, b = exact.search(query, 5), hnsw.search(query, 5)
        assert a.doc_ids == b.doc_ids
        np.testing.assert_allclose([h.score for h in a], [h.score for h in b], atol=1e-4)


def test_hybrid_rrf_equals_fusing_the_two_legs_by_hand(demo_collection):
    query = QUERIES[1]
    legs = [demo_collection.retriever(m).search(query, 1000) for m in ("bm25", "dense")]
    by_hand = reciprocal_rank_fusion(legs, top_k=10)
    hybrid = demo_collection.retriever("hybrid").search(query, 10)
    assert hybrid.doc_ids == by_hand.doc_ids
    np.testing.assert_allclose([h.score for h in hybrid], [h.score for h in by_hand], atol=1e-9)
    convex = demo_collection.retriever("hybrid", fusion="convex").search(query, 10)
    assert convex.doc_ids == convex_combination(legs, top_k=10).doc_ids


def test_retriever_choices_are_validated(demo_collection):
    with pytest.raises(InvalidArgumentError, match="unknown method 'sparse'.*bm25, dense, hybrid"):
        demo_collection.retriever("sparse")
    with pytest.raises(InvalidArgumentError, match="unknown dense index 'ivf'.*auto, exact, hnsw"):
        demo_collection.retriever("dense", dense_index="ivf")
    with pytest.raises(InvalidArgumentError, match="unknown fusion 'max'.*rrf, convex"):
        demo_collection.retriever("hybrid", fusion="max")
    with pytest.raises(InvalidArgumentError, match="k must be an integer >= 1"):
        demo_collection.retriever("hybrid").search("bread", 0)
