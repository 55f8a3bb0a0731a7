"""Screenshots of the web page for the docs (docs/img/page-*.png), taken in headless Chromium.

    .venv/bin/python scripts/screenshots.py                # evaluates ../shared/data/msmarco first
    .venv/bin/python scripts/screenshots.py --reports DIR  # or shows eval output folders already written

It indexes examples/demo_corpus.jsonl into a temporary home, runs ``winnow eval`` (the real code) unless
given ``--reports``, starts ``winnow serve`` on loopback with winnow's own reranker, and drives the page
with Playwright pointed at Debian's Chromium (``apt-get install chromium``; no browser is downloaded).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_MSMARCO = REPO.parent / "shared" / "data" / "msmarco"
QUERY = "how do search engines rank documents"
DOC_QUERY = "why do planets orbit the sun"


def build_home(home: Path) -> None:
    from winnow.collection import Collection
    from winnow.corpus import read_documents

    col = Collection.create("demo", home=home)
    try:
        col.add(read_documents(REPO / "examples" / "demo_corpus.jsonl"))
    finally:
        col.close()


def run_eval(dataset: Path, reports: Path) -> None:
    from winnow.evaluate.dataset import load_beir
    from winnow.evaluate.report import write_report
    from winnow.evaluate.runner import default_cache_dir, evaluate

    data = load_beir(dataset)  # msmarco: graded 1-3, binary measures count grade >= 2 (as its reference numbers)
    report = evaluate(data, "bm25,dense,hybrid,bm25>rerank,dense>rerank,hybrid>rerank", cache_dir=default_cache_dir(None),
                      depth=30, metrics=["nDCG@10", "RR@10", "R@30"], rel=2)
    write_report(report, reports / f"eval-{data.name}")


def shoot(url: str, out: Path, chromium: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=120_000)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium)
        page = browser.new_page(viewport={"width": 1360, "height": 900}, device_scale_factor=1)
        page.goto(url)
        expect(page.locator("body")).to_have_attribute("data-ready", "search")
        results = page.locator("#results")
        page.fill("#query", DOC_QUERY)  # a first search warms the stages up (JIT, caches): the shot shows warm timings
        page.press("#query", "Enter")
        expect(results).to_have_attribute("data-query", DOC_QUERY)
        page.fill("#query", QUERY)
        page.press("#query", "Enter")
        expect(results).to_have_attribute("data-query", QUERY)
        page.hover('.column[data-stage="reranked"] .hit >> nth=1')
        page.screenshot(path=str(out / "page-search.png"), full_page=True)

        page.fill("#query", DOC_QUERY)
        page.press("#query", "Enter")
        expect(results).to_have_attribute("data-query", DOC_QUERY)
        page.click('.column[data-stage="reranked"] .hit >> nth=0')
        expect(page.locator("#doc-dialog .chunk.matched")).to_be_visible()
        page.screenshot(path=str(out / "page-document.png"))
        page.keyboard.press("Escape")

        page.goto(url + "#eval")
        expect(page.locator("#pq-list .pq[data-qid]").first).to_be_visible()
        page.screenshot(path=str(out / "page-eval.png"), full_page=True)

        phone = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True)
        phone.goto(url)
        expect(phone.locator("body")).to_have_attribute("data-ready", "search")
        phone.fill("#query", QUERY)
        phone.press("#query", "Enter")
        expect(phone.locator("#results")).to_have_attribute("data-query", QUERY)
        phone.locator('.column[data-stage="reranked"]').scroll_into_view_if_needed()
        phone.screenshot(path=str(out / "page-phone.png"))
        browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reports", type=Path, help="eval output folders to show (default: evaluate msmarco now)")
    parser.add_argument("--dataset", type=Path, default=SHARED_MSMARCO, help="BEIR folder to evaluate (default msmarco)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img", help="where the PNGs go (default docs/img)")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    if not Path(args.chromium).is_file():
        sys.exit(f"no Chromium at {args.chromium}: apt-get install chromium")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from winnow.serve.process import ServerProcess

    with tempfile.TemporaryDirectory(prefix="winnow-shots-") as tmp:
        tmp = Path(tmp)
        build_home(tmp / "home")
        reports = args.reports
        if reports is None:
            reports = tmp / "reports"
            run_eval(args.dataset, reports)
        args.out.mkdir(parents=True, exist_ok=True)
        with ServerProcess(tmp / "home", ["--reports", str(reports)], log_path=tmp / "server.log") as server:
            shoot(server.url + "/", args.out, args.chromium)
    print(f"wrote {', '.join(sorted(p.name for p in args.out.glob('page-*.png')))} in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
