"""Packing a trained reranker for shipping: one int8 ONNX file plus what loading it needs.

A trained model folder (torch weights, ~90 MB for MiniLM-L6) becomes an ONNX-only folder of ~23 MB::

    model.onnx          the fp32 export (transformer fusions), dynamically quantized to int8 weights
    winnow-onnx.json    manifest: format version, file, task, backend, quantization, checks
    tokenizer.json ...  the fast tokenizer and its settings; config.json for the position limit
    fusion.json         the fitted mix with the first stage, where training fitted one
    README.md           the model card, training.json its data (plus test-set results given as eval reports)

The quantization is the portable one (per-channel weights, 7-bit range): exact on CPUs without VNNI,
where full-range int8 weights overflow the u8*s8 kernels, and still fast on those with it. The shipped
file is checked against the fp32 torch model on held-in pairs (largest score difference recorded).
The folder is written beside the target and renamed into place.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from winnow.errors import InvalidArgumentError

COPIED = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "config.json",
    "fusion.json",
    "README.md",
    "training.json",
)
CHECK_PAIRS = (
    ("how do plants make food", "Photosynthesis lets plants turn sunlight, water and carbon dioxide into sugar."),
    ("how do plants make food", "The stock market fell sharply on Monday after weak earnings reports."),
    ("what is the capital of france", "Paris is the capital and most populous city of France."),
    ("what is the capital of france", "Lyon is known for its cuisine and its silk industry."),
    ("symptoms of flu", "Fever, cough, sore throat and muscle aches are common signs of influenza."),
    ("symptoms of flu", "A recipe for pancakes: flour, eggs, milk and a pinch of salt."),
)


@dataclass(frozen=True)
class ShippedModel:
    folder: Path
    size_bytes: int
    max_abs_diff: float  # largest |int8 - fp32 torch| logit over the check pairs
    same_order: bool  # whether int8 ranks each check query's passages as torch does


def ship_reranker(
    model_dir: Path | str,
    target: Path | str,
    *,
    max_length: int | None = None,
    reports: Sequence[Path | str] = (),
) -> ShippedModel:
    """Write the ONNX-only copy of the cross-encoder in ``model_dir`` to ``target`` (replaced if present).
    ``reports``: ``winnow eval`` report.json files whose results the shipped model card shows."""
    import numpy as np

    from winnow.models.backends import FALLBACK_QUANTIZATION
    from winnow.models.export import (
        PREBUILT_MANIFEST,
        PREBUILT_VERSION,
        exported_model,
        quantize,
    )
    from winnow.models.catalog import measure_reranker
    from winnow.models.resolve import ResolvedModel
    from winnow.rerank.cross_encoder import CrossEncoderReranker
    from winnow.storage import replacing_folder, write_json_atomic
    from winnow.train.card import evaluation_entry, write_card
    from winnow.train.data import trained_model_folder

    source = trained_model_folder(model_dir)
    evaluation = [evaluation_entry(read_report(r)) for r in reports]
    if evaluation and not (source / "training.json").is_file():
        raise InvalidArgumentError(f"{str(source)!r} has no training.json: test results go into a winnow-trained model's card")
    target = Path(target)
    with replacing_folder(target) as tmp:
        fp32 = exported_model(ResolvedModel(str(source), source.resolve(), "local"), "score", "onnx")
        quantize(fp32.path, tmp / "model.onnx", FALLBACK_QUANTIZATION)
        for name in COPIED:
            if (source / name).is_file():
                shutil.copy2(source / name, tmp / name)
        manifest = {
            "format_version": PREBUILT_VERSION,
            "file": "model.onnx",
            "task": "score",
            "backend": "onnx-int8",
            "quantization": FALLBACK_QUANTIZATION.name,
        }
        write_json_atomic(tmp / PREBUILT_MANIFEST, manifest)
        if max_length is not None:
            _set_max_length(tmp / "tokenizer_config.json", max_length)
        if (source / "training.json").is_file():
            info = json.loads((source / "training.json").read_text(encoding="utf-8"))
            shipped_info = {"name": target.name, "backend": manifest["backend"], "quantization": manifest["quantization"],
                            "max_length": max_length or info.get("config", {}).get("max_length")}
            write_card(tmp, {**info, "shipped": shipped_info, **({"evaluation": evaluation} if evaluation else {})})
        reference = CrossEncoderReranker(str(source), backend="torch", cache=False, use_mix=False, max_length=max_length)
        shipped = CrossEncoderReranker(str(tmp), cache=False, use_mix=False)
        diffs, same = _compare(reference, shipped, CHECK_PAIRS, np)
        manifest["check"] = {"pairs": len(CHECK_PAIRS), "max_abs_diff_vs_torch": diffs, "same_order": same}
        write_json_atomic(tmp / PREBUILT_MANIFEST, manifest)
        if (tmp / "training.json").is_file():  # the card tells the speed, and the CPU it was measured on
            info = json.loads((tmp / "training.json").read_text(encoding="utf-8"))
            info["shipped"]["speed"] = measure_reranker(tmp).to_json()
            write_card(tmp, info)
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    return ShippedModel(target, size, diffs, same)


def read_report(path: Path | str) -> dict:
    """A ``winnow eval`` report.json, or a typed error saying what it is not."""
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidArgumentError(f"cannot read eval report {str(path)!r}: {exc}") from exc
    if not isinstance(report, dict) or "methods" not in report or "dataset" not in report:
        raise InvalidArgumentError(f"{str(path)!r} is not a winnow eval report.json (no 'dataset'/'methods')")
    return report


def _set_max_length(path: Path, max_length: int) -> None:
    from winnow.storage import write_json_atomic

    config = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    config["model_max_length"] = int(max_length)
    write_json_atomic(path, config)


def _compare(reference, shipped, pairs: Sequence[tuple[str, str]], np) -> tuple[float, bool]:
    worst, same = 0.0, True
    for query in dict.fromkeys(q for q, _ in pairs):
        texts = [t for q, t in pairs if q == query]
        a, b = reference.score(query, texts), shipped.score(query, texts)
        worst = max(worst, float(np.max(np.abs(a - b))))
        same = same and bool((np.argsort(-a) == np.argsort(-b)).all())
    return round(worst, 5), same
