"""Helpers for the collection tests (not a test module): comparing rankings, copying collection folders."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from winnow.collection import Collection
from winnow.types import Document

METHODS = ("bm25", "dense", "hybrid")


def by_id(docs) -> dict[str, Document]:
    return {d.id: d for d in docs}


def all_ids(col: Collection, query: str, method: str) -> list[str]:
    return col.search(query, method=method, top_k=max(len(col), 1)).doc_ids


def assert_same_ranking(got, want, atol: float = 1e-4) -> None:
    """Same documents with the same scores and texts; order may differ only between near-equal scores."""
    assert len(got) == len(want), (got.doc_ids, want.doc_ids)
    g = {h.doc_id: h for h in got.hits}
    w = {h.doc_id: h for h in want.hits}
    assert g.keys() == w.keys()
    for doc_id, hit in g.items():
        assert hit.score == pytest.approx(w[doc_id].score, abs=atol), doc_id
        assert hit.text == w[doc_id].text and hit.title == w[doc_id].title, doc_id
    for a, b in zip(got.hits, want.hits):
        if a.doc_id != b.doc_id:
            assert abs(a.score - b.score) <= atol, (got.doc_ids, want.doc_ids)


def copy_collection(src: Path, dst: Path) -> Path:
    """A copy of a collection folder (SQLite's WAL included; its shared-memory index is rebuilt on open)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*-shm", ".lock"))
    return dst
