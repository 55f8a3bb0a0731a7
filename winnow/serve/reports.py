"""The eval reports a server shows (``winnow serve --reports DIR``): ``winnow eval`` output folders.

``DIR`` is one eval output folder (it holds ``report.json``) or a folder of them (each subfolder holding
a ``report.json``). A report is named by its folder's name and looked up by that name among the folders
found, never joined onto a path, so a request cannot reach outside ``DIR``. The folder is read anew on
every request: an evaluation that finishes while the server runs shows up without a restart.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from winnow.errors import WinnowError

log = logging.getLogger(__name__)

REPORT_FILE = "report.json"  # what winnow.evaluate.report.write_report writes
REPORT_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}$")


class ReportNotFoundError(WinnowError):
    """No readable report of that name (the message lists the ones there are)."""


@dataclass(frozen=True)
class ReportInfo:
    name: str
    dataset: str
    split: str
    created: str
    judged_queries: int
    metrics: tuple[str, ...]
    methods: tuple[str, ...]
    reranker: str | None


class ReportShelf:
    def __init__(self, root: Path | str | None) -> None:
        self.root = None if root is None else Path(root)

    @property
    def configured(self) -> bool:
        return self.root is not None

    def _folders(self) -> dict[str, Path]:
        root = self.root
        if root is None or not root.is_dir():
            return {}
        candidates = [root] if (root / REPORT_FILE).is_file() else sorted(p for p in root.iterdir() if p.is_dir())
        return {
            p.name: p for p in candidates if REPORT_NAME_RE.match(p.name) and (p / REPORT_FILE).is_file()
        }

    def infos(self) -> list[ReportInfo]:
        """The readable reports, newest first (unreadable ones are logged and left out)."""
        out = []
        for name, folder in self._folders().items():
            try:
                out.append(_info(name, _read(folder)))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("skipping eval report %s: %s", folder, exc)
        return sorted(out, key=lambda r: (r.created, r.name), reverse=True)

    def read(self, name: str) -> dict[str, Any]:
        """The report's ``report.json`` as ``winnow eval`` wrote it, less the server's paths (see
        :func:`without_paths`)."""
        folders = self._folders()
        folder = folders.get(name)
        if folder is None:
            known = ", ".join(sorted(folders)) or "none"
            where = "" if self.configured else " (the server was started without --reports DIR)"
            raise ReportNotFoundError(f"no eval report named {name!r}{where}; reports: {known}")
        try:
            return without_paths(_read(folder))
        except (OSError, ValueError) as exc:
            raise ReportNotFoundError(f"eval report {name!r} cannot be read: {exc}") from None


def without_paths(data: dict[str, Any]) -> dict[str, Any]:
    """A server does not tell clients where its files are: drop ``dataset_path`` and ``corpus.path``, and
    name a reranker given as a folder by the folder's name."""
    out = {k: v for k, v in data.items() if k != "dataset_path"}
    if isinstance(out.get("corpus"), dict):
        out["corpus"] = {k: v for k, v in out["corpus"].items() if k != "path"}
    if isinstance(out.get("reranker"), str):
        out["reranker"] = _name_of(out["reranker"])
    return out


def _name_of(model: str) -> str:
    return Path(model).name if "/" in model and (model.startswith((".", "/", "~")) or model.count("/") > 1) else model


def _read(folder: Path) -> dict[str, Any]:
    data = json.loads((folder / REPORT_FILE).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("methods"), list):
        raise ValueError(f"{REPORT_FILE} is not a winnow eval report (no 'methods' list)")
    return data


def _info(name: str, data: dict[str, Any]) -> ReportInfo:
    return ReportInfo(
        name=name,
        dataset=str(data.get("dataset", "")),
        split=str(data.get("split", "")),
        created=str(data.get("created", "")),
        judged_queries=int(data.get("judged_queries", 0)),
        metrics=tuple(str(m) for m in data.get("metrics", ())),
        methods=tuple(str(m["method"]) for m in data["methods"]),
        reranker=None if data.get("reranker") is None else _name_of(str(data["reranker"])),
    )
