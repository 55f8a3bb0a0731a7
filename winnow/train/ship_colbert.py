"""Packing a trained ColBERT model for shipping, like the reranker (:mod:`winnow.train.ship`): the encoder
as one int8 ONNX file (the portable quantization), the projection as ``projection.npy`` applied in numpy,
the tokenizer, ``colbert.json``, the card. ``colbert-onnx.json`` records the file and a check against the
torch model: the smallest cosine between int8 and torch token vectors, and whether MaxSim orders the check
pairs the same way. Written beside the target and renamed into place."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from winnow.errors import InvalidArgumentError

COPIED = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "config.json",
          "colbert.json", "projection.npy", "README.md", "training.json", "fusion.json")


@dataclass(frozen=True)
class ShippedColBERT:
    folder: Path
    size_bytes: int
    min_cosine: float  # smallest cosine between an int8 and a torch token vector on the check texts
    same_order: bool  # MaxSim orders each check query's passages the same with both


def ship_colbert(model_dir: str | Path, target: str | Path, *, reports: Sequence[Path | str] = ()) -> ShippedColBERT:
    """The ONNX-only copy of the ColBERT model in ``model_dir`` at ``target`` (replaced if present);
    ``reports``: ``winnow eval --late-interaction`` report.json files whose results the shipped card shows."""
    import json

    import numpy as np

    from winnow.encode.colbert import CONFIG_FILE, ONNX_MANIFEST, ColBERTEncoder
    from winnow.index.multivector import maxsim_many
    from winnow.models.backends import FALLBACK_QUANTIZATION
    from winnow.models.export import exported_model, quantize
    from winnow.models.resolve import ResolvedModel
    from winnow.storage import replacing_folder, write_json_atomic
    from winnow.models.catalog import measure_colbert
    from winnow.train.card import evaluation_entry
    from winnow.train.colbert import write_colbert_card
    from winnow.train.ship import CHECK_PAIRS, read_report

    evaluation = [evaluation_entry(read_report(r)) for r in reports]
    source = Path(model_dir)
    if not (source / CONFIG_FILE).is_file() or not (source / "model.safetensors").is_file():
        raise InvalidArgumentError(f"{str(model_dir)!r} is not a trained ColBERT folder (colbert.json and model.safetensors); give <run>/model")
    target = Path(target)
    with replacing_folder(target) as tmp:
        fp32 = exported_model(ResolvedModel(str(source), source.resolve(), "local"), "embed", "onnx")
        quantize(fp32.path, tmp / "model.onnx", FALLBACK_QUANTIZATION)
        for name in COPIED:
            if (source / name).is_file():
                shutil.copy2(source / name, tmp / name)
        manifest = {"format_version": 1, "file": "model.onnx", "output": "last_hidden_state",
                    "quantization": FALLBACK_QUANTIZATION.name}
        write_json_atomic(tmp / ONNX_MANIFEST, manifest)
        torch_enc, onnx_enc = ColBERTEncoder(source, backend="torch"), ColBERTEncoder(tmp, backend="onnx")
        queries = sorted({q for q, _ in CHECK_PAIRS})
        cosines, same = [], True
        for q in queries:
            texts = [t for qq, t in CHECK_PAIRS if qq == q]
            scores = []
            for enc in (torch_enc, onnx_enc):
                qv, docs = enc.encode_queries([q])[0], enc.encode_documents(texts)
                offsets = np.concatenate([[0], np.cumsum([len(d) for d in docs])])
                scores.append((qv, docs, maxsim_many(qv, np.concatenate(docs), offsets)))
            (tq, td, ts), (oq, od, os_) = scores
            cosines += [float((tq * oq).sum(axis=1).min())] + [float((a * b).sum(axis=1).min()) for a, b in zip(td, od)]
            same &= bool((np.argsort(-ts) == np.argsort(-os_)).all())
        manifest["check"] = {"texts": len(CHECK_PAIRS) + len(queries), "min_token_cosine_vs_torch": round(min(cosines), 5),
                             "same_order": same}
        write_json_atomic(tmp / ONNX_MANIFEST, manifest)
        if (tmp / "training.json").is_file():  # the card: test results given, the speed and the CPU it was measured on
            info = json.loads((tmp / "training.json").read_text(encoding="utf-8"))
            info["shipped"] = {"name": target.name, "backend": "onnx-int8", "quantization": manifest["quantization"],
                               "speed": measure_colbert(tmp).to_json()}
            write_colbert_card(tmp, {**info, **({"evaluation": evaluation} if evaluation else {})})
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    return ShippedColBERT(target, size, min(cosines), same)
