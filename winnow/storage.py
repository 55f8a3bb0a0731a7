"""Writing files so that a crash never leaves a half-written one: the one helper every module uses.

Write beside, flush to disk, rename over the target (atomic on POSIX), then sync the folder so the
rename itself survives a power cut. A reader sees the old file or the new one, never a mix.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator


def cache_root() -> Path:
    """Where winnow keeps what it can rebuild (model exports, mining pools, measurements):
    ``$WINNOW_CACHE_DIR``, else ``$WINNOW_HOME``, else ``$XDG_CACHE_HOME/winnow`` or ``~/.cache/winnow``."""
    for var in ("WINNOW_CACHE_DIR", "WINNOW_HOME"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "winnow"


def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    """Sync every file and folder under ``path`` (a generation built beside the committed one)."""
    for p in sorted(path.rglob("*")):
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
    for d in [path, *(p for p in path.rglob("*") if p.is_dir())]:
        fsync_dir(d)


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds, the file written there is synced
    and renamed onto ``path``. On an error the temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        if tmp.is_file():
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def replacing_folder(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; when the block succeeds it takes ``path``'s place
    (an existing folder there is moved aside first, then removed), so a crash leaves the old folder or the
    new one, whole. On an error the temporary folder is removed and ``path`` is untouched."""
    import shutil
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the folder is as readable as any other output
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        if path.exists():
            os.rename(path, old)
        os.rename(tmp, path)
        fsync_dir(path.parent)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already when the block succeeded


def atomic_write_bytes(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(file)`` on a binary temporary file beside ``path``, then rename it into place."""
    with replacing(path) as tmp, open(tmp, "wb") as f:
        write(f)


def write_text_atomic(path: str | Path, text: str) -> None:
    with replacing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | Path, payload: Any, *, sort_keys: bool = False) -> None:
    """``payload`` as indented UTF-8 JSON with a final newline."""
    write_text_atomic(path, json.dumps(payload, indent=2, ensure_ascii=False, sort_keys=sort_keys) + "\n")


def write_lines_atomic(path: str | Path, records: Iterable[Any]) -> int:
    """One JSON value a line (JSON Lines); returns how many were written."""
    n = 0
    with replacing(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
            n += 1
    return n
