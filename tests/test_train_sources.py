"""Training from every source in ../shared/data/train: the readers of the new format, per-source negatives
(given ones in the pool, no other answer of the same query as a negative), merging the first stages'
negatives per query, length-bucketed batches, bf16 where the CPU has it, and a few real training steps on
a tiny slice of each source whose loss must fall."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from winnow.cli import build_parser
from winnow.errors import CorpusError, InvalidArgumentError
from winnow.train.batches import bucketed_batches, row_lengths
from winnow.train.data import Passage, QueryPositive, TrainingExample, merge_by_query, read_positives, source_name
from winnow.train.mining import MiningConfig, mine_negatives
from winnow.train.precision import Precision, cpu_has_bf16, resolve_precision
from winnow.train.trainer import TrainConfig

TRAIN = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "train"
SOURCES = ("squad_v1_train", "medquad", "nq_qed_train", "selqa_ass", "mediqa2019_qa", "trecqa")


def _write_gz(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in records)
    return path


def test_source_names_and_query_ids_never_collide_across_files(tmp_path):
    assert source_name("x/squad_v1_train/train.jsonl.gz") == "squad_v1_train"
    assert source_name("runs/r6/mined/medquad-dense.jsonl") == "medquad-dense"
    assert source_name("msmarco-dev-small-positives.jsonl") == "msmarco-dev-small-positives"
    a = _write_gz(tmp_path / "a" / "train.jsonl.gz", [{"query": "q one", "positive": "p one", "negatives": ["n1", "p one", "n1"]}])
    b = _write_gz(tmp_path / "b" / "train.jsonl.gz", [{"query": "q two", "positive": "p two"}])
    [pa], [pb] = read_positives(a), read_positives(b)
    assert (pa.qid, pa.source, pa.negatives) == ("a-q1", "a", ("n1",))  # the positive and repeats dropped
    assert (pb.qid, pb.negatives) == ("b-q1", ())
    bad = _write_gz(tmp_path / "c" / "train.jsonl.gz", [{"query": "q", "positive": "p", "negatives": "n"}])
    with pytest.raises(CorpusError, match="line 1.*'negatives' must be a list of strings"):
        read_positives(bad)


def test_sample_is_seeded_and_spread_over_the_file(tmp_path):
    path = _write_gz(tmp_path / "s" / "train.jsonl.gz", [{"query": f"q{i}", "positive": f"p{i}"} for i in range(100)])
    one, again, other = (read_positives(path, sample=10, seed=s) for s in (0, 0, 1))
    assert [p.qid for p in one] == [p.qid for p in again] != [p.qid for p in other]
    assert len(one) == 10 and max(int(p.qid.split("q")[-1]) for p in one) > 20  # not just the first lines
    with pytest.raises(InvalidArgumentError, match="sample must be >= 1"):
        read_positives(path, sample=0)


def test_given_negatives_join_the_pool_and_another_answer_is_never_a_negative(tmp_path):
    # one question answered by two sentences (two lines, as SelQA/TrecQA/MEDIQA give them) and one distractor
    answers = ["Paris is the capital of France.", "The capital of France is Paris, on the Seine."]
    given = "Lyon is the third-largest city of France."
    pairs = [
        QueryPositive("s-q1", "what is the capital of france", answers[0], (answers[1], given), "s"),
        QueryPositive("s-q2", "what is the capital of france", answers[1], (answers[0], given), "s"),
        QueryPositive("s-q3", "how long do cats sleep", "Cats sleep twelve to sixteen hours a day.", (), "s"),
        QueryPositive("s-q4", "how tall is mount everest", "Mount Everest is 8,849 metres tall.", (), "s"),
    ]
    config = MiningConfig(skip_top=0, max_rank=4, negatives=3, relative_margin=None, sampling="top")
    records, report = mine_negatives(pairs, home=tmp_path, config=config)
    assert report.pool == 5  # four positives and the given distractor, each once
    for r in records[:2]:
        negs = [n["text"] for n in r["negatives"]]
        assert given in negs and not set(negs) & set(answers), negs


def test_merging_first_stages_interleaves_their_negatives():
    pos = (Passage("p", "answer"),)
    dense = TrainingExample("q1", "q", pos, (Passage("d1", "a"), Passage("d2", "b")), "src-dense", (Passage("p", "answer", 1.0, 1),))
    bm25 = TrainingExample("q1", "q", pos, (Passage("b1", "c"), Passage("b2", "a"), Passage("b3", "answer")), "src-bm25")
    other = TrainingExample("q2", "r", pos, (Passage("x", "x"),), "src-dense")
    merged = merge_by_query([dense, other, bm25])
    assert [e.qid for e in merged] == ["q1", "q2"]
    m = merged[0]
    assert [n.text for n in m.negatives] == ["a", "c", "b"]  # alternating, repeats and the positive dropped
    assert m.source == "src-dense" and m.ranking == dense.ranking and merged[1] is other


def test_length_buckets_batch_rows_of_similar_length_in_a_seeded_random_order():
    rng = np.random.default_rng(0)
    lengths = rng.integers(20, 800, size=1000).tolist()
    batches = bucketed_batches(lengths, 16, seed=3)
    assert sorted(i for b in batches for i in b) == list(range(1000))  # every row once
    assert bucketed_batches(lengths, 16, seed=3) == batches != bucketed_batches(lengths, 16, seed=4)
    spread = np.mean([max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches])
    random_spread = np.mean([np.ptp(rng.choice(lengths, 16)) for _ in range(200)])
    assert spread < random_spread / 5, (spread, random_spread)
    cols = {"query": ["ab", "abc"], "docs": [["x" * 10, "y" * 50], ["z"]], "labels": [[1, 0], [1]]}
    assert row_lengths(cols, cap=40) == [40, 4]


def test_precision_auto_follows_the_cpu():
    assert resolve_precision(Precision.AUTO, "cpu") == (cpu_has_bf16(), False)
    assert resolve_precision(Precision.FP32, "cpu") == (False, False)
    assert cpu_has_bf16(frozenset({"avx2", "avx512_bf16"})) and not cpu_has_bf16(frozenset({"avx2", "avx512_vnni"}))
    assert TrainConfig(precision="bf16").precision is Precision.BF16
    with pytest.raises(InvalidArgumentError, match="unknown precision 'fp8'; choose one of: auto, bf16, fp32"):
        TrainConfig(precision="fp8")
    with pytest.raises(InvalidArgumentError, match="unknown device 'tpu'"):
        TrainConfig(device="tpu")


@pytest.fixture(scope="module")
def slices(tmp_path_factory):
    """Six lines of every new source (in folders named like the shared ones), mined with the dense first stage."""
    missing = [s for s in SOURCES if not (TRAIN / s / "train.jsonl.gz").is_file()]
    if missing:
        pytest.skip(f"shared training sources not found under {TRAIN}: {', '.join(missing)}")
    root = tmp_path_factory.mktemp("slices")
    mined = []
    for src in SOURCES:
        with gzip.open(TRAIN / src / "train.jsonl.gz", "rt", encoding="utf-8") as fh:
            lines = [json.loads(next(fh)) for _ in range(6)]
        for r in lines:  # keep the slice small and fast: short texts, at most 4 given negatives
            r["positive"] = r["positive"][:300]
            r["negatives"] = [n[:300] for n in r["negatives"][:4]]
        path = _write_gz(root / src / "train.jsonl.gz", lines)
        out = root / "mined" / f"{src}-dense.jsonl"
        argv = ["mine-negatives", str(path), "-o", str(out), "--method", "dense", "--skip-top", "0", "--max-rank", "10",
                "--negatives", "3", "--relative-margin", "-1", "--cache", str(root / "cache"), "--quiet"]
        args = build_parser().parse_args(argv)
        assert args.func(args) == 0
        mined.append(out)
    return mined


def test_training_on_a_slice_of_every_source_lowers_the_loss(slices, tmp_path):
    from winnow.train.data import read_training_file

    for path in slices:
        examples = read_training_file(path)
        assert len(examples) == 6 and examples[0].qid.startswith(path.name.split("-dense")[0] + "-q")
        assert all(e.negatives for e in examples), path  # given or mined: every query has negatives
    out = tmp_path / "run"
    argv = ["train", "reranker", "--train", *map(str, slices), "-o", str(out), "--quiet",
            "--dev-queries", "0", "--dev-per-file", "1", "--loss", "lambda", "--negatives", "3",
            "--layers", "2", "--max-length", "64", "--batch-size", "30", "--lr", "1e-3", "--warmup-ratio", "0",
            "--max-steps", "6", "--logging-steps", "1", "--save-steps", "1000", "--eval-steps", "1000", "--eval-depth", "6"]
    args = build_parser().parse_args(argv)
    assert args.func(args) == 0
    info = json.loads((out / "model" / "training.json").read_text())
    losses = [loss for _, loss in info["losses"]]
    assert info["train_examples"] == 30 and info["dev_queries"] == 6  # one query of every source held out
    assert np.mean(losses[-2:]) < np.mean(losses[:2]), losses
    assert info["precision"] == ("bf16" if cpu_has_bf16() else "fp32")
    card = (out / "model" / "README.md").read_text()
    for needed in ("SQuAD v1.1 train", "CC BY-SA 4.0", "MedQuAD", "SelQA", "shared under the same terms"):
        assert needed in card, needed
    fusion = json.loads((out / "model" / "fusion.json").read_text())
    assert set(fusion["first_stages"]) == {"dense"}  # the dev lists are dense ones: that mix, no other
