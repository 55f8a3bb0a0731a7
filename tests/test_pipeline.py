"""First stage + reranker over the demo collection: what each hit carries, timings, validation."""

from __future__ import annotations

import pytest

from winnow.errors import InvalidArgumentError
from winnow.pipeline import Pipeline
from winnow.rerank.cross_encoder import CrossEncoderReranker

QUERY = "why do planets orbit the sun"


@pytest.fixture(scope="module")
def reranker(tiny_cross_encoder_path):
    return CrossEncoderReranker(str(tiny_cross_encoder_path))


def test_reranked_hits_carry_both_stages(demo_collection, reranker):
    pipeline = Pipeline(demo_collection.retriever("hybrid"), reranker, depth=20, top_k=5, hydrate=demo_collection.hydrate)
    ranking = pipeline.search(QUERY)
    first = demo_collection.retriever("hybrid").search(QUERY, 20)
    first_by_id = {h.doc_id: h for h in first.hits}
    assert ranking.query == QUERY
    assert [h.rank for h in ranking.hits] == [1, 2, 3, 4, 5]
    rerank_scores = [h.rerank_score for h in ranking.hits]
    assert rerank_scores == sorted(rerank_scores, reverse=True)
    for hit in ranking.hits:
        assert hit.doc_id in first_by_id
        assert hit.first_stage_rank == first_by_id[hit.doc_id].rank
        assert hit.first_stage_score == pytest.approx(first_by_id[hit.doc_id].score)
        assert hit.score == hit.rerank_score is not None
        assert hit.text and hit.title  # hydrated before reranking
    # the reranker read the hydrated title + text and kept the best five of all twenty
    all_scores = reranker.score(QUERY, [f"{d.title} {d.text}" for d in demo_collection.get(first.doc_ids).values()])
    assert ranking.hits[0].rerank_score == pytest.approx(float(all_scores.max()), abs=1e-5)
    assert {"bm25", "dense", "fusion", "fetch", "rerank"} <= set(ranking.timings_ms)
    assert all(v >= 0 for v in ranking.timings_ms.values())


def test_without_a_reranker_the_first_stage_is_the_answer(demo_collection):
    pipeline = Pipeline(demo_collection.retriever("dense"), top_k=4, hydrate=demo_collection.hydrate)
    ranking = pipeline.search(QUERY)
    first = demo_collection.retriever("dense").search(QUERY, 4)
    assert ranking.doc_ids == first.doc_ids
    for hit, raw in zip(ranking.hits, first.hits):
        assert hit.first_stage_rank == hit.rank == raw.rank
        assert hit.first_stage_score == hit.score == pytest.approx(raw.score)
        assert hit.rerank_score is None and hit.text
    assert set(ranking.timings_ms) == {"dense", "fetch"}


def test_collection_search_reranks_the_first_stages_top_depth_by_the_rerankers_score(demo_collection, reranker):
    """Worked out by hand from the parts: BM25's top 10 documents, each scored by the reranker on its best
    chunk's title and text, the best 3 kept in score order (the tiny reranker has no fitted mix)."""
    from winnow.types import with_title

    got = demo_collection.search(QUERY, method="bm25", top_k=3, depth=10, reranker=reranker)
    first = demo_collection.hydrate(demo_collection.retriever("bm25").search(QUERY, 10))
    scores = reranker.score(QUERY, [with_title(h.title, h.text) for h in first.hits])
    expected = sorted(zip(scores.tolist(), first.hits), key=lambda sh: -sh[0])[:3]
    assert got.doc_ids == [h.doc_id for _, h in expected]
    assert [h.first_stage_rank for h in got] == [h.rank for _, h in expected]
    assert [h.rerank_score for h in got] == pytest.approx([s for s, _ in expected], abs=1e-5)


def test_search_many_matches_single_searches(demo_collection, reranker):
    pipeline = Pipeline(demo_collection.retriever("bm25"), reranker, depth=8, top_k=3, hydrate=demo_collection.hydrate)
    queries = [QUERY, "what makes bread rise"]
    many = pipeline.search_many(queries)
    assert [r.query for r in many] == queries
    assert [r.doc_ids for r in many] == [pipeline.search(q).doc_ids for q in queries]


def test_top_k_and_depth_are_validated(demo_collection, reranker):
    first = demo_collection.retriever("bm25")
    for kwargs, message in [
        ({"top_k": 0}, "top_k must be an integer >= 1, got 0"),
        ({"top_k": "5"}, "top_k must be an integer >= 1, got '5'"),
        ({"depth": 0}, "depth must be an integer >= 1, got 0"),
        ({"depth": 5, "top_k": 10}, r"depth must be >= top_k \(10\)"),
    ]:
        with pytest.raises(InvalidArgumentError, match=message):
            Pipeline(first, reranker, **kwargs)
    # without a reranker depth is unused, so a top_k beyond it is fine
    dense = demo_collection.retriever("dense")
    assert len(Pipeline(dense, depth=5, top_k=10, hydrate=demo_collection.hydrate).search("bread")) == 10
    assert len(demo_collection.search("planets", method="dense", top_k=150)) == 40


def test_queries_are_validated(demo_collection):
    pipeline = Pipeline(demo_collection.retriever("bm25"), hydrate=demo_collection.hydrate)
    with pytest.raises(InvalidArgumentError, match="list of queries, got one string"):
        pipeline.search_many("bread")
    for bad in ("", "   ", None):
        with pytest.raises(InvalidArgumentError, match="query must be a non-empty string"):
            pipeline.search(bad)


def test_reranking_without_texts_is_refused(demo_collection, reranker):
    pipeline = Pipeline(demo_collection.retriever("bm25"), reranker, depth=10, top_k=3)  # no hydrate
    with pytest.raises(InvalidArgumentError, match="no text for the reranker.*hydrate=collection.hydrate"):
        pipeline.search("bread")
