"""Long documents: window geometry and aggregation worked out by hand, token counts against the real
tokenizer's own truncation, and the shipped reranker finding an answer past the first window."""

from __future__ import annotations

import math

import numpy as np
import pytest

from winnow.errors import InvalidArgumentError, TooLargeError
from winnow.rerank.reading import ONE_PASS, PassageReader, PassageTooLongError, Reading, Truncation, passage_kept
from winnow.rerank.windows import Aggregation, aggregate, covered, window_spans
from winnow.types import FirstStage, Hit, with_title

QUERY = "how do plants make food"
ANSWER = ("Photosynthesis is how plants make their food: chlorophyll in the leaves captures sunlight and turns water "
          "and carbon dioxide into sugar.")
FILLER = " ".join(
    f"On day {i} the regional water board met again and argued at length about the price of new pipes." for i in range(40)
)
LONG_DOC = FILLER[:2500] + " " + ANSWER + " " + FILLER[2500:]  # the answer is about 550 tokens in
SHORT = "Plants need water and light to grow, and gardeners water them in the morning."


@pytest.fixture(scope="module")
def shipped():
    from winnow.models.resolve import SHIPPED_RERANKER
    from winnow.rerank.cross_encoder import CrossEncoderReranker

    return CrossEncoderReranker(SHIPPED_RERANKER, cache=False)


@pytest.fixture(scope="module")
def reader(shipped) -> PassageReader:
    return shipped.passage_reader


def hits(*texts: str) -> list[Hit]:
    return [Hit(doc_id=f"d{i}", score=1.0 - i / 10, rank=i + 1, text=t) for i, t in enumerate(texts)]


# -- geometry and aggregation, by hand -------------------------------------------------------------------
def test_window_spans_worked_out_by_hand():
    assert window_spans(3, 4, 1, 8) == [(0, 3)]  # fits: one window
    assert window_spans(4, 4, 1, 8) == [(0, 4)]
    # stride 3: 0-4, 3-7, and the last window ends at the end (6-10), a full window rather than a sliver
    assert window_spans(10, 4, 1, 8) == [(0, 4), (3, 7), (6, 10)]
    assert window_spans(11, 4, 1, 8) == [(0, 4), (3, 7), (6, 10), (7, 11)]
    assert window_spans(11, 4, 1, 2) == [(0, 4), (3, 7)]  # capped: read from the start
    assert window_spans(0, 4, 1, 8) == [(0, 0)]
    assert covered([(0, 4), (3, 7), (6, 10)]) == 10 and covered([(0, 4), (3, 7)]) == 7 and covered([(0, 0)]) == 0


def test_window_arguments_name_the_bad_value():
    with pytest.raises(InvalidArgumentError, match="overlap must be in 0..3 tokens.*got 4"):
        window_spans(10, 4, 4, 8)
    with pytest.raises(InvalidArgumentError, match="max_windows must be >= 1, got 0"):
        window_spans(10, 4, 1, 0)
    with pytest.raises(InvalidArgumentError, match="unknown aggregation 'mean'; choose one of: maxp, firstp, softmax"):
        Aggregation.parse("mean")
    with pytest.raises(InvalidArgumentError, match=r"max_windows must be an integer in 1\.\.64, got 65"):
        Reading(max_windows=65)
    with pytest.raises(InvalidArgumentError, match="unknown truncation direction 'middle'; choose one of: right, left"):
        Reading(truncation="middle")
    assert Reading(aggregation="SoftMax", truncation="Left") == Reading(aggregation=Aggregation.SOFTMAX, truncation=Truncation.LEFT)


def test_aggregations_by_hand():
    s = np.array([1.0, 3.0, 2.0])
    assert aggregate(s, Aggregation.MAXP) == 3.0
    assert aggregate(s, Aggregation.FIRSTP) == 1.0
    two = np.array([0.0, math.log(3.0)])  # softmax weights 1/4, 3/4
    assert aggregate(two, Aggregation.SOFTMAX) == pytest.approx(0.75 * math.log(3.0))
    assert s.mean() < aggregate(s, Aggregation.SOFTMAX) < s.max()
    assert aggregate(np.array([5.0] * 7), Aggregation.SOFTMAX) == pytest.approx(5.0)  # no bonus for more windows
    with pytest.raises(InvalidArgumentError, match="at least one window"):
        aggregate(np.zeros(0), Aggregation.MAXP)


# -- token counts against the tokenizer itself -----------------------------------------------------------
def test_passage_kept_matches_the_tokenizers_longest_first_truncation(shipped):
    from tokenizers import Tokenizer

    from winnow.encode.onnx import tokenizer_file

    tok = Tokenizer.from_file(str(tokenizer_file(shipped.resolved.path)))
    tok.no_padding()
    for room in (40, 41):  # an odd room: who gets the odd token when both sides are long
        tok.enable_truncation(room + 3, strategy="longest_first")
        for q in (1, 5, 19, 20, 21, 22, 30, 45):
            for p in (1, 10, 19, 20, 21, 22, 35, 60):
                enc = tok.encode(" ".join(["x"] * q), " ".join(["y"] * p))
                kept = sum(enc.type_ids) - 1  # the passage's tokens, less its [SEP]
                assert passage_kept(q, p, room) == kept, (room, q, p)


def test_one_pass_reads_the_passage_as_given_and_counts_what_is_cut(reader):
    (read,) = reader.read(QUERY, [("Notes", LONG_DOC)])
    assert read.texts == (with_title("Notes", LONG_DOC),)  # the tokenizer cuts it, exactly as before
    total = reader.count([with_title("Notes", LONG_DOC)])[0]
    q = reader.count([QUERY])[0]
    assert read.tokens == total and read.read_tokens == reader.room - q and read.truncated_tokens == total - read.read_tokens
    (short,) = reader.read(QUERY, [("", SHORT)])
    assert short.truncated_tokens == 0 and short.read_tokens == short.tokens == reader.count([SHORT])[0]


def test_windows_cover_the_document_each_within_one_pass(reader):
    q = reader.count([QUERY])[0]
    (read,) = reader.read(QUERY, [("Notes", LONG_DOC)], Reading(max_windows=64))
    assert len(read.texts) > 3 and read.truncated_tokens == 0 and read.read_tokens == read.tokens
    title = reader.count(["Notes"])[0]
    for text in read.texts:
        assert text.startswith("Notes ")
        assert reader.count([text])[0] <= reader.room - q  # query + window fit one pass: nothing is cut
    assert sum(ANSWER[:40] in t for t in read.texts) >= 1
    assert read.texts[0][len("Notes "):] in LONG_DOC and LONG_DOC.startswith(read.texts[0][len("Notes "):])
    (capped,) = reader.read(QUERY, [("Notes", LONG_DOC)], Reading(max_windows=2))
    assert len(capped.texts) == 2 and capped.truncated_tokens == capped.tokens - capped.read_tokens > 0
    size = reader.room - q - title  # text tokens a window holds beside the title
    assert size < capped.read_tokens - title <= 2 * size - Reading().overlap


def test_left_truncation_keeps_the_end(reader):
    (read,) = reader.read(QUERY, [("", LONG_DOC)], Reading(truncation=Truncation.LEFT))
    assert len(read.texts) == 1 and LONG_DOC.endswith(read.texts[0]) and read.truncated_tokens > 0


def test_truncate_false_refuses_a_passage_that_would_be_cut(shipped):
    with pytest.raises(PassageTooLongError, match=r"document 1 has \d+ tokens.*truncate=true") as info:
        shipped.rank(QUERY, hits(SHORT, LONG_DOC), reading=Reading(truncate=False))
    assert isinstance(info.value, TooLargeError)  # the server answers 413
    whole = shipped.rank(QUERY, hits(SHORT, LONG_DOC), reading=Reading(max_windows=64, truncate=False))
    assert all(h.truncated_tokens == 0 for h in whole.hits)


# -- the shipped reranker -------------------------------------------------------------------------------
def test_windows_find_the_answer_past_the_first_window_that_one_pass_misses(shipped):
    candidates = hits(SHORT, LONG_DOC)
    one_pass = shipped.rank(QUERY, candidates)
    windows = shipped.rank(QUERY, candidates, reading=Reading(max_windows=8))
    first = shipped.rank(QUERY, candidates, reading=Reading(max_windows=8, aggregation=Aggregation.FIRSTP))
    assert one_pass.doc_ids == ["d0", "d1"] and first.doc_ids == ["d0", "d1"]
    assert windows.doc_ids == ["d1", "d0"]
    long_hit = {h.doc_id: h for h in windows.hits}["d1"]
    assert long_hit.truncated_tokens == 0 and long_hit.read_tokens > shipped.max_length
    answer_alone = float(shipped.raw_scores(QUERY, [ANSWER])[0])
    assert long_hit.rerank_score > {h.doc_id: h for h in one_pass.hits}["d1"].rerank_score
    assert long_hit.rerank_score <= answer_alone + 5.0  # the answer's window, read with its neighbours


def test_the_default_reading_ranks_exactly_as_before(shipped):
    """One pass cut at the right is what rank() always did: order and scores equal the raw scores of the
    titled passages."""
    candidates = [Hit(doc_id=f"d{i}", score=1.0 - i / 10, rank=i + 1, text=t, title="Plants" if i % 2 else "")
                  for i, t in enumerate([SHORT, LONG_DOC, ANSWER])]
    raw = shipped.raw_scores(QUERY, [with_title(h.title, h.text) for h in candidates])
    for ranking in (shipped.rank(QUERY, candidates), shipped.rank(QUERY, candidates, reading=ONE_PASS)):
        assert ranking.doc_ids == [f"d{i}" for i in np.argsort(-raw, kind="stable")]
        assert [h.rerank_score for h in ranking.hits] == pytest.approx(sorted(raw.tolist(), reverse=True), abs=1e-6)
    mixed = shipped.rank(QUERY, candidates, first_stage=FirstStage.DENSE)
    expected = shipped.mixes.for_stage(FirstStage.DENSE).apply(raw, np.array([h.score for h in candidates]))
    assert mixed.doc_ids == [f"d{i}" for i in np.argsort(-expected, kind="stable")]


def test_a_documents_window_score_does_not_depend_on_the_other_candidates(shipped):
    reading = Reading(max_windows=8)
    alone = shipped.rank(QUERY, hits(LONG_DOC), reading=reading).hits[0].rerank_score
    together = {h.doc_id: h.rerank_score for h in shipped.rank(QUERY, hits(SHORT, ANSWER, LONG_DOC), reading=reading).hits}
    assert together["d2"] == pytest.approx(alone, abs=1e-5)


def test_a_reranker_without_a_tokenizer_refuses_windows():
    from winnow.rerank.base import Reranker

    class Overlap(Reranker):
        name = "overlap"

        def score(self, query, texts):
            return np.array([len(set(query.split()) & set(t.split())) for t in texts], dtype=float)

    r = Overlap()
    assert r.rank(QUERY, hits(SHORT, ANSWER)).doc_ids == ["d1", "d0"]
    assert r.rank(QUERY, hits(SHORT)).hits[0].read_tokens is None
    with pytest.raises(InvalidArgumentError, match="'overlap' has no tokenizer.*windows"):
        r.rank(QUERY, hits(SHORT), reading=Reading(max_windows=4))


# -- the pipeline hands a window reader whole documents ---------------------------------------------------
def test_a_window_reading_pipeline_reads_whole_documents(demo_collection, shipped):
    from winnow.pipeline import Pipeline

    from dataclasses import replace

    from winnow.types import Ranking

    def best_chunk_only(ranking):  # stands in for a hydrate that gives each hit a part of its document
        return Ranking(ranking.query, tuple(replace(h, text="a chunk") for h in demo_collection.hydrate(ranking).hits))

    retriever = demo_collection.retriever("bm25")
    with pytest.raises(InvalidArgumentError, match="needs each candidate's whole document: pass documents="):
        Pipeline(retriever, shipped, depth=5, top_k=5, hydrate=best_chunk_only, reading=Reading(max_windows=4))
    one_pass = Pipeline(retriever, shipped, depth=5, top_k=5, hydrate=best_chunk_only).search("how do plants make food")
    assert all(h.text == "a chunk" for h in one_pass.hits)
    pipeline = Pipeline(retriever, shipped, depth=5, top_k=5, hydrate=best_chunk_only,
                        reading=Reading(max_windows=4), documents=demo_collection.get)
    ranking = pipeline.search("how do plants make food")
    docs = demo_collection.get(ranking.doc_ids)
    assert 1 <= len(ranking) <= 5  # what BM25 matched
    for h in ranking.hits:
        assert h.text == docs[h.doc_id].text and h.read_tokens is not None and h.rerank_score is not None


def test_windows_beside_a_long_query_are_not_cut(shipped, reader):
    """A query longer than half a pass: the windows get half a pass and the tokenizer cuts the query, never
    the window (checked with the model's own truncating tokenizer)."""
    from tokenizers import Tokenizer

    from winnow.encode.onnx import tokenizer_file

    tok = Tokenizer.from_file(str(tokenizer_file(shipped.resolved.path)))
    tok.no_padding()
    tok.enable_truncation(shipped.max_length, strategy="longest_first")
    for query in (QUERY, " ".join(["why do plants in the garden grow toward the light"] * 12)):
        (read,) = reader.read(query, [("", LONG_DOC)], Reading(max_windows=64))
        for text in read.texts:
            enc = tok.encode(query, text)
            assert sum(enc.type_ids) - 1 == reader.count([text])[0]  # the whole window was read
