"""Fine-tuning a cross-encoder reranker with sentence-transformers' ``CrossEncoderTrainer``.

Layout of a run folder::

    <output>/checkpoints/checkpoint-N/   trainer checkpoints (resume with ``resume=True``)
    <output>/model/                      the final weights, README.md (model card), training.json,
                                         fusion.json (the fitted mix with the first stage, when fitted)

Losses come from a small table (:data:`LOSSES`); each names the column layout it reads
(:func:`winnow.train.data.rows`).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from winnow.errors import InvalidArgumentError, MissingDependencyError
from winnow.train.base_model import POOLER_INITS, load_base
from winnow.train.config_rules import check_rules
from winnow.train.data import TrainingExample, rows, to_dataset
from winnow.train.precision import Precision, check_precision_and_device, resolve_precision
from winnow.train.teacher import DistillExample, teacher_pairs
from winnow.types import FirstStage

log = logging.getLogger(__name__)

# name -> (column layout, loss class in sentence_transformers.cross_encoder.losses, what it optimises)
LOSSES: dict[str, tuple[str, str, str]] = {
    "bce": ("pairs", "BinaryCrossEntropyLoss", "pointwise: binary cross-entropy on labelled pairs"),
    "lambda": ("list", "LambdaLoss", "listwise: LambdaLoss (NDCG-Loss2++ weights) over a query's list"),
    "listnet": ("list", "ListNetLoss", "listwise: cross-entropy between score and label distributions"),
    "ranknet": ("list", "RankNetLoss", "pairwise: RankNet over every (positive, negative) pair of a list"),
    "mnrl": ("tuple", "MultipleNegativesRankingLoss", "contrastive: positive vs hard + in-batch negatives"),
    "cmnrl": ("tuple", "CachedMultipleNegativesRankingLoss", "mnrl with gradient caching (larger batches)"),
    "mse": ("teacher", "MSELoss", "distillation: each pair's logit regresses the teacher's (pointwise MSE)"),
}


@dataclass(frozen=True)
class TrainConfig:
    base_model: str = "all-MiniLM-L6-v2"
    loss: str = "bce"
    negatives: int = 4
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = 16
    learning_rate: float = 3e-5
    warmup_ratio: float = 0.1
    max_length: int = 256
    layers: int | None = None  # keep only the base model's first N transformer layers
    pooler_init: str = "auto"  # auto | identity | keep (see load_base)
    eval_steps: int = 500
    save_steps: int = 500
    save_total_limit: int = 2
    logging_steps: int = 50
    eval_depth: int = 30  # first-stage candidates per dev query
    best_by: str | None = None  # a dev metric (e.g. "dev-wikiqa_ndcg@10"): keep the best checkpoint, not the last
    seed: int = 0
    fit_fusion: bool = True
    precision: Precision = Precision.AUTO
    device: str = "auto"  # auto (cuda when available) | cpu | cuda
    length_buckets: bool = True  # batch rows of similar length together (winnow.train.batches)

    def __post_init__(self) -> None:
        check_precision_and_device(self)
        if self.loss not in LOSSES:
            raise InvalidArgumentError(f"unknown loss {self.loss!r}; choose one of: {', '.join(LOSSES)}")
        checks = [
            ("negatives", self.negatives >= 0, ">= 0"),
            ("epochs", self.epochs > 0, "> 0"),
            ("batch_size", self.batch_size >= 1, ">= 1"),
            ("learning_rate", self.learning_rate > 0, "> 0"),
            ("warmup_ratio", 0 <= self.warmup_ratio < 1, "in [0, 1)"),
            ("max_length", self.max_length >= 16, ">= 16"),
            ("layers", self.layers is None or self.layers >= 1, ">= 1"),
            ("eval_steps", self.eval_steps >= 1, ">= 1"),
            ("save_steps", self.save_steps >= 1, ">= 1"),
            ("logging_steps", self.logging_steps >= 1, ">= 1"),
            ("eval_depth", self.eval_depth >= 2, ">= 2"),
            ("pooler_init", self.pooler_init in POOLER_INITS, f"one of {', '.join(POOLER_INITS)}"),
        ]
        check_rules(self, checks)
        if self.best_by is not None and self.save_steps % self.eval_steps:
            raise InvalidArgumentError(
                f"best_by needs save_steps to be a multiple of eval_steps, got {self.save_steps} and {self.eval_steps}"
            )
        if LOSSES[self.loss][0] == "list" and self.negatives < 1:
            raise InvalidArgumentError(f"loss {self.loss!r} ranks a list: give negatives >= 1, got {self.negatives}")


@dataclass(frozen=True)
class TrainResult:
    model_dir: Path
    steps: int
    train_rows: int
    train_pairs: int
    seconds: float
    losses: tuple[tuple[int, float], ...]  # (step, training loss) as logged
    dev_metrics: Mapping[str, float] = field(default_factory=dict)
    fusion: Mapping[str, Any] | None = None


def _st():
    try:
        import sentence_transformers.cross_encoder as ce  # noqa: F401
    except ImportError as exc:  # pragma: no cover
        raise MissingDependencyError("training needs sentence-transformers: pip install 'winnow[train]'") from exc
    return ce



def make_loss(name: str, model, *, negatives: int, batch_size: int):
    from sentence_transformers.cross_encoder import losses

    cls = getattr(losses, LOSSES[name][1])
    if name == "bce":
        import torch

        return cls(model, pos_weight=torch.tensor(float(max(1, negatives))))
    if name == "cmnrl":
        return cls(model, mini_batch_size=min(32, batch_size))
    return cls(model)


def _evaluator_name(source: str) -> str:
    return "dev-" + (re.sub(r"[^A-Za-z0-9_.-]+", "-", source).strip("-") or "data")


def make_evaluators(dev: Sequence[TrainingExample], *, depth: int, batch_size: int = 64) -> list:
    """One ``CrossEncoderRerankingEvaluator`` per source: queries with a first-stage ranking rerank that
    ranking (the evaluator reports the first stage as ``base_*``); others rank positives among negatives."""
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator

    by_source: dict[str, list[dict]] = {}
    for e in dev:
        if not e.positives:
            continue
        sample: dict[str, Any] = {"query": e.query, "positive": [p.text for p in e.positives]}
        if e.ranking:
            sample["documents"] = [h.text for h in e.ranking[:depth]]
        elif e.negatives:
            sample["negative"] = [n.text for n in e.negatives]
        else:
            continue
        by_source.setdefault(e.source or "data", []).append(sample)
    return [
        CrossEncoderRerankingEvaluator(samples, at_k=10, name=_evaluator_name(src), batch_size=batch_size, write_csv=False)
        for src, samples in by_source.items()
    ]


def last_checkpoint(output_dir: str | Path) -> Path | None:
    from transformers.trainer_utils import get_last_checkpoint

    folder = Path(output_dir) / "checkpoints"
    found = get_last_checkpoint(str(folder)) if folder.is_dir() else None
    return Path(found) if found else None


def training_columns(train: Sequence[TrainingExample] | Sequence[DistillExample], config: TrainConfig) -> dict[str, list]:
    """The loss's columns: labelled rows of mined examples, or (for ``mse``) teacher-scored pairs."""
    fmt = LOSSES[config.loss][0]
    teacher = fmt == "teacher"
    wrong = [e for e in train if isinstance(e, DistillExample) != teacher][:1]
    if wrong:
        need = ("teacher-scored examples (`winnow train small-reranker` scores them; in Python winnow.train.teacher.score_examples)"
                if teacher else "mined training examples")
        raise InvalidArgumentError(f"loss {config.loss!r} trains on {need}, got a {type(wrong[0]).__name__}")
    if teacher:
        return teacher_pairs(train)  # type: ignore[arg-type]
    return rows(train, fmt, negatives=config.negatives, seed=config.seed)  # type: ignore[arg-type]


def train_reranker(
    train: Sequence[TrainingExample] | Sequence[DistillExample],
    output_dir: str | Path,
    config: TrainConfig = TrainConfig(),
    *,
    dev: Sequence[TrainingExample] = (),
    resume: bool = False,
    progress: bool = True,
    card: Mapping[str, Any] | None = None,
    fusion_stage: FirstStage = FirstStage.DENSE,
) -> TrainResult:
    """Fine-tune, evaluate on ``dev`` during and after training, save the final model with its card.

    ``card`` adds to the model card (``data_files``, ``mining``, ``command``, ``name``...).
    ``resume=True`` continues from the last checkpoint in ``<output_dir>/checkpoints``.
    ``fusion_stage``: the first stage whose lists the dev queries carry (their mined files'); the mix fitted
    on them is written for that stage (``winnow train fit-fusion`` fits the others).
    """
    _st()
    import torch
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from transformers import set_seed

    from winnow.train.card import base_lineage, describe_hardware, hardware_line, versions, write_card

    output_dir = Path(output_dir)
    checkpoint = None
    if resume:
        checkpoint = last_checkpoint(output_dir)
        if checkpoint is None:
            raise InvalidArgumentError(f"--resume: no checkpoint in {output_dir / 'checkpoints'}; start without --resume")
        log.info("resuming from %s", checkpoint)
    fmt = LOSSES[config.loss][0]
    columns = training_columns(train, config)
    n_rows = len(columns["query"])
    if n_rows == 0:
        raise InvalidArgumentError(
            f"no training rows for loss {config.loss!r} with {config.negatives} negatives "
            f"(from {len(train)} examples): mine more negatives or lower --negatives"
        )
    pairs_per_row = {"pairs": 1, "teacher": 1, "tuple": 1 + config.negatives}.get(fmt)
    n_pairs = sum(len(d) for d in columns["docs"]) if fmt == "list" else n_rows * pairs_per_row
    dataset = to_dataset(columns)
    evaluators = make_evaluators(dev, depth=config.eval_depth)
    if config.best_by is not None:
        if not evaluators:
            raise InvalidArgumentError(f"best_by {config.best_by!r} needs dev queries; give --dev-queries or --dev")
        known = sorted(f"{ev.name}_{m}" for ev in evaluators for m in ("ndcg@10", "mrr@10", "map"))
        if config.best_by not in known:
            raise InvalidArgumentError(f"unknown dev metric {config.best_by!r}; choose one of: {', '.join(known)}")
    set_seed(config.seed)
    model = load_base(config)
    if config.device == "cuda" and not torch.cuda.is_available():
        raise InvalidArgumentError("device cuda: no CUDA GPU is visible to torch; use --device cpu or auto")
    cuda = config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
    bf16, fp16 = resolve_precision(config.precision, "cuda" if cuda else "cpu")
    if fmt == "tuple":
        sampler: Any = "no_duplicates"  # in-batch negatives must not repeat a passage
    elif config.length_buckets:
        from winnow.train.batches import LengthBuckets, row_lengths

        sampler = LengthBuckets(row_lengths(columns, cap=config.max_length * 6))
    else:
        sampler = "batch_sampler"
    log.info("training on %s, %s", "cuda" if cuda else "cpu", "bf16" if bf16 else "fp16" if fp16 else "fp32")
    args = CrossEncoderTrainingArguments(
        output_dir=str(output_dir / "checkpoints"),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        warmup_ratio=config.warmup_ratio,
        bf16=bf16,
        fp16=fp16,
        eval_strategy="steps" if evaluators else "no",
        eval_steps=config.eval_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        logging_steps=config.logging_steps,
        logging_first_step=True,
        seed=config.seed,
        data_seed=config.seed,
        batch_sampler=sampler,
        dataloader_num_workers=0,
        report_to="none",
        disable_tqdm=not progress,
        use_cpu=not cuda,
        load_best_model_at_end=config.best_by is not None,
        metric_for_best_model=f"eval_{config.best_by}" if config.best_by else None,
        greater_is_better=True if config.best_by else None,
    )
    trainer = CrossEncoderTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        loss=make_loss(config.loss, model, negatives=config.negatives, batch_size=config.batch_size),
        evaluator=evaluators or None,
    )
    if not progress:
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    seconds = time.perf_counter() - start
    losses = tuple((int(h["step"]), float(h["loss"])) for h in trainer.state.log_history if "loss" in h)
    steps = int(trainer.state.global_step)

    dev_metrics: dict[str, float] = {}
    for ev in evaluators:
        dev_metrics.update({k: float(v) for k, v in ev(model).items()})
    fusion = None
    if config.fit_fusion and dev:
        from winnow.rerank.mix import merge_fusion
        from winnow.train.fusion_fit import cross_encoder_scores, fit_on_dev

        fit = fit_on_dev(cross_encoder_scores(model), dev, depth=config.eval_depth)
        fusion = merge_fusion(None, fusion_stage, fit.to_json()) if fit is not None else None

    model_dir = output_dir / "model"
    _save_atomically(model, model_dir, fusion)
    hw = describe_hardware()
    start_step = int(checkpoint.name.rsplit("-", 1)[-1]) if checkpoint else 0
    seen_pairs = n_pairs * ((steps - start_step) / max(1, _steps_per_epoch(n_rows, config.batch_size)))
    info = {
        "name": "winnow reranker" if fmt != "teacher" else "winnow reranker (distilled)",
        "precision": "bf16" if bf16 else "fp16" if fp16 else "fp32",
        "device": "cuda" if cuda else "cpu",
        **(dict(card) if card else {}),
        "config": asdict(config),
        "loss_class": LOSSES[config.loss][1],
        "train_examples": len(train),
        "train_rows": n_rows,
        "train_pairs": n_pairs,
        "dev_queries": len(dev),
        "steps": steps,
        "resumed_from": str(checkpoint) if checkpoint else None,
        "best_checkpoint": trainer.state.best_model_checkpoint if config.best_by else None,
        "train_seconds": round(seconds, 1),
        "pairs_per_second": round(seen_pairs / seconds, 2) if seconds > 0 else None,
        "losses": [list(x) for x in losses],
        "dev_metrics": dev_metrics,
        "fusion": fusion,
        "base_training": base_lineage(config.base_model),
        "hardware": hw,
        "hardware_line": hardware_line(hw),
        "versions": versions(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_card(model_dir, info)
    log.info("saved %s (%d steps in %.0f s)", model_dir, steps, seconds)
    return TrainResult(model_dir, steps, n_rows, n_pairs, seconds, losses, dev_metrics, fusion)


def _steps_per_epoch(n_rows: int, batch_size: int) -> int:
    return -(-n_rows // batch_size)


def _save_atomically(model, model_dir: Path, fusion: Mapping[str, Any] | None) -> None:
    """Save into a temp folder, then swap it in: a crash leaves the old model or the new one, whole."""
    from winnow.storage import replacing_folder, write_json_atomic

    with replacing_folder(model_dir) as tmp:
        model.save_pretrained(str(tmp))
        if fusion is not None:
            write_json_atomic(tmp / "fusion.json", dict(fusion))
