"""winnow eval: BEIR loading, ir-measures metrics, significance, reports and the corpus cache.

A tiny hand-made BEIR dataset in tmp_path runs the whole evaluation with the bundled MiniLM model;
the slow tests reproduce the reference numbers of ENVIRONMENT.md on ../shared/data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from winnow.errors import CorpusError, InvalidArgumentError
from winnow.evaluate.dataset import load_beir
from winnow.evaluate.metrics import parse_metrics, split_names
from winnow.evaluate.report import format_table, run_file_name, write_report
from winnow.evaluate.runner import VALID_METHODS, cache_name, evaluate, parse_methods
from winnow.evaluate.significance import paired_test

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

DOCS = [
    ("d1", "Baking bread", "Yeast makes bread dough rise by producing carbon dioxide gas during fermentation."),
    ("d2", "Sourdough", "A sourdough starter is a culture of wild yeast and lactic acid bacteria used to leaven bread."),
    ("d3", "Planets", "Planets orbit the sun because gravity bends their path into an ellipse."),
    ("d4", "Moon", "The moon orbits the earth once every 27 days and causes the tides."),
    ("d5", "Python", "Python is a programming language popular for machine learning and data science."),
    ("d6", "Neural networks", "Neural networks learn weights by gradient descent on a loss function."),
    ("d7", "Coffee", "Coffee beans are roasted seeds of the coffee plant; caffeine keeps people awake."),
    ("d8", "Tea", "Green tea and black tea come from the same plant, Camellia sinensis."),
]
QUERIES = [
    ("q1", "what makes bread rise"),
    ("q2", "why do planets orbit the sun"),
    ("q3", "machine learning programming language"),
    ("q4", "where does tea come from"),
    ("q5", "how does caffeine work"),  # no judgments: not evaluated
]
QRELS = [  # graded: 2 highly relevant, 1 relevant, 0 judged not relevant
    ("q1", "d1", 2), ("q1", "d2", 1), ("q1", "d7", 0),
    ("q2", "d3", 2), ("q2", "d4", 0),
    ("q3", "d5", 2), ("q3", "d6", 1),
    ("q4", "d8", 1), ("q4", "d7", 0),
]


def make_dataset(root: Path, *, header: bool = True, docs=DOCS) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, t, x in docs), encoding="utf-8"
    )
    (root / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": i, "text": x}) + "\n" for i, x in QUERIES), encoding="utf-8"
    )
    (root / "qrels").mkdir(exist_ok=True)
    lines = (["query-id\tcorpus-id\tscore"] if header else []) + [f"{q}\t{d}\t{g}" for q, d, g in QRELS]
    (root / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def read_qrels_independently(path: Path):
    """The qrels as ir-measures records, parsed here without winnow's reader."""
    import ir_measures

    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        q, d, g = line.split("\t")
        if g.strip().lstrip("-").isdigit():
            out.append(ir_measures.Qrel(q, d, int(g)))
    return out


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory):
    """A MiniLM-shaped cross-encoder with a fresh head: checks mechanics, not quality."""
    import torch
    from sentence_transformers import CrossEncoder

    from winnow.models.resolve import resolve_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("cross-encoder")
    CrossEncoder(str(resolve_model("all-MiniLM-L6-v2").path), num_labels=1).save(str(path))
    return str(path)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, tiny_cross_encoder):
    """One full evaluation of the tiny dataset with every kind of method, and its written report."""
    root = tmp_path_factory.mktemp("eval")
    data = make_dataset(root / "tiny")
    dataset = load_beir(data)
    report = evaluate(
        dataset,
        "bm25,dense,hybrid,dense>rerank",
        cache_dir=root / "cache",
        rerank=tiny_cross_encoder,
        depth=5,
        metrics=["nDCG@10", "RR@10", "R@100", "R@1000", "P@2"],
        rel=1,
    )
    paths = write_report(report, root / "out")
    return dataset, report, paths, root


# -- loading --------------------------------------------------------------------------------------


def test_qrels_with_and_without_header_load_the_same(tmp_path):
    with_header = load_beir(make_dataset(tmp_path / "a", header=True))
    without = load_beir(make_dataset(tmp_path / "b", header=False))
    assert {q: dict(d) for q, d in with_header.qrels.items()} == {q: dict(d) for q, d in without.qrels.items()}
    assert dict(with_header.qrels["q1"]) == {"d1": 2, "d2": 1, "d7": 0}


def test_judged_queries_are_those_with_judgments(tmp_path):
    dataset = load_beir(make_dataset(tmp_path / "ds"))
    assert len(dataset.queries) == 5
    assert dataset.judged == ("q1", "q2", "q3", "q4")


def test_bad_qrels_line_names_file_and_line(tmp_path):
    root = make_dataset(tmp_path / "ds")
    qrels = root / "qrels" / "test.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td2\n", encoding="utf-8")
    with pytest.raises(CorpusError) as info:
        load_beir(root)
    assert "test.tsv" in str(info.value) and "line 3" in str(info.value) and "3 tab-separated" in str(info.value)
    qrels.write_text("q1\td1\t2\nq1\td2\thigh\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="line 2.*integer grade.*'high'"):
        load_beir(root)


def test_missing_split_and_files_are_named(tmp_path):
    root = make_dataset(tmp_path / "ds")
    with pytest.raises(CorpusError, match="no qrels for split 'dev'; splits found: test"):
        load_beir(root, split="dev")
    (root / "queries.jsonl").write_text('{"_id": "q1", "text": "x"}\n{"_id": "q2"\n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"queries.jsonl, line 2: malformed JSON"):
        load_beir(root)


# -- methods and metrics --------------------------------------------------------------------------


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(InvalidArgumentError) as info:
        parse_methods("bm25,splade")
    assert "'splade'" in str(info.value)
    for name in VALID_METHODS:
        assert name in str(info.value)
    specs = parse_methods("bm25, hybrid>rerank, dense>rerank-alone")
    assert [(s.first_stage, s.rerank, s.mix) for s in specs] == [("bm25", False, True), ("hybrid", True, True), ("dense", True, False)]


def test_metrics_take_ir_measures_names_and_rel():
    names = [str(m) for m in parse_metrics(["nDCG@10", "RR@10", "R@100", "P(rel=3)@5"], rel=2)]
    assert names == ["nDCG@10", "RR(rel=2)@10", "R(rel=2)@100", "P(rel=3)@5"]  # nDCG graded; explicit rel kept
    assert split_names("nDCG@10,P(rel=2,judged_only=True)@5") == ["nDCG@10", "P(rel=2,judged_only=True)@5"]
    with pytest.raises(InvalidArgumentError, match="unknown metric 'Bogus@10'"):
        parse_metrics(["Bogus@10"])


def test_rerank_methods_without_a_model_use_the_default_reranker(tmp_path):
    from winnow.models.resolve import DEFAULT_RERANKER

    dataset = load_beir(make_dataset(tmp_path / "ds"))
    report = evaluate(dataset, "bm25,dense>rerank", cache_dir=tmp_path / "cache", depth=5)
    assert report.reranker == DEFAULT_RERANKER and report.methods[1].metrics["nDCG@10"] > 0


# -- significance ---------------------------------------------------------------------------------


def test_identical_methods_give_p_one():
    scores = {f"q{i}": v for i, v in enumerate(np.linspace(0, 1, 30))}
    test = paired_test(scores, dict(scores))
    assert test.p_randomization == 1.0 and test.p_ttest == 1.0 and test.mean_difference == 0.0
    empty = paired_test({}, {})
    assert empty.n == 0 and np.isnan(empty.p_randomization)


def test_clear_difference_is_significant_and_exact_matches_sampled():
    rng = np.random.default_rng(1)
    base = {f"q{i}": float(v) for i, v in enumerate(rng.uniform(0, 0.5, 40))}
    better = {q: v + 0.3 + float(rng.normal(0, 0.05)) for q, v in base.items()}
    test = paired_test(base, better)
    assert test.p_randomization < 0.001 and test.p_ttest < 0.001 and test.mean_difference > 0.25
    # 10 queries: exact enumeration of 2^10 sign flips; a 20k-sample estimate lands close to it.
    small_base = {f"q{i}": float(v) for i, v in enumerate(rng.uniform(0, 1, 10))}
    small = {q: v + float(rng.normal(0.1, 0.2)) for q, v in small_base.items()}
    exact = paired_test(small_base, small)
    assert exact.exact
    import winnow.evaluate.significance as sig

    old, sig.EXACT_UP_TO = sig.EXACT_UP_TO, 0
    try:
        sampled = paired_test(small_base, small, samples=20_000)
    finally:
        sig.EXACT_UP_TO = old
    assert not sampled.exact and abs(sampled.p_randomization - exact.p_randomization) < 0.02


# -- the whole evaluation -------------------------------------------------------------------------


def test_report_counts_judged_queries_and_writes_every_file(evaluated):
    dataset, report, paths, root = evaluated
    assert report.queries == 5 and report.judged == 4
    assert [m.method for m in report.methods] == ["bm25", "dense", "hybrid", "dense>rerank"]
    for key in ("json", "markdown", "plot"):
        assert paths[key].is_file() and paths[key].stat().st_size > 0
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    body = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert body["judged_queries"] == 4 and body["queries"] == 5
    assert body["corpus"]["documents"] == len(DOCS) and body["corpus"]["encode_seconds"] > 0
    first, second = body["methods"][0], body["methods"][1]
    assert set(first["per_query"]["nDCG@10"]) == {"q1", "q2", "q3", "q4"}
    assert set(first["latency_ms"]) >= {"bm25", "total"} and "p95" in first["latency_ms"]["total"]
    assert first["significance"] == {} and second["significance"]["nDCG@10"]["baseline"] == "bm25"
    assert set(body["methods"][3]["latency_ms"]) >= {"dense", "fetch", "rerank", "total"}
    for m in body["methods"]:
        assert (root / "out" / m["run_file"]).is_file()
    text = format_table(report)
    assert "4 of 5 queries have judgments" in text and "dense>rerank" in text
    assert "| method | nDCG@10 |" in paths["markdown"].read_text(encoding="utf-8")


def test_metrics_equal_ir_measures_on_the_written_run_files(evaluated):
    import ir_measures

    dataset, report, paths, root = evaluated
    qrels = read_qrels_independently(dataset.path / "qrels" / "test.tsv")
    for m in report.methods:
        run = list(ir_measures.read_trec_run(str(root / "out" / "runs" / run_file_name(m.method))))
        measures = [ir_measures.parse_measure(name) for name in report.metrics]
        direct = ir_measures.calc_aggregate(measures, qrels, run)
        for measure in measures:
            assert m.metrics[str(measure)] == pytest.approx(direct[measure], abs=1e-12), (m.method, str(measure))
    dense = next(m for m in report.methods if m.method == "dense")
    assert dense.metrics["nDCG@10"] > 0.8  # the toy queries are easy for MiniLM
    reranked = next(m for m in report.methods if m.method == "dense>rerank")
    assert all(len(hits) == 5 for hits in reranked.run.values())  # depth 5, all reranked


def test_second_eval_reuses_the_cached_corpus(evaluated):
    dataset, report, paths, root = evaluated
    assert not report.corpus.cached
    manifest = report.corpus.path / "manifest.json"
    before = (manifest.stat().st_mtime_ns, report.corpus.generation)
    again = evaluate(dataset, "dense", cache_dir=root / "cache")
    assert again.corpus.cached and again.corpus.name == report.corpus.name
    assert (manifest.stat().st_mtime_ns, again.corpus.generation) == before
    assert again.corpus.encode_seconds == pytest.approx(report.corpus.encode_seconds)
    dense = next(m for m in report.methods if m.method == "dense")
    assert again.methods[0].metrics["nDCG@10"] == dense.metrics["nDCG@10"]


def test_changed_corpus_gets_its_own_cache(tmp_path):
    a = load_beir(make_dataset(tmp_path / "ds"))
    b = load_beir(make_dataset(tmp_path / "other" / "ds", docs=DOCS[:-1]))
    c = load_beir(make_dataset(tmp_path / "copy" / "ds"))
    model = "sentence-transformers/all-MiniLM-L6-v2"
    assert cache_name(a, model) != cache_name(b, model)
    assert cache_name(a, model) == cache_name(c, model)  # same content, same cache
    assert cache_name(a, model).startswith("ds-")


def test_cli_eval_prints_the_table(tmp_path, capsys):
    from winnow.cli import main

    data = make_dataset(tmp_path / "tiny", header=False)
    code = main(["--data", str(tmp_path / "home"), "eval", str(data), "--methods", "bm25", "--output",
                 str(tmp_path / "out"), "--rel", "2", "--quiet"])
    assert code == 0
    out = capsys.readouterr().out
    assert "RR(rel=2)@10" in out and "4 of 5 queries" in out
    assert (tmp_path / "out" / "runs" / "bm25.trec").is_file()
    assert (tmp_path / "home" / ".eval-cache").is_dir()
    code = main(["eval", str(data), "--methods", "bm25,colbert"])
    assert code == 2
    assert "unknown method 'colbert'" in capsys.readouterr().err


# -- reference numbers on the shared data (slow: encodes 5,000 passages each) -----------------------

REFERENCES = {  # ENVIRONMENT.md, nDCG@10; RR/R at rel >= 2 for msmarco (TREC DL), >= 1 for dbpedia
    "msmarco": ({"bm25": 0.7269, "dense": 0.7977, "hybrid": 0.7887}, 2),
    "dbpedia": ({"bm25": 0.3683, "dense": 0.5114, "hybrid": 0.4785}, 1),
}


@pytest.fixture(scope="session")
def shared_eval_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("shared-eval-cache")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_reference_ndcg_on_shared_data(name, shared_eval_cache, tmp_path):
    import ir_measures

    path = SHARED_DATA / name
    if not (path / "corpus.jsonl").is_file():
        pytest.skip(f"shared evaluation data not found at {path}")
    expected, rel = REFERENCES[name]
    dataset = load_beir(path)
    report = evaluate(dataset, "bm25,dense,hybrid", cache_dir=shared_eval_cache, rel=rel, batch_size=16)
    paths = write_report(report, tmp_path / "out")
    qrels = read_qrels_independently(path / "qrels" / "test.tsv")
    for m in report.methods:
        assert m.metrics["nDCG@10"] == pytest.approx(expected[m.method], abs=0.01), m.method
        run = list(ir_measures.read_trec_run(str(paths[f"run:{m.method}"])))
        direct = ir_measures.calc_aggregate([ir_measures.nDCG @ 10, ir_measures.RR(rel=rel) @ 10], qrels, run)
        assert m.metrics["nDCG@10"] == pytest.approx(direct[ir_measures.nDCG @ 10], abs=1e-12)
        rr = str(parse_metrics(["RR@10"], rel=rel)[0])
        assert m.metrics[rr] == pytest.approx(direct[ir_measures.RR(rel=rel) @ 10], abs=1e-12)


def test_a_calibrated_reranker_gets_its_ece_and_a_reliability_diagram(tmp_path, tiny_cross_encoder):
    """Platt with a=1, b=0 (probability = sigmoid(logit)): the ECE the report gives is the one worked out from
    its own run file and the judgments: every returned hit counts, an unjudged one as not relevant."""
    import shutil

    from winnow.rerank.calibration import expected_calibration_error
    from winnow.rerank.cross_encoder import CrossEncoderReranker

    folder = tmp_path / "calibrated"
    shutil.copytree(tiny_cross_encoder, folder)
    (folder / "calibration.json").write_text(json.dumps({"format_version": 1, "reranker": {"method": "platt", "a": 1.0, "b": 0.0}}))
    dataset = load_beir(make_dataset(tmp_path / "tiny"))
    report = evaluate(dataset, "dense,dense>rerank", cache_dir=tmp_path / "cache", depth=5,
                      reranker=CrossEncoderReranker(str(folder), cache=False))
    plain, reranked = report.methods
    assert reranked.calibration is not None
    from winnow.models.resolve import SHIPPED_RERANKER, resolve_model
    from winnow.rerank.calibration import CalibrationTable
    from winnow.types import FirstStage

    dense = CalibrationTable.from_model_dir(resolve_model(SHIPPED_RERANKER).path).for_stage(FirstStage.DENSE)
    p0 = [float(dense.apply([score])[0]) for hits in plain.run.values() for _, score in hits]  # the shipped dense calibrator
    y0 = [float(dataset.qrels[q].get(doc, 0) >= 1) for q, hits in plain.run.items() for doc, _ in hits]
    assert plain.calibration.pairs == len(p0)
    assert plain.calibration.ece == pytest.approx(expected_calibration_error(np.array(p0), np.array(y0)))
    p, y = [], []
    for qid, hits in reranked.run.items():
        for doc, score in hits:  # no fusion.json: the score is the logit
            p.append(1 / (1 + np.exp(-score)))
            y.append(float(dataset.qrels[qid].get(doc, 0) >= 1))
    assert reranked.calibration.pairs == len(p)
    assert reranked.calibration.ece == pytest.approx(expected_calibration_error(np.array(p), np.array(y)))
    paths = write_report(report, tmp_path / "out")
    assert paths["reliability:dense>rerank"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads(paths["json"].read_text())["methods"][1]["calibration"]
    assert saved["hits"] == len(p) and "ECE" in paths["markdown"].read_text()
