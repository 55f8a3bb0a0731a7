"""Metrics through ir-measures (pytrec_eval underneath): nothing is computed by hand here.

Names are ir-measures names (``nDCG@10``, ``RR@10``, ``R@100``, ``AP``, ``P(rel=2)@5`` ...). ``rel`` is
the lowest grade that counts as relevant for binary measures (RR, R, P, AP, Success ...): it is applied
to every measure that takes a ``rel`` parameter and does not set one itself. nDCG uses the grades.

Scores are averaged over the judged queries; a judged query with no results counts as 0.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from winnow.errors import InvalidArgumentError, MissingDependencyError

DEFAULT_METRICS = ("nDCG@10", "RR@10", "R@100", "R@1000")


def _ir_measures():
    try:
        import ir_measures
    except ImportError as exc:  # pragma: no cover
        raise MissingDependencyError("winnow eval needs ir-measures: pip install 'winnow[eval]'") from exc
    return ir_measures


def split_names(text: str) -> list[str]:
    """``"nDCG@10,P(rel=2, judged_only=True)@5"`` -> the names, splitting only at top-level commas."""
    names, depth, current = [], 0, ""
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            names.append(current.strip())
            current = ""
        else:
            current += ch
    names.append(current.strip())
    return [n for n in names if n]


def parse_metrics(names: Iterable[str], *, rel: int = 1) -> list:
    """ir-measures measure objects for ``names``, with ``rel`` set on binary measures that lack one."""
    ir_measures = _ir_measures()
    if isinstance(rel, bool) or not isinstance(rel, int) or rel < 1:
        raise InvalidArgumentError(f"rel must be an integer grade >= 1, got {rel!r}")
    out = []
    for name in names:
        name = name.strip()
        if not name:
            continue
        try:
            measure = ir_measures.parse_measure(name)
        except (NameError, ValueError, TypeError) as exc:
            raise InvalidArgumentError(
                f"unknown metric {name!r} ({exc}); use ir-measures names such as "
                f"{', '.join(DEFAULT_METRICS)}, AP, P@10, Success@10, P(rel=2)@5"
            ) from None
        if rel != 1 and "rel" in measure.SUPPORTED_PARAMS and "rel" not in measure.params:  # 1: ir-measures' own default
            measure = measure(rel=rel)
        out.append(measure)
    if not out:
        raise InvalidArgumentError(f"no metrics given; e.g. {','.join(DEFAULT_METRICS)}")
    return out


def qrels_records(qrels: Mapping[str, Mapping[str, int]]) -> list:
    ir_measures = _ir_measures()
    return [ir_measures.Qrel(q, d, int(g)) for q, docs in qrels.items() for d, g in docs.items()]


def run_records(run: Mapping[str, Sequence[tuple[str, float]]]) -> list:
    """``{qid: [(doc_id, score), ...]}`` -> ir-measures scored docs."""
    ir_measures = _ir_measures()
    return [ir_measures.ScoredDoc(q, d, float(s)) for q, hits in run.items() for d, s in hits]


def evaluate_run(
    measures: Sequence,
    qrels: Mapping[str, Mapping[str, int]],
    run: Mapping[str, Sequence[tuple[str, float]]],
    judged: Sequence[str],
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """(mean per measure, per measure {qid: value}) over ``judged`` queries; missing results count 0."""
    ir_measures = _ir_measures()
    judged_qrels = {q: qrels[q] for q in judged}
    per_query: dict[str, dict[str, float]] = {str(m): {q: 0.0 for q in judged} for m in measures}
    for metric in ir_measures.iter_calc(list(measures), qrels_records(judged_qrels), run_records(run)):
        if metric.query_id in judged_qrels:
            per_query[str(metric.measure)][metric.query_id] = float(metric.value)
    means = {name: (sum(v.values()) / len(v) if v else float("nan")) for name, v in per_query.items()}
    return means, per_query
