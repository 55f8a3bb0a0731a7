"""Reranker training tools: data readers, negative mining, and a few real training steps on a tiny slice.

Everything runs the real bundled all-MiniLM-L6-v2 weights on the CPU; the training test keeps the model
to 2 layers and 64 tokens, so it trains in seconds (full training never runs here).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from winnow.cli import build_parser
from winnow.errors import CorpusError, InvalidArgumentError
from winnow.train.data import (
    Passage,
    QueryPositive,
    TrainingExample,
    fix_text,
    read_mined,
    read_positives,
    read_wikiqa,
    rows,
    split_dev,
)
from winnow.train.fusion_fit import fit_weight, ndcg_at_10
from winnow.train.mining import MiningConfig, mine_negatives
from winnow.types import FirstStage

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Sixteen real-world facts, one question each: a pool where each query has one answer and many
# passages that are off topic or near it (the four about planets, the four about programming...).
PAIRS = [
    ("what is the capital of france", "Paris is the capital and most populous city of France."),
    ("what is the capital of germany", "Berlin is the capital and largest city of Germany by population."),
    ("what is the capital of italy", "Rome is the capital city of Italy and of the Lazio region."),
    ("what is the capital of spain", "Madrid is the capital and most populous city of Spain."),
    ("largest planet in the solar system", "Jupiter is the fifth planet from the Sun and the largest in the Solar System."),
    ("which planet is known as the red planet", "Mars is called the Red Planet because of the iron oxide on its surface."),
    ("closest planet to the sun", "Mercury is the smallest planet and the closest to the Sun."),
    ("planet with the most famous rings", "Saturn is best known for its prominent ring system of ice and rock."),
    ("who created the python language", "Python was created by Guido van Rossum and first released in 1991."),
    ("what is rust programming language", "Rust is a systems programming language focused on memory safety."),
    ("what is javascript used for", "JavaScript is the scripting language of web pages, run by browsers."),
    ("who designed the c language", "The C programming language was designed by Dennis Ritchie at Bell Labs."),
    ("how do bees make honey", "Bees make honey by collecting nectar and evaporating it in the hive."),
    ("how long do cats sleep", "Cats sleep between twelve and sixteen hours a day on average."),
    ("why do leaves change color in autumn", "Leaves turn yellow and red in autumn as chlorophyll breaks down."),
    ("how tall is mount everest", "Mount Everest is 8,849 metres tall, the highest mountain above sea level."),
]


def _pairs() -> list[QueryPositive]:
    return [QueryPositive(f"q{i}", q, p) for i, (q, p) in enumerate(PAIRS)]


# -- data --------------------------------------------------------------------------------------------
def test_fix_text_repairs_ms_marco_mojibake():
    assert fix_text("c.1590 \u00e2\u0080\u0093 1657") == "c.1590 – 1657"
    assert fix_text("plain text") == "plain text"
    # bytes lost in the source leave a lone "â": apostrophes, dashes and quotes are put back
    assert fix_text("Whatâs the âSeinfeldâ cast â (1989â1998)") == 'What\'s the "Seinfeld" cast – (1989–1998)'
    assert fix_text("châteaux, âge") == "châteaux, âge"


def test_read_positives_fixes_the_shared_training_pairs():
    path = DATA / "train" / "msmarco-dev-small-positives.jsonl"
    if not path.is_file():
        pytest.skip(f"shared training data not found at {path}")
    pairs = read_positives(path, limit=50)
    assert len(pairs) == 50 and pairs[0].qid == "msmarco-dev-small-positives-q1"
    assert "–" in pairs[0].positive and "\u00e2\u0080" not in pairs[0].positive
    raw = read_positives(path, fix=False, limit=1)
    assert "\u00e2\u0080\u0093" in raw[0].positive


def test_read_positives_names_the_bad_line(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"query": "a", "positive": "b"}\n{"query": "c"}\n', encoding="utf-8")
    with pytest.raises(CorpusError, match="line 2.*'positive'"):
        read_positives(path)


def test_read_wikiqa_groups_candidates_and_drops_unanswered(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text(
        "question_id\tquestion\tsentence\tlabel\n"
        "1\thow are caves formed ?\tcaves form by erosion .\t1\n"
        "1\thow are caves formed ?\tthe facade is 60 m high\t0\n"
        "2\twho is bob ?\tnobody knows .\t0\n",
        encoding="utf-8",
    )
    examples = read_wikiqa(path)
    assert len(examples) == 1
    e = examples[0]
    assert e.qid == "wikiqa-train-1" and [p.text for p in e.positives] == ["caves form by erosion ."]
    assert [n.text for n in e.negatives] == ["the facade is 60 m high"]
    assert e.source == "wikiqa"


def test_rows_give_each_loss_its_layout():
    e = TrainingExample("q", "query", (Passage("p", "pos"),), tuple(Passage(f"n{i}", f"neg{i}") for i in range(3)))
    short = TrainingExample("s", "short", (Passage("p2", "pos2"),), (Passage("m", "neg"),))
    pairs = rows([e], "pairs", negatives=2)
    assert pairs == {"query": ["query"] * 3, "passage": ["pos", "neg0", "neg1"], "label": [1.0, 0.0, 0.0]}
    lists = rows([e], "list", negatives=3, seed=1)
    assert sorted(lists["docs"][0]) == ["neg0", "neg1", "neg2", "pos"]
    assert lists["labels"][0][lists["docs"][0].index("pos")] == 1.0 and sum(lists["labels"][0]) == 1.0
    tuples = rows([e, short], "tuple", negatives=2)  # the short example cannot fill 2 negatives
    assert tuples == {"query": ["query"], "positive": ["pos"], "negative_1": ["neg0"], "negative_2": ["neg1"]}
    with pytest.raises(InvalidArgumentError, match="pairs, list, tuple"):
        rows([e], "triplets", negatives=1)


def test_split_dev_is_seeded_and_disjoint():
    examples = [TrainingExample(f"q{i}", f"query {i}", (Passage(f"p{i}", "x"),)) for i in range(20)]
    train, dev = split_dev(examples, 5, seed=3)
    assert len(dev) == 5 and len(train) == 15
    assert not {e.qid for e in train} & {e.qid for e in dev}
    assert [e.qid for e in split_dev(examples, 5, seed=3)[1]] == [e.qid for e in dev]
    with pytest.raises(InvalidArgumentError, match="dev size"):
        split_dev(examples, 20)


def test_fusion_fit_picks_the_better_signal():
    assert ndcg_at_10(np.array([3.0, 2.0, 1.0]), np.array([True, False, False])) == 1.0
    assert ndcg_at_10(np.array([1.0, 2.0, 3.0]), np.array([True, False, False])) == pytest.approx(0.5)
    rel = [np.array([False, False, True, False])] * 3
    good = [np.array([0.1, 0.2, 0.9, 0.3])] * 3  # ranks the relevant one first
    bad = [np.array([0.9, 0.8, 0.1, 0.7])] * 3
    fit = fit_weight(good, bad, rel)
    assert fit.weight > 0.5 and fit.reranker == 1.0 and fit.first_stage < 1.0 and fit.best == 1.0
    assert fit_weight(bad, good, rel).weight < 0.5
    assert fit_weight(good, good, rel).weight == 0.5  # a tie everywhere: the even mix


# -- mining ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mined(tmp_path_factory):
    """Mine the sixteen pairs twice with one seed and once with another, through the CLI."""
    root = tmp_path_factory.mktemp("mining")
    pairs_file = root / "pairs.jsonl"
    pairs_file.write_text("".join(json.dumps({"query": q, "positive": p}) + "\n" for q, p in PAIRS), encoding="utf-8")
    outs = {}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        out = root / f"mined-{name}.jsonl"
        argv = ["mine-negatives", str(pairs_file), "-o", str(out), "--cache", str(root / "cache"), "--quiet",
                "--skip-top", "1", "--max-rank", "12", "--negatives", "3", "--seed", str(seed)]
        args = build_parser().parse_args(argv)
        assert args.func(args) == 0
        outs[name] = out
    return outs


def test_mining_is_reproducible_with_a_seed(mined):
    a, b, c = (mined[k].read_bytes() for k in "abc")
    assert a == b
    assert a != c  # another seed draws other negatives
    meta = json.loads((mined["a"].with_name("mined-a.jsonl.meta.json")).read_text())
    assert meta["config"]["seed"] == 7 and meta["report"]["queries"] == 16


def test_mined_negatives_follow_the_rules(mined):
    cfg = MiningConfig(skip_top=1, max_rank=12, negatives=3)
    records = [json.loads(line) for line in mined["a"].read_text(encoding="utf-8").splitlines()]
    assert len(records) == 16
    for r in records:
        pos = r["positive"]
        assert pos["score"] is not None  # dense: the positive's exact score even when it ranks low
        assert len(r["negatives"]) == 3
        assert len(r["ranking"]) == 12
        for n in r["negatives"]:
            assert n["id"] != pos["id"] and n["text"] != pos["text"]
            assert cfg.skip_top < n["rank"] <= cfg.max_rank
            assert n["score"] <= pos["score"] - abs(pos["score"]) * cfg.relative_margin
    by_query = {r["query"]: r for r in records}
    assert by_query["what is the capital of france"]["positive"]["rank"] == 1


def test_mining_rejects_bad_settings(tmp_path):
    with pytest.raises(InvalidArgumentError, match="skip_top < max_rank"):
        MiningConfig(skip_top=10, max_rank=5)
    with pytest.raises(InvalidArgumentError, match="dense, bm25, hybrid"):
        MiningConfig(method="splade")
    with pytest.raises(InvalidArgumentError, match="duplicate query id"):
        mine_negatives([QueryPositive("q", "a", "b"), QueryPositive("q", "c", "d")], home=tmp_path)


def test_read_mined_rebuilds_rankings_with_texts(mined):
    examples = read_mined(mined["a"])
    assert len(examples) == 16
    e = examples[0]
    assert e.source == "mined-a" and len(e.negatives) == 3
    assert len(e.ranking) == 12 and all(h.text for h in e.ranking)  # every pool passage is someone's positive
    assert [h.rank for h in e.ranking] == list(range(1, 13))


# -- training ----------------------------------------------------------------------------------------
def test_training_a_few_steps_lowers_the_loss_and_writes_a_model_card(mined, tmp_path):
    """32 pairs (8 queries x 1 positive + 3 mined negatives), 2 layers, 64 tokens, 6 full-batch steps."""
    out = tmp_path / "run"
    argv = ["train", "reranker", "--train", str(mined["a"]), "-o", str(out), "--quiet",
            "--dev-queries", "2", "--limit", "8", "--negatives", "3", "--loss", "bce",
            "--layers", "2", "--max-length", "64", "--batch-size", "32", "--lr", "1e-3", "--warmup-ratio", "0",
            "--max-steps", "6", "--logging-steps", "1", "--save-steps", "1000", "--eval-steps", "1000", "--eval-depth", "8"]
    args = build_parser().parse_args(argv)
    assert args.func(args) == 0

    model_dir = out / "model"
    info = json.loads((model_dir / "training.json").read_text())
    losses = [loss for _, loss in info["losses"]]
    assert info["steps"] == 6 and info["train_rows"] == 32 and len(losses) == 6
    assert np.mean(losses[-2:]) < np.mean(losses[:2]), losses

    card = (model_dir / "README.md").read_text()
    for needed in ("training time", "hardware", "CPU core", "mined-a.jsonl", "bce", "dev-mined-a_ndcg@10", "winnow train reranker"):
        assert needed in card, needed
    assert info["dev_queries"] == 2 and "dev-mined-a_base_ndcg@10" in info["dev_metrics"]
    fusion = json.loads((model_dir / "fusion.json").read_text())
    dense = fusion["first_stages"]["dense"]  # mined-a's lists are dense ones (its meta.json says so)
    assert fusion["format_version"] == 2 and set(fusion["first_stages"]) == {"dense"}
    assert 0.0 <= dense["weight_reranker"] <= 1.0 and dense["dev_queries"] == 2

    from winnow.rerank.cross_encoder import CrossEncoderReranker

    scores = CrossEncoderReranker(str(model_dir)).score("capital of france", ["Paris is the capital.", "Cats sleep."])
    assert scores.shape == (2,) and np.isfinite(scores).all()


def test_training_resumes_from_its_last_checkpoint(mined, tmp_path):
    out = tmp_path / "run"
    base = ["train", "reranker", "--train", str(mined["a"]), "-o", str(out), "--quiet", "--dev-queries", "0",
            "--limit", "4", "--negatives", "1", "--layers", "1", "--max-length", "32", "--batch-size", "8",
            "--save-steps", "1", "--logging-steps", "1", "--no-fusion"]
    args = build_parser().parse_args(base + ["--max-steps", "1"])
    assert args.func(args) == 0
    assert (out / "checkpoints" / "checkpoint-1").is_dir()
    args = build_parser().parse_args(base + ["--max-steps", "2", "--resume"])
    assert args.func(args) == 0
    info = json.loads((out / "model" / "training.json").read_text())
    assert info["steps"] == 2 and info["resumed_from"].endswith("checkpoint-1")


def test_best_by_must_name_a_dev_metric(mined, tmp_path):
    from winnow.train.trainer import TrainConfig, train_reranker

    examples = read_mined(mined["a"])
    with pytest.raises(InvalidArgumentError, match="dev-mined-a_ndcg@10"):
        train_reranker(examples[2:], tmp_path, TrainConfig(best_by="dev-wikiqa_ndcg@10"), dev=examples[:2])
    with pytest.raises(InvalidArgumentError, match="multiple of eval_steps"):
        TrainConfig(best_by="dev-x_ndcg@10", eval_steps=300, save_steps=500)


def test_resume_without_a_checkpoint_is_a_clear_error(mined, tmp_path):
    args = build_parser().parse_args(
        ["train", "reranker", "--train", str(mined["a"]), "-o", str(tmp_path / "new"), "--resume", "--quiet"]
    )
    with pytest.raises(InvalidArgumentError, match="no checkpoint"):
        args.func(args)


def test_fit_fusion_refits_the_mix_on_the_queries_training_held_out(mined, tiny_cross_encoder_path, tmp_path, capsys):
    import dataclasses
    import shutil

    from winnow.train.fusion_fit import GRID
    from winnow.train.trainer import TrainConfig

    model = tmp_path / "model"
    shutil.copytree(tiny_cross_encoder_path, model)
    (model / "training.json").write_text(json.dumps({"config": dataclasses.asdict(TrainConfig()), "name": "t"}))
    argv = ["train", "fit-fusion", str(model), "--dev", str(mined["a"]), "--dev-queries", "4", "--eval-depth", "8"]
    args = build_parser().parse_args(argv)
    assert args.func(args) == 0
    fusion = json.loads((model / "fusion.json").read_text())["first_stages"]["dense"]
    assert fusion["dev_queries"] == 4 and fusion["dev_files"] == [str(mined["a"])]
    assert [float(w) for w in fusion["grid"]] == list(GRID) and fusion["weight_reranker"] in GRID
    # the first stage alone (weight 0) is the mined ranking's own order: the positive mostly first
    assert fusion["dev_ndcg@10"]["first_stage"] == fusion["grid"]["0.0"] > 0.5
    assert "dense weight" in capsys.readouterr().out
    card = (model / "README.md").read_text()
    assert "## Mixing with the first stage" in card and "| dense | " in card

    # each first stage's mix is fitted on that stage's lists only: mined-a holds dense ones
    wrong = build_parser().parse_args([*argv, "--first-stage", "bm25"])
    with pytest.raises(InvalidArgumentError, match="holds dense lists; the bm25 mix is fitted on bm25 lists"):
        wrong.func(wrong)

    too_many = build_parser().parse_args([*argv[:5], "--dev-queries", "99"])
    with pytest.raises(InvalidArgumentError, match="--dev-queries 99 must be between 1 and"):
        too_many.func(too_many)


def test_fit_fusion_fits_a_colbert_models_mix_which_its_rerankers_then_apply(mined, colbert_model_path, tmp_path, capsys):
    import shutil

    from winnow.rerank.colbert import ColBERTReranker
    from winnow.train.cli import _held_out
    from winnow.train.data import read_training_file
    from winnow.train.fusion_fit import dev_lists, fit_weight
    from winnow.types import FirstStage

    model = tmp_path / "colbert"
    shutil.copytree(colbert_model_path, model)
    assert ColBERTReranker(str(model)).mixes is None  # no fusion.json yet: MaxSim alone
    args = build_parser().parse_args(["train", "fit-fusion", str(model), "--dev", str(mined["a"]), "--dev-queries", "4",
                                      "--eval-depth", "8"])
    assert args.func(args) == 0
    fusion = json.loads((model / "fusion.json").read_text())["first_stages"]["dense"]
    # the reference: the same held-out lists scored by MaxSim alone, the same grid
    lists = dev_lists(_held_out(str(mined["a"]), read_training_file(str(mined["a"])), 4, 0), 8)
    plain = ColBERTReranker(str(model), use_mix=False)
    want = fit_weight([plain.raw_scores(q, t) for q, t, _, _ in lists], [f for _, _, f, _ in lists], [r for *_, r in lists])
    assert fusion["weight_reranker"] == want.weight and fusion["dev_queries"] == 4
    assert ColBERTReranker(str(model)).mixes.for_stage(FirstStage.DENSE).weight == want.weight
    assert plain.mixes is None and "dense weight" in capsys.readouterr().out


def test_a_card_tells_the_whole_chain_when_the_base_was_trained_by_winnow(tmp_path):
    import dataclasses

    from winnow.train.card import base_lineage, render
    from winnow.train.trainer import TrainConfig

    cfg = dataclasses.asdict(TrainConfig())
    first = tmp_path / "r1" / "model"
    first.mkdir(parents=True)
    (first / "training.json").write_text(json.dumps({
        "name": "first run", "config": cfg, "train_seconds": 100.0, "steps": 10, "hardware_line": "2 CPU core(s)",
        "command": "winnow train reranker --train a.jsonl", "data_files": [{"path": "a.jsonl", "examples": 5}],
    }))
    assert base_lineage(str(tmp_path)) is None  # not a winnow-trained folder
    card = render({"config": {**cfg, "base_model": str(first)}, "train_seconds": 50.0, "steps": 5,
                   "base_training": base_lineage(str(first))})
    assert 'itself trained by winnow ("first run"' in card and "new one-logit head" not in card
    assert "before that, the base model" in card and "`a.jsonl` (5)" in card
    assert "training time of the whole chain: 150 s" in card


# -- shipping: one int8 ONNX file plus tokenizer, card and fusion -----------------------------------------
def test_ship_packs_an_onnx_only_reranker_that_loads_by_folder(tiny_cross_encoder_path, tmp_path, capsys):
    import shutil

    from winnow.rerank.cross_encoder import CrossEncoderReranker

    trained = tmp_path / "run" / "model"
    shutil.copytree(tiny_cross_encoder_path, trained)
    (trained / "fusion.json").write_text(json.dumps({"method": "zscore", "weight_reranker": 0.6}))
    (trained / "README.md").write_text("# a model card\n")
    target = tmp_path / "shipped" / "tiny-reranker"
    args = build_parser().parse_args(["train", "ship", str(trained), "-o", str(target), "--max-length", "64"])
    assert args.func(args) == 0
    assert "int8 vs torch on check pairs: max |diff|" in capsys.readouterr().out

    manifest = json.loads((target / "winnow-onnx.json").read_text())
    # an untrained head scores every pair nearly alike, so only the size of the difference is checked
    assert manifest["backend"] == "onnx-int8" and manifest["check"]["max_abs_diff_vs_torch"] < 0.05
    assert not any(target.glob("*.safetensors")) and (target / "README.md").is_file()
    size = sum(p.stat().st_size for p in target.iterdir())
    torch_size = sum(p.stat().st_size for p in trained.iterdir())
    assert size < torch_size / 3  # int8 weights, no torch copy

    shipped = CrossEncoderReranker(str(target), cache=False)
    assert shipped.backend == "onnx-int8" and shipped.max_length == 64 and shipped.mixes.for_stage(FirstStage.DENSE).weight == 0.6
    reference = CrossEncoderReranker(str(trained), backend="torch", cache=False, max_length=64)
    texts = ["Paris is the capital of France.", "Cats sleep most of the day.", "France borders Spain."]
    np.testing.assert_allclose(shipped.score("capital of france", texts),
                               reference.score("capital of france", texts), atol=0.1)
    with pytest.raises(InvalidArgumentError, match="ships as onnx-int8 ONNX only; backend 'torch'"):
        _ = CrossEncoderReranker(str(target), backend="torch").backend
    # test-set results from `winnow eval` reports go into the shipped card
    import dataclasses

    from winnow.train.trainer import TrainConfig

    report = {"dataset": "msmarco", "split": "test", "evaluated_queries": 43, "rel": 2, "rerank_depth": 100,
              "reranker": "tiny", "metrics": ["nDCG@10", "RR(rel=2)@10"],
              "methods": [{"method": "dense", "metrics": {"nDCG@10": 0.7977, "RR(rel=2)@10": 0.8225},
                           "latency_ms": {"total": {"p50": 4.5}}},
                          {"method": "dense>rerank", "metrics": {"nDCG@10": 0.8146, "RR(rel=2)@10": 0.874},
                           "latency_ms": {"total": {"p50": 534.1}}}]}
    (tmp_path / "report.json").write_text(json.dumps(report))
    with_report = ["train", "ship", str(trained), "-o", str(target), "--report", str(tmp_path / "report.json")]
    args = build_parser().parse_args(with_report)
    with pytest.raises(InvalidArgumentError, match="has no training.json"):
        args.func(args)
    (trained / "training.json").write_text(json.dumps({"config": dataclasses.asdict(TrainConfig()), "name": "tiny"}))
    assert args.func(args) == 0
    card = (target / "README.md").read_text()
    assert "## Evaluation on test sets" in card and "**msmarco** (test): 43 judged queries" in card
    assert "| dense>rerank | 0.8146 | 0.8740 | 534 |" in card
    assert json.loads((target / "training.json").read_text())["evaluation"][0]["methods"]["dense"]["nDCG@10"] == 0.7977
    (tmp_path / "bad.json").write_text("[]")
    args = build_parser().parse_args([*with_report[:5], "--report", str(tmp_path / "bad.json")])
    with pytest.raises(InvalidArgumentError, match="is not a winnow eval report.json"):
        args.func(args)

    not_a_model = build_parser().parse_args(["train", "ship", str(tmp_path), "-o", str(target)])
    with pytest.raises(InvalidArgumentError, match="not a model folder"):
        not_a_model.func(not_a_model)
    assert (target / "winnow-onnx.json").is_file()  # a failed ship leaves the old folder in place


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["lambda", "listnet", "mnrl"])
def test_listwise_and_contrastive_losses_train(mined, tmp_path, loss):
    """One step of each other loss layout (lists of a query's passages; positive + negative columns)."""
    from winnow.train.trainer import TrainConfig, train_reranker

    examples = read_mined(mined["a"])[:4]
    config = TrainConfig(loss=loss, negatives=2, max_steps=1, batch_size=4, max_length=32, layers=1,
                         logging_steps=1, save_steps=1000, fit_fusion=False)
    result = train_reranker(examples, tmp_path / loss, config, progress=False)
    assert result.steps == 1 and len(result.losses) == 1 and np.isfinite(result.losses[0][1])
    assert result.train_pairs == 4 * 3  # 4 queries x (1 positive + 2 negatives)
    assert (result.model_dir / "README.md").is_file()


def test_calibrate_fits_probabilities_on_held_out_queries_and_ranking_carries_them(mined, tiny_cross_encoder_path, tmp_path, capsys):
    import shutil

    from winnow.rerank.calibration import CalibrationTable, keep_probable
    from winnow.rerank.cross_encoder import CrossEncoderReranker
    from winnow.types import Hit

    model = tmp_path / "model"
    shutil.copytree(tiny_cross_encoder_path, model)
    args = build_parser().parse_args(["train", "calibrate", str(model), "--dev", str(mined["a"]), "--dev-per-file", "8",
                                      "--eval-depth", "8"])
    assert args.func(args) == 0
    payload = json.loads((model / "calibration.json").read_text())
    assert payload["reranker"]["dev_queries"] == 8 and set(payload["first_stages"]) == {"dense"}
    assert payload["reranker"]["method"] in ("platt", "isotonic") and "reranker" in capsys.readouterr().out
    table = CalibrationTable.from_model_dir(model)
    reranker = CrossEncoderReranker(str(model), cache=False)
    hits = [Hit(doc_id=f"d{i}", score=1.0 - i / 10, rank=i + 1, text=p) for i, (_, p) in enumerate(PAIRS[:5])]
    ranking = reranker.rank(PAIRS[0][0], hits)
    for h in ranking.hits:
        assert h.probability == pytest.approx(float(table.reranker.apply([h.rerank_score])[0]), abs=1e-9)
    cut = min(h.probability for h in ranking.hits) + 1e-9
    kept = keep_probable(ranking, cut)
    assert all(h.probability >= cut for h in kept.hits) and len(kept) < 5
    assert kept.rerank_stats == ranking.rerank_stats and kept.rerank_stats.read == 5 and kept.timings_ms == ranking.timings_ms
    with pytest.raises(InvalidArgumentError, match="needs calibrated probabilities"):
        keep_probable(CrossEncoderReranker(str(tiny_cross_encoder_path), cache=False).rank("q", hits), 0.5)


def test_a_model_folder_is_replaced_whole_or_not_at_all(tmp_path):
    """winnow.storage.replacing_folder, which every trainer and `ship` save through: the new folder takes the
    old one's place on success; an error inside leaves the old folder as it was; no temporary folder stays."""
    from winnow.storage import replacing_folder

    target = tmp_path / "model"
    with replacing_folder(target) as tmp:
        (tmp / "weights").write_text("v1")
    assert (target / "weights").read_text() == "v1"
    with pytest.raises(RuntimeError, match="crash while saving"):
        with replacing_folder(target) as tmp:
            (tmp / "weights").write_text("half")
            raise RuntimeError("crash while saving")
    assert (target / "weights").read_text() == "v1"
    with replacing_folder(target) as tmp:
        (tmp / "other").write_text("v2")
    assert sorted(p.name for p in target.iterdir()) == ["other"]  # the old folder's files do not linger
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
