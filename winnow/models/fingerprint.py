"""One content hash of a model folder: what collections record to recognise their model, what model
exports and score caches are keyed by."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path


def model_files(folder: Path) -> list[Path]:
    """The files that make the model: all but dotfiles and the ``onnx/``/``openvino/`` export folders some
    hub repositories carry (an ONNX-only folder's own top-level ``model.onnx`` is the model and counts)."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and not p.relative_to(folder).as_posix().startswith(("onnx/", "openvino/"))
    )


def model_fingerprint(folder: Path | str) -> str:
    """sha256 over every model file's name and full contents (20 hex digits); computed once per process
    for each state of the folder (any file's size or mtime changing recomputes it)."""
    folder = Path(folder)
    stamp = tuple((p.as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in model_files(folder))
    return _hash(str(folder), stamp)


@lru_cache(maxsize=32)
def _hash(folder: str, stamp: tuple) -> str:
    root = Path(folder)
    digest = hashlib.sha256()
    for name, _, _ in stamp:
        file = Path(name)
        digest.update(file.relative_to(root).as_posix().encode() + b"\0")
        with file.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:20]
