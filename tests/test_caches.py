"""The embedding cache (on disk, by text hash and model space) and the rerank score cache (LRU, bounded)."""

from __future__ import annotations

import numpy as np
import pytest

from winnow.encode.cache import EmbeddingCache
from winnow.errors import InvalidArgumentError
from winnow.rerank.cache import ScoreCache
from winnow.types import Document

QUERY = "how do plants make food"
PASSAGES = [
    "Photosynthesis lets plants turn sunlight, water and carbon dioxide into sugar.",
    "The stock market fell sharply on Monday after weak earnings reports.",
    "Chlorophyll in leaves captures light energy for the plant.",
]


# -- embedding cache ---------------------------------------------------------------------------------
def test_embedding_cache_round_trip_by_text_and_space(tmp_path):
    cache = EmbeddingCache(tmp_path / "emb.sqlite")
    vectors = np.arange(12, dtype=np.float32).reshape(3, 4)
    cache.put_many("model-a", ["x", "y", "z"], vectors)
    got, found = cache.get_many("model-a", 4, ["z", "new", "x", "x"])
    assert found.tolist() == [True, False, True, True]
    np.testing.assert_array_equal(got[[0, 2, 3]], vectors[[2, 0, 0]])
    assert not got[1].any()
    _, other_space = cache.get_many("model-b", 4, ["x"])
    assert not other_space.any()  # another model (or backend) never reads these vectors
    cache.close()
    reopened = EmbeddingCache(tmp_path / "emb.sqlite")  # on disk: a new process finds them
    again, found = reopened.get_many("model-a", 4, ["y"])
    assert found.all() and np.array_equal(again[0], vectors[1])
    assert len(reopened) == 3
    reopened.clear("model-a")
    assert len(reopened) == 0


def test_embedding_cache_is_not_created_until_used(tmp_path):
    cache = EmbeddingCache(tmp_path / "sub" / "emb.sqlite")
    assert not (tmp_path / "sub").exists()
    cache.put_many("s", ["a"], np.ones((1, 2), dtype=np.float32))
    assert (tmp_path / "sub" / "emb.sqlite").is_file()


def test_reindexing_unchanged_chunks_reads_the_cache_not_the_model(tmp_path, demo_documents):
    from winnow.collection import Collection, drop_collection

    docs = demo_documents[:8]
    first = Collection.create("one", home=tmp_path).use_backend("torch")
    report = first.add(docs)
    cache = first.encoder.cache
    assert cache.misses == report.chunks_encoded and cache.hits == 0
    first.close()
    drop_collection("one", home=tmp_path)

    second = Collection.create("two", home=tmp_path).use_backend("torch")
    edited = [Document(docs[0].id, docs[0].text + " One more sentence at the end.", docs[0].title), *docs[1:]]
    report = second.add(edited)
    cache = second.encoder.cache
    assert report.chunks_encoded == cache.hits + cache.misses
    assert cache.misses == 1 and cache.hits == report.chunks_encoded - 1  # only the edited chunk was encoded
    assert len(second.search("python for machine learning", method="dense", top_k=3).hits) == 3
    second.close()


def test_cached_vectors_equal_fresh_ones(tmp_path):
    from winnow.encode.bi_encoder import BiEncoder

    encoder = BiEncoder("all-MiniLM-L6-v2", backend="torch", cache=EmbeddingCache(tmp_path / "e.sqlite"))
    fresh = encoder.encode_documents(PASSAGES)
    cached = encoder.encode_documents(list(reversed(PASSAGES)))
    assert encoder.cache.hits == 3 and encoder.cache.misses == 3
    np.testing.assert_array_equal(cached, fresh[::-1])


# -- score cache -------------------------------------------------------------------------------------
def test_score_cache_is_lru_and_bounded():
    cache = ScoreCache(max_entries=3)
    keys = cache.keys_for("m", 128, "q", ["a", "b", "c"])
    cache.put_many(keys, [1.0, 2.0, 3.0])
    cache.get_many(cache.keys_for("m", 128, "q", ["a"]))  # "a" is now the most recently used
    cache.put_many(cache.keys_for("m", 128, "q", ["d"]), [4.0])  # evicts "b", the least recently used
    scores, found = cache.get_many(cache.keys_for("m", 128, "q", ["a", "b", "c", "d"]))
    assert found.tolist() == [True, False, True, True]
    assert scores[[0, 2, 3]].tolist() == [1.0, 3.0, 4.0]
    assert len(cache) == 3
    for _ in range(5):
        cache.put_many(cache.keys_for("m", 128, "q", [f"x{_}"]), [0.0])
    assert len(cache) == 3  # never above the bound
    _, found = cache.get_many(cache.keys_for("m", 64, "q", ["x4"]))  # other max_length: another key
    assert not found.any()
    with pytest.raises(InvalidArgumentError, match="max_entries must be a positive integer"):
        ScoreCache(0)


def test_reranker_serves_a_repeated_query_from_the_score_cache(tiny_cross_encoder_path):
    from winnow.rerank.cross_encoder import CrossEncoderReranker

    reranker = CrossEncoderReranker(str(tiny_cross_encoder_path), backend="torch", cache=ScoreCache(max_entries=4))
    first = reranker.score(QUERY, PASSAGES)
    assert reranker.cache.hits == 0 and reranker.cache.misses == 3
    second = reranker.score(QUERY, PASSAGES)
    assert reranker.cache.hits == 3
    np.testing.assert_array_equal(first, second)
    mixed = reranker.score(QUERY, [PASSAGES[1], "A new passage about trains."])
    assert reranker.cache.hits == 4 and reranker.cache.misses == 4
    assert mixed[0] == first[1]
    assert len(reranker.cache) == 4  # bounded: the fifth entry pushed out the oldest
    other_query = reranker.score("stock prices", PASSAGES[:1])
    assert reranker.cache.misses == 5 and len(reranker.cache) == 4
    assert other_query.shape == (1,)


def test_sigmoid_is_applied_after_the_cache(tiny_cross_encoder_path):
    from winnow.rerank.cross_encoder import CrossEncoderReranker

    shared = ScoreCache()
    logits = CrossEncoderReranker(str(tiny_cross_encoder_path), backend="torch", cache=shared).score(QUERY, PASSAGES)
    probs_model = CrossEncoderReranker(str(tiny_cross_encoder_path), backend="torch", cache=shared, sigmoid=True)
    probs = probs_model.score(QUERY, PASSAGES)
    assert shared.hits == 3  # the same model's logits, read back
    np.testing.assert_allclose(probs, 1 / (1 + np.exp(-logits)), atol=1e-6)


def test_no_cache_when_disabled(tiny_cross_encoder_path):
    from winnow.rerank.cross_encoder import CrossEncoderReranker

    reranker = CrossEncoderReranker(str(tiny_cross_encoder_path), backend="torch", cache=False)
    assert reranker.cache is None
    assert reranker.score(QUERY, PASSAGES).shape == (3,)
    with pytest.raises(InvalidArgumentError, match="cache must be"):
        CrossEncoderReranker(str(tiny_cross_encoder_path), cache="yes")
