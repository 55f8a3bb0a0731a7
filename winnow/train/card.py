"""The model card written beside trained weights: README.md (for people) and training.json (for tools).

It says what the model was trained on, how, how long it took on what hardware, what it scored on the
held-out dev queries, and the command that made it.
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path
from typing import Any, Mapping

from winnow.storage import write_json_atomic, write_text_atomic


def describe_hardware() -> dict[str, Any]:
    """CPU model and cores this process may use; GPU name where torch sees one."""
    from winnow.runtime import cpu_count, cpu_name

    cpu = cpu_name()
    gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover
        pass
    return {"cpu": cpu, "cpu_cores": cpu_count(), "gpu": gpu, "platform": platform.platform()}


def hardware_line(hw: Mapping[str, Any]) -> str:
    base = f"{hw['cpu_cores']} CPU core(s) ({hw['cpu']})"
    return f"1 GPU ({hw['gpu']}) + {base}" if hw.get("gpu") else base


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "sentence_transformers"):
        try:
            module = __import__(name)
            out[name] = getattr(module, "__version__", "?")
        except ImportError:  # pragma: no cover
            pass
    return out


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def write_card(model_dir: str | Path, info: Mapping[str, Any]) -> Path:
    """Write ``training.json`` and ``README.md`` into ``model_dir`` (replacing the library's own card)."""
    model_dir = Path(model_dir)
    write_json_atomic(model_dir / "training.json", dict(info))
    write_text_atomic(model_dir / "README.md", render(info))
    return model_dir / "README.md"


def base_lineage(base_model: str) -> dict[str, Any] | None:
    """When the base model is itself a winnow-trained folder: the parts of its card a new card repeats
    (name, data, time, hardware, command, and its own lineage), so a chain of runs is told whole."""
    path = Path(base_model) / "training.json"
    if not path.is_file():
        return None
    base = json.loads(path.read_text(encoding="utf-8"))
    keys = ("name", "data_files", "train_seconds", "steps", "hardware_line", "command", "base_training")
    return {"path": str(base_model), **{k: base.get(k) for k in keys}}


def _lineage_seconds(info: Mapping[str, Any]) -> float:
    base = info.get("base_training") or {}
    return float(info.get("train_seconds") or 0) + (_lineage_seconds(base) if base else 0.0)


def _shipped_text(shipped: Mapping[str, Any]) -> str:
    return (
        f"This folder is its shipped form (`winnow train ship`): one {shipped.get('backend')} ONNX file "
        f"({shipped.get('quantization')} quantization), the tokenizer, this card and `fusion.json`; the fp32 "
        f"weights are not included, so load it with winnow (`CrossEncoderReranker(\"{shipped.get('name')}\")`, "
        f"`winnow search --rerank {shipped.get('name')}`), not with sentence-transformers. Pairs are read up to "
        f"{shipped.get('max_length')} tokens."
        + (f" Speed: {shipped['speed']['value']:,.0f} {shipped['speed']['unit']} ({shipped['speed']['backend']}, "
           f"{shipped['speed']['cpu']}; `winnow models --measure` times it on yours)." if shipped.get("speed") else "")
    )


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def render(info: Mapping[str, Any]) -> str:
    cfg = info["config"]
    base = info.get("base_training")
    lines = [
        f"# {info.get('name', 'winnow reranker')}",
        "",
        "A cross-encoder reranker trained with `winnow train reranker`: it reads a query and a passage together "
        "and returns one relevance logit (higher is more relevant). "
        + (_shipped_text(info["shipped"]) if info.get("shipped") else
           "Load it with `winnow.rerank.CrossEncoderReranker(path)` or sentence-transformers' `CrossEncoder(path)`."),
        "",
        "## Recipe",
        f"- base model: `{cfg['base_model']}`" + (f", cut to its first {cfg['layers']} layers" if cfg.get("layers") else "")
        + (f", itself trained by winnow (\"{base.get('name')}\", below), trained further" if base else ", with a new one-logit head"),
        f"- loss: `{cfg['loss']}` ({info.get('loss_class', '')}), {cfg['negatives']} negatives per query"
        + (f", distilled from `{info['teacher']}`'s raw logits" if info.get("teacher") else ""),
        f"- epochs {cfg['epochs']}, max steps {cfg['max_steps']}, batch {cfg['batch_size']}, learning rate "
        f"{cfg['learning_rate']}, warmup ratio {cfg['warmup_ratio']}, max_length {cfg['max_length']}, seed {cfg['seed']}",
        *([f"- kept the checkpoint best on `{cfg['best_by']}`: {info.get('best_checkpoint')}"] if cfg.get("best_by") else []),
        "",
        "## Data",
        "| file | sha256 (first 16) | examples used |",
        "|---|---|---|",
    ]
    for f in info.get("data_files", []):
        lines.append(f"| `{f['path']}` | `{f['sha256']}` | {f.get('examples', 'the teacher-scored sample')} |")
    lines += [
        "",
        f"Training rows: {info.get('train_rows')} ({info.get('train_pairs')} query-passage pairs per epoch); "
        f"dev queries held out of the training files: {info.get('dev_queries')}.",
    ]
    for m in info.get("mining", []):
        c = m.get("config", {})
        r = m.get("report", {})
        lines.append(
            f"Negatives of `{m.get('file')}`: first stage `{c.get('method')}` with `{c.get('model')}`, ranks "
            f"{c.get('skip_top', 0) + 1}-{c.get('max_rank')}, {c.get('negatives')} per query ({c.get('sampling')}, "
            f"seed {c.get('seed')}), relative margin {c.get('relative_margin')}, absolute margin "
            f"{c.get('absolute_margin')}, cross-encoder filter {c.get('cross_encoder')}; pool {r.get('pool')} "
            f"passages, {r.get('negatives')} negatives for {r.get('written')} of {r.get('queries')} queries."
        )
    lines += ["", "## Training run", f"- hardware: {info.get('hardware_line')}",
              f"- training time: {info.get('train_seconds', 0):.0f} s for {info.get('steps')} steps "
              f"({info.get('pairs_per_second', 0):.1f} pairs/s)"]
    while base:
        lines.append(
            f"- before that, the base model `{base['path']}` (\"{base.get('name')}\"): {base.get('train_seconds') or 0:.0f} s "
            f"for {base.get('steps')} steps on {base.get('hardware_line')}, on "
            + ", ".join(f"`{f['path']}` ({f['examples']})" for f in base.get("data_files") or [])
            + f"; command: `{base.get('command')}`"
        )
        base = base.get("base_training")
    if info.get("base_training"):
        lines.append(f"- training time of the whole chain: {_lineage_seconds(info):.0f} s")
    losses = info.get("losses") or []
    if losses:
        lines.append(f"- training loss: {losses[0][1]:.4f} at step {losses[0][0]} -> {losses[-1][1]:.4f} at step {losses[-1][0]}")
    lines.append(f"- versions: {', '.join(f'{k} {v}' for k, v in info.get('versions', {}).items())}")
    lines.append(f"- finished: {info.get('finished')}")
    dev = info.get("dev_metrics") or {}
    if dev:
        lines += ["", "## Dev metrics (held-out queries of the training data, never a test set)",
                  "`base_*` is the first stage's own order of the same candidates.", "",
                  "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in sorted(dev.items())]
    lines += fusion_lines(info.get("fusion"))
    lines += _calibration_lines(info.get("calibration"))
    lines += evaluation_lines(info.get("evaluation") or [])
    lines += ["", "## Command", "```", info.get("command") or "(called from Python)", "```", "",
              "## Licence of the data and attribution", *_licence_lines(info), ""]
    return "\n".join(lines)


def fusion_lines(fusion: Mapping[str, Any] | None) -> list[str]:
    if not fusion:
        return []
    stages = fusion.get("first_stages") or ({"dense": fusion} if "weight_reranker" in fusion else {})
    lines = ["", "## Mixing with the first stage (fusion.json)",
             "Per query, z-scored `w * reranker + (1 - w) * first stage`, with `w` fitted for each first stage on "
             "its own held-out dev lists; a first stage not listed gets the reranker alone.", "",
             "| first stage | w | dev queries | nDCG@10 first stage | reranker alone | mix |", "|---|---|---|---|---|---|"]
    for stage, fit in stages.items():
        d = fit["dev_ndcg@10"]
        lines.append(f"| {stage} | {fit['weight_reranker']} | {fit['dev_queries']} | {d['first_stage']:.4f} | "
                     f"{d['reranker']:.4f} | {d['mix']:.4f} |")
    return lines


def _calibration_lines(calibration: Mapping[str, Any] | None) -> list[str]:
    if not calibration:
        return []
    lines = ["", "## Relevance probabilities (calibration.json)",
             "Fitted on held-out training queries' lists, the method picked by held-out log-loss "
             "(`--probabilities` in `winnow search`).", "",
             "| scores of | method | dev pairs | held-out log-loss (platt / isotonic) |", "|---|---|---|---|"]
    rows = [("reranker", calibration["reranker"])] + list((calibration.get("first_stages") or {}).items())
    for name, fit in rows:
        ll = fit.get("dev_log_loss", {})
        lines.append(f"| {name} | {fit['method']} | {fit.get('dev_pairs', '-')} | "
                     f"{ll.get('platt', float('nan')):.4f} / {ll.get('isotonic', float('nan')):.4f} |")
    return lines


# source name (a training file's folder or stem, see winnow.train.data.source_name) -> (data, licence, cite)
LICENCES: dict[str, tuple[str, str, str]] = {
    "msmarco": ("MS MARCO passage ranking", "non-commercial research use", "Bajaj et al. 2016"),
    "wikiqa": ("WikiQA", "research use (Microsoft Research Data License)", "Yang, Yih & Meek, EMNLP 2015"),
    "squad_v1_train": ("SQuAD v1.1 train", "CC BY-SA 4.0", "Rajpurkar et al., EMNLP 2016"),
    "medquad": ("MedQuAD", "CC BY 4.0", "Ben Abacha & Demner-Fushman, BMC Bioinformatics 2019"),
    "nq_qed_train": ("Natural Questions (train) via QED", "CC BY-SA 3.0", "Kwiatkowski et al., TACL 2019; Lamm et al., TACL 2021"),
    "selqa_ass": ("SelQA answer-sentence selection", "Apache 2.0", "Jurczyk, Zhai & Choi 2016"),
    "mediqa2019_qa": ("MEDIQA 2019 QA", "research use (none stated)", "Ben Abacha, Shivade & Demner-Fushman, BioNLP 2019"),
    "trecqa": ("TrecQA", "research use (none stated)", "Wang et al. 2007; Yao et al. 2013"),
}


def _data_source(path: str) -> str | None:
    low = path.lower()
    for key in sorted(LICENCES, key=len, reverse=True):
        if key in low:
            return key
    return None


def _licence_lines(info: Mapping[str, Any]) -> list[str]:
    """One line per training source the card's data files name (a chain's earlier runs included)."""
    paths = [f.get("path", "") for f in info.get("data_files") or []]
    paths += [m.get("pairs", "") for m in info.get("mining") or []]
    found = sorted({k for k in map(_data_source, paths) if k}, key=list(LICENCES).index)
    if not found:
        return ["Check the terms of the training data before any use."]
    lines = ["| data | licence | cite |", "|---|---|---|"]
    lines += [f"| {LICENCES[k][0]} | {LICENCES[k][1]} | {LICENCES[k][2]} |" for k in found]
    if any("BY-SA" in LICENCES[k][1] for k in found):
        lines += ["", "Parts of the training data are CC BY-SA: this model is shared under the same terms, with the "
                  "attribution above."]
    if any("research" in LICENCES[k][1] for k in found):
        lines += ["", "Parts of the training data are for research use only: check those terms before any other use."]
    return lines


def evaluation_entry(report: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a ``winnow eval`` report.json a model card shows: the set, its settings, every method's
    mean metrics and median latency."""
    return {
        "dataset": report["dataset"],
        "split": report.get("split"),
        "evaluated_queries": report.get("evaluated_queries"),
        "rel": report.get("rel"),
        "rerank_depth": report.get("rerank_depth"),
        "reranker": report.get("reranker"),
        "metrics": list(report.get("metrics", [])),
        "methods": {
            m["method"]: {**m["metrics"], "p50_ms": m.get("latency_ms", {}).get("total", {}).get("p50")}
            for m in report.get("methods", [])
        },
        "created": report.get("created"),
    }


def evaluation_lines(entries) -> list[str]:
    if not entries:
        return []
    lines = ["", "## Evaluation on test sets (`winnow eval`; reported after training, nothing chosen from them)"]
    for e in entries:
        metrics = e["metrics"]
        lines += ["", f"**{e['dataset']}** ({e['split']}): {e['evaluated_queries']} judged queries, binary measures at "
                  f"grade >= {e['rel']}, reranking the first stage's top {e['rerank_depth']}, reranker "
                  f"`{e['reranker']}`.", "",
                  "| method | " + " | ".join(metrics) + " | p50 ms a query |",
                  "|---|" + "---:|" * (len(metrics) + 1)]
        for name, values in e["methods"].items():
            p50 = values.get("p50_ms")
            cells = [_fmt(values.get(m)) for m in metrics] + [f"{p50:.0f}" if p50 is not None else "–"]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines
