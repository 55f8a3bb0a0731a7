"""Embedding cache on disk: (model space, sha256 of the text) -> float32 vector, in one SQLite file.

A *space* names everything that decides a vector besides the text: the model's content hash, the
backend (int8 vectors differ slightly from fp32 ones), the maximum sequence length and the prompt. Re-
indexing text that was encoded before in the same space reads the vector back instead of running the
model. Vectors are stored as raw little-endian float32 bytes (never pickled). Safe for several
processes (SQLite locking, WAL journal) and threads (one lock per cache object).
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)

SQL_CHUNK = 500  # keys per IN (...) query, below SQLite's variable limit

SCHEMA = """
CREATE TABLE IF NOT EXISTS spaces (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, dim INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS vectors (
    space INTEGER NOT NULL, key BLOB NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (space, key)
) WITHOUT ROWID;
"""


def text_key(text: str) -> bytes:
    """The cache key of a text: sha256 of its UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


class EmbeddingCache:
    """Vectors by (space, text hash). ``hits``/``misses`` count lookups since this object was made."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None  # opened on first use: searching never touches it
        self._spaces: dict[tuple[str, int], int] = {}
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        return f"EmbeddingCache({str(self.path)!r})"

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(self.path), timeout=60.0, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(SCHEMA)
            self._conn = conn
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
                self._spaces.clear()

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])

    def _space_id(self, space: str, dim: int) -> int:
        key = (space, dim)
        if key not in self._spaces:
            self._db.execute("INSERT OR IGNORE INTO spaces (name, dim) VALUES (?, ?)", (space, dim))
            row = self._db.execute("SELECT id, dim FROM spaces WHERE name = ?", (space,)).fetchone()
            if int(row[1]) != dim:  # same space, other dimension: a changed model under an old key
                self._db.execute("DELETE FROM vectors WHERE space = ?", (row[0],))
                self._db.execute("UPDATE spaces SET dim = ? WHERE id = ?", (dim, row[0]))
            self._spaces[key] = int(row[0])
        return self._spaces[key]

    def get_many(self, space: str, dim: int, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(vectors, found)``: a (len(texts), dim) float32 array and a bool mask of rows found."""
        keys = [text_key(t) for t in texts]
        out = np.zeros((len(keys), dim), dtype=np.float32)
        found = np.zeros(len(keys), dtype=bool)
        positions: dict[bytes, list[int]] = {}
        for i, k in enumerate(keys):
            positions.setdefault(k, []).append(i)
        unique = list(positions)
        with self._lock:
            sid = self._space_id(space, dim)
            for lo in range(0, len(unique), SQL_CHUNK):
                part = unique[lo : lo + SQL_CHUNK]
                marks = ",".join("?" * len(part))
                rows = self._db.execute(
                    f"SELECT key, vector FROM vectors WHERE space = ? AND key IN ({marks})", (sid, *part)
                ).fetchall()
                for key, blob in rows:
                    vector = np.frombuffer(blob, dtype="<f4")
                    if vector.shape[0] != dim:
                        continue
                    for i in positions[bytes(key)]:
                        out[i] = vector
                        found[i] = True
        self.hits += int(found.sum())
        self.misses += int((~found).sum())
        return out, found

    def put_many(self, space: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype="<f4")
        if len(texts) != len(vectors):
            raise ValueError(f"{len(texts)} texts but {len(vectors)} vectors")
        if not len(texts):
            return
        rows = [(text_key(t), v.tobytes()) for t, v in zip(texts, vectors)]
        with self._lock:
            sid = self._space_id(space, int(vectors.shape[1]))
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT OR REPLACE INTO vectors (space, key, vector) VALUES (?, ?, ?)",
                    [(sid, k, v) for k, v in rows],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def clear(self, space: str | None = None) -> None:
        """Forget every vector (or those of one space)."""
        with self._lock:
            if space is None:
                self._db.execute("DELETE FROM vectors")
            else:
                self._db.execute("DELETE FROM vectors WHERE space IN (SELECT id FROM spaces WHERE name = ?)", (space,))
