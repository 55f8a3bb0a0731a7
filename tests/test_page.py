"""The web page at ``/`` in a real browser: headless Chromium (Debian's ``chromium`` package) driven by
Playwright, against a real ``winnow serve`` child process on loopback with an API key, a small real
collection and a real ``winnow eval`` report. Nothing downloads a browser: Playwright is pointed at the
system's Chromium; without it these tests skip and say what to install.

What the page shows is checked against what the API answers for the same request, fetched here over
HTTP. Screenshots of each view go to ``$WINNOW_TEST_ARTIFACTS`` (default: a pytest tmp folder).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("WINNOW_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).is_file():
    pytest.skip("headless Chromium not found: apt-get install chromium (or set WINNOW_CHROMIUM)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is missing: pip install 'winnow[test]'")
httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from playwright.sync_api import expect  # noqa: E402
from test_evaluate import make_dataset  # noqa: E402  (the tiny BEIR dataset the eval tests use)
from test_serve import KEY, make_collection  # noqa: E402  (the key and collection helper of the server tests)

from winnow.serve.process import ServerProcess  # noqa: E402

AUTH = {"Authorization": f"Bearer {KEY}"}
TOPICS = {
    "programming": {"py-ml", "py-lang", "py-gil", "rust-lang", "js-lang", "sql"},
    "search": {"bm25", "dense", "ann", "rerank", "hybrid", "rag", "ndcg"},
    "food": {"bread", "sourdough", "maillard", "pasta", "coffee"},
    "space": {"orbit", "moon", "mars", "blackhole"},
}
FILLER = (
    "Barges carried grain along the river to the mills, and the millers weighed every sack before it was "
    "ground. The weather decided when the boats could sail, and the town kept records of each harvest. "
)
LEVAIN = (
    "A levain is a portion of sourdough starter built up the night before baking; its hydration, the "
    "weight of water against flour, decides how slack the dough will be and how open its crumb becomes. "
)
FAILED_LOAD = r"^Failed to load resource: the server responded with a status of (401|404|422)"

expect.set_options(timeout=60_000)


def topic(doc_id: str) -> str:
    return next((t for t, ids in TOPICS.items() if doc_id in ids), "other")


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    folder = Path(os.environ["WINNOW_TEST_ARTIFACTS"]) if os.environ.get("WINNOW_TEST_ARTIFACTS") else tmp_path_factory.mktemp("page-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def reports(tmp_path_factory, tiny_cross_encoder_path) -> Path:
    """A folder holding one real ``winnow eval`` output (bm25 and bm25>rerank on the tiny dataset)."""
    pytest.importorskip("ir_measures")
    from winnow.evaluate.dataset import load_beir
    from winnow.evaluate.report import write_report
    from winnow.evaluate.runner import evaluate

    root = tmp_path_factory.mktemp("page-eval")
    dataset = load_beir(make_dataset(root / "tiny"))
    report = evaluate(dataset, "bm25,bm25>rerank", cache_dir=root / "cache", rerank=str(tiny_cross_encoder_path),
                      depth=5, metrics=["nDCG@10", "RR@10"])
    write_report(report, root / "reports" / "tiny-eval")
    return root / "reports"


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_cross_encoder_path, reports, demo_documents):
    """The server (key, tiny reranker, --reports) with ``demo``: the demo corpus with a topic each, and one long
    document whose matching passage is in a later chunk; and ``empty``, a collection with no documents."""
    work = tmp_path_factory.mktemp("page-serve")
    proc = ServerProcess(work / "data", ["--rerank-model", str(tiny_cross_encoder_path), "--api-key", KEY,
                                         "--reports", str(reports)], log_path=work / "server.log")
    proc.start()
    docs = [{"id": d.id, "title": d.title, "text": d.text, "metadata": {"topic": topic(d.id)}} for d in demo_documents]
    docs.append({"id": "mill-town", "title": "A mill town", "text": FILLER * 14 + LEVAIN + FILLER * 4,
                 "metadata": {"topic": "history"}})
    with httpx.Client(base_url=proc.url, headers=AUTH, timeout=300) as client:
        make_collection(client, "demo", docs)
        assert client.post("/collections", json={"name": "empty"}).status_code == 201
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=300) as client:
        yield client


@pytest.fixture(scope="module")
def browser():
    """One browser for the file. Module-scoped, not session: Playwright's sync API runs an event loop while it
    is started, and later test files call asyncio.run()."""
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--disable-gpu"])
        yield chromium
        chromium.close()


class Console:
    """Every console error and uncaught exception of a page; ``check`` fails on any not expected."""

    def __init__(self, page) -> None:
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))

    def check(self, allowed: str | None = None) -> None:
        unexpected = [e for e in self.errors if not (allowed and re.search(allowed, e))]
        assert unexpected == [], unexpected


def open_page(browser, server, *, key: bool = True, hash: str = "", **context):
    ctx = browser.new_context(viewport=context.pop("viewport", {"width": 1320, "height": 900}), **context)
    if key:
        ctx.add_init_script(f"sessionStorage.setItem('winnow.apiKey', {json.dumps(KEY)})")
    page = ctx.new_page()
    console = Console(page)
    page.goto(f"{server.url}/{hash}")
    return ctx, page, console


@pytest.fixture
def page(browser, server):
    ctx, page, console = open_page(browser, server)
    expect(page.locator("body")).to_have_attribute("data-ready", "search")
    page.console = console
    yield page
    ctx.close()


def search(page, query: str, *, method: str | None = None, rerank: str | None = None, filter: str | None = None,
           top_k: str | None = None, collection: str = "demo") -> None:
    page.select_option("#collection", collection)
    if method:
        page.check(f"#m-{method}", force=True)
    if rerank:
        page.select_option("#reranker", rerank)
    if filter is not None:
        page.fill("#filter", filter)
    if top_k is not None:
        page.fill("#top-k", top_k)
    page.fill("#query", query)
    page.press("#query", "Enter")


def column_ids(page, stage: str) -> list[str]:
    return page.locator(f'.column[data-stage="{stage}"] .hit').evaluate_all("cards => cards.map(c => c.dataset.docId)")


def expected_move(hit: dict, first_ids: set[str]) -> str:
    """How the page should label a reranked hit, worked out here from the API's ranks."""
    if hit["doc_id"] not in first_ids:
        return f"new from #{hit['first_stage_rank']}"
    places = hit["first_stage_rank"] - hit["rank"]
    return "=" if places == 0 else f"up {places}" if places > 0 else f"down {-places}"


# -- the page, its files and the key ------------------------------------------------------------------
def test_the_page_and_its_files_are_served_without_the_key_and_fetch_nothing_from_elsewhere(server):
    page = httpx.get(f"{server.url}/", timeout=30)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert httpx.get(f"{server.url}/collections", timeout=30).status_code == 401  # the API still wants it
    static = Path(__file__).resolve().parents[1] / "winnow" / "serve" / "static"
    files = sorted(p.relative_to(static).as_posix() for p in static.rglob("*") if p.is_file())
    assert {"index.html", "style.css", "js/main.js"} <= set(files)
    for name in files:
        r = httpx.get(f"{server.url}/static/{name}", timeout=30)
        assert r.status_code == 200, name
        assert not re.search(r"""(src|href)=["']?(https?:)?//|@import|url\(["']?https?:|from ["']https?:""", r.text), name


def test_the_page_asks_for_the_key_and_lists_the_collections(browser, server, artifacts):
    ctx, page, console = open_page(browser, server, key=False)
    expect(page.locator("#key-panel")).to_be_visible()
    page.fill("#key-input", "not-the-key")
    page.press("#key-input", "Enter")
    expect(page.locator("#key-message")).to_contain_text("invalid API key")
    page.fill("#key-input", KEY)
    page.click("#key-form button[type=submit]")
    expect(page.locator("#key-panel")).to_be_hidden()
    expect(page.locator("#collection option")).to_have_count(2)
    page.select_option("#collection", "demo")
    meta = page.locator("#collection-meta")
    expect(meta).to_contain_text("41 documents")
    expect(meta).to_contain_text("sentence-transformers/all-MiniLM-L6-v2")
    expect(meta).to_contain_text("created 20")
    expect(meta).to_contain_text("updated 20")
    page.screenshot(path=str(artifacts / "page-collections.png"))
    console.check(allowed=FAILED_LOAD)  # the wrong key's 401
    ctx.close()


# -- search ------------------------------------------------------------------------------------------
def test_both_columns_and_the_moves_are_the_apis(page, http, artifacts):
    search(page, "how does bread rise with yeast", method="hybrid")
    reranked = page.locator('.column[data-stage="reranked"] .hit')
    expect(reranked).to_have_count(10)
    body = {"query": "how does bread rise with yeast", "method": "hybrid", "include_first_stage": True, "top_k": 10,
            "rerank": "default", "depth": 100}
    api = http.post("/collections/demo/search", json=body).json()
    assert column_ids(page, "first") == [h["doc_id"] for h in api["first_stage"]]
    assert column_ids(page, "reranked") == [h["doc_id"] for h in api["hits"]]
    first_ids = {h["doc_id"] for h in api["first_stage"]}
    shown = reranked.locator(".move").all_inner_texts()
    assert shown == [expected_move(h, first_ids) for h in api["hits"]]
    assert any(m != "=" for m in shown)  # the tiny reranker reorders: there are moves to check
    # the same document is joined across the columns: one line per reranked hit the first stage had
    assert page.locator(".gutter path.link").count() == sum(h["doc_id"] in first_ids for h in api["hits"])
    expect(page.locator('.column[data-stage="first"] .hit mark').first).to_be_visible()
    legend = page.locator(".timing-legend")
    for stage in ("bm25", "dense", "fusion", "fetch", "rerank", "total"):
        expect(legend.locator(f'[data-stage="{stage}"]')).to_be_visible()
    page.click(".curl summary")
    command = page.locator("#curl-command").inner_text()
    assert 'Authorization: Bearer $WINNOW_API_KEY' in command and KEY not in command
    page.screenshot(path=str(artifacts / "page-search.png"), full_page=True)
    page.console.check()
    # what the page shows a script can fetch too: run the curl command it shows
    if shutil.which("curl") and shutil.which("bash"):
        out = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120,
                             env={**os.environ, "WINNOW_API_KEY": KEY})
        fetched = json.loads(out.stdout)
        assert [h["doc_id"] for h in fetched["hits"]] == [h["doc_id"] for h in api["hits"]]


def test_switching_the_first_stage_and_the_reranker_searches_again(page, http):
    search(page, "planets orbit the sun", method="hybrid")
    expect(page.locator('.column[data-stage="reranked"] .hit')).to_have_count(10)
    page.check("#m-bm25", force=True)
    expect(page.locator('.column[data-stage="first"] h2')).to_have_text("First stage · bm25")
    body = {"query": "planets orbit the sun", "method": "bm25", "include_first_stage": True, "rerank": "default"}
    api = http.post("/collections/demo/search", json=body).json()
    expect(page.locator('.column[data-stage="reranked"] .hit').first).to_have_attribute("data-doc-id", api["hits"][0]["doc_id"])
    assert column_ids(page, "first") == [h["doc_id"] for h in api["first_stage"]]
    assert column_ids(page, "reranked") == [h["doc_id"] for h in api["hits"]]

    page.select_option("#reranker", "none")
    expect(page.locator('.column[data-stage="reranked"]')).to_have_count(0)
    expect(page.locator('.column[data-stage="first"] .meta')).to_have_text("no reranker: this is the final ranking")
    expect(page.locator("#depth")).to_be_disabled()
    plain = http.post("/collections/demo/search", json={"query": "planets orbit the sun", "method": "bm25", "rerank": "none"}).json()
    assert column_ids(page, "first") == [h["doc_id"] for h in plain["hits"]]
    assert page.locator(".move").count() == 0
    page.console.check()


def test_a_hit_opens_its_document_with_the_matched_chunk(page, http, artifacts):
    search(page, "levain hydration", method="bm25")
    first = page.locator('.column[data-stage="reranked"] .hit[data-doc-id="mill-town"]')
    expect(first).to_be_visible()
    hit = next(h for h in http.post("/collections/demo/search", json={
        "query": "levain hydration", "method": "bm25", "include_first_stage": True}).json()["hits"] if h["doc_id"] == "mill-town")
    matched = int(hit["chunk"].rsplit("#", 1)[1])
    doc = http.get("/collections/demo/documents/mill-town").json()
    assert len(doc["chunks"]) > 2 and matched > 0  # the match is not the first chunk
    first.click()
    dialog = page.locator("#doc-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator(".chunk")).to_have_count(len(doc["chunks"]))
    expect(dialog.locator(".chunk.matched")).to_have_attribute("data-index", str(matched))
    expect(dialog.locator(".chunk-match")).to_contain_text("levain")
    expect(dialog.locator("#doc-meta")).to_contain_text(f"matched chunk #{matched}")
    expect(dialog.locator(".metadata")).to_contain_text('"history"')
    page.screenshot(path=str(artifacts / "page-document.png"))
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    page.console.check()


@pytest.mark.parametrize(
    "case, fields, body",
    [
        ("empty query", {"query": ""}, {"query": ""}),
        ("huge top-k", {"query": "bread", "top_k": "100000"}, {"query": "bread", "top_k": 100000}),
        ("filter that is not JSON", {"query": "bread", "filter": "{topic: food}"}, {"query": "bread", "filter": "{topic: food}"}),
        ("filter with an unknown operator", {"query": "bread", "filter": '{"topic": {"$gt": 1}}'},
         {"query": "bread", "filter": {"topic": {"$gt": 1}}}),
    ],
)
def test_bad_input_shows_the_apis_message(page, http, artifacts, case, fields, body):
    r = http.post("/collections/demo/search", json={"method": "hybrid", "rerank": "default", "include_first_stage": True,
                                                      "top_k": 10, "depth": 100, **body})
    assert r.status_code == 422
    message = r.json()["error"]["message"]
    search(page, fields["query"], filter=fields.get("filter"), top_k=fields.get("top_k"))
    notice = page.locator("#search-notice")
    expect(notice).to_have_attribute("data-kind", "error")
    expect(notice.locator(".notice-title")).to_have_text("The server refused the request (422).")
    expect(notice.locator(".notice-detail")).to_have_text(message)
    if case == "filter that is not JSON":
        assert "filter must be a JSON object" in message and "{topic: food}" in message
        page.screenshot(path=str(artifacts / "page-error.png"))
    assert page.locator(".hit").count() == 0
    page.console.check(allowed=FAILED_LOAD)


def test_no_results_and_an_empty_collection_say_so(page):
    search(page, "bread", filter='{"topic": "nothing-has-this"}')
    notice = page.locator("#search-notice")
    expect(notice).to_have_attribute("data-kind", "warn")
    expect(notice).to_contain_text("No results for “bread”")
    page.select_option("#collection", "empty")
    expect(notice).to_have_attribute("data-kind", "info")
    expect(notice).to_contain_text("Collection “empty” is empty.")
    search(page, "bread", filter="", collection="empty")
    expect(notice).to_have_attribute("data-kind", "warn")
    expect(notice).to_contain_text("is empty")
    page.console.check()


def test_keyboard_and_a_phone_screen(browser, server, artifacts):
    ctx, page, console = open_page(browser, server, viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                   is_mobile=True, has_touch=True)
    expect(page.locator("body")).to_have_attribute("data-ready", "search")
    page.locator("body").press("/")
    expect(page.locator("#query")).to_be_focused()
    page.keyboard.type("why do planets orbit")
    page.keyboard.press("Enter")
    expect(page.locator('.column[data-stage="reranked"] .hit')).to_have_count(10)
    expect(page.locator(".gutter")).to_be_hidden()  # one column: the colour stripe still pairs the documents
    assert page.evaluate("[window.innerWidth, document.documentElement.scrollWidth]") == [390, 390]  # nothing sticks out
    page.screenshot(path=str(artifacts / "page-phone.png"))
    page.click("#tab-eval")
    expect(page.locator("#pq-list .pq[data-qid]").first).to_be_visible()
    assert page.evaluate("[window.innerWidth, document.documentElement.scrollWidth]") == [390, 390]
    page.screenshot(path=str(artifacts / "page-phone-eval.png"), full_page=True)
    console.check()
    ctx.close()


# -- evaluation -----------------------------------------------------------------------------------------
def test_the_eval_view_shows_the_report_worst_queries_first(browser, server, http, artifacts):
    report = http.get("/reports/tiny-eval").json()
    ctx, page, console = open_page(browser, server, hash="#eval")
    expect(page.locator("body")).to_have_attribute("data-ready", "eval")
    expect(page.locator("#report")).to_have_value("tiny-eval")
    rows = page.locator("#eval-table tbody tr")
    expect(rows).to_have_count(2)
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.method)") == ["bm25", "bm25>rerank"]
    for row, m in zip(rows.all(), report["methods"]):
        expect(row.locator("td").first).to_have_text(f"{m['metrics']['nDCG@10']:.4f}")
    expect(page.locator("#eval-plot svg .point")).to_have_count(2)
    expect(page.locator("#pq-base")).to_have_value("bm25")
    expect(page.locator("#pq-reranked")).to_have_value("bm25>rerank")
    before = report["methods"][0]["per_query"]["nDCG@10"]
    after = report["methods"][1]["per_query"]["nDCG@10"]
    order = sorted(before, key=lambda q: (after[q] - before[q], q))
    listed = page.locator("#pq-list .pq[data-qid]")
    expect(listed).to_have_count(len(order))
    assert listed.evaluate_all("rs => rs.map(r => r.dataset.qid)") == order
    deltas = [float(d) for d in listed.evaluate_all("rs => rs.map(r => r.dataset.delta)")]
    assert deltas == sorted(deltas) and deltas == [pytest.approx(after[q] - before[q], abs=1e-6) for q in order]
    expect(listed.first).to_contain_text(report["query_texts"][order[0]])
    page.screenshot(path=str(artifacts / "page-eval.png"), full_page=True)
    console.check()
    ctx.close()


# -- the API underneath ---------------------------------------------------------------------------------
def test_the_first_stage_list_is_what_a_first_stage_search_returns(http):
    for method in ("bm25", "dense", "hybrid"):
        both = http.post("/collections/demo/search", json={"query": "neural networks learn", "method": method,
                                                           "top_k": 8, "depth": 30, "include_first_stage": True}).json()
        alone = http.post("/collections/demo/search", json={"query": "neural networks learn", "method": method,
                                                            "top_k": 8, "rerank": "none"}).json()
        assert [(h["doc_id"], h["rank"]) for h in both["first_stage"]] == [(h["doc_id"], h["rank"]) for h in alone["hits"]]
        assert [h["score"] for h in both["first_stage"]] == pytest.approx([h["score"] for h in alone["hits"]])
        assert all(h["rerank_score"] is not None for h in both["first_stage"])
        by_id = {h["doc_id"]: h for h in both["first_stage"]}
        for hit in both["hits"]:  # each reranked hit's provenance agrees with the first-stage list
            if hit["doc_id"] in by_id:
                assert by_id[hit["doc_id"]]["rank"] == hit["first_stage_rank"]
        plain = http.post("/collections/demo/search", json={"query": "neural networks learn", "method": method,
                                                            "top_k": 8, "depth": 30}).json()
        assert plain["first_stage"] is None and [h["doc_id"] for h in plain["hits"]] == [h["doc_id"] for h in both["hits"]]


def test_a_document_comes_with_its_chunks(http):
    doc = http.get("/collections/demo/documents/mill-town").json()
    assert [c["index"] for c in doc["chunks"]] == list(range(len(doc["chunks"])))
    assert all(doc["text"][c["start"]:c["end"]] == c["text"] for c in doc["chunks"])
    assert doc["chunks"][0]["start"] == 0 and doc["chunks"][-1]["end"] == len(doc["text"])


def test_reports_are_listed_and_served_by_name_only(http, server):
    listed = http.get("/reports").json()
    assert listed["configured"] is True
    assert [(r["name"], r["methods"]) for r in listed["reports"]] == [("tiny-eval", ["bm25", "bm25>rerank"])]
    report = http.get("/reports/tiny-eval").json()
    assert "dataset_path" not in report and "path" not in report["corpus"]  # no server paths
    assert set(report["query_texts"]) == set(report["methods"][0]["per_query"]["nDCG@10"])
    missing = http.get("/reports/nope")
    assert missing.status_code == 404 and "tiny-eval" in missing.json()["error"]["message"]
    for sneaky in ("..%2F..%2Fetc", "%2E%2E", "tiny-eval%2F..%2F..", ".hidden", "%2Fetc"):
        r = http.get(f"/reports/{sneaky}")
        assert r.status_code in (404, 422), (sneaky, r.status_code)
    assert httpx.get(f"{server.url}/reports", timeout=30).status_code == 401
    health = httpx.get(f"{server.url}/health", timeout=30).json()
    assert health["api_key_required"] is True and health["reports"] is True and health["default_rerank_model"]
