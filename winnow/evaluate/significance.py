"""Paired significance tests over per-query scores of two methods on the same queries.

The table shows a two-sided **paired randomization (permutation) test**: under the null hypothesis the
two methods are exchangeable per query, so each query's difference keeps or flips its sign with
probability 1/2; the p-value is the share of sign assignments whose mean difference is at least as
far from 0 as the observed one (Fisher's randomization test, as recommended for IR by Smucker, Allan
and Carterette, CIKM 2007). With at most 2^16 assignments all are enumerated (exact p); otherwise
``samples`` random ones are drawn with a fixed seed and p = (hits + 1) / (samples + 1).

A paired t-test (``scipy.stats.ttest_rel``) is reported beside it. Identical scores give p = 1.0
for both (no evidence of a difference), never NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from winnow.errors import InvalidArgumentError

EXACT_UP_TO = 16  # queries with a non-zero difference; 2^16 assignments


@dataclass(frozen=True)
class PairedTest:
    n: int  # queries compared
    mean_difference: float  # mean of (method - baseline)
    p_randomization: float
    p_ttest: float
    exact: bool  # randomization p enumerated over all sign assignments


def paired_test(
    baseline: Mapping[str, float], method: Mapping[str, float], *, samples: int = 10_000, seed: int = 0
) -> PairedTest:
    """Compare ``method`` against ``baseline`` on the queries both score (per-query dicts)."""
    if samples < 1:
        raise InvalidArgumentError(f"samples must be >= 1, got {samples}")
    queries = [q for q in baseline if q in method]
    a = np.array([baseline[q] for q in queries], dtype=np.float64)
    b = np.array([method[q] for q in queries], dtype=np.float64)
    diff = b - a
    n = int(diff.size)
    if n == 0:
        return PairedTest(0, float("nan"), float("nan"), float("nan"), True)
    observed = abs(diff.mean())
    nonzero = diff[diff != 0]
    if nonzero.size == 0:
        return PairedTest(n, 0.0, 1.0, 1.0, True)
    # Zero differences do not change under a sign flip: only the non-zero ones are permuted.
    tol = 1e-12 * max(1.0, float(np.abs(nonzero).sum()))
    if nonzero.size <= EXACT_UP_TO:
        m = nonzero.size
        signs = 1 - 2 * ((np.arange(2**m)[:, None] >> np.arange(m)) & 1)
        means = np.abs(signs @ nonzero) / n
        p_rand = float(np.mean(means >= observed - tol))
        exact = True
    else:
        rng = np.random.default_rng(seed)
        hits = 0
        for start in range(0, samples, 2048):
            rows = min(2048, samples - start)
            signs = rng.choice(np.array([-1.0, 1.0]), size=(rows, nonzero.size))
            hits += int(np.count_nonzero(np.abs(signs @ nonzero) / n >= observed - tol))
        p_rand = (hits + 1) / (samples + 1)
        exact = False
    return PairedTest(n, float(diff.mean()), min(1.0, p_rand), _ttest(a, b), exact)


def _ttest(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 2:
        return float("nan")
    from scipy import stats

    if np.allclose(a - b, (a - b)[0]):  # constant difference: t undefined (zero variance)
        return 1.0 if np.allclose(a, b) else 0.0
    return float(stats.ttest_rel(b, a).pvalue)
