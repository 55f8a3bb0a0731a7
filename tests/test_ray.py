"""Encoding and reranking on Ray (winnow.scale): a local two-worker cluster on the loopback address,
started once for this module and shut down after it; skipped with the reason where Ray is not
installed or cannot start. Real models: the bundled bi-encoder and the shipped reranker, on the
40-document demo corpus.

Each path is compared with the single-process one (same vectors to cosine >= 0.9999, same reranked
order and scores), and a worker that dies mid-job (``os._exit`` in its second batch, once, keyed on a
marker file) must cost no row and duplicate none.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from winnow.errors import ClusterError, CorpusError, MissingDependencyError
from winnow.types import with_title

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")  # Ray's own settings

DEMO_CORPUS = Path(__file__).resolve().parents[1] / "examples" / "demo_corpus.jsonl"
QUERIES = {"q1": "how do rerankers improve search", "q2": "what is BM25", "q3": "vector index memory",
           "q4": "train a model on pairs", "q5": "tokenizer limits", "q6": "latency of a search engine"}


@pytest.fixture(scope="module")
def ray_cluster():
    if importlib.util.find_spec("ray") is None:  # not imported here: connect() must import it first (loopback)
        pytest.skip("ray is not installed: pip install 'winnow[ray]' (make install does)")
    from winnow.scale.cluster import connect

    try:
        cluster = connect("local", num_cpus=2)  # ray.init(num_cpus=2, include_dashboard=False), on 127.0.0.1 only
    except ClusterError as exc:
        pytest.skip(f"a local Ray cluster could not start here: {exc}")
    import ray

    assert cluster.started_here and cluster.cpus == 2
    assert ray.util.get_node_ip_address() == "127.0.0.1"
    yield cluster
    ray.shutdown()


@pytest.fixture(scope="module")
def demo_texts(demo_documents) -> list[str]:
    return [with_title(d.title, d.text) for d in demo_documents]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def dying_worker(base: type, marker: str) -> type:
    """A ``map_batches`` class like ``base`` whose actor process dies in its second batch, once over the
    whole job (the marker file remembers, across the restart Ray makes)."""

    class DiesOnce(base):
        calls = 0

        def __call__(self, batch):
            self.calls += 1
            if self.calls == 2 and not os.path.exists(marker):
                open(marker, "w").close()
                os._exit(1)  # the worker process is gone, mid-job, its batch half done
            return super().__call__(batch)

    return DiesOnce


# -- encoding ------------------------------------------------------------------------------------
def test_ray_encoder_gives_the_single_process_vectors(ray_cluster, bi_encoder, demo_texts):
    from winnow.scale.ray_encode import RayEncoder

    encoder = RayEncoder(bi_encoder, address=ray_cluster.address)
    got = encoder.encode_documents(demo_texts, progress=True)
    want = bi_encoder.encode_documents(demo_texts)
    assert got.shape == want.shape and got.dtype == np.float32
    assert _cosines(got, want).min() >= 0.9999  # row i is text i's vector: nothing shuffled
    assert encoder.last.workers == 2 and encoder.last.batches >= 4 and encoder.last.duplicates == 0
    np.testing.assert_allclose(encoder.encode_queries(["what is BM25"]), bi_encoder.encode_queries(["what is BM25"]))


def test_a_worker_killed_mid_job_loses_and_duplicates_no_row(ray_cluster, bi_encoder, demo_texts, tmp_path):
    from winnow.scale.ray_encode import EncodeWorker, encode_on_ray

    marker = tmp_path / "died"
    result = encode_on_ray(
        demo_texts, model=bi_encoder.name, backend=str(bi_encoder.backend), workers=2, batch_rows=5, retries=2,
        worker_cls=dying_worker(EncodeWorker, str(marker)),
    )
    assert marker.exists(), "no worker died: the test did not test the retry"
    assert result.batches == 8 and result.duplicates == 0
    assert _cosines(result.vectors, bi_encoder.encode_documents(demo_texts)).min() >= 0.9999  # every row, once, in place


def test_winnow_index_ray_commits_the_collection_as_without(ray_cluster, demo_collection, tmp_path, capsys, caplog):
    from winnow.cli import main
    from winnow.collection import Collection

    with caplog.at_level(logging.INFO, logger="winnow.scale.ray_encode"):
        assert main(["-v", "--data", str(tmp_path), "index", str(DEMO_CORPUS), "--collection", "onray", "--ray", "-q"]) == 0
    assert "+40 added" in capsys.readouterr().out
    assert any("on 2 Ray workers" in r.getMessage() for r in caplog.records), "the chunks were not encoded on Ray"
    with Collection.open("onray", home=tmp_path) as col:
        assert (col.info().documents, col.info().chunks) == (demo_collection.info().documents, demo_collection.info().chunks)
        for query in QUERIES.values():
            got = col.search(query, method="dense", top_k=5)
            want = demo_collection.search(query, method="dense", top_k=5)
            assert got.doc_ids == want.doc_ids
            np.testing.assert_allclose([h.score for h in got], [h.score for h in want], atol=1e-4)
    import ray

    assert ray.is_initialized()  # --ray joined the test's cluster: it did not start (and stop) one of its own


# -- reranking a run -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def first_stage_run(demo_collection, tmp_path_factory):
    from winnow.evaluate.report import write_run

    folder = tmp_path_factory.mktemp("run")
    run = {qid: [(h.doc_id, h.score) for h in demo_collection.search(q, method="bm25", top_k=12)]
           for qid, q in QUERIES.items()}
    write_run(folder / "bm25.trec", run, "bm25")
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in QUERIES.items()))
    return folder


def test_rerank_run_on_ray_writes_the_single_process_run(ray_cluster, first_stage_run, capsys):
    from winnow.cli import main
    from winnow.evaluate.run_file import read_run

    common = ["rerank-run", str(first_stage_run / "bm25.trec"), "--queries", str(first_stage_run / "queries.jsonl"),
              "--corpus", str(DEMO_CORPUS), "--depth", "10", "--first-stage", "bm25", "-q"]
    assert main([*common, "-o", str(first_stage_run / "here.trec")]) == 0
    assert main([*common, "-o", str(first_stage_run / "ray.trec"), "--ray", "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "on this process" in out and "on 2 Ray workers" in out
    here, on_ray = read_run(first_stage_run / "here.trec"), read_run(first_stage_run / "ray.trec")
    first = read_run(first_stage_run / "bm25.trec")
    assert list(on_ray) == list(QUERIES) and all(len(on_ray[q]) == min(10, len(first[q])) for q in QUERIES)
    assert on_ray == here  # identical order and scores, query by query
    assert any([d for d, _ in here[q]] != [d for d, _ in first[q][:10]] for q in QUERIES), "reranking changed nothing"


def test_a_rerank_worker_killed_mid_job_loses_no_query(ray_cluster, first_stage_run, tmp_path):
    from winnow.corpus import read_documents
    from winnow.evaluate.run_file import read_run
    from winnow.scale.rerank_run import RerankWorker, candidates_from_run, make_reranker, rerank_here, rerank_on_ray

    items = candidates_from_run(read_run(first_stage_run / "bm25.trec"), QUERIES, read_documents(DEMO_CORPUS), depth=5)
    marker = tmp_path / "died"
    got = rerank_on_ray(items, workers=2, queries_per_batch=1, retries=2, worker_cls=dying_worker(RerankWorker, str(marker)))
    assert marker.exists(), "no worker died: the test did not test the retry"
    assert got.duplicates == 0 and got.workers == 2
    assert got.run == rerank_here(items, make_reranker(None)).run


# -- without a cluster ---------------------------------------------------------------------------
def test_read_run_keeps_rank_order_and_names_bad_lines(tmp_path):
    from winnow.evaluate.run_file import read_run

    path = tmp_path / "r.trec"
    path.write_text("q1 Q0 b 2 0.5 t\nq1 Q0 a 1 0.9 t\nq2 Q0 c 1 3.0 t\n")
    assert read_run(path) == {"q1": [("a", 0.9), ("b", 0.5)], "q2": [("c", 3.0)]}
    path.write_text("q1 Q0 a 1 0.9 t\nq1 Q0 a one 0.8 t\n")
    with pytest.raises(CorpusError, match=r"line 2: rank must be an integer .* 'one'"):
        read_run(path)
    path.write_text("q1 Q0 a 1 0.9 t\nq1 Q0 a 2 0.8 t\n")
    with pytest.raises(CorpusError, match="document 'a' listed twice for query 'q1'"):
        read_run(path)


def test_candidates_name_what_the_queries_or_corpus_lack(demo_documents):
    from winnow.scale.rerank_run import candidates_from_run

    run = {"q1": [(demo_documents[0].id, 2.0), (demo_documents[1].id, 1.0)]}
    items = candidates_from_run(run, {"q1": "a query"}, demo_documents, depth=1)
    assert [(i.qid, i.doc_ids, i.scores) for i in items] == [("q1", (demo_documents[0].id,), (2.0,))]
    with pytest.raises(CorpusError, match=r"not in the corpus, e.g. \['nope'\]"):
        candidates_from_run({"q1": [("nope", 1.0)]}, {"q1": "a query"}, demo_documents)
    with pytest.raises(CorpusError, match=r"not in the queries file, e.g. \['q9'\]"):
        candidates_from_run({"q9": [(demo_documents[0].id, 1.0)]}, {"q1": "a query"}, demo_documents)


def test_importing_the_scale_modules_loads_no_ray():
    code = "import sys, winnow.scale.cli, winnow.scale.ray_encode, winnow.scale.rerank_run; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_an_address_where_no_cluster_answers_fails_fast_naming_it():
    from winnow.scale.cluster import check_reachable

    with pytest.raises(ClusterError, match=r"no Ray cluster answers at '127.0.0.1:1' .*ray start --head"):
        check_reachable("127.0.0.1:1")  # loopback, refused at once
    check_reachable("auto")  # left to Ray


def test_without_ray_the_error_names_the_extra(monkeypatch):
    from winnow.scale.cluster import connect

    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(MissingDependencyError, match=r"pip install 'winnow\[ray\]'"):
        connect("local")
