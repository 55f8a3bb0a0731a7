"""Distilling winnow's reranker into the bi-encoder: sentence-transformers' ``SentenceTransformerTrainer``
with its ``MarginMSELoss`` (Hofstätter et al. 2020).

Rows are (query, positive, negative_1..n) with the teacher's raw scores ``[t(q, pos), t(q, neg_1), ...]``
as the label; the loss is the MSE between the student's margins ``scale * (cos(q, pos) - cos(q, neg_i))``
and the teacher's ``t(q, pos) - t(q, neg_i)``. ``scale`` puts cosines (margins of at most 2) on the
teacher's logit scale (margins of several units); it does not change how the student ranks. Negatives are
the mined ones (high bi-encoder score) that the teacher scores well below the positive
(:func:`winnow.train.teacher.drop_false_negatives`): the seeds' recipe. ``in_batch_weight`` > 0 adds
sentence-transformers' ``MultipleNegativesRankingLoss`` over the same embeddings (the positive against every
passage of the batch, hard negatives included: the loss all-MiniLM-L6-v2 was trained with), which keeps the
base's geometry while the margins move it (:class:`MarginMSEWithInBatch`).

Run folder: ``<output>/checkpoints`` (the trainer's; ``resume=True`` continues from the last one),
``<output>/model`` (a sentence-transformers folder that :class:`winnow.encode.bi_encoder.BiEncoder`
loads), with ``training.json`` and ``README.md``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from winnow.errors import InvalidArgumentError
from winnow.train.config_rules import check_rules, config_json
from winnow.train.data import TrainingExample
from winnow.train.precision import Precision, check_precision_and_device
from winnow.train.teacher import DistillExample


@dataclass(frozen=True)
class BiEncoderDistillConfig:
    base_model: str = "all-MiniLM-L6-v2"
    negatives: int = 3
    scale: float = 10.0
    in_batch_weight: float = 0.0
    in_batch_scale: float = 20.0
    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 16
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    max_length: int = 256
    save_steps: int = 50
    save_total_limit: int = 2
    logging_steps: int = 10
    eval_depth: int = 20
    seed: int = 0
    precision: Precision = Precision.AUTO
    device: str = "auto"

    def __post_init__(self) -> None:
        check_precision_and_device(self)
        check_rules(self, [
            ("negatives", self.negatives >= 1, ">= 1"),
            ("scale", self.scale > 0, "> 0"),
            ("in_batch_weight", self.in_batch_weight >= 0, ">= 0"),
            ("in_batch_scale", self.in_batch_scale > 0, "> 0"),
            ("batch_size", self.batch_size >= 1, ">= 1"),
            ("learning_rate", self.learning_rate > 0, "> 0"),
            ("max_length", self.max_length >= 16, ">= 16"),
            ("save_steps", self.save_steps >= 1, ">= 1"),
            ("eval_depth", self.eval_depth >= 2, ">= 2"),
        ])

    def to_json(self) -> dict:
        return config_json(self)


@dataclass(frozen=True)
class BiEncoderDistillResult:
    model_dir: Path
    steps: int
    rows: int
    seconds: float
    losses: tuple[tuple[int, float], ...]
    dev_before: Mapping[str, Any] = field(default_factory=dict)
    dev_after: Mapping[str, Any] = field(default_factory=dict)


class ScaledCosine:
    """``scale * cos(a_i, b_i)``: the student's similarity as MarginMSE compares it (a class, not a lambda,
    so the loss stays picklable for the trainer's worker processes)."""

    def __init__(self, scale: float) -> None:
        self.scale = scale

    def __call__(self, a, b):
        from sentence_transformers.util import pairwise_cos_sim

        return self.scale * pairwise_cos_sim(a, b)


def distill_loss(model, config: BiEncoderDistillConfig):
    """MarginMSE alone, or with the in-batch term (one encoding of each column serves both)."""
    import torch
    from sentence_transformers.sentence_transformer.losses import MarginMSELoss, MultipleNegativesRankingLoss

    margin = MarginMSELoss(model, similarity_fct=ScaledCosine(config.scale))
    if config.in_batch_weight == 0:
        return margin

    class MarginMSEWithInBatch(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.margin = margin
            self.in_batch = MultipleNegativesRankingLoss(model, scale=config.in_batch_scale)

        def forward(self, sentence_features, labels):
            embeddings = [self.model(f)["sentence_embedding"] for f in sentence_features]
            return (self.margin.compute_loss_from_embeddings(embeddings, labels)
                    + config.in_batch_weight * self.in_batch.compute_loss_from_embeddings(embeddings, labels))

    return MarginMSEWithInBatch()


def margin_rows(examples: Sequence[DistillExample], negatives: int) -> dict[str, list]:
    """Columns for MarginMSELoss: query, positive, negative_1..n, label ([t_pos, t_neg_1..n]); examples with
    fewer than ``negatives`` negatives are left out."""
    cols: dict[str, list] = {"query": [], "positive": [], **{f"negative_{i + 1}": [] for i in range(negatives)}, "label": []}
    for e in examples:
        if len(e.texts) < 1 + negatives:
            continue
        cols["query"].append(e.query)
        cols["positive"].append(e.texts[0])
        for i in range(negatives):
            cols[f"negative_{i + 1}"].append(e.texts[1 + i])
        cols["label"].append([float(x) for x in e.teacher[: 1 + negatives]])
    return cols


def _dev(model, dev: Sequence[TrainingExample], depth: int):
    if not dev:
        return None
    from winnow.train.dev_eval import rerank_dev

    def score(query, texts):
        q = model.encode([query], normalize_embeddings=True, convert_to_numpy=True)
        d = model.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True, batch_size=32)
        return (d @ q[0]).astype("float32")

    return rerank_dev(dev, score, depth=depth).to_json()


def train_bi_encoder(
    examples: Sequence[DistillExample],
    output_dir: str | Path,
    config: BiEncoderDistillConfig = BiEncoderDistillConfig(),
    *,
    dev: Sequence[TrainingExample] = (),
    resume: bool = False,
    progress: bool = True,
    card: Mapping[str, Any] | None = None,
) -> BiEncoderDistillResult:
    import torch
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from transformers import set_seed

    from winnow.models.resolve import resolve_model
    from winnow.storage import replacing_folder, write_json_atomic, write_text_atomic
    from winnow.train.card import describe_hardware, hardware_line, versions
    from winnow.train.precision import resolve_precision
    from winnow.train.trainer import last_checkpoint

    output_dir = Path(output_dir)
    columns = margin_rows(examples, config.negatives)
    n_rows = len(columns["query"])
    if n_rows == 0:
        raise InvalidArgumentError(f"no rows with {config.negatives} negatives from {len(examples)} examples; lower --negatives")
    checkpoint = last_checkpoint(output_dir) if resume else None
    if resume and checkpoint is None:
        raise InvalidArgumentError(f"--resume: no checkpoint in {output_dir / 'checkpoints'}; start without --resume")
    set_seed(config.seed)
    model = SentenceTransformer(str(resolve_model(config.base_model).path), local_files_only=True)
    model.max_seq_length = config.max_length
    if config.device == "cuda" and not torch.cuda.is_available():
        raise InvalidArgumentError("device cuda: no CUDA GPU is visible to torch; use --device cpu or auto")
    cuda = config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
    bf16, fp16 = resolve_precision(config.precision, "cuda" if cuda else "cpu")
    dev_before = _dev(model, dev, config.eval_depth) if checkpoint is None else None
    args = SentenceTransformerTrainingArguments(
        output_dir=str(output_dir / "checkpoints"),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        warmup_ratio=config.warmup_ratio,
        bf16=bf16,
        fp16=fp16,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        logging_steps=config.logging_steps,
        logging_first_step=True,
        seed=config.seed,
        data_seed=config.seed,
        dataloader_num_workers=0,
        report_to="none",
        disable_tqdm=not progress,
        use_cpu=not cuda,
    )
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=Dataset.from_dict(columns),
        loss=distill_loss(model, config),
    )
    if not progress:
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    seconds = time.perf_counter() - start
    losses = tuple((int(h["step"]), float(h["loss"])) for h in trainer.state.log_history if "loss" in h)
    steps = int(trainer.state.global_step)
    dev_after = _dev(model, dev, config.eval_depth)

    model_dir = output_dir / "model"
    hw = describe_hardware()
    info = {
        "name": "winnow bi-encoder (distilled)", **(dict(card) if card else {}),
        "config": config.to_json(), "loss_class": "MarginMSELoss" + (" + MultipleNegativesRankingLoss" if config.in_batch_weight else ""), "rows": n_rows, "steps": steps,
        "resumed_from": str(checkpoint) if checkpoint else None, "train_seconds": round(seconds, 1),
        "precision": "bf16" if bf16 else "fp16" if fp16 else "fp32", "device": "cuda" if cuda else "cpu",
        "losses": [list(x) for x in losses], "dev_before": dev_before, "dev_after": dev_after,
        "hardware": hw, "hardware_line": hardware_line(hw), "versions": versions(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    with replacing_folder(model_dir) as tmp:
        model.save(str(tmp))
        write_json_atomic(tmp / "training.json", info)
        write_text_atomic(tmp / "README.md", _card(info))
    return BiEncoderDistillResult(model_dir, steps, n_rows, seconds, losses, dev_before or {}, dev_after or {})


def _card(info: Mapping[str, Any]) -> str:
    c = info["config"]
    lines = [f"# {info['name']}", "",
             f"`{c['base_model']}` distilled from winnow's reranker with MarginMSE (scale {c['scale']}, "
             f"{c['negatives']} teacher-filtered hard negatives a query), {info['steps']} steps x {c['batch_size']}, "
             f"lr {c['learning_rate']}, {info['precision']} on {info['device']}, {info['train_seconds']} s.", ""]
    for label, key in (("before", "dev_before"), ("after", "dev_after")):
        d = info.get(key)
        if d:
            lines.append(f"- dev nDCG@10 {label}: {d['model_ndcg@10']} (mined first stage {d['first_stage_ndcg@10']}, {d['queries']} queries)")
    if info.get("command"):
        lines += ["", "```", info["command"], "```"]
    return "\n".join(lines) + "\n"
