"""Training a ColBERT model (:mod:`winnow.encode.colbert`) by distillation from winnow's reranker.

Each step takes ``batch_size`` queries, each with its positive and ``negatives`` mined negatives and the
teacher's scores of them (:mod:`winnow.train.teacher`). The loss is

* ``kl``: KL divergence from softmax(teacher / temperature) to softmax(student MaxSim) over a query's
  passages (ColBERTv2's distillation), or ``margin-mse``: MSE between the student's and the teacher's
  positive-negative margins (Hofstätter et al.);
* plus ``in_batch_weight`` x cross-entropy of the positive against every passage of the batch (in-batch
  negatives: what makes the model a first stage, not only a reranker of the mined lists).

Why a loop of its own and not sentence-transformers' trainer: that trainer and its losses take one pooled
vector per text (``sentence_embedding``); a token-matrix model means subclassing SentenceTransformer the
way PyLate does (which pins sentence-transformers 5.3 and torch 2.11, against winnow's 5.7 and 2.13). The
loop here is the part of that we need: AdamW, linear warm-up and decay, bf16 autocast on CPUs that have
it, length-bucketed batches (:mod:`winnow.train.batches`), checkpoints and exact resume.

Run folder::

    <output>/teacher/part-*.jsonl              teacher scores, per chunk (reused on resume)
    <output>/checkpoints/checkpoint-N/         model folder + optimizer.safetensors + trainer_state.json
    <output>/model/                            the final model, training.json, README.md

No pickle: optimizer moments go to safetensors, the rest to JSON. The batch order is a function of the
seed and epoch, the dropout seed a function of the step, so a resumed run takes the same steps as an
uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Mapping, Sequence

from winnow.encode.colbert import ColBERTConfig
from winnow.errors import InvalidArgumentError
from winnow.train.config_rules import check_rules, config_json
from winnow.train.data import TrainingExample
from winnow.train.precision import Precision, check_precision_and_device
from winnow.train.teacher import DistillExample

log = logging.getLogger(__name__)
STATE_FORMAT = 1
# settings a resumed run may change (a longer run: the learning-rate schedule is then stretched from there)
RESUMABLE_CHANGES = frozenset({"epochs", "max_steps", "save_steps", "save_total_limit", "eval_steps", "logging_steps"})


class DistillLoss(str, Enum):
    KL = "kl"
    MARGIN_MSE = "margin-mse"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class ColBERTTrainConfig:
    base_model: str = "all-MiniLM-L6-v2"
    dim: int = 96
    query_length: int = 32
    document_length: int = 180
    loss: DistillLoss = DistillLoss.KL
    temperature: float = 1.0
    in_batch_weight: float = 1.0
    negatives: int = 3
    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 16
    learning_rate: float = 3e-5
    projection_lr: float = 1e-3  # the new projection learns faster than the pretrained encoder
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    save_steps: int = 50
    save_total_limit: int = 2
    eval_steps: int = 0  # 0: evaluate at the start and the end only
    logging_steps: int = 10
    eval_depth: int = 20
    seed: int = 0
    precision: Precision = Precision.AUTO
    device: str = "auto"

    def __post_init__(self) -> None:
        if not isinstance(self.loss, DistillLoss):
            try:
                object.__setattr__(self, "loss", DistillLoss(self.loss))
            except ValueError:
                raise InvalidArgumentError(
                    f"unknown loss {self.loss!r}; choose one of: {', '.join(m.value for m in DistillLoss)}"
                ) from None
        check_precision_and_device(self)
        checks = [
            ("negatives", self.negatives >= 1, ">= 1"),
            ("epochs", self.epochs > 0, "> 0"),
            ("batch_size", self.batch_size >= 2, ">= 2"),
            ("learning_rate", self.learning_rate > 0, "> 0"),
            ("projection_lr", self.projection_lr > 0, "> 0"),
            ("temperature", self.temperature > 0, "> 0"),
            ("in_batch_weight", self.in_batch_weight >= 0, ">= 0"),
            ("warmup_ratio", 0 <= self.warmup_ratio < 1, "in [0, 1)"),
            ("save_steps", self.save_steps >= 1, ">= 1"),
            ("save_total_limit", self.save_total_limit >= 1, ">= 1"),
            ("eval_steps", self.eval_steps >= 0, ">= 0"),
            ("logging_steps", self.logging_steps >= 1, ">= 1"),
            ("eval_depth", self.eval_depth >= 2, ">= 2"),
        ]
        check_rules(self, checks)
        self.model_config()  # dim and lengths checked there

    def model_config(self) -> ColBERTConfig:
        return ColBERTConfig(dim=self.dim, query_length=self.query_length, document_length=self.document_length)

    def to_json(self) -> dict:
        return config_json(self)


@dataclass(frozen=True)
class ColBERTTrainResult:
    model_dir: Path
    steps: int
    examples: int
    seconds: float
    losses: tuple[tuple[int, float], ...]
    dev_before: Mapping[str, Any] = field(default_factory=dict)
    dev_after: Mapping[str, Any] = field(default_factory=dict)


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then linear decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def last_checkpoint(output_dir: str | Path) -> Path | None:
    folder = Path(output_dir) / "checkpoints"
    found = [p for p in folder.glob("checkpoint-*") if p.is_dir() and (p / "trainer_state.json").is_file()] if folder.is_dir() else []
    return max(found, key=lambda p: int(p.name.rsplit("-", 1)[1]), default=None)


def distill_loss(student, teacher, loss: DistillLoss, temperature: float):
    """(n, k) student and teacher scores of each query's passages, positive in column 0 -> a scalar."""
    import torch

    if loss is DistillLoss.KL:
        target = torch.softmax(teacher / temperature, dim=-1)
        return torch.nn.functional.kl_div(torch.log_softmax(student, dim=-1), target, reduction="batchmean")
    margins_s = student[:, :1] - student[:, 1:]
    margins_t = teacher[:, :1] - teacher[:, 1:]
    return torch.nn.functional.mse_loss(margins_s, margins_t)


def _usable(examples: Sequence[DistillExample], negatives: int) -> list[DistillExample]:
    return [e for e in examples if len(e.texts) >= 1 + negatives]


def train_colbert(
    examples: Sequence[DistillExample],
    output_dir: str | Path,
    config: ColBERTTrainConfig = ColBERTTrainConfig(),
    *,
    dev: Sequence[TrainingExample] = (),
    resume: bool = False,
    progress: bool = True,
    card: Mapping[str, Any] | None = None,
) -> ColBERTTrainResult:
    """Train, checkpoint every ``save_steps``, evaluate on ``dev`` (reranking its mined lists) before and
    after, and write ``<output_dir>/model``."""
    import torch
    from transformers import AutoTokenizer

    from winnow.encode.colbert import build_module, tokenize_documents, tokenize_queries
    from winnow.encode.colbert_torch import maxsim_scores, paired_maxsim
    from winnow.models.resolve import resolve_model
    from winnow.train.batches import bucketed_batches
    from winnow.train.precision import resolve_precision

    output_dir = Path(output_dir)
    rows = _usable(examples, config.negatives)
    if len(rows) < config.batch_size:
        raise InvalidArgumentError(
            f"{len(rows)} examples with >= {config.negatives} negatives, fewer than one batch of {config.batch_size}"
        )
    k = 1 + config.negatives
    mcfg = config.model_config()
    checkpoint = last_checkpoint(output_dir) if resume else None
    if resume and checkpoint is None:
        raise InvalidArgumentError(f"--resume: no checkpoint in {output_dir / 'checkpoints'}; start without --resume")
    if config.device == "cuda" and not torch.cuda.is_available():
        raise InvalidArgumentError("device cuda: no CUDA GPU is visible to torch; use --device cpu or auto")
    cuda = config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if cuda else "cpu")
    bf16, fp16 = resolve_precision(config.precision, device.type)
    amp_dtype = torch.bfloat16 if bf16 else torch.float16 if fp16 else None

    state: dict[str, Any] = {"step": 0, "losses": [], "dev_before": None}
    if checkpoint is not None:
        import numpy as np

        state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
        if state.get("format_version") != STATE_FORMAT:
            raise InvalidArgumentError(f"{checkpoint}: trainer state format {state.get('format_version')!r}, want {STATE_FORMAT}")
        changed = sorted(key for key, v in config.to_json().items()
                         if key not in RESUMABLE_CHANGES and state["config"].get(key) != v)
        if changed:
            raise InvalidArgumentError(f"--resume with other settings than the checkpoint's: {', '.join(changed)}")
        tokenizer = AutoTokenizer.from_pretrained(str(checkpoint), local_files_only=True)
        module = build_module(checkpoint, mcfg, np.load(checkpoint / "projection.npy", allow_pickle=False))
    else:
        base = resolve_model(config.base_model).path
        tokenizer = AutoTokenizer.from_pretrained(str(base), local_files_only=True)
        module = build_module(base, mcfg, seed=config.seed)
    module.to(device)

    lengths = [len(e.query) + max(len(t) for t in e.texts[:k]) for e in rows]
    steps_per_epoch = len(rows) // config.batch_size
    total = config.max_steps if config.max_steps > 0 else max(1, math.ceil(config.epochs * steps_per_epoch))
    warmup = max(1, int(total * config.warmup_ratio))
    proj = list(module.projection.parameters())
    enc = [p for n, p in module.named_parameters() if not n.startswith("projection.")]
    optimizer = torch.optim.AdamW([{"params": enc, "lr": config.learning_rate, "base_lr": config.learning_rate},
                                   {"params": proj, "lr": config.projection_lr, "base_lr": config.projection_lr}],
                                  weight_decay=0.01)
    if checkpoint is not None:
        _load_optimizer(optimizer, checkpoint)

    def dev_report():
        if not dev:
            return None
        from winnow.train.dev_eval import rerank_dev

        module.eval()
        report = rerank_dev(dev, lambda q, texts: _score(module, tokenizer, mcfg, q, texts, device, amp_dtype), depth=config.eval_depth)
        module.train()
        return report.to_json()

    if state.get("dev_before") is None and dev:
        state["dev_before"] = dev_report()
        log.info("dev before training: %s", state["dev_before"])

    epoch_batches: dict[int, list[list[int]]] = {}

    def batch_at(step: int) -> list[int]:
        epoch, pos = divmod(step, steps_per_epoch)
        if epoch not in epoch_batches:
            full = [b for b in bucketed_batches(lengths, config.batch_size, seed=config.seed + epoch) if len(b) == config.batch_size]
            epoch_batches.clear()
            epoch_batches[epoch] = full
        return epoch_batches[epoch][pos % len(epoch_batches[epoch])]

    module.train()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=state["step"], desc="train colbert", unit="step")
    start_time = time.perf_counter()
    running: list[float] = []
    step = int(state["step"])
    while step < total:
        torch.manual_seed(config.seed * 1_000_003 + step)
        batch = [rows[i] for i in batch_at(step)]
        q = tokenize_queries(tokenizer, [e.query for e in batch], mcfg)
        d = tokenize_documents(tokenizer, [t for e in batch for t in e.texts[:k]], mcfg)
        teacher = torch.tensor([list(e.teacher[:k]) for e in batch], dtype=torch.float32, device=device)
        factor = lr_factor(step, total, warmup)
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            qv = module(torch.from_numpy(q.input_ids).to(device), torch.from_numpy(q.attention_mask).to(device))
            dmask = torch.from_numpy(d.attention_mask).to(device)
            dv = module(torch.from_numpy(d.input_ids).to(device), dmask)
        qv, dv = qv.float(), dv.float()
        student = paired_maxsim(qv, dv, dmask, k)
        loss = distill_loss(student, teacher, config.loss, config.temperature)
        if config.in_batch_weight > 0:
            every = maxsim_scores(qv, dv, dmask)  # (B, B*k): the positive of query i is column i*k
            labels = torch.arange(len(batch), device=device) * k
            loss = loss + config.in_batch_weight * torch.nn.functional.cross_entropy(every, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), config.max_grad_norm)
        optimizer.step()
        step += 1
        running.append(float(loss.detach()))
        if step % config.logging_steps == 0 or step == 1 or step == total:
            state["losses"].append([step, round(sum(running) / len(running), 5)])
            running = []
            if bar is not None:
                bar.set_postfix(loss=state["losses"][-1][1])
        if bar is not None:
            bar.update(1)
        if config.eval_steps and step % config.eval_steps == 0 and step < total:
            state.setdefault("dev", []).append([step, dev_report()])
        if step % config.save_steps == 0 or step == total:
            state["step"] = step
            state["seconds"] = float(state.get("seconds", 0.0)) + time.perf_counter() - start_time
            start_time = time.perf_counter()
            _save_checkpoint(module, tokenizer, optimizer, mcfg, config, state, output_dir, config.save_total_limit)
    if bar is not None:
        bar.close()

    dev_after = dev_report()
    model_dir = output_dir / "model"
    from winnow.train.card import describe_hardware, hardware_line, versions

    hw = describe_hardware()
    info = {
        "name": "winnow ColBERT",
        **(dict(card) if card else {}),
        "config": config.to_json(),
        "model_config": asdict(mcfg),
        "teacher_examples": len(rows),
        "steps": step,
        "resumed_from": str(checkpoint) if checkpoint else None,
        "train_seconds": round(float(state.get("seconds", 0.0)), 1),
        "precision": "bf16" if bf16 else "fp16" if fp16 else "fp32",
        "device": device.type,
        "losses": state["losses"],
        "dev_before": state.get("dev_before"),
        "dev_during": state.get("dev", []),
        "dev_after": dev_after,
        "hardware": hw,
        "hardware_line": hardware_line(hw),
        "versions": versions(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _save_model_atomically(module, tokenizer, mcfg, model_dir, info)
    return ColBERTTrainResult(model_dir, step, len(rows), float(state.get("seconds", 0.0)),
                              tuple((int(a), float(b)) for a, b in state["losses"]),
                              state.get("dev_before") or {}, dev_after or {})


def _score(module, tokenizer, mcfg, query: str, texts: Sequence[str], device, amp_dtype):
    import torch

    from winnow.encode.colbert import tokenize_documents, tokenize_queries
    from winnow.encode.colbert_torch import maxsim_scores

    q = tokenize_queries(tokenizer, [query], mcfg)
    d = tokenize_documents(tokenizer, list(texts), mcfg)
    with torch.inference_mode():
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            qv = module(torch.from_numpy(q.input_ids).to(device), torch.from_numpy(q.attention_mask).to(device))
            dmask = torch.from_numpy(d.attention_mask).to(device)
            dv = module(torch.from_numpy(d.input_ids).to(device), dmask)
        return maxsim_scores(qv.float(), dv.float(), dmask)[0].float().cpu().numpy()


def _save_checkpoint(module, tokenizer, optimizer, mcfg, config, state, output_dir: Path, keep: int) -> Path:
    """checkpoint-N written beside as .tmp and renamed whole; older ones beyond ``keep`` removed."""
    from winnow.encode.colbert import save_model
    from winnow.storage import fsync_tree, write_json_atomic

    folder = output_dir / "checkpoints"
    final = folder / f"checkpoint-{state['step']}"
    tmp = folder / f".checkpoint-{state['step']}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    save_model(module, tokenizer, mcfg, tmp)
    _save_optimizer(optimizer, tmp)
    write_json_atomic(tmp / "trainer_state.json", {**state, "format_version": STATE_FORMAT, "config": config.to_json()})
    fsync_tree(tmp)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    old = sorted((p for p in folder.glob("checkpoint-*") if p.is_dir()), key=lambda p: int(p.name.rsplit("-", 1)[1]))
    for p in old[:-keep]:
        shutil.rmtree(p, ignore_errors=True)
    log.info("checkpoint %s", final)
    return final


def _save_optimizer(optimizer, folder: Path) -> None:
    from safetensors.torch import save_file

    sd = optimizer.state_dict()
    tensors = {}
    for idx, st in sd["state"].items():
        for key, value in st.items():
            tensors[f"{idx}.{key}"] = value.detach().clone().contiguous()
    save_file(tensors, str(folder / "optimizer.safetensors"))
    groups = [{k: v for k, v in g.items()} for g in sd["param_groups"]]
    (folder / "optimizer.json").write_text(json.dumps({"param_groups": groups}), encoding="utf-8")


def _load_optimizer(optimizer, folder: Path) -> None:
    from safetensors.torch import load_file

    tensors = load_file(str(folder / "optimizer.safetensors"))
    groups = json.loads((folder / "optimizer.json").read_text(encoding="utf-8"))["param_groups"]
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def _save_model_atomically(module, tokenizer, mcfg, model_dir: Path, info: Mapping[str, Any]) -> None:
    from winnow.encode.colbert import save_model
    from winnow.storage import replacing_folder

    with replacing_folder(model_dir) as tmp:
        save_model(module, tokenizer, mcfg, tmp)
        write_colbert_card(tmp, info)


def write_colbert_card(folder: str | Path, info: Mapping[str, Any]) -> None:
    """A ColBERT folder's ``training.json`` and ``README.md`` (with its fitted mix, shipped form and test
    results where ``info`` has them)."""
    from winnow.storage import write_json_atomic, write_text_atomic

    folder = Path(folder)
    write_json_atomic(folder / "training.json", dict(info))
    write_text_atomic(folder / "README.md", _card(info))


def _card(info: Mapping[str, Any]) -> str:
    from winnow.train.card import evaluation_lines, fusion_lines

    c = info["config"]
    lines = [
        f"# {info.get('name', 'winnow ColBERT')}",
        "",
        f"ColBERT (late interaction) from `{c['base_model']}`: projection to {c['dim']} dims, query/document "
        f"markers, queries padded with [MASK] to {c['query_length']} tokens, documents cut at {c['document_length']}.",
        f"Distilled from winnow's reranker with `{c['loss']}` (temperature {c['temperature']}) + "
        f"{c['in_batch_weight']} x in-batch cross-entropy; {c['negatives']} mined negatives a query.",
        "",
        f"- steps: {info['steps']} x {c['batch_size']} queries, lr {c['learning_rate']} (projection {c['projection_lr']}), "
        f"{info['precision']} on {info['device']}, {info['train_seconds']} s; {info.get('hardware_line', '')}",
        f"- loss: {info['losses'][0][1] if info['losses'] else '-'} -> {info['losses'][-1][1] if info['losses'] else '-'}",
    ]
    for label, key in (("before training", "dev_before"), ("after training", "dev_after")):
        d = info.get(key)
        if d:
            lines.append(f"- dev nDCG@10 {label} ({d['queries']} held-out training queries, mined top "
                         f"{c['eval_depth']} reranked): {d['model_ndcg@10']} (first stage {d['first_stage_ndcg@10']})")
    shipped = info.get("shipped")
    if shipped:
        speed = shipped.get("speed")
        lines += ["", f"This folder is its shipped form (`winnow train ship-colbert`): the encoder as one "
                  f"{shipped.get('backend')} ONNX file ({shipped.get('quantization')} quantization), `projection.npy`, "
                  f"the tokenizer and this card. Use it with `winnow index ... --late-interaction {shipped.get('name')}`."
                  + (f" Speed: {speed['value']:,.0f} {speed['unit']} of token vectors ({speed['backend']}, {speed['cpu']})."
                     if speed else "")]
    lines += fusion_lines(info.get("fusion"))
    lines += evaluation_lines(info.get("evaluation"))
    if info.get("command"):
        lines += ["", "```", info["command"], "```"]
    return "\n".join(lines) + "\n"
