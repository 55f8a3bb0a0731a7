"""Token-budget batching (pure functions): every input once, budget respected, caller's order restorable."""

from __future__ import annotations

import numpy as np
import pytest

from winnow.encode.batching import fixed_count_batches, pad_batch, padded_tokens, token_budget_batches
from winnow.errors import InvalidArgumentError


def test_each_position_lands_in_exactly_one_batch_and_the_budget_holds():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 200, size=1000)
    batches = token_budget_batches(lengths, max_tokens=1024)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(1000))
    for b in batches:
        assert len(b) * lengths[b].max() <= 1024  # padded size: rows x the batch's own longest
        assert np.all(np.diff(lengths[b]) >= 0)  # sorted by length inside the batch


def test_scattering_batch_outputs_by_position_restores_the_callers_order():
    lengths = [5, 1, 9, 3, 3, 7, 2]
    texts = [f"t{i}" for i in range(len(lengths))]
    out = [None] * len(texts)
    for batch in token_budget_batches(lengths, max_tokens=10):
        outputs = [texts[i].upper() for i in batch]  # what a model would return, in batch order
        for pos, value in zip(batch, outputs):
            out[pos] = value
    assert out == [t.upper() for t in texts]


def test_known_batches_on_a_small_example():
    # sorted: 1(p1) 2(p6) 3(p3) 3(p4) 5(p0) 7(p5) 9(p2); budget 10
    batches = token_budget_batches([5, 1, 9, 3, 3, 7, 2], max_tokens=10)
    assert [b.tolist() for b in batches] == [[1, 6, 3], [4, 0], [5], [2]]
    assert padded_tokens([5, 1, 9, 3, 3, 7, 2], batches) == 9 + 10 + 7 + 9


def test_ties_keep_the_callers_order_and_long_inputs_get_a_batch_of_their_own():
    batches = token_budget_batches([4, 4, 4, 50, 4], max_tokens=8)
    assert [b.tolist() for b in batches] == [[0, 1], [2, 4], [3]]  # 50 > budget: alone, never dropped


def test_max_rows_caps_a_batch():
    batches = token_budget_batches([1] * 10, max_tokens=1000, max_rows=4)
    assert [len(b) for b in batches] == [4, 4, 2]


def test_token_budget_pads_less_than_fixed_batches_on_uneven_lengths():
    rng = np.random.default_rng(1)
    lengths = np.concatenate([rng.integers(10, 40, 900), rng.integers(150, 256, 100)])
    rng.shuffle(lengths)
    budget = padded_tokens(lengths, token_budget_batches(lengths, max_tokens=32 * 64))
    fixed = padded_tokens(lengths, fixed_count_batches(lengths, 32))
    assert budget < 0.6 * fixed
    assert budget >= int(lengths.sum())


def test_empty_input_and_bad_arguments():
    assert token_budget_batches([], max_tokens=16) == []
    with pytest.raises(InvalidArgumentError, match="max_tokens must be a positive integer"):
        token_budget_batches([1, 2], max_tokens=0)
    with pytest.raises(InvalidArgumentError, match="max_rows must be >= 1"):
        token_budget_batches([1, 2], max_tokens=8, max_rows=0)
    with pytest.raises(InvalidArgumentError, match="lengths must be >= 0"):
        token_budget_batches([1, -2], max_tokens=8)


def test_pad_batch_pads_to_the_longest_row():
    ids, mask = pad_batch([[101, 7, 102], [101, 102]], pad_id=0)
    assert ids.tolist() == [[101, 7, 102], [101, 102, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 1, 0]]
    assert ids.dtype == np.int64 and mask.dtype == np.int64
