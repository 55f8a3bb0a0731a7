"""Calibrated relevance probabilities: the two calibrators against scikit-learn's (the reference), the
choice by held-out log-loss, ECE worked out by hand, and the shipped file format."""

from __future__ import annotations

import json

import numpy as np
import pytest

from winnow.errors import InvalidArgumentError
from winnow.rerank.calibration import (
    CalibrationMethod,
    CalibrationTable,
    Calibrator,
    expected_calibration_error,
    fit_best,
    fit_isotonic,
    fit_platt,
    log_loss,
    reliability_bins,
)
from winnow.types import FirstStage


def scored(n: int = 600, seed: int = 0):
    """Logit-like scores whose true relevance probability is sigmoid(1.5 * s - 1)."""
    rng = np.random.default_rng(seed)
    s = rng.normal(0, 2, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(1.5 * s - 1)))).astype(float)
    return s, y


def test_platt_matches_scikit_learns_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    s, y = scored()
    ours = fit_platt(s, y)
    ref = LogisticRegression(C=1e6, max_iter=1000).fit(s[:, None], y)
    assert ours.a == pytest.approx(ref.coef_[0, 0], rel=1e-3) and ours.b == pytest.approx(ref.intercept_[0], abs=1e-3)
    assert ours.a == pytest.approx(1.5, abs=0.4) and ours.b == pytest.approx(-1.0, abs=0.4)  # the true curve


def test_isotonic_matches_scikit_learns_on_the_fitted_points():
    from sklearn.isotonic import IsotonicRegression

    s, y = scored(400, seed=1)
    s = np.round(s, 1)  # ties: pairs with one score share one value
    ours = fit_isotonic(s, y)
    ref = IsotonicRegression(out_of_bounds="clip").fit(s, y)
    np.testing.assert_allclose(np.clip(ref.predict(s), 1e-4, 1 - 1e-4), ours.apply(s), atol=1e-9)
    assert all(a <= b for a, b in zip(ours.y, ours.y[1:])) and all(a < b for a, b in zip(ours.x, ours.x[1:]))
    grid = np.linspace(s.min(), s.max(), 97)  # between the fitted points too: both interpolate linearly
    np.testing.assert_allclose(np.clip(ref.predict(grid), 1e-4, 1 - 1e-4), ours.apply(grid), atol=2e-4)  # ends clipped first


def test_the_method_is_picked_by_held_out_log_loss_and_calibrates():
    s, y = scored(2000, seed=2)
    groups = np.arange(len(s)) // 20  # 100 "queries" of 20 pairs
    fit = fit_best(s, y, groups)
    assert fit.calibrator.method in (CalibrationMethod.PLATT, CalibrationMethod.ISOTONIC)
    assert fit.log_loss[fit.calibrator.method.value] == min(fit.log_loss.values())
    probs = fit.calibrator.apply(s)
    raw = 1 / (1 + np.exp(-s))  # the uncalibrated sigmoid of the logit
    assert expected_calibration_error(probs, y) < expected_calibration_error(raw, y)
    assert log_loss(probs, y) < log_loss(raw, y)


def test_ece_and_reliability_bins_by_hand():
    p = np.array([0.05, 0.15, 0.15, 0.95])
    y = np.array([0.0, 1.0, 0.0, 1.0])
    # bins: [0,.1): conf .05 acc 0 -> .05 x1; [.1,.2): conf .15 acc .5 -> .35 x2; [.9,1]: conf .95 acc 1 -> .05 x1
    assert expected_calibration_error(p, y) == pytest.approx((0.05 + 0.7 + 0.05) / 4)
    assert reliability_bins(p, y) == [(0.05, 0.0, 1), (0.15, 0.5, 2), (0.95, 1.0, 1)]


def test_bad_input_and_the_file_format(tmp_path):
    with pytest.raises(InvalidArgumentError, match="both relevant and non-relevant"):
        fit_platt(np.array([1.0, 2.0]), np.array([1.0, 1.0]))
    with pytest.raises(InvalidArgumentError, match="one label per score"):
        fit_isotonic(np.array([1.0, 2.0]), np.array([1.0]))
    platt = Calibrator(CalibrationMethod.PLATT, a=2.0, b=-1.0)
    iso = Calibrator(CalibrationMethod.ISOTONIC, x=(0.0, 1.0), y=(0.2, 0.8))
    (tmp_path / "calibration.json").write_text(json.dumps(
        {"format_version": 1, "reranker": platt.to_json(), "first_stages": {"dense": iso.to_json()}}))
    table = CalibrationTable.from_model_dir(tmp_path)
    assert table.reranker == platt and table.for_stage(FirstStage.DENSE) == iso and table.for_stage(FirstStage.BM25) is None
    assert platt.apply([0.5])[0] == pytest.approx(0.5) and iso.apply([0.5])[0] == pytest.approx(0.5)
    assert CalibrationTable.from_model_dir(tmp_path / "none") is None
    (tmp_path / "calibration.json").write_text(json.dumps({"format_version": 1, "reranker": {"method": "beta"}}))
    with pytest.raises(InvalidArgumentError, match="not a valid calibration file"):
        CalibrationTable.from_model_dir(tmp_path)


def test_held_out_ece_scores_each_source_with_a_calibrator_fitted_without_it():
    """Two sources whose scores mean different things: each source's held-out ECE is the ECE of its pairs'
    probabilities from Platt fits that never saw the fold they score (worked out here fold by fold)."""
    from winnow.rerank.calibration import CalibrationMethod, expected_calibration_error, fit_platt, held_out_ece

    rng = np.random.default_rng(3)
    n = 400
    s = rng.normal(size=n)
    src = np.where(np.arange(n) < n // 2, "a", "b").astype(object)
    y = (rng.random(n) < 1 / (1 + np.exp(-(2 * s + np.where(src == "a", 1.0, -1.0))))).astype(float)
    g = np.arange(n) // 4  # 100 queries of 4 pairs
    out = held_out_ece(s, y, g, src, CalibrationMethod.PLATT, seed=0)
    assert set(out) == {"a", "b"} and out["a"]["pairs"] == 200 and out["a"]["queries"] == 50
    rng2 = np.random.default_rng(0)
    for name in ("a", "b"):
        mine = src == name
        queries = np.unique(g[mine])
        fold_of = dict(zip(queries.tolist(), rng2.permutation(len(queries)) % 2))
        fold = np.array([fold_of[q] if m else -1 for q, m in zip(g.tolist(), mine)])
        p = np.empty(n)
        for k in (0, 1):
            test = fold == k
            p[test] = fit_platt(s[~test], y[~test]).apply(s[test])
        assert out[name]["ece"] == pytest.approx(expected_calibration_error(p[mine], y[mine]), abs=1e-4)
    pooled = fit_platt(s, y)  # in-sample and pooled: each source sits off the pooled curve by its own offset
    assert out["a"]["ece"] > 0.03 and expected_calibration_error(pooled.apply(s[src == "a"]), y[src == "a"]) > 0.03


def test_first_stage_only_searches_get_the_shipped_first_stage_probabilities(demo_collection):
    """Without a reranker each hit's probability is the shipped calibrator of its method applied to its
    first-stage score (the library's search, as the CLI and the server call it); a collection built with
    another bi-encoder gets a typed error for dense, not numbers fitted on other scores."""
    from winnow.models.resolve import SHIPPED_RERANKER, resolve_model
    from winnow.rerank.calibration import CalibrationTable, first_stage_calibrator, keep_probable
    from winnow.types import FirstStage

    table = CalibrationTable.from_model_dir(resolve_model(SHIPPED_RERANKER).path)
    for method in ("dense", "bm25", "hybrid"):
        calibrator = demo_collection.first_stage_calibrator(method)
        assert calibrator == table.for_stage(FirstStage(method))
        ranking = demo_collection.search("how do plants make food", method=method, top_k=5, first_stage_calibrator=calibrator)
        scores = [h.score for h in ranking.hits]
        assert [h.probability for h in ranking.hits] == pytest.approx(list(calibrator.apply(scores)))
        assert all(a >= b for a, b in zip([h.probability for h in ranking.hits], [h.probability for h in ranking.hits][1:]))
        cut = ranking.hits[1].probability
        assert [h.doc_id for h in keep_probable(ranking, cut).hits] == [h.doc_id for h in ranking.hits if h.probability >= cut]
    assert all(h.probability is None for h in demo_collection.search("plants", method="dense", top_k=3).hits)
    with pytest.raises(InvalidArgumentError, match="fitted on sentence-transformers/all-MiniLM-L6-v2's scores"):
        first_stage_calibrator(FirstStage.DENSE, bi_encoder="/some/other-model")
    with pytest.raises(InvalidArgumentError, match="unknown method 'sparse'"):
        demo_collection.first_stage_calibrator("sparse")
