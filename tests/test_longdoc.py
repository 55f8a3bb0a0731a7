"""The long-document set builder: answers at the recorded page, distractors holding the hard negatives,
held-out passages once each, splits that partition the queries, and the same seed giving the same set."""

from __future__ import annotations

import json

import pytest

from winnow.errors import InvalidArgumentError
from winnow.evaluate.dataset import load_beir
from winnow.evaluate.longdoc import PAGE_SEPARATOR, LongDocRecipe, build_longdoc
from winnow.train.data import read_training_file, split_dev


@pytest.fixture()
def mined(tmp_path):
    path = tmp_path / "toy-dense.jsonl"
    lines = []
    for i in range(12):
        lines.append(json.dumps({
            "qid": f"q{i}", "query": f"question number {i}?",
            "positive": {"id": f"p{i}", "text": f"the answer to question {i} is {i * 7}."},
            "negatives": [{"id": f"n{i}-{j}", "text": f"a near miss {j} for question {i}."} for j in range(3)],
        }))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_the_set_places_each_answer_where_it_says(mined, tmp_path):
    recipe = LongDocRecipe((str(mined),), dev_per_file=4, seed=0, pages=5, distractors=2, build_seed=3)
    built = build_longdoc(recipe, tmp_path / "set")
    held = split_dev(read_training_file(mined), 4, seed=0)[1]
    assert built.queries == 4 and built.dev_queries + built.test_queries == 4 and built.documents == 4 * 3
    corpus = {json.loads(l)["_id"]: json.loads(l)["text"] for l in (tmp_path / "set" / "corpus.jsonl").read_text().splitlines()}
    for e in held:
        qid = f"toy:{e.qid}"
        pages = corpus[f"{qid}:answer"].split(PAGE_SEPARATOR)
        assert len(pages) == 5 and pages[built.answer_pages[qid]] == e.positives[0].text
        for j in range(2):
            assert e.negatives[j].text in corpus[f"{qid}:distractor{j}"].split(PAGE_SEPARATOR)
    every_page = [p for text in corpus.values() for p in text.split(PAGE_SEPARATOR)]
    for e in held:  # a held-out query's passages appear once (no filler copy of an answer elsewhere)
        assert every_page.count(e.positives[0].text) == 1
    dev, test = load_beir(tmp_path / "set", split="dev"), load_beir(tmp_path / "set", split="test")
    assert set(dev.judged).isdisjoint(test.judged) and len(dev.judged) + len(test.judged) == 4
    again = build_longdoc(recipe, tmp_path / "again")
    assert again.answer_pages == built.answer_pages
    assert (tmp_path / "again" / "corpus.jsonl").read_bytes() == (tmp_path / "set" / "corpus.jsonl").read_bytes()


def test_bad_recipes_name_the_value(mined, tmp_path):
    with pytest.raises(InvalidArgumentError, match="pages must be >= 2.*got 1"):
        build_longdoc(LongDocRecipe((str(mined),), dev_per_file=2, pages=1), tmp_path / "a")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(InvalidArgumentError, match="is not empty"):
        build_longdoc(LongDocRecipe((str(mined),), dev_per_file=2), tmp_path / "full")
