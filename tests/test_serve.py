"""``winnow serve``: the real server in a child process on a free loopback port, spoken to over real HTTP
(httpx, the ``cohere`` and ``openai`` client libraries, schemathesis).

One server (batching on, an API key, small limits) serves most tests; the kill -9 test and the load
comparison start their own. Servers are stopped by process id.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from winnow.serve.loadgen import process_cpu_seconds, run_load  # noqa: E402
from winnow.serve.process import ServerProcess  # noqa: E402

KEY = "test-key-123"
AUTH = {"Authorization": f"Bearer {KEY}"}
MAX_DOCUMENTS, MAX_CHARS, MAX_BODY = 40, 4000, 300_000
BI_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_cross_encoder_path):
    work = tmp_path_factory.mktemp("serve")
    proc = ServerProcess(
        work / "data",
        [
            "--rerank-model", str(tiny_cross_encoder_path),
            "--api-key", KEY,
            "--max-documents", str(MAX_DOCUMENTS),
            "--max-chars", str(MAX_CHARS),
            "--max-document-chars", str(MAX_CHARS),
            "--max-body-bytes", str(MAX_BODY),
        ],
        log_path=work / "server.log",
    )
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=300) as client:
        yield client


def make_collection(http, name: str, docs: list[dict]) -> None:
    r = http.post("/collections", json={"name": name})
    assert r.status_code == 201, r.text
    for i in range(0, len(docs), MAX_DOCUMENTS):
        r = http.post(f"/collections/{name}/documents", json={"documents": docs[i : i + MAX_DOCUMENTS]})
        assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def animals(http):
    """60 documents: 40 about apples in group "a" (the best BM25 matches for "apple"), 20 mentioning apples
    once in groups "b"/"c", drowned in other words."""
    docs = [
        {"id": f"a{i}", "text": f"apple apple apple orchard fruit number {i}", "metadata": {"group": "a", "n": i}}
        for i in range(40)
    ] + [
        {
            "id": f"b{i}",
            "text": f"an apple appears once among many words about rivers boats weather and trains {i}",
            "metadata": {"group": "b" if i < 10 else "c", "n": i, "year": 2020 + i % 3},
        }
        for i in range(20)
    ]
    make_collection(http, "fruit", docs)
    return docs


# -- server basics -----------------------------------------------------------------------------------------
def test_health_docs_and_openapi_are_open(server):
    health = httpx.get(f"{server.url}/health", timeout=30)
    assert health.status_code == 200
    assert health.json()["status"] == "ok" and health.json()["batching"] is True
    docs = httpx.get(f"{server.url}/docs", timeout=30)
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    schema = httpx.get(f"{server.url}/openapi.json", timeout=30).json()
    for path in ("/collections/{name}/search", "/rerank", "/v1/embeddings", "/metrics"):
        assert path in schema["paths"]


def test_the_key_is_checked_before_the_body_size(server):
    huge = b"x" * (MAX_BODY + 10)
    r = httpx.post(f"{server.url}/collections/fruit/documents", content=huge, timeout=60)
    assert r.status_code == 401 and "missing API key" in r.json()["error"]["message"]  # not a 413 naming the limit
    r = httpx.post(f"{server.url}/collections/fruit/documents", content=huge, timeout=60, headers={"X-API-Key": "wrong"})
    assert r.status_code == 401 and r.json()["error"]["message"] == "invalid API key"


def test_api_key_is_required(server):
    no_key = httpx.get(f"{server.url}/collections", timeout=30)
    assert no_key.status_code == 401
    assert "API key" in no_key.json()["error"]["message"]
    wrong = httpx.get(f"{server.url}/collections", headers={"Authorization": "Bearer nope"}, timeout=30)
    assert wrong.status_code == 401 and wrong.json()["error"]["message"] == "invalid API key"
    other_header = httpx.get(f"{server.url}/collections", headers={"X-API-Key": KEY}, timeout=30)
    assert other_header.status_code == 200


def test_refuses_non_loopback_host_without_key(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "WINNOW_API_KEY"}
    out = subprocess.run(
        [sys.executable, "-m", "winnow", "serve", "--host", "0.0.0.0", "--port", "0", "--data", str(tmp_path)],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert out.returncode == 2
    assert "refusing to serve on '0.0.0.0' without an API key" in out.stderr
    assert "--api-key" in out.stderr


# -- collections and documents -----------------------------------------------------------------------------
def test_collection_lifecycle(http):
    assert http.post("/collections", json={"name": "life"}).status_code == 201
    again = http.post("/collections", json={"name": "life"})
    assert again.status_code == 409 and "already exists" in again.json()["error"]["message"]
    assert "/" not in again.json()["error"]["message"]  # the server's filesystem paths are not the client's business
    assert "life" in [c["name"] for c in http.get("/collections").json()["collections"]]

    docs = [{"id": f"d{i}", "text": f"document number {i} about topic {i % 3}", "metadata": {"i": i}} for i in range(5)]
    added = http.post("/collections/life/documents", json={"documents": docs}).json()
    assert (added["added"], added["updated"], added["unchanged"]) == (5, 0, 0)

    changed = [{**docs[0], "text": "a new text for the first document"}, docs[1]]
    upserted = http.post("/collections/life/documents", json={"documents": changed}).json()
    assert (upserted["added"], upserted["updated"], upserted["unchanged"]) == (0, 1, 1)
    clash = http.post(
        "/collections/life/documents",
        json={"documents": [{"id": "d2", "text": "something else"}], "upsert": False},
    )
    assert clash.status_code == 409

    doc = http.get("/collections/life/documents/d0").json()
    chunks = doc.pop("chunks")
    assert doc == {"id": "d0", "text": "a new text for the first document", "title": "", "metadata": {"i": 0}}
    assert chunks == [{"index": 0, "start": 0, "end": len(doc["text"]), "text": doc["text"]}]
    removed = http.post("/collections/life/documents:delete", json={"ids": ["d1", "d2", "nope"]}).json()
    assert removed["deleted"] == 2 and removed["missing"] == ["nope"]
    assert http.delete("/collections/life/documents/d3").json()["deleted"] == 1
    assert http.get("/collections/life/documents/d1").status_code == 404

    stats = http.get("/collections/life/stats").json()
    assert stats["documents"] == 2 and stats["model"] == BI_ENCODER
    # four writes, and one merge: after the batch delete the first segment (three of its five chunks
    # dead) is rewritten alone; the last delete leaves one tombstone
    assert (stats["generation"], stats["segments"], stats["tombstones"]) == (5, 2, 1)
    assert http.get("/collections/life").json() == stats

    assert http.delete("/collections/life").status_code == 204
    gone = http.get("/collections/life")
    assert gone.status_code == 404 and "no collection named 'life'" in gone.json()["error"]["message"]


def test_bad_input_is_a_4xx_naming_it(http, animals):
    r = http.post("/collections", json={"name": "bad name!"})
    assert r.status_code == 422 and "name" in r.json()["error"]["message"]
    r = http.post("/collections/fruit/documents", json={"documents": [{"id": "x", "text": "a"}, {"id": "x", "text": "b"}]})
    assert r.status_code == 422 and "duplicate document id 'x'" in r.json()["error"]["message"]
    r = http.post("/collections/fruit/search", json={"query": "apple", "method": "sparse"})
    assert r.status_code == 422 and "method" in r.json()["error"]["message"]
    r = http.post("/collections/fruit/search", json={"query": "apple", "rerank": "no-such-model"})
    assert r.status_code == 422 and "'no-such-model' is not served" in r.json()["error"]["message"]
    r = http.post("/collections/fruit/search", json={"query": "apple", "filter": {"group": {"$gt": 1}}})
    assert r.status_code == 422 and "$gt" in r.json()["error"]["message"]
    r = http.post("/collections/nope/search", json={"query": "apple"})
    assert r.status_code == 404


# -- search ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["bm25", "dense", "hybrid"])
def test_search_with_rerank_reports_both_stages(http, animals, tiny_cross_encoder_path, method):
    r = http.post("/collections/fruit/search", json={"query": "apple orchard", "method": method, "depth": 12, "top_k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["reranker"] == str(tiny_cross_encoder_path) and len(body["hits"]) == 5
    assert [h["rank"] for h in body["hits"]] == [1, 2, 3, 4, 5]
    scores = [h["rerank_score"] for h in body["hits"]]  # the model's logits, as the library gives them
    assert scores == sorted(scores, reverse=True)
    for h in body["hits"]:
        assert 1 <= h["first_stage_rank"] <= 12 and h["first_stage_score"] is not None
        assert h["score"] == h["rerank_score"] and h["text"] and h["metadata"]["group"] in "abc"
    stages = {"bm25": {"bm25"}, "dense": {"dense"}, "hybrid": {"bm25", "dense", "fusion"}}[method]
    assert stages | {"fetch", "rerank", "total"} <= set(body["timings_ms"])


def test_a_probability_threshold_needs_a_calibrated_reranker(http, animals):
    r = http.post("/collections/fruit/search", json={"query": "apple", "top_k": 3, "min_probability": 0.5})
    assert r.status_code == 422 and "calibration.json" in r.json()["error"]["message"]
    r = http.post("/collections/fruit/search", json={"query": "apple", "top_k": 3, "min_probability": 1.5})
    assert r.status_code == 422 and "min_probability" in r.json()["error"]["message"]


def test_search_without_rerank(http, animals):
    body = http.post("/collections/fruit/search", json={"query": "apple", "method": "bm25", "rerank": "none", "top_k": 3}).json()
    assert body["reranker"] is None and "rerank" not in body["timings_ms"]
    assert [h["rerank_score"] for h in body["hits"]] == [None, None, None]
    assert [h["first_stage_rank"] for h in body["hits"]] == [1, 2, 3]


@pytest.mark.parametrize("method", ["bm25", "dense", "hybrid"])
@pytest.mark.parametrize("rerank", ["none", "default"])
def test_filter_applies_before_top_k(http, animals, method, rerank):
    unfiltered = http.post("/collections/fruit/search", json={"query": "apple apple", "method": "bm25", "rerank": "none", "top_k": 10}).json()
    assert all(h["metadata"]["group"] == "a" for h in unfiltered["hits"])  # group b is below the top 10

    req = {"query": "apple apple", "method": method, "rerank": rerank, "top_k": 5, "depth": 8}
    hits = http.post("/collections/fruit/search", json={**req, "filter": {"group": "b"}}).json()["hits"]
    assert len(hits) == 5 and all(h["metadata"]["group"] == "b" for h in hits)

    hits = http.post("/collections/fruit/search", json={**req, "top_k": 8, "filter": {"group": {"$in": ["b", "c"]}, "year": 2021}}).json()["hits"]
    assert len(hits) == 7  # 20 documents in b/c, a third of them from 2021: all 7 found, none from elsewhere
    assert all(h["metadata"]["group"] in ("b", "c") and h["metadata"]["year"] == 2021 for h in hits)

    none = http.post("/collections/fruit/search", json={**req, "filter": {"group": "zzz"}}).json()["hits"]
    assert none == []


# -- rerank: the Cohere / Jina / TEI / Infinity shape -----------------------------------------------------
PASSAGES = [
    "Paris is the capital and largest city of France.",
    "The Eiffel Tower was completed in 1889.",
    "Bananas are rich in potassium.",
    "Berlin is the capital of Germany.",
]


def check_ranked(results: list[tuple[int, float]], direct: np.ndarray, n: int) -> None:
    """``results`` (index, score) are the ``n`` best of ``direct`` (the same model scored in this process),
    best first, each with the score the model gives it."""
    assert len(results) == n
    scores = [s for _, s in results]
    assert scores == sorted(scores, reverse=True)
    for index, score in results:
        assert abs(score - float(direct[index])) < 1e-3, (index, score, direct[index])
    assert min(scores) >= float(np.sort(direct)[::-1][n - 1]) - 1e-3


@pytest.fixture(scope="module")
def direct_scores(tiny_cross_encoder_path):
    from winnow.rerank.cross_encoder import CrossEncoderReranker

    reranker = CrossEncoderReranker(str(tiny_cross_encoder_path), sigmoid=True, cache=False)
    return reranker.score("capital of France", PASSAGES)


def test_rerank_with_the_cohere_client(server, tiny_cross_encoder_path, direct_scores):
    cohere = pytest.importorskip("cohere")
    client = cohere.ClientV2(api_key=KEY, base_url=server.url, timeout=120)
    response = client.rerank(model=str(tiny_cross_encoder_path), query="capital of France", documents=PASSAGES, top_n=3)
    check_ranked([(r.index, r.relevance_score) for r in response.results], direct_scores, 3)

    v1 = cohere.Client(api_key=KEY, base_url=server.url, timeout=120)
    objects = [{"text": t, "id": i} for i, t in enumerate(PASSAGES)]
    response = v1.rerank(query="capital of France", documents=objects, return_documents=True)  # server's default model
    assert len(response.results) == 4
    assert {r.document.text for r in response.results} == set(PASSAGES)


def test_rerank_shapes(http, tiny_cross_encoder_path, direct_scores):
    body = {"model": str(tiny_cross_encoder_path), "query": "capital of France", "documents": PASSAGES}
    plain = http.post("/v1/rerank", json=body).json()
    check_ranked([(r["index"], r["relevance_score"]) for r in plain["results"]], direct_scores, len(PASSAGES))
    assert all("document" not in r for r in plain["results"])

    mixed = http.post("/rerank", json={**body, "documents": [PASSAGES[0], {"text": PASSAGES[1], "tag": 7}],
                                       "top_n": 1, "return_documents": True}).json()
    assert len(mixed["results"]) == 1
    top = mixed["results"][0]
    assert top["document"] == ({"text": PASSAGES[0]} if top["index"] == 0 else {"text": PASSAGES[1], "tag": 7})

    fields = http.post("/rerank", json={**body, "documents": [{"text": "x", "title": "France"}], "rank_fields": ["title", "text"]})
    assert fields.status_code == 200
    missing = http.post("/rerank", json={**body, "documents": [{"text": "x"}], "rank_fields": ["body"]})
    assert missing.status_code == 422 and "body" in missing.json()["error"]["message"]
    assert http.post("/rerank", json={**body, "documents": []}).json()["results"] == []

    unknown = http.post("/rerank", json={**body, "model": "acme/reranker-9000"})
    assert unknown.status_code == 404
    assert "'acme/reranker-9000' is not served here" in unknown.json()["error"]["message"]


# -- one path: a server started with no flags serves winnow's shipped reranker and ranks as the library --------
DEMO_QUERIES = ["how do plants make food", "why do planets go around the sun", "what is python used for",
                "how do vaccines work", "who wrote the theory of relativity", "what causes rain",
                "how does the heart pump blood", "what is the capital of france"]


@pytest.fixture(scope="module")
def plain_server(demo_collection, tmp_path_factory):
    """``winnow serve`` with no model flags, over the (read-only) demo collection's folder."""
    work = tmp_path_factory.mktemp("plain-serve")
    proc = ServerProcess(demo_collection.path.parent, [], log_path=work / "server.log")
    proc.start()
    yield proc
    proc.stop()


def test_a_server_with_no_flags_reranks_with_winnows_shipped_reranker(plain_server):
    from winnow.models.resolve import DEFAULT_RERANKER, SHIPPED_RERANKER

    expected = DEFAULT_RERANKER or SHIPPED_RERANKER
    with httpx.Client(base_url=plain_server.url, timeout=300) as client:
        r = client.post("/rerank", json={"query": "capital of France", "documents": PASSAGES})
        assert r.status_code == 200, r.text
        assert r.json()["model"] == expected and r.json()["results"][0]["index"] == 0
        named = client.post("/rerank", json={"model": SHIPPED_RERANKER, "query": "capital of France", "documents": PASSAGES})
        assert named.status_code == 200, named.text
        assert SHIPPED_RERANKER in client.get("/health").json()["rerank_models"]


@pytest.mark.parametrize("method", ["hybrid", "dense", "bm25"])
def test_the_server_ranks_as_the_library_does(plain_server, demo_collection, method):
    """Same collection, query, method, depth and reranker (the shipped one, with its fitted mixes): the
    server's JSON and ``Collection.search`` give the same ids in the same order and the same scores."""
    from winnow.models.resolve import SHIPPED_RERANKER
    from winnow.rerank.cross_encoder import CrossEncoderReranker

    reranker = CrossEncoderReranker(SHIPPED_RERANKER)
    assert reranker.mixes is not None  # the bug was a server that ignored fusion.json
    with httpx.Client(base_url=plain_server.url, timeout=300) as client:
        for query in DEMO_QUERIES:
            body = client.post("/collections/demo/search", json={
                "query": query, "method": method, "depth": 40, "top_k": 10, "rerank": SHIPPED_RERANKER,
            }).json()
            library = demo_collection.search(query, method=method, depth=40, top_k=10, reranker=reranker)
            assert [h["doc_id"] for h in body["hits"]] == library.doc_ids, query
            for served, local in zip(body["hits"], library.hits):
                assert served["score"] == pytest.approx(local.score, abs=1e-6)
                assert served["rerank_score"] == pytest.approx(local.rerank_score, abs=1e-6)
                assert served["first_stage_rank"] == local.first_stage_rank


def test_scores_under_concurrent_traffic_equal_the_librarys_alone(plain_server, demo_collection):
    """Eight queries searched at once beside background rerank traffic: each pair's logit is the one the
    library gives it scored alone (int8 activations are quantized per pair, not per batch)."""
    from concurrent.futures import ThreadPoolExecutor

    from winnow.models.resolve import SHIPPED_RERANKER
    from winnow.rerank.cross_encoder import CrossEncoderReranker

    reranker = CrossEncoderReranker(SHIPPED_RERANKER, cache=False)
    queries = [f"{q} (concurrent)" for q in DEMO_QUERIES]  # new to the server's score cache

    def search(query):
        with httpx.Client(base_url=plain_server.url, timeout=300) as client:
            body = {"query": query, "method": "bm25", "depth": 20, "top_k": 20, "rerank": SHIPPED_RERANKER}
            return client.post("/collections/demo/search", json=body).json()["hits"]

    def noise(i):
        with httpx.Client(base_url=plain_server.url, timeout=300) as client:
            docs = [f"background passage {i} number {j} about weather and trains" for j in range(15)]
            return client.post("/rerank", json={"query": f"noise {i}", "documents": docs}).status_code

    with ThreadPoolExecutor(max_workers=12) as pool:
        noises = [pool.submit(noise, i) for i in range(8)]
        results = list(pool.map(search, queries))
        assert all(f.result() == 200 for f in noises)
    for query, hits in zip(queries, results):
        alone = [float(reranker.score(query, [f"{h['title']} {h['text']}" if h["title"] else h["text"]])[0]) for h in hits]
        served = [h["rerank_score"] for h in hits]
        np.testing.assert_allclose(served, alone, atol=1e-4)


# -- embeddings: the OpenAI shape --------------------------------------------------------------------------
def test_embeddings_with_the_openai_client(server, bi_encoder):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(api_key=KEY, base_url=f"{server.url}/v1", timeout=120, max_retries=0)
    texts = ["a cat on a mat", "stock markets fell sharply"]
    response = client.embeddings.create(model=BI_ENCODER, input=texts)  # the client asks for base64
    got = np.array([d.embedding for d in response.data], dtype=np.float32)
    assert got.shape == (2, 384) and [d.index for d in response.data] == [0, 1]
    want = bi_encoder.encode_documents(texts)
    assert np.min(np.sum(got * want, axis=1)) > 0.98  # same model; the server's backend may differ (e.g. int8)

    short = client.embeddings.create(model="all-MiniLM-L6-v2", input="a cat", dimensions=64, encoding_format="float")
    assert len(short.data[0].embedding) == 64
    assert abs(np.linalg.norm(short.data[0].embedding) - 1.0) < 1e-4

    with pytest.raises(openai.NotFoundError, match="not served here"):
        client.embeddings.create(model="text-embedding-3-large", input="x")


# -- limits ------------------------------------------------------------------------------------------------
def test_limits_answer_413_naming_the_limit(http, animals):
    too_many = [{"id": f"x{i}", "text": "t"} for i in range(MAX_DOCUMENTS + 1)]
    r = http.post("/collections/fruit/documents", json={"documents": too_many})
    assert r.status_code == 413
    assert f"limit is {MAX_DOCUMENTS} per request (max_documents)" in r.json()["error"]["message"]

    long_text = "word " * (MAX_CHARS // 5 + 1)
    r = http.post("/collections/fruit/documents", json={"documents": [{"id": "long", "text": long_text}]})
    # the library's limit and message, as `winnow index` gives them
    assert r.status_code == 413 and f"over the limit of {MAX_CHARS:,} per document (max_document_chars" in r.json()["error"]["message"]
    r = http.post("/rerank", json={"query": "q", "documents": ["d"] * (MAX_DOCUMENTS + 1)})
    assert r.status_code == 413 and "max_documents" in r.json()["error"]["message"]
    r = http.post("/v1/embeddings", json={"input": long_text})
    assert r.status_code == 413 and "max_chars" in r.json()["error"]["message"]
    for empty in ("", [""], []):
        assert http.post("/v1/embeddings", json={"input": empty}).status_code == 422, empty

    huge = {"documents": [{"id": f"h{i}", "text": "y" * 3000} for i in range(MAX_BODY // 3000 + 5)]}
    r = http.post("/collections/fruit/documents", json=huge)
    assert r.status_code == 413
    assert f"limit is {MAX_BODY} bytes per request (max_body_bytes)" in r.json()["error"]["message"]

    r = http.post("/collections/fruit/search", json={"query": "apple", "top_k": 5000})
    assert r.status_code == 422 and "1000" in r.json()["error"]["message"]
    r = http.post("/collections/fruit/search", json={"query": "apple", "top_k": 10, "depth": 5})  # as the CLI: refused
    assert r.status_code == 422 and "depth must be >= top_k (10)" in r.json()["error"]["message"]
    assert http.get("/collections/fruit/documents/long").status_code == 404  # nothing of it was written


# -- micro-batching and metrics ----------------------------------------------------------------------------
def metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def test_concurrent_rerank_requests_all_pass_through_the_batcher(server, http):
    """Every request is counted in the batcher's metrics (whether requests share calls depends on timing:
    that is tested deterministically in test_microbatcher.py)."""
    before = http.get("/metrics").text
    n = 16
    result = run_load(
        server.url, "/rerank",
        lambda i: {"query": f"question number {i}", "documents": [f"passage {i} {j}" for j in range(6)]},
        clients=n, requests=n, headers=AUTH, deadline=300,
    )
    assert result.errors == 0, result.error_samples
    after = http.get("/metrics").text
    label = 'winnow_batch_size_{}{{batcher="rerank:'
    requests = metric(after, label.format("sum")) - metric(before, label.format("sum"))
    calls = metric(after, label.format("count")) - metric(before, label.format("count"))
    assert requests == n and 1 <= calls <= n


def test_metrics_in_prometheus_format(http, animals):
    http.post("/collections/fruit/search", json={"query": "apple", "method": "hybrid", "top_k": 3})
    text = http.get("/metrics").text
    assert '# TYPE winnow_requests_total counter' in text
    assert 'winnow_requests_total{method="POST",route="/collections/{name}/search",status="200"}' in text
    assert 'winnow_request_duration_seconds_bucket{route="/collections/{name}/search",le="+Inf"}' in text
    for stage in ("bm25", "dense", "fusion", "rerank", "fetch", "total"):
        assert f'winnow_search_stage_seconds_count{{stage="{stage}"}}' in text
    assert 'winnow_batch_size_count{batcher="rerank:' in text
    assert 'winnow_batch_size_count{batcher="query:all-MiniLM-L6-v2"}' in text
    assert metric(text, 'winnow_cache_hits_total{cache="collection"}') > 0
    assert metric(text, 'winnow_cache_hits_total{cache="reranker"}') > 0


# -- schemathesis ------------------------------------------------------------------------------------------
def test_schemathesis_finds_no_server_errors(server, tmp_path):
    schemathesis = Path(sys.executable).with_name("schemathesis")
    if not schemathesis.exists():
        pytest.skip("schemathesis is not installed (pip install 'winnow[test]')")
    out = subprocess.run(
        [
            str(schemathesis), "run", f"{server.url}/openapi.json",
            "--checks", "not_a_server_error",
            "--header", f"Authorization: Bearer {KEY}",
            "--max-examples", os.environ.get("WINNOW_SCHEMATHESIS_EXAMPLES", "15"),
            "--phases", "examples,coverage,fuzzing",
            "--seed", "1",
            "--workers", "1",  # schemathesis 4.32 coverage phase is not thread-safe
            "--request-timeout", "120",
        ],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
    )
    report = out.stdout[-4000:] + out.stderr[-2000:]
    assert out.returncode == 0, report
    assert "Server error" not in out.stdout, report


# -- durability --------------------------------------------------------------------------------------------
def test_acknowledged_adds_survive_kill_9(tmp_path):
    data = tmp_path / "data"
    server = ServerProcess(data, [], log_path=tmp_path / "server.log").start()
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    try:
        with httpx.Client(base_url=server.url, timeout=120) as c:
            assert c.post("/collections", json={"name": "durable"}).status_code == 201

        def writer(prefix: str) -> None:
            with httpx.Client(base_url=server.url, timeout=120) as c:
                for i in range(500):
                    if stop.is_set():
                        return
                    doc_id = f"{prefix}{i}"
                    doc = {"id": doc_id, "text": f"token{doc_id}z is what this document is about", "metadata": {"w": prefix}}
                    try:
                        r = c.post("/collections/durable/documents", json={"documents": [doc]})
                    except httpx.TransportError:
                        return  # the server died mid-request: not acknowledged
                    if r.status_code == 200:
                        with lock:
                            acked.append(doc_id)

        threads = [threading.Thread(target=writer, args=(p,)) for p in ("p", "q")]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 300
        while len(acked) < 8 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(acked) >= 8, "the writers got too few acknowledgements"
        time.sleep(0.15)  # land inside the next writes
        server.kill9()
        stop.set()
        for t in threads:
            t.join(120)
    finally:
        server.stop()
    assert len(acked) >= 8

    restarted = ServerProcess(data, [], log_path=tmp_path / "restarted.log").start()
    try:
        with httpx.Client(base_url=restarted.url, timeout=120) as c:
            stats = c.get("/collections/durable")
            assert stats.status_code == 200, stats.text
            assert stats.json()["documents"] >= len(acked)
            for doc_id in acked:
                assert c.get(f"/collections/durable/documents/{doc_id}").status_code == 200, doc_id
                hits = c.post("/collections/durable/search",
                              json={"query": f"token{doc_id}z", "method": "bm25", "top_k": 1}).json()["hits"]
                assert [h["doc_id"] for h in hits] == [doc_id]
            # and the collection still takes writes
            r = c.post("/collections/durable/documents", json={"documents": [{"id": "after", "text": "written after the crash"}]})
            assert r.status_code == 200 and r.json()["added"] == 1
    finally:
        restarted.stop()


# -- load --------------------------------------------------------------------------------------------------
LOAD_CLIENTS = 32


@pytest.mark.slow
def test_load_32_clients_batching_vs_not(server, http, tmp_path):
    """32 concurrent clients searching with rerank, a fixed request count, against the batching server and
    a second server without batching over the same collection. Both: no errors. Recorded: p50/p99 and
    throughput (and server CPU); the bigger measurement is ``python -m bench.serve_load``."""
    from winnow.serve.loadgen import synthetic_documents, synthetic_queries

    make_collection(http, "load", synthetic_documents(120))
    requests = int(os.environ.get("WINNOW_LOAD_REQUESTS", "64"))
    queries = synthetic_queries(2 * requests)

    def load(url: str, pid: int, offset: int, headers: dict) -> tuple:
        def body(i):
            return {"query": f"{queries[offset + i]} {offset + i}", "method": "hybrid", "depth": 10, "top_k": 5}

        def warm_body(i):
            return {**body(0), "query": f"warm-up query {i} for {url}"}

        warm = run_load(url, "/collections/load/search", warm_body, clients=4, requests=4, headers=headers)
        assert warm.errors == 0, warm.error_samples  # and the collection, models and shapes are warm
        cpu = process_cpu_seconds(pid)
        result = run_load(url, "/collections/load/search", body, clients=LOAD_CLIENTS, requests=requests,
                          headers=headers, deadline=600)
        return result, process_cpu_seconds(pid) - cpu

    batched, batched_cpu = load(server.url, server.proc.pid, 0, AUTH)
    args = ["--rerank-model", str(http.get("/health").json()["rerank_models"][0]), "--no-batching"]
    with ServerProcess(server.data, args, log_path=tmp_path / "unbatched.log") as plain:
        unbatched, unbatched_cpu = load(plain.url, plain.proc.pid, requests, {})

    report = (
        f"batched:   {batched.line()}, server CPU {batched_cpu:.1f} s\n"
        f"unbatched: {unbatched.line()}, server CPU {unbatched_cpu:.1f} s\n"
        f"throughput ratio {batched.throughput / unbatched.throughput:.2f}"
    )
    print(report)
    (tmp_path / "load.txt").write_text(report)
    assert batched.errors == 0, batched.error_samples
    assert unbatched.errors == 0, unbatched.error_samples
    assert batched.ok == unbatched.ok == requests
    assert batched.p99_ms >= batched.p50_ms > 0
