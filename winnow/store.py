"""SQLite storage of a collection's documents and chunks, versioned by generation.

Each row carries the generation that added it and, once replaced or deleted, the generation that
removed it. A row is live at generation G when ``added_gen <= G`` and ``deleted_gen`` is NULL or
``> G``. The collection's manifest names the committed generation; :meth:`Store.rollback_to` undoes
whatever a crashed write left beyond it, so SQLite and the index files always agree.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from winnow.types import Chunk, Document, with_title

SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    rowid INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    title TEXT NOT NULL,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL,
    hash TEXT NOT NULL,
    added_gen INTEGER NOT NULL,
    deleted_gen INTEGER
);
CREATE INDEX IF NOT EXISTS documents_id ON documents(id);
CREATE TABLE IF NOT EXISTS chunks (
    key INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    start INTEGER NOT NULL,
    end INTEGER NOT NULL,
    added_gen INTEGER NOT NULL,
    deleted_gen INTEGER
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id);
CREATE INDEX IF NOT EXISTS documents_deleted ON documents(deleted_gen) WHERE deleted_gen IS NOT NULL;
CREATE INDEX IF NOT EXISTS chunks_deleted ON chunks(deleted_gen) WHERE deleted_gen IS NOT NULL;
CREATE INDEX IF NOT EXISTS documents_added ON documents(added_gen);
CREATE INDEX IF NOT EXISTS chunks_added ON chunks(added_gen);
CREATE TABLE IF NOT EXISTS settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

LIVE = "added_gen <= :gen AND (deleted_gen IS NULL OR deleted_gen > :gen)"


def document_hash(doc: Document) -> str:
    payload = json.dumps([doc.title, doc.text, dict(doc.metadata)], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class StoredChunk:
    key: int
    doc_id: str
    index: int


class Store:
    """One SQLite file; all writes of one generation happen in one transaction."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    # -- reading -------------------------------------------------------------------------------
    def _live_in(self, gen: int, table: str, columns: str, id_column: str, ids: Sequence[str]) -> Iterable[tuple]:
        """Rows of ``table`` live at ``gen`` whose ``id_column`` is in ``ids`` (queried in batches)."""
        for batch in _batches(ids):
            marks = ",".join("?" * len(batch))
            yield from self.db.execute(
                f"SELECT {columns} FROM {table} WHERE {id_column} IN ({marks}) AND added_gen <= ? "
                f"AND (deleted_gen IS NULL OR deleted_gen > ?)",
                (*batch, gen, gen),
            )

    def live_hashes(self, gen: int, ids: Sequence[str]) -> dict[str, str]:
        return dict(self._live_in(gen, "documents", "id, hash", "id", ids))

    def live_chunks(self, gen: int) -> list[StoredChunk]:
        rows = self.db.execute(f"SELECT key, doc_id, idx FROM chunks WHERE {LIVE} ORDER BY key", {"gen": gen})
        return [StoredChunk(*r) for r in rows]

    def live_chunk_keys(self, gen: int, doc_ids: Sequence[str]) -> list[int]:
        """Keys of the live chunks of these documents."""
        return [k for (k,) in self._live_in(gen, "chunks", "key", "doc_id", doc_ids)]

    def latest_generation(self) -> int:
        """The highest generation any row was added or retired at (what a lost manifest had, unless a
        write was interrupted after its store commit)."""
        row = self.db.execute(
            "SELECT MAX(g) FROM (SELECT MAX(added_gen) AS g FROM documents UNION ALL SELECT MAX(deleted_gen) FROM documents)"
        ).fetchone()
        return int(row[0] or 0)

    def settings(self) -> dict:
        """The collection's settings this store keeps beside the manifest (model, chunking), for repairs."""
        return {name: json.loads(value) for name, value in self.db.execute("SELECT name, value FROM settings")}

    def save_settings(self, settings: dict) -> None:
        with self.db:
            self.db.executemany(
                "INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                [(k, json.dumps(v, sort_keys=True)) for k, v in settings.items()],
            )

    def live_metadata(self, gen: int) -> dict[str, dict]:
        """Every live document's metadata, by id."""
        rows = self.db.execute(f"SELECT id, metadata FROM documents WHERE {LIVE}", {"gen": gen})
        return {doc_id: json.loads(metadata) for doc_id, metadata in rows}

    def count_documents(self, gen: int) -> int:
        return self.db.execute(f"SELECT COUNT(*) FROM documents WHERE {LIVE}", {"gen": gen}).fetchone()[0]

    def documents(self, gen: int, ids: Sequence[str]) -> dict[str, Document]:
        rows = self._live_in(gen, "documents", "id, title, text, metadata", "id", ids)
        return {doc_id: Document(doc_id, text, title, json.loads(meta)) for doc_id, title, text, meta in rows}

    def chunk_spans(self, gen: int, doc_ids: Sequence[str]) -> dict[tuple[str, int], tuple[int, int]]:
        rows = self._live_in(gen, "chunks", "doc_id, idx, start, end", "doc_id", doc_ids)
        return {(d, i): (s, e) for d, i, s, e in rows}

    def iter_chunk_contents(self, gen: int) -> Iterable[tuple[int, str]]:
        """(key, title + text of the chunk) for every live chunk, by key."""
        rows = self.db.execute(
            f"SELECT c.key, d.title, substr(d.text, c.start + 1, c.end - c.start) FROM chunks c "
            f"JOIN documents d ON d.id = c.doc_id AND d.added_gen <= :gen "
            f"AND (d.deleted_gen IS NULL OR d.deleted_gen > :gen) "
            f"WHERE c.added_gen <= :gen AND (c.deleted_gen IS NULL OR c.deleted_gen > :gen) ORDER BY c.key",
            {"gen": gen},
        )
        for key, title, text in rows:
            yield key, with_title(title, text)

    # -- writing -------------------------------------------------------------------------------
    def write_generation(
        self, gen: int, documents: Sequence[Document], chunks: Sequence[Chunk], delete_ids: Sequence[str]
    ) -> list[int]:
        """In one transaction: retire ``delete_ids`` (and old versions of ``documents``) at ``gen`` and
        insert the new documents and chunks. Returns the new chunks' keys, in order."""
        prev = gen - 1
        retire = list(dict.fromkeys([*delete_ids, *(d.id for d in documents)]))
        cur = self.db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            for batch in _batches(retire):
                marks = ",".join("?" * len(batch))
                for table, col in (("documents", "id"), ("chunks", "doc_id")):
                    cur.execute(
                        f"UPDATE {table} SET deleted_gen = ? WHERE {col} IN ({marks}) AND added_gen <= ? "
                        f"AND deleted_gen IS NULL",
                        (gen, *batch, prev),
                    )
            cur.executemany(
                "INSERT INTO documents (id, title, text, metadata, hash, added_gen) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (d.id, d.title, d.text, json.dumps(dict(d.metadata), ensure_ascii=False), document_hash(d), gen)
                    for d in documents
                ],
            )
            keys = []
            for c in chunks:
                cur.execute(
                    "INSERT INTO chunks (doc_id, idx, start, end, added_gen) VALUES (?, ?, ?, ?, ?)",
                    (c.doc_id, c.index, c.start, c.end, gen),
                )
                keys.append(cur.lastrowid)
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return keys

    def rollback_to(self, gen: int) -> None:
        """Forget every change made after ``gen`` (a write that crashed before its commit point)."""
        with self.db:
            for table in ("documents", "chunks"):
                self.db.execute(f"DELETE FROM {table} WHERE added_gen > ?", (gen,))
                self.db.execute(f"UPDATE {table} SET deleted_gen = NULL WHERE deleted_gen > ?", (gen,))

    def purge(self, gen: int) -> None:
        """Drop rows that are dead at ``gen`` and every later generation."""
        with self.db:
            for table in ("documents", "chunks"):
                self.db.execute(f"DELETE FROM {table} WHERE deleted_gen IS NOT NULL AND deleted_gen <= ?", (gen,))


def _batches(items: Sequence[str], size: int = 500) -> Iterable[list[str]]:
    items = list(items)
    for i in range(0, len(items), size):
        yield items[i : i + size]
