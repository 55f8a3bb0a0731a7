"""Rerankers: the shared ``rank()`` contract, the cross-encoder's options (on a tiny seeded model: these
check mechanics, not quality), and MaxSim with hand-built token vectors and the real bi-encoder."""

from __future__ import annotations

import numpy as np
import pytest

from winnow.errors import InvalidArgumentError, ModelNotFoundError
from winnow.rerank.cross_encoder import CrossEncoderReranker
from winnow.rerank.maxsim import MaxSimReranker, maxsim
from winnow.rerank.mix import ScoreMix
from winnow.types import ChunkRef, FirstStage, Hit

QUERY = "how do plants make food"
PASSAGES = [
    "Photosynthesis lets plants turn sunlight, water and carbon dioxide into sugar.",
    "The stock market fell sharply on Monday after weak earnings reports.",
    "Plants absorb water through their roots and release oxygen through their leaves.",
    "A recipe for pancakes: flour, eggs, milk and a pinch of salt.",
    "Chlorophyll in leaves captures light energy for the plant.",
]


def candidates() -> list[Hit]:
    """A first stage's hits: ranks 1..5 with decreasing scores."""
    return [
        Hit(doc_id=f"d{i}", score=10.0 - i, rank=i, text=t, chunk=ChunkRef(f"d{i}", 0))
        for i, t in enumerate(PASSAGES, start=1)
    ]


@pytest.fixture(scope="module")
def cross_encoder(tiny_cross_encoder_path):
    return CrossEncoderReranker(str(tiny_cross_encoder_path))


def test_rank_orders_by_the_rerankers_score_and_keeps_first_stage_positions(cross_encoder):
    hits = candidates()
    scores = cross_encoder.score(QUERY, PASSAGES)
    assert scores.shape == (5,) and np.isfinite(scores).all()
    ranking = cross_encoder.rank(QUERY, hits)
    assert ranking.query == QUERY and len(ranking) == 5
    expected_order = [f"d{i + 1}" for i in np.argsort(-scores, kind="stable")]
    assert ranking.doc_ids == expected_order
    assert [h.rank for h in ranking.hits] == [1, 2, 3, 4, 5]
    for hit in ranking.hits:
        original = hits[int(hit.doc_id[1:]) - 1]
        assert hit.first_stage_rank == original.rank
        assert hit.first_stage_score == original.score
        assert hit.rerank_score == pytest.approx(float(scores[original.rank - 1]), abs=1e-5)
        assert hit.score == hit.rerank_score
        assert hit.text == original.text and hit.chunk == original.chunk
        assert hit.movement == original.rank - hit.rank
    assert set(ranking.timings_ms) == {"rerank"} and ranking.timings_ms["rerank"] > 0


def test_rank_top_k_keeps_the_best(cross_encoder):
    full = cross_encoder.rank(QUERY, candidates())
    top2 = cross_encoder.rank(QUERY, candidates(), top_k=2)
    assert top2.doc_ids == full.doc_ids[:2]
    assert len(cross_encoder.rank(QUERY, candidates(), top_k=50)) == 5
    for bad in (0, -3):
        with pytest.raises(InvalidArgumentError, match="top_k must be >= 1"):
            cross_encoder.rank(QUERY, candidates(), top_k=bad)


def test_rank_does_not_touch_the_callers_list(cross_encoder):
    hits = candidates()
    snapshot = list(hits)
    cross_encoder.rank(QUERY, hits, top_k=3)
    assert hits == snapshot
    assert all(a is b for a, b in zip(hits, snapshot))
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
    assert all(h.rerank_score is None for h in hits)


def test_a_second_stage_keeps_the_first_stages_positions(cross_encoder):
    once = cross_encoder.rank(QUERY, candidates())
    twice = cross_encoder.rank(QUERY, once.hits)
    for hit in twice.hits:
        assert hit.first_stage_rank == int(hit.doc_id[1:])  # still the first stage's, not the previous stage's
        assert hit.first_stage_score == 10.0 - int(hit.doc_id[1:])


def test_no_candidates_give_an_empty_ranking(cross_encoder):
    ranking = cross_encoder.rank(QUERY, [])
    assert ranking.hits == () and "rerank" in ranking.timings_ms
    assert cross_encoder.score(QUERY, []).shape == (0,)


def test_the_title_is_read_with_the_text(cross_encoder):
    plain = Hit(doc_id="x", score=1.0, rank=1, text=PASSAGES[1])
    titled = Hit(doc_id="x", score=1.0, rank=1, text=PASSAGES[1], title="Photosynthesis in plants")
    a = cross_encoder.rank(QUERY, [plain]).hits[0].rerank_score
    b = cross_encoder.rank(QUERY, [titled]).hits[0].rerank_score
    assert a != pytest.approx(b, abs=1e-6)
    expected = cross_encoder.score(QUERY, [f"Photosynthesis in plants {PASSAGES[1]}"])[0]
    assert b == pytest.approx(float(expected), abs=1e-5)


def test_sigmoid_maps_logits_into_0_1_in_the_same_order(cross_encoder, tiny_cross_encoder_path):
    probs_model = CrossEncoderReranker(str(tiny_cross_encoder_path), sigmoid=True)
    logits = cross_encoder.score(QUERY, PASSAGES)
    probs = probs_model.score(QUERY, PASSAGES)
    assert ((probs > 0) & (probs < 1)).all()
    np.testing.assert_allclose(probs, 1 / (1 + np.exp(-logits)), atol=1e-5)


def test_max_length_truncates_long_pairs(tiny_cross_encoder_path):
    short = CrossEncoderReranker(str(tiny_cross_encoder_path), max_length=32, batch_size=2)
    assert short.max_length == 32
    long_text = " ".join(PASSAGES)  # far beyond 32 tokens
    longer = long_text + " " + "Unrelated words about trains and weather. " * 20
    a, b = short.score(QUERY, [long_text, longer])
    assert a == pytest.approx(float(b), abs=1e-5)  # both cut to the same first 32 tokens


def test_cross_encoder_arguments_are_validated(tiny_cross_encoder_path, monkeypatch):
    with pytest.raises(InvalidArgumentError, match="max_length must be >= 8"):
        CrossEncoderReranker(str(tiny_cross_encoder_path), max_length=4)
    with pytest.raises(InvalidArgumentError, match="batch_size must be >= 1"):
        CrossEncoderReranker(str(tiny_cross_encoder_path), batch_size=0)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="no-such-reranker"):
        CrossEncoderReranker("winnow-tests/no-such-reranker")


# -- MaxSim ----------------------------------------------------------------------------------------------
def test_maxsim_on_hand_built_token_vectors():
    q = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    d1 = np.array([[1.0, 0.0]], dtype=np.float32)  # matches the first query token only
    d2 = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=np.float32)  # matches both
    d3 = np.array([[0.6, 0.8]], dtype=np.float32)
    assert maxsim(q, d1) == pytest.approx(0.5)
    assert maxsim(q, d2) == pytest.approx(1.0)
    assert maxsim(q, d3) == pytest.approx((0.6 + 0.8) / 2)
    assert maxsim(q, np.zeros((0, 2), dtype=np.float32)) == 0.0


def test_maxsim_reranker_with_the_real_bi_encoder(bi_encoder):
    reranker = MaxSimReranker(encoder=bi_encoder)
    scores = reranker.score(QUERY, [QUERY, *PASSAGES])
    assert scores[0] == pytest.approx(1.0, abs=1e-4)  # a text against itself: every token finds itself
    assert (scores[1:] < scores[0]).all()
    ranking = reranker.rank(QUERY, candidates())
    assert ranking.doc_ids[-1] in ("d2", "d4")  # stock market / pancakes: the off-topic ones sink
    assert set(ranking.doc_ids[:2]) <= {"d1", "d3", "d5"}


# -- the fitted mix with the first stage (fusion.json beside a trained model) ---------------------------
def test_score_mix_is_the_weighted_sum_of_per_query_z_scores():
    reranker, first = np.array([1.0, 3.0, 2.0]), np.array([30.0, 10.0, 20.0])
    z_r = (reranker - 2.0) / np.sqrt(2.0 / 3.0)  # mean 2, population std sqrt(2/3)
    z_f = (first - 20.0) / np.sqrt(200.0 / 3.0)
    np.testing.assert_allclose(ScoreMix(0.25).apply(reranker, first), 0.25 * z_r + 0.75 * z_f)
    np.testing.assert_allclose(ScoreMix(1.0).apply(reranker, first), z_r)
    assert ScoreMix(0.5).apply(np.zeros(0), np.zeros(0)).size == 0
    with pytest.raises(InvalidArgumentError, match="in 0..1, got 1.5"):
        ScoreMix(1.5)
    with pytest.raises(InvalidArgumentError, match="one first-stage score per reranker score"):
        ScoreMix(0.5).apply(reranker, first[:2])


def test_a_model_folder_with_fusion_json_ranks_by_the_mix_of_the_candidates_first_stage(tiny_cross_encoder_path, tmp_path):
    import json
    import shutil

    from winnow.rerank.mix import MixTable
    from winnow.types import FirstStage

    folder = tmp_path / "mixed"
    shutil.copytree(tiny_cross_encoder_path, folder)
    plain = CrossEncoderReranker(str(folder), cache=False)
    assert plain.mixes is None
    stages = {"bm25": {"weight_reranker": 0.0}, "hybrid": {"weight_reranker": 1.0}}
    (folder / "fusion.json").write_text(json.dumps({"format_version": 2, "method": "zscore", "first_stages": stages}))
    mixed = CrossEncoderReranker(str(folder), cache=False)
    ids = [f"d{i}" for i in range(1, 6)]
    raw = dict(zip(ids, plain.score(QUERY, PASSAGES)))
    by_reranker = sorted(ids, key=lambda d: -raw[d])
    assert by_reranker != ids  # the test needs the two orders to differ
    # bm25 candidates, weight 0: the first stage's order, while each hit still carries the reranker's own score
    ranking = mixed.rank(QUERY, candidates(), first_stage=FirstStage.BM25)
    assert ranking.doc_ids == ids
    assert all(h.rerank_score == pytest.approx(raw[h.doc_id], abs=1e-5) for h in ranking.hits)
    # hybrid, weight 1: the reranker's order; dense has no fitted mix and unknown origin none: the reranker alone
    for stage in (FirstStage.HYBRID, FirstStage.DENSE, None):
        assert mixed.rank(QUERY, candidates(), first_stage=stage).doc_ids == by_reranker, stage
    assert CrossEncoderReranker(str(folder), use_mix=False).mixes is None

    # a format-1 file (one weight, fitted on dense lists) is a dense-only table
    (folder / "fusion.json").write_text(json.dumps({"method": "zscore", "weight_reranker": 0.0}))
    old = CrossEncoderReranker(str(folder), cache=False)
    assert old.mixes == MixTable({FirstStage.DENSE: ScoreMix(0.0)})
    assert old.rank(QUERY, candidates(), first_stage=FirstStage.DENSE).doc_ids == ids
    assert old.rank(QUERY, candidates(), first_stage=FirstStage.BM25).doc_ids == by_reranker

    (folder / "fusion.json").write_text(json.dumps({"method": "minmax", "weight_reranker": 0.5}))
    with pytest.raises(InvalidArgumentError, match="method 'minmax' is not supported"):
        CrossEncoderReranker(str(folder))
    (folder / "fusion.json").write_text(json.dumps({"format_version": 2, "method": "zscore", "first_stages": {"splade": {"weight_reranker": 0.5}}}))
    with pytest.raises(InvalidArgumentError, match=r"unknown first stage\(s\) \['splade'\]"):
        CrossEncoderReranker(str(folder))


# -- winnow's own reranker, shipped inside the package --------------------------------------------------
def test_winnows_shipped_reranker_resolves_offline_and_puts_the_answer_first(monkeypatch):
    from winnow.models.resolve import SHIPPED_RERANKER, resolve_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    resolved = resolve_model(SHIPPED_RERANKER)
    assert resolved.source == "shipped"
    files = {p.name: p.stat().st_size for p in resolved.path.iterdir()}
    assert "model.safetensors" not in files and sum(files.values()) < 40e6  # one int8 ONNX file: tens of MB
    card = (resolved.path / "README.md").read_text(encoding="utf-8")
    for needed in ("training time", "hardware", "## Evaluation on test sets", "**msmarco**", "**dbpedia**"):
        assert needed in card, needed

    reranker = CrossEncoderReranker(SHIPPED_RERANKER, cache=False)
    assert reranker.backend == "onnx-int8" and reranker.mixes is not None
    query = "what is the capital of france"
    texts = [
        "Lyon is known for its cuisine and its silk industry.",
        "France borders Spain, Italy, Germany, Belgium and Switzerland.",
        "Paris is the capital and most populous city of France.",
        "A recipe for pancakes: flour, eggs, milk and a pinch of salt.",
    ]
    hits = [Hit(doc_id=f"d{i}", score=1.0 - i / 10, rank=i + 1, text=t) for i, t in enumerate(texts)]
    ranking = reranker.rank(query, hits, first_stage=FirstStage.DENSE)
    assert ranking.doc_ids[0] == "d2" and ranking.hits[0].first_stage_rank == 3
    raw = reranker.score(query, texts)
    assert int(np.argmax(raw)) == 2 and int(np.argmin(raw)) == 3


# -- scores that do not depend on the batch ----------------------------------------------------------------
def test_int8_scores_do_not_depend_on_batch_neighbours_position_or_padding():
    """int8 activations are quantized per run: each pair runs alone, so its score is its own."""
    from winnow.models.resolve import SHIPPED_RERANKER

    reranker = CrossEncoderReranker(SHIPPED_RERANKER, cache=False)
    assert reranker.backend == "onnx-int8"
    query, other = "what is the capital of france", "how long do cats sleep"
    texts = [*PASSAGES, "Paris is the capital and most populous city of France, on the Seine, " * 6]
    alone = np.array([reranker.score(query, [t])[0] for t in texts])
    together = reranker.score(query, texts)
    mixed_pairs = [(other, t) for t in reversed(texts)] + [(query, t) for t in reversed(texts)]
    mixed = reranker.score_pairs(mixed_pairs)[len(texts):][::-1]
    np.testing.assert_allclose(together, alone, atol=1e-4)
    np.testing.assert_allclose(mixed, alone, atol=1e-4)
    assert list(np.argsort(-together)) == list(np.argsort(-alone)) == list(np.argsort(-mixed))


def test_int8_rows_on_several_streams_score_as_on_one():
    """Rows alone, two at a time on two single-threaded streams: the same scores, in the callers' order, as one
    stream running them one after the other (and every row once)."""
    from winnow.encode.onnx import OnnxRunner
    from winnow.models.resolve import SHIPPED_RERANKER, resolve_model

    folder = resolve_model(SHIPPED_RERANKER).path
    pairs = [(q, t) for q in ("what is the capital of france", "how long do cats sleep") for t in PASSAGES] * 3

    def scores(runner):
        out = np.full(len(pairs), np.nan, dtype=np.float32)
        seen = []

        def consume(positions, output, mask):
            seen.extend(positions.tolist())
            out[positions] = output[:, 0]

        runner.run_batches(pairs, consume)
        assert sorted(seen) == list(range(len(pairs)))
        return out

    one, two = (OnnxRunner(folder / "model.onnx", folder / "tokenizer.json", max_length=192, threads=2,
                           rows_alone=True, streams=s) for s in (1, 2))
    assert one.streams == 1 and two.streams == 2
    np.testing.assert_array_equal(scores(two), scores(one))
    with pytest.raises(InvalidArgumentError, match="streams must be an integer >= 1"):
        OnnxRunner(folder / "model.onnx", folder / "tokenizer.json", max_length=192, rows_alone=True, streams=0)


def test_int8_bi_encoder_vectors_do_not_depend_on_the_batch(demo_documents):
    from winnow.encode.bi_encoder import BiEncoder

    encoder = BiEncoder("sentence-transformers/all-MiniLM-L6-v2", backend="onnx-int8")
    texts = [d.text for d in demo_documents[:12]]
    alone = np.stack([encoder.encode_documents([t])[0] for t in texts])
    np.testing.assert_allclose(encoder.encode_documents(texts), alone, atol=1e-5)
    np.testing.assert_allclose(encoder.encode_documents(texts[::-1])[::-1], alone, atol=1e-5)
    queries = ["capital of france", "a much longer query about the planets of the solar system and their moons"]
    np.testing.assert_allclose(encoder.encode_queries(queries)[0], encoder.encode_queries(queries[:1])[0], atol=1e-5)
