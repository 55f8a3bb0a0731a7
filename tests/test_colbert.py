"""ColBERT (late interaction) and distillation: the model's inputs, MaxSim on hand-built matrices, teacher
scores, and a few real training steps on 16 queries (the bundled MiniLM, the shipped reranker as teacher,
short texts). No full training runs here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from test_train import PAIRS
from winnow.errors import InvalidArgumentError
from winnow.train.data import Passage, TrainingExample, passage_id
from winnow.train.dev_eval import ndcg_at_10, rerank_dev
from winnow.train.teacher import DistillExample, drop_false_negatives, score_examples

torch = pytest.importorskip("torch")


def _examples() -> list[TrainingExample]:
    """Each question, its answer, three other facts as negatives; a 'first stage' list with a negative on top."""
    out = []
    for i, (q, p) in enumerate(PAIRS):
        negs = [PAIRS[(i + j) % len(PAIRS)][1] for j in (1, 2, 5)]
        ranking = tuple(Passage(passage_id(t), t) for t in [negs[0], p, negs[1], negs[2]])
        out.append(TrainingExample(f"q{i}", q, (Passage(passage_id(p), p),),
                                   tuple(Passage(passage_id(t), t) for t in negs), "toy", ranking))
    return out


@pytest.fixture(scope="module")
def teacher():
    from winnow.train.teacher import teacher_reranker

    return teacher_reranker()


@pytest.fixture(scope="module")
def scored(teacher, tmp_path_factory):
    return score_examples(_examples(), teacher.raw_scores, negatives=3, cache=tmp_path_factory.mktemp("teacher"), chunk=5)


# -- MaxSim with known answers ----------------------------------------------------------------------
def test_maxsim_hand_built():
    from winnow.encode.colbert_torch import maxsim_scores, paired_maxsim

    q = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # two query tokens: e1, e2
    d = torch.tensor([
        [[1.0, 0.0], [0.6, 0.8], [0.0, 0.0]],  # best for e1: 1.0, for e2: 0.8 -> 1.8 (third row is padding)
        [[0.0, -1.0], [0.0, 0.0], [0.0, 0.0]],  # e1: 0.0, e2: -1.0 -> -1.0 (only one real token)
    ])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert maxsim_scores(q, d, mask)[0].tolist() == pytest.approx([1.8, -1.0])
    assert paired_maxsim(q, d, mask, 2)[0].tolist() == pytest.approx([1.8, -1.0])


# -- the model's inputs ------------------------------------------------------------------------------
def test_query_and_document_markers_and_mask_padding():
    from transformers import AutoTokenizer

    from winnow.encode.colbert import ColBERTConfig, tokenize_documents, tokenize_queries
    from winnow.models.resolve import resolve_model

    tok = AutoTokenizer.from_pretrained(str(resolve_model("all-MiniLM-L6-v2").path), local_files_only=True)
    cfg = ColBERTConfig(query_length=12, document_length=10)
    q = tokenize_queries(tok, ["capital of france", "one two three four five six seven eight nine ten eleven"], cfg)
    assert q.input_ids.shape == (2, 12) and q.attention_mask.all() and q.keep.all()
    first = tok.convert_ids_to_tokens(q.input_ids[0].tolist())
    assert first[:2] == ["[CLS]", "[unused0]"] and first[2:6] == ["capital", "of", "france", "[SEP]"]
    assert set(first[6:]) == {"[MASK]"}
    assert tok.convert_ids_to_tokens(q.input_ids[1].tolist())[-1] == "[SEP]"  # cut, and still closed
    d = tokenize_documents(tok, ["paris", "one two three four five six seven eight nine ten eleven"], cfg)
    assert d.input_ids.shape == (2, 10)
    assert tok.convert_ids_to_tokens(d.input_ids[0, :4].tolist()) == ["[CLS]", "[unused1]", "paris", "[SEP]"]
    assert d.keep[0].sum() == 4 and d.keep[1].all()
    with pytest.raises(InvalidArgumentError, match="96, 128"):
        ColBERTConfig(dim=64)


# -- teacher and dev ----------------------------------------------------------------------------------
def test_teacher_scores_positive_first_and_chunks_are_reused(scored, tmp_path):
    assert len(scored) == 16 and all(len(e.texts) == 4 and e.texts[0] == PAIRS[int(e.qid[1:])][1] for e in scored)
    mean_pos = np.mean([e.teacher[0] for e in scored])
    mean_neg = np.mean([x for e in scored for x in e.teacher[1:]])
    assert mean_pos > mean_neg + 3  # the shipped reranker knows the answers to these
    cache = tmp_path / "t"
    calls = []

    def counting(q, texts):
        calls.append(q)
        return np.arange(len(texts), dtype=np.float32)

    first = score_examples(_examples(), counting, negatives=2, cache=cache, chunk=6)
    n = len(calls)
    again = score_examples(_examples(), counting, negatives=2, cache=cache, chunk=6)
    assert n == 16 and len(calls) == 16 and again == first  # nothing scored twice
    with pytest.raises(InvalidArgumentError, match="other queries"):
        score_examples(_examples()[::-1], counting, negatives=2, cache=cache, chunk=6)
    with pytest.raises(InvalidArgumentError, match="number of negatives"):
        score_examples(_examples(), counting, negatives=3, cache=cache, chunk=6)


def test_drop_false_negatives_keeps_only_far_below():
    e = DistillExample("q", "query", ("pos", "a", "b", "c"), (5.0, 4.5, 1.0, 6.0))
    assert drop_false_negatives([e], margin=1.0) == [DistillExample("q", "query", ("pos", "b"), (5.0, 1.0))]
    assert drop_false_negatives([e], margin=10.0) == []


def test_ndcg_and_rerank_dev():
    assert ndcg_at_10(["a", "b"], {"a"}) == 1.0
    assert ndcg_at_10(["b", "a"], {"a"}) == pytest.approx(1 / np.log2(3))
    examples = _examples()
    answer = dict(PAIRS)
    report = rerank_dev(examples, lambda q, texts: np.asarray([float(t == answer[q]) for t in texts]))
    assert report.queries == 16 and report.first_stage == pytest.approx(1 / np.log2(3)) and report.model == 1.0


# -- training -----------------------------------------------------------------------------------------
def _config(**kw):
    from winnow.train.colbert import ColBERTTrainConfig

    base = dict(max_steps=4, batch_size=8, learning_rate=1e-4, save_steps=2, logging_steps=1,
                query_length=16, document_length=32, eval_depth=4, precision="fp32")
    return ColBERTTrainConfig(**{**base, **kw})


def test_train_colbert_loss_falls_model_round_trips_and_resume_is_exact(scored, tmp_path):
    from winnow.encode.colbert import ColBERTEncoder
    from winnow.train.colbert import train_colbert

    run = tmp_path / "run"
    result = train_colbert(scored, run, _config(), dev=_examples(), progress=False)
    losses = [loss for _, loss in result.losses]
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert result.dev_after["model_ndcg@10"] >= result.dev_before["model_ndcg@10"]
    info = json.loads((run / "model" / "training.json").read_text())
    assert info["steps"] == 4 and info["dev_after"] and (run / "model" / "README.md").is_file()

    enc = ColBERTEncoder(run / "model")
    qv = enc.encode_queries([PAIRS[0][0]])[0]
    dv = enc.encode_documents([PAIRS[0][1], "x"])
    assert qv.shape == (16, 96) and dv[1].shape == (4, 96)  # [CLS] [D] x [SEP]
    assert np.allclose(np.linalg.norm(dv[0], axis=1), 1.0, atol=1e-5)
    # the same text alone or in a batch encodes the same (padding never leaks in)
    assert np.allclose(enc.encode_documents([PAIRS[0][1]])[0], dv[0], atol=1e-5)

    # a crash after checkpoint 2: resuming replays steps 3-4 and ends on the same weights
    final = np.load(run / "model" / "projection.npy")
    shutil.rmtree(run / "checkpoints" / "checkpoint-4")
    shutil.rmtree(run / "model")
    again = train_colbert(scored, run, _config(), dev=(), resume=True, progress=False)
    assert again.steps == 4
    assert np.allclose(np.load(run / "model" / "projection.npy"), final, atol=1e-6)
    with pytest.raises(InvalidArgumentError, match="dim"):
        train_colbert(scored, run, _config(dim=128), resume=True, progress=False)


def test_margin_mse_trains_and_config_errors_name_choices(scored, tmp_path):
    from winnow.train.colbert import ColBERTTrainConfig, train_colbert

    result = train_colbert(scored, tmp_path / "m", _config(loss="margin-mse", in_batch_weight=0.0, max_steps=3, save_steps=3),
                           progress=False)
    assert result.losses[-1][1] < result.losses[0][1]
    with pytest.raises(InvalidArgumentError, match="kl, margin-mse"):
        ColBERTTrainConfig(loss="hinge")
    with pytest.raises(InvalidArgumentError, match="no checkpoint"):
        train_colbert(scored, tmp_path / "empty", _config(), resume=True, progress=False)


def test_distill_bi_encoder_margin_mse(scored, tmp_path):
    from winnow.train.distill import BiEncoderDistillConfig, margin_rows, train_bi_encoder

    cols = margin_rows(scored, 2)
    assert list(cols) == ["query", "positive", "negative_1", "negative_2", "label"] and len(cols["label"][0]) == 3
    config = BiEncoderDistillConfig(max_steps=4, batch_size=8, negatives=2, learning_rate=1e-4, save_steps=2,
                                    logging_steps=1, max_length=64, eval_depth=4, precision="fp32")
    result = train_bi_encoder(scored, tmp_path / "bi", config, dev=_examples(), progress=False)
    assert result.steps == 4 and result.losses[-1][1] < result.losses[0][1]
    from winnow.encode.bi_encoder import BiEncoder

    vectors = BiEncoder(str(result.model_dir)).encode_documents([PAIRS[0][1]])
    assert vectors.shape == (1, 384)


def test_the_in_batch_term_adds_sentence_transformers_own_mnrl_to_margin_mse(scored):
    """``in_batch_weight`` w: the loss is MarginMSE + w x MultipleNegativesRankingLoss, each as
    sentence-transformers computes it alone, from one encoding of each column."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MarginMSELoss, MultipleNegativesRankingLoss

    from winnow.models.resolve import resolve_model
    from winnow.train.distill import BiEncoderDistillConfig, ScaledCosine, distill_loss, margin_rows

    model = SentenceTransformer(str(resolve_model("all-MiniLM-L6-v2").path), local_files_only=True).eval()
    cols = margin_rows(scored, 2)
    features = [model.tokenize(cols[c][:4]) for c in ("query", "positive", "negative_1", "negative_2")]
    labels = torch.tensor(cols["label"][:4])
    config = BiEncoderDistillConfig(negatives=2, in_batch_weight=0.5, in_batch_scale=20.0)
    with torch.no_grad():
        got = distill_loss(model, config)(features, labels)
        margin = MarginMSELoss(model, similarity_fct=ScaledCosine(config.scale))(features, labels)
        mnrl = MultipleNegativesRankingLoss(model, scale=20.0)(features, labels)
        alone = distill_loss(model, BiEncoderDistillConfig(negatives=2))(features, labels)
    assert float(got) == pytest.approx(float(margin) + 0.5 * float(mnrl), rel=1e-5)
    assert float(alone) == pytest.approx(float(margin), rel=1e-6) and float(mnrl) > 0
    with pytest.raises(InvalidArgumentError, match="in_batch_weight must be >= 0"):
        BiEncoderDistillConfig(in_batch_weight=-1)


def test_distill_a_small_reranker_regresses_the_teachers_logits(scored, tmp_path):
    """MSE on the teacher's raw logits: after 30 steps the 2-layer student's logits follow the teacher's
    (correlation over the pairs it trained on, far above the untrained student's); mined (unscored)
    examples are refused. (30 small Adam steps cannot move a fresh head's bias to the teacher's offset, so
    the test reads the correlation; the real recipe starts from the teacher's own layers.)"""
    from winnow.rerank.cross_encoder import CrossEncoderReranker
    from winnow.train.teacher import teacher_pairs
    from winnow.train.trainer import TrainConfig, train_reranker

    cols = teacher_pairs(scored)
    assert len(cols["query"]) == 16 * 4 and cols["label"][:4] == list(scored[0].teacher)
    config = TrainConfig(loss="mse", max_steps=30, batch_size=16, max_length=64, layers=2, learning_rate=1e-3,
                         warmup_ratio=0.0, logging_steps=1, save_steps=1000, fit_fusion=False, precision="fp32")

    teacher = np.concatenate([e.teacher for e in scored])

    def agreement(model_dir) -> float:
        r = CrossEncoderReranker(str(model_dir), cache=False, use_mix=False, backend="torch")
        student = np.concatenate([r.raw_scores(e.query, list(e.texts)) for e in scored])
        return float(np.corrcoef(student, teacher)[0, 1])

    from winnow.train.base_model import load_base

    load_base(config).save(str(tmp_path / "untrained"))  # the student before training: the base, cut, a new head
    result = train_reranker(scored, tmp_path / "student", config, progress=False)
    assert result.steps == 30 and result.train_pairs == 64
    before, after = agreement(tmp_path / "untrained"), agreement(result.model_dir)
    assert after > 0.35 and after > before + 0.3  # measured: 0.02 -> 0.48
    info = json.loads((result.model_dir / "training.json").read_text())
    assert info["loss_class"] == "MSELoss" and info["name"] == "winnow reranker (distilled)"
    with pytest.raises(InvalidArgumentError, match="teacher-scored examples"):
        train_reranker(_examples(), tmp_path / "wrong", config, progress=False)
    with pytest.raises(InvalidArgumentError, match="mined training examples"):
        train_reranker(scored, tmp_path / "wrong2", TrainConfig(loss="bce", max_steps=1), progress=False)


def test_cli_registers_the_subcommands():
    from winnow.cli import build_parser

    args = build_parser().parse_args(["train", "colbert", "--train", "x.jsonl", "-o", "out", "--dim", "128"])
    assert args.dim == 128 and args.func.__name__ == "cmd_train_colbert"
    args = build_parser().parse_args(["train", "bi-encoder", "--train", "x.jsonl", "-o", "out"])
    assert args.func.__name__ == "cmd_train_bi_encoder"
    args = build_parser().parse_args(["train", "small-reranker", "--train", "x.jsonl", "-o", "out"])
    assert args.func.__name__ == "cmd_train_small_reranker" and args.layers == 3 and args.max_length == 192


def test_ship_colbert_int8_onnx_matches_torch_and_reranks(tmp_path):
    from transformers import AutoTokenizer

    from winnow.encode.colbert import ColBERTConfig, ColBERTEncoder, build_module, save_model
    from winnow.models.resolve import resolve_model
    from winnow.rerank.colbert import ColBERTReranker
    from winnow.train.ship_colbert import ship_colbert

    base = resolve_model("all-MiniLM-L6-v2").path
    config = ColBERTConfig(query_length=16, document_length=64)
    save_model(build_module(base, config, seed=0), AutoTokenizer.from_pretrained(str(base), local_files_only=True),
               config, tmp_path / "model")
    shipped = ship_colbert(tmp_path / "model", tmp_path / "shipped")
    assert shipped.same_order and shipped.min_cosine > 0.9
    assert not (tmp_path / "shipped" / "model.safetensors").exists() and shipped.size_bytes < 40e6
    onnx = ColBERTEncoder(tmp_path / "shipped")
    assert onnx.backend == "onnx"
    with pytest.raises(InvalidArgumentError, match="no torch weights"):
        ColBERTEncoder(tmp_path / "shipped", backend="torch")
    reranker = ColBERTReranker(str(tmp_path / "shipped"))
    texts = [PAIRS[1][1], PAIRS[0][1]]
    scores = reranker.score(PAIRS[0][0], texts)
    assert scores.shape == (2,) and scores[1] > scores[0]  # Paris over Berlin, even untrained
    from winnow.types import Hit

    ranking = reranker.rank(PAIRS[0][0], [Hit(f"d{i}", 1.0 - i, i + 1, text=t) for i, t in enumerate(texts)])
    assert [h.doc_id for h in ranking.hits] == ["d1", "d0"] and ranking.hits[0].first_stage_rank == 2


def test_cli_train_colbert_end_to_end(tmp_path, capsys):
    """The command as scripts/train_colbert.sh calls it, on a tiny mined file: held-out dev queries never
    trained on, teacher chunks written, a model at the end, --resume refused without a checkpoint."""
    from winnow.cli import main

    mined = tmp_path / "toy-dense.jsonl"
    with mined.open("w", encoding="utf-8") as f:
        for e in _examples():
            p = e.positives[0]
            f.write(json.dumps({"qid": e.qid, "query": e.query, "positive": {"id": p.id, "text": p.text, "score": 1.0, "rank": 2},
                                "negatives": [{"id": n.id, "text": n.text, "score": 0.5, "rank": 3} for n in e.negatives],
                                "ranking": [[h.id, 1.0 - i / 10] for i, h in enumerate(e.ranking)]}) + "\n")
    out = tmp_path / "run"
    common = ["train", "colbert", "--train", str(mined), "-o", str(out), "--dev-per-file", "4", "--batch-size", "4",
              "--query-length", "16", "--document-length", "32", "--save-steps", "2", "--eval-depth", "4", "-q"]
    assert main([*common, "--max-steps", "2", "--resume"]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert main([*common, "--max-steps", "2", "--precision", "fp32"]) == 0
    info = json.loads((out / "model" / "training.json").read_text())
    assert info["teacher_examples"] == 12 and info["dev_after"]["queries"] == 4 and "winnow train colbert" in info["command"]
    scored = [json.loads(line)["qid"] for p in sorted((out / "teacher").glob("part-*.jsonl")) for line in p.read_text().splitlines()]
    held_out = {f"q{i}" for i in range(16)} - set(scored)
    assert len(held_out) == 4  # the dev queries: never scored for training
    assert "model:" in capsys.readouterr().out
    # the same held-out queries fit its mix with the dense score; the ColBERT card then shows it, and the
    # shipped form carries both
    assert main(["train", "fit-fusion", str(out / "model"), "--dev", str(mined), "--dev-per-file", "4", "--eval-depth", "4"]) == 0
    assert "## Mixing with the first stage" in (out / "model" / "README.md").read_text()
    assert json.loads((out / "model" / "training.json").read_text())["fusion"]["first_stages"]["dense"]["dev_queries"] == 4
    assert main(["train", "ship-colbert", str(out / "model"), "-o", str(tmp_path / "shipped")]) == 0
    card = (tmp_path / "shipped" / "README.md").read_text()
    assert "shipped form" in card and "docs/s of token vectors" in card and (tmp_path / "shipped" / "fusion.json").is_file()


def test_importing_the_late_interaction_modules_loads_no_heavy_library():
    import subprocess
    import sys

    mods = ("winnow.encode.colbert", "winnow.index.residual", "winnow.index.multivector", "winnow.rerank.colbert",
            "winnow.train.colbert", "winnow.train.distill", "winnow.train.teacher", "winnow.train.ship_colbert",
            "winnow.train.cli_late")
    heavy = ("torch", "transformers", "onnxruntime", "sentence_transformers", "faiss", "datasets")
    code = f"import sys\nfor m in {mods!r}: __import__(m)\nprint([m for m in {heavy!r} if m in sys.modules])"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_late_interaction_table_script_on_a_tiny_beir_set(tmp_path):
    """scripts/late_interaction_table.py end to end on 16 passages (an untrained ColBERT): every row there,
    the bytes a token as the compression says, brute-force-sized search finding the known answers."""
    import importlib.util

    from transformers import AutoTokenizer

    from winnow.encode.colbert import ColBERTConfig, build_module, save_model
    from winnow.models.resolve import resolve_model

    data = tmp_path / "tiny"
    (data / "qrels").mkdir(parents=True)
    with (data / "corpus.jsonl").open("w") as f:
        for i, (_, p) in enumerate(PAIRS):
            f.write(json.dumps({"_id": f"d{i}", "title": "", "text": p}) + "\n")
    with (data / "queries.jsonl").open("w") as f:
        for i, (q, _) in enumerate(PAIRS[:4]):
            f.write(json.dumps({"_id": f"q{i}", "text": q}) + "\n")
    (data / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(4)))
    base = resolve_model("all-MiniLM-L6-v2").path
    config = ColBERTConfig(query_length=16, document_length=64)
    save_model(build_module(base, config, seed=0), AutoTokenizer.from_pretrained(str(base), local_files_only=True),
               config, tmp_path / "colbert")
    spec = importlib.util.spec_from_file_location("table", Path(__file__).resolve().parents[1] / "scripts" / "late_interaction_table.py")
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    out = tmp_path / "table.json"
    assert table.main([str(data), "--colbert", str(tmp_path / "colbert"), "--skip", "maxsim", "cross-encoder",
                       "--depth", "10", "--candidates", "16", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 2 + 8  # mean + CLS, 4 compressions x (first stage, reranker)
    assert {r["bytes_per_token"] for r in rows if "residual-2" in r["representation"]} == {26}
    assert all(0 <= r["nDCG@10"] <= 1 for r in rows) and rows[0]["nDCG@10"] > 0.9  # dense finds these answers
