"""``winnow serve`` and long documents / budgets: TEI's ``truncate`` and ``truncation_direction`` and winnow's
windows on ``/rerank``, ``budget_ms`` and ``max_windows`` on search, and the token counts in ``/metrics``.
The real server (winnow's shipped reranker, the default, and its distilled 3-layer one for cascades) in a child
process, over real HTTP."""

from __future__ import annotations

import re

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from winnow.serve.process import ServerProcess  # noqa: E402

QUERY = "how do plants make food"
ANSWER = ("Photosynthesis is how plants make their food: chlorophyll in the leaves captures sunlight and turns water "
          "and carbon dioxide into sugar.")
FILLER = " ".join(
    f"On day {i} the regional water board met again and argued at length about the price of new pipes." for i in range(40)
)
LONG_DOC = FILLER[:2500] + " " + ANSWER + " " + FILLER[2500:]  # as in test_windows: the answer about 550 tokens in
SMALL = "winnow-reranker-minilm-l3-distilled"
SHORT = "Plants need water and light to grow, and gardeners water them in the morning."


@pytest.fixture(scope="module")
def client(demo_collection, tmp_path_factory):
    work = tmp_path_factory.mktemp("serve-long")
    from winnow.models.resolve import SHIPPED_RERANKER

    proc = ServerProcess(demo_collection.path.parent, ["--rerank-model", SHIPPED_RERANKER, "--rerank-model", SMALL],
                         log_path=work / "server.log")
    proc.start()
    with httpx.Client(base_url=proc.url, timeout=300) as c:
        yield c
    proc.stop()


def _metric(text: str, route: str, kind: str) -> float:
    m = re.search(rf'winnow_rerank_tokens_total{{route="{route}",kind="{kind}"}} (\S+)', text)
    return float(m.group(1)) if m else 0.0


def test_rerank_truncates_by_default_and_says_how_much(client):
    before = _metric(client.get("/metrics").text, "rerank", "truncated")
    r = client.post("/rerank", json={"query": QUERY, "documents": [SHORT, LONG_DOC]})
    assert r.status_code == 200, r.text
    by_index = {x["index"]: x for x in r.json()["results"]}
    assert by_index[0]["truncated_tokens"] == 0 and by_index[0]["read_tokens"] > 0
    cut = by_index[1]["truncated_tokens"]
    assert cut > 0 and by_index[1]["read_tokens"] < 192
    assert r.json()["results"][0]["index"] == 0  # the answer is past what one pass reads
    assert _metric(client.get("/metrics").text, "rerank", "truncated") == before + cut


def test_rerank_truncate_false_is_a_413_naming_the_document(client):
    r = client.post("/rerank", json={"query": QUERY, "documents": [SHORT, LONG_DOC], "truncate": False})
    assert r.status_code == 413, r.text
    assert re.search(r"document 1 has \d+ tokens", r.json()["error"]["message"])
    fits = client.post("/rerank", json={"query": QUERY, "documents": [SHORT], "truncate": False})
    assert fits.status_code == 200


def test_rerank_left_truncation_and_windows(client):
    left = client.post("/rerank", json={"query": QUERY, "documents": [SHORT, LONG_DOC], "truncate": True,
                                        "truncation_direction": "Left"})
    right = client.post("/rerank", json={"query": QUERY, "documents": [SHORT, LONG_DOC], "truncation_direction": "Right"})
    assert left.status_code == right.status_code == 200
    score = lambda resp: {x["index"]: x["relevance_score"] for x in resp.json()["results"]}[1]  # noqa: E731
    assert score(left) != score(right)  # another end of the document was read
    windows = client.post("/rerank", json={"query": QUERY, "documents": [SHORT, LONG_DOC], "max_windows": 16,
                                           "truncate": False})
    assert windows.status_code == 200, windows.text
    top = windows.json()["results"][0]
    assert top["index"] == 1 and top["truncated_tokens"] == 0  # read whole, the answer found
    bad = client.post("/rerank", json={"query": QUERY, "documents": [SHORT], "truncation_direction": "Middle"})
    assert bad.status_code == 422 and "truncation_direction" in bad.json()["error"]["message"]
    too_many = client.post("/rerank", json={"query": QUERY, "documents": [SHORT], "max_windows": 65})
    assert too_many.status_code == 422


def test_search_with_a_zero_budget_keeps_the_first_stages_order(client, demo_collection):
    name = demo_collection.name
    r = client.post(f"/collections/{name}/search", json={"query": QUERY, "method": "bm25", "top_k": 5, "depth": 10,
                                                          "budget_ms": 0})
    assert r.status_code == 200, r.text
    hits = r.json()["hits"]
    assert hits and [h["first_stage_rank"] for h in hits] == list(range(1, len(hits) + 1))  # what BM25 matched, in its order
    assert all(h["rerank_score"] is None and h["read_tokens"] == 0 for h in hits)
    assert "winnow_rerank_unread_candidates_total" in client.get("/metrics").text
    windows = client.post(f"/collections/{name}/search", json={"query": QUERY, "method": "bm25", "top_k": 3,
                                                                "max_windows": 4, "aggregation": "softmax"})
    assert windows.status_code == 200, windows.text
    assert all(h["read_tokens"] > 0 and h["rerank_score"] is not None for h in windows.json()["hits"])
    bad = client.post(f"/collections/{name}/search", json={"query": QUERY, "budget_ms": -1})
    assert bad.status_code == 422


def test_search_with_a_cascade_ranks_as_the_library_does(client, demo_collection):
    """``cascade``: the small served reranker reads all candidates, the default the best cascade_depth; the
    same hits and scores as ``with_cascade`` in the library."""
    from winnow.models.resolve import SHIPPED_RERANKER
    from winnow.rerank.cascade import with_cascade
    from winnow.rerank.cross_encoder import CrossEncoderReranker

    name = demo_collection.name
    r = client.post(f"/collections/{name}/search", json={"query": QUERY, "depth": 30, "top_k": 10, "cascade": SMALL,
                                                          "cascade_depth": 5})
    assert r.status_code == 200, r.text
    reranker = with_cascade(CrossEncoderReranker(SHIPPED_RERANKER, cache=False), SMALL, first_depth=30, depth=5, cache=False)
    want = demo_collection.search(QUERY, depth=30, top_k=10, reranker=reranker)
    assert [h["doc_id"] for h in r.json()["hits"]] == want.doc_ids
    assert [h["score"] for h in r.json()["hits"]] == pytest.approx([h.score for h in want.hits], abs=1e-3)
    unread = [h for h in r.json()["hits"][5:]]
    assert unread and all(h["rerank_score"] is not None for h in unread)  # the small reranker's scores
    bad = client.post(f"/collections/{name}/search", json={"query": QUERY, "cascade": "nope"})
    assert bad.status_code == 422 and "cascade: reranker model 'nope' is not served here" in bad.json()["error"]["message"]
    alone = client.post(f"/collections/{name}/search", json={"query": QUERY, "cascade": SMALL, "rerank": False})
    assert alone.status_code == 422 and "needs rerank set" in alone.json()["error"]["message"]
