"""Latency budgets: the stop rules worked out by hand, and the structure of a budgeted ranking with the
shipped reranker (no timing assertions: a budget of 0 reads nothing, a generous one reads everything, any
budget gives a valid ranking whose read hits are a prefix of the first stage's order)."""

from __future__ import annotations

import numpy as np
import pytest

from winnow.errors import InvalidArgumentError
from winnow.rerank.budget import Budget, CostModel, out_of_reach
from winnow.rerank.mix import ScoreMix
from winnow.types import FirstStage, Hit

QUERY = "what is the capital of france"
TEXTS = [
    "Lyon is known for its cuisine and its silk industry.",
    "France borders Spain, Italy, Germany, Belgium and Switzerland.",
    "Paris is the capital and most populous city of France.",
    "A recipe for pancakes: flour, eggs, milk and a pinch of salt.",
    "The Eiffel Tower was built for the 1889 World's Fair in Paris.",
    "Marseille is a port city in the south of France.",
] * 4


@pytest.fixture(scope="module")
def shipped():
    from winnow.models.resolve import SHIPPED_RERANKER
    from winnow.rerank.cross_encoder import CrossEncoderReranker

    return CrossEncoderReranker(SHIPPED_RERANKER, cache=False).warm_up()


def candidates() -> list[Hit]:
    return [Hit(doc_id=f"d{i}", score=1.0 - i / 100, rank=i + 1, text=t) for i, t in enumerate(TEXTS)]


def test_budget_and_cost_model_arguments_name_the_bad_value():
    with pytest.raises(InvalidArgumentError, match="budget must be a finite number of milliseconds >= 0, got -1"):
        Budget(-1)
    with pytest.raises(InvalidArgumentError, match="got inf"):
        Budget(float("inf"))
    with pytest.raises(InvalidArgumentError, match="budget k must be an integer >= 1"):
        Budget(100, k=0)
    with pytest.raises(InvalidArgumentError, match="ms_per_token must be a positive number, got 0"):
        CostModel(0)


def test_the_cost_model_follows_what_groups_cost_and_shrugs_off_outliers():
    model = CostModel(1.0, smoothing=0.5, spread=2.0)
    assert model.planning_ms_per_token == pytest.approx(1.0 + 2.0 * 0.5)  # the deviation starts at half the prior
    model.observe(100, 200.0)  # 2 ms a token: the average goes halfway, the deviation a quarter of the way to 1
    assert model.ms_per_token == pytest.approx(1.5)
    assert model.planning_ms_per_token == pytest.approx(1.5 + 2.0 * (0.5 + 0.25 * (1.0 - 0.5)))
    model.observe(10, 10_000.0)  # 1,000 ms a token (a call that loaded the model): clipped to 4x the average
    assert model.ms_per_token == pytest.approx(1.5 + 0.5 * (6.0 - 1.5))
    before = model.planning_ms_per_token
    model.observe(0, 5.0)  # nothing scored: nothing learned
    assert model.planning_ms_per_token == before and model.predict(10) == pytest.approx(10 * before)
    steady = CostModel(1.0, smoothing=0.5)
    for _ in range(30):
        steady.observe(100, 100.0)  # always 1 ms a token: the plan tightens to the rate itself
    assert steady.planning_ms_per_token == pytest.approx(1.0, abs=1e-3)


def test_out_of_reach_worked_out_by_hand():
    mix = ScoreMix(0.5)
    raw, first = np.array([3.0, 2.0, 1.0]), np.array([1.0, 0.9, 0.8])
    # the next candidate, even scoring 3.0 (the best so far), has a first-stage score far below: with the
    # statistics of the four, it mixes below the top 2 -> out of reach for k=2, not for k=3
    assert out_of_reach(raw, first, -5.0, mix, k=2)
    assert not out_of_reach(raw, first, -5.0, mix, k=3)
    # behind a clear best, a candidate close on the first stage can still take second place
    assert not out_of_reach(np.array([3.0, 1.0, 1.0]), first, 0.79, mix, k=2)
    assert not out_of_reach(raw, first, -5.0, None, k=2)  # the reranker alone: nothing is known of the unread
    assert not out_of_reach(raw, first, -5.0, ScoreMix(1.0), k=2)
    assert not out_of_reach(raw[:1], first[:1], -5.0, mix, k=2)  # fewer than k read


def _assert_valid_budgeted(ranking, given: list[Hit]) -> int:
    """Every candidate once, ranks 1..n, scores strictly ordered, read hits a prefix of the given order,
    unread ones after them in the given order. Returns how many were read."""
    assert sorted(ranking.doc_ids) == sorted(h.doc_id for h in given)
    assert [h.rank for h in ranking.hits] == list(range(1, len(given) + 1))
    scores = [h.score for h in ranking.hits]
    assert all(a >= b for a, b in zip(scores, scores[1:]))
    read = [h for h in ranking.hits if h.rerank_score is not None]
    unread = [h for h in ranking.hits if h.rerank_score is None]
    assert ranking.hits[: len(read)] == tuple(read)  # read hits first
    position = {h.doc_id: i for i, h in enumerate(given)}
    assert sorted(position[h.doc_id] for h in read) == list(range(len(read)))  # a prefix of the first stage's order
    assert [position[h.doc_id] for h in unread] == sorted(position[h.doc_id] for h in unread)
    assert all(h.read_tokens == 0 and h.probability is None for h in unread)
    assert all(h.read_tokens and h.read_tokens > 0 for h in read)
    return len(read)


def test_a_zero_budget_reads_nothing_and_keeps_the_first_stages_order(shipped):
    given = candidates()
    ranking = shipped.rank(QUERY, given, budget=Budget(0), first_stage=FirstStage.DENSE)
    assert _assert_valid_budgeted(ranking, given) == 0
    assert ranking.doc_ids == [h.doc_id for h in given]
    assert all(h.first_stage_rank == h.rank for h in ranking.hits)


def test_a_generous_budget_ranks_as_no_budget_does(shipped):
    given = candidates()
    full = shipped.rank(QUERY, given, top_k=10, first_stage=FirstStage.DENSE)
    budgeted = shipped.rank(QUERY, given, top_k=10, first_stage=FirstStage.DENSE, budget=Budget(600_000, k=len(given)))
    assert budgeted.doc_ids == full.doc_ids
    assert [h.score for h in budgeted.hits] == pytest.approx([h.score for h in full.hits])


def test_a_small_budget_reads_fewer_and_still_gives_a_valid_ranking(shipped):
    """A cost model that believes each token costs 1 ms and a budget of 100 ms: at most the first group,
    of about 60 tokens, fits (how many exactly depends on the clock, so only the structure is checked)."""
    from winnow.rerank.cross_encoder import CrossEncoderReranker

    slow = CrossEncoderReranker(shipped.name, cache=False, cost_model=CostModel(1.0, smoothing=1e-9))
    given = candidates()
    ranking = slow.rank(QUERY, given, first_stage=FirstStage.DENSE, budget=Budget(100, batch_tokens=16))
    read = _assert_valid_budgeted(ranking, given)
    assert read < len(given)
    full = {h.doc_id: h.rerank_score for h in shipped.rank(QUERY, given).hits}
    for h in ranking.hits[:read]:  # the candidates read score as they do without a budget
        assert h.rerank_score == pytest.approx(full[h.doc_id], abs=1e-5)


def test_a_pipeline_passes_the_budget_to_the_rerank_stage(demo_collection, shipped):
    from winnow.pipeline import Pipeline

    pipeline = Pipeline(demo_collection.retriever("bm25"), shipped, depth=8, top_k=8, hydrate=demo_collection.hydrate,
                        budget=Budget(0))
    ranking = pipeline.search("how do plants make food")
    assert all(h.rerank_score is None for h in ranking.hits) and [h.rank for h in ranking.hits] == [h.first_stage_rank for h in ranking.hits]
    searched = demo_collection.search("how do plants make food", method="bm25", top_k=8, depth=8, reranker=shipped, budget=Budget(0))
    assert searched.doc_ids == ranking.doc_ids


# -- the cascade's shape (the tiny seeded cross-encoder stands in for the distilled small reranker) --------
def test_a_cascade_reranks_the_small_stages_best_with_the_last_stage(shipped, tiny_cross_encoder_path):
    from winnow.rerank.cascade import CascadeReranker, CascadeStage
    from winnow.rerank.cross_encoder import CrossEncoderReranker

    small = CrossEncoderReranker(str(tiny_cross_encoder_path), cache=False)
    given = candidates()
    cascade = CascadeReranker([CascadeStage(small, 20), CascadeStage(shipped, 5)])
    ranking = cascade.rank(QUERY, given, first_stage=FirstStage.DENSE)
    first = small.rank(QUERY, given[:20], first_stage=FirstStage.DENSE)
    best5 = shipped.rank(QUERY, list(first.hits[:5]), first_stage=FirstStage.DENSE)
    assert ranking.doc_ids == best5.doc_ids + first.doc_ids[5:] + [h.doc_id for h in given[20:]]
    assert [h.rank for h in ranking.hits] == list(range(1, len(given) + 1))
    scores = [h.score for h in ranking.hits]
    assert all(a >= b for a, b in zip(scores, scores[1:]))
    original = {h.doc_id: h for h in given}
    assert all(h.first_stage_rank == original[h.doc_id].rank and h.first_stage_score == original[h.doc_id].score
               for h in ranking.hits)
    assert set(ranking.timings_ms) == {"rerank1", "rerank2", "rerank"}
    with pytest.raises(InvalidArgumentError, match=r"must not grow.*\[5, 20\]"):
        CascadeReranker([CascadeStage(small, 5), CascadeStage(shipped, 20)])


def test_with_cascade_builds_the_stages_the_options_name(shipped, tiny_cross_encoder_path):
    from winnow.cli import build_parser
    from winnow.errors import WinnowError
    from winnow.rerank.cascade import CascadeReranker, CascadeStage, with_cascade
    from winnow.rerank.cross_encoder import CrossEncoderReranker

    cascade = with_cascade(shipped, str(tiny_cross_encoder_path), first_depth=30, depth=5, cache=False)
    assert [s.depth for s in cascade.stages] == [30, 5] and cascade.stages[1].reranker is shipped
    small = CrossEncoderReranker(str(tiny_cross_encoder_path), cache=False)
    by_hand = CascadeReranker([CascadeStage(small, 30), CascadeStage(shipped, 5)])
    given = candidates()
    assert cascade.rank(QUERY, given, first_stage=FirstStage.DENSE).doc_ids == by_hand.rank(QUERY, given, first_stage=FirstStage.DENSE).doc_ids
    assert [s.depth for s in with_cascade(shipped, small, first_depth=3).stages] == [3, 3]  # never deeper than the first
    with pytest.raises(InvalidArgumentError, match="model id, a folder or a Reranker, got int"):
        with_cascade(shipped, 42, first_depth=3)
    args = build_parser().parse_args(["search", "c", "q", "--cascade", str(tiny_cross_encoder_path)])
    with pytest.raises(WinnowError, match="--cascade set how the reranker reads: add --rerank"):
        args.func(args)


# -- the command line's rerank options -------------------------------------------------------------------
def test_rerank_options_are_validated_and_become_a_reading_and_a_budget(capsys):
    from winnow.cli import build_parser
    from winnow.rerank.options import budget_from_args, reading_from_args
    from winnow.rerank.reading import Reading, Truncation
    from winnow.rerank.windows import Aggregation

    parser = build_parser()
    for bad, message in ((["--max-windows", "0"], "--max-windows must be in 1..64, got 0"),
                         (["--budget-ms", "-5"], "--budget-ms must be a finite number >= 0, got '-5'"),
                         (["--aggregation", "mean"], "invalid choice: 'mean'")):
        with pytest.raises(SystemExit):
            parser.parse_args(["search", "c", "q", "--rerank", *bad])
        assert message in capsys.readouterr().err
    args = parser.parse_args(["search", "c", "q", "--rerank", "--max-windows", "6", "--aggregation", "softmax",
                              "--truncation", "left", "--budget-ms", "150"])
    assert reading_from_args(args) == Reading(max_windows=6, aggregation=Aggregation.SOFTMAX, truncation=Truncation.LEFT)
    assert budget_from_args(args, k=10) == Budget(150.0, k=10)
    plain = parser.parse_args(["eval", "data"])
    assert reading_from_args(plain) == Reading() and budget_from_args(plain) is None
    with pytest.raises(SystemExit):
        parser.parse_args(["search", "c", "q", "--window-overlap", "-1"])
    assert "--window-overlap must be >= 0, got -1" in capsys.readouterr().err
