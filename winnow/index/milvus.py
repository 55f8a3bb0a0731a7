"""Milvus as a collection's first-stage store: vectors, the BM25 side and metadata live in Milvus.

A collection created with ``store="milvus-lite:PATH"`` (embedded Milvus in one local file, for tests and
laptops) or ``store="milvus://HOST:PORT"`` (a Milvus server or cluster) keeps, per chunk, one Milvus row:
its key (the store's chunk key, the primary key), its vector, its text (Milvus's BM25 function turns it
into a sparse vector), its document id, chunk index, metadata, and the generation that wrote it. The
documents themselves stay in the collection's SQLite store, which hydrates hits as for a local collection;
everything above the first stage (fusion, filters, reranking, eval, serve) is unchanged.

Dense search uses a FLAT index (exact inner product, so the top-k equals winnow's exact index); BM25 is
Milvus's own (its analyzer and statistics; scores differ from winnow's postings in scale and slightly in
order). Filters are translated to Milvus expressions over the JSON metadata.

Crash safety, with a store that has no transactions shared with SQLite: a write inserts rows tagged with
its new generation G before committing the manifest; readers ask only for rows of generations up to the
committed one and not tombstoned, so rows of an interrupted write are never seen, and the next writer
deletes them (``gen > committed``). Rows a commit retired are deleted right after the commit; until then,
and if that delete is interrupted, the manifest's tombstones keep them out of every search, and the next
writer deletes them again (deletes are idempotent).
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Sequence

import numpy as np

from winnow.errors import CollectionError, InvalidArgumentError, MissingDependencyError, StoreError
from winnow.index.base import SearchResult, as_vectors, check_k, empty_result, text_queries

log = logging.getLogger(__name__)

MAX_LIMIT = 16_384  # Milvus's largest top-k
MAX_TEXT = 65_535


class StoreKind(str, Enum):
    LOCAL = "local"
    MILVUS_LITE = "milvus-lite"
    MILVUS = "milvus"


@dataclass(frozen=True)
class StoreSpec:
    """Where a collection's first stage lives. ``uri``: a file path (milvus-lite) or ``http://HOST:PORT``."""

    kind: StoreKind
    uri: str = ""

    @classmethod
    def parse(cls, text: str | None) -> "StoreSpec":
        """``None``/``local``, ``milvus-lite:PATH`` or ``milvus://HOST:PORT``."""
        if text in (None, "", "local"):
            return cls(StoreKind.LOCAL)
        if text.startswith("milvus-lite:"):
            path = text[len("milvus-lite:") :]
            if not path:
                raise InvalidArgumentError("store 'milvus-lite:' needs a file path, e.g. milvus-lite:./winnow.db")
            return cls(StoreKind.MILVUS_LITE, str(Path(path).expanduser().resolve()))
        if text.startswith("milvus://"):
            address = text[len("milvus://") :].rstrip("/")
            if not address or ":" not in address:
                raise InvalidArgumentError(f"store {text!r}: give the server as milvus://HOST:PORT")
            return cls(StoreKind.MILVUS, f"http://{address}")
        raise InvalidArgumentError(
            f"unknown store {text!r}; use local (default), milvus-lite:PATH (embedded) or milvus://HOST:PORT"
        )

    def to_json(self) -> dict:
        return {"kind": self.kind.value, "uri": self.uri}

    @classmethod
    def from_json(cls, payload: dict | None) -> "StoreSpec":
        return cls(StoreKind.LOCAL) if not payload else cls(StoreKind(payload["kind"]), payload.get("uri", ""))


_CLIENTS: dict[str, list] = {}  # uri -> [client, users]
_CLIENTS_LOCK = threading.Lock()


def _acquire(spec: StoreSpec):
    """One client per URI per process, shared by its collections (milvus-lite lets one process open a file)."""
    try:
        from pymilvus import MilvusClient
        from pymilvus.exceptions import MilvusException
    except ImportError as exc:
        raise MissingDependencyError("a Milvus store needs pymilvus and milvus-lite: pip install 'winnow[milvus]'") from exc
    with _CLIENTS_LOCK:
        if spec.uri not in _CLIENTS:
            try:
                _CLIENTS[spec.uri] = [MilvusClient(spec.uri), 0]
            except MilvusException as exc:
                if spec.kind is StoreKind.MILVUS_LITE:
                    raise CollectionError(
                        f"cannot open the milvus-lite file {spec.uri}: {exc.message}. milvus-lite lets one process "
                        f"open a file at a time: close the other (a server, another winnow command), or use a Milvus "
                        f"server (milvus://HOST:PORT) for several processes"
                    ) from None
                raise CollectionError(f"cannot reach Milvus at {spec.uri}: {exc.message}") from None
        entry = _CLIENTS[spec.uri]
        entry[1] += 1
        return entry[0]


def _release(uri: str) -> None:
    with _CLIENTS_LOCK:
        entry = _CLIENTS.get(uri)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del _CLIENTS[uri]
            entry[0].close()
            if not uri.startswith("http"):  # milvus-lite serves the file from a thread of this process: stop it,
                from milvus_lite.server_manager import server_manager_instance  # which frees the file's lock

                server_manager_instance.release_server(uri)


@contextmanager
def milvus_errors(spec: StoreSpec):
    """Milvus's exceptions as winnow's :class:`StoreError` (the server answers 503 with the message)."""
    from pymilvus.exceptions import MilvusException

    try:
        yield
    except MilvusException as exc:
        raise StoreError(f"the Milvus store at {spec.uri} failed: {exc.message}") from exc


def filter_expression(normal: dict[str, tuple[str, object]]) -> str:
    """A winnow filter in normal form (:func:`winnow.retrieve.filters.check_filter`) as a Milvus expression."""
    import json

    parts = []
    for field, (op, operand) in normal.items():
        target = f"metadata[{json.dumps(field)}]"
        if op == "$in":  # Milvus takes `in` on plain fields only: an OR of equalities on a JSON path
            alternatives = [f"{target} is null" if v is None else f"{target} == {json.dumps(v)}" for v in operand]
            parts.append("(" + " or ".join(alternatives or ["false"]) + ")")
        elif operand is None:
            parts.append(f"{target} is null")
        else:
            parts.append(f"{target} == {json.dumps(operand)}")
    return " and ".join(parts)


class MilvusStore:
    """The Milvus collection behind one winnow collection."""

    def __init__(self, spec: StoreSpec, collection: str) -> None:
        self.spec = spec
        self.collection = collection
        self.client = _acquire(spec)
        self._open = True

    def close(self) -> None:
        """Release this store's share of the client (the last one closes it, freeing a milvus-lite file)."""
        if self._open:
            self._open = False
            _release(self.spec.uri)

    def ready(self) -> bool:
        """Whether the Milvus collection exists; loads it into memory once (Milvus searches only loaded ones)."""
        if not self.client.has_collection(self.collection):
            return False
        if not getattr(self, "_loaded", False):
            with milvus_errors(self.spec):
                self.client.load_collection(self.collection)
            self._loaded = True
        return True

    def ensure(self, dim: int) -> None:
        """Create the Milvus collection (schema, FLAT + BM25 indexes) where it does not exist yet."""
        from pymilvus import DataType, Function, FunctionType

        c = self.client
        if c.has_collection(self.collection):
            return
        schema = c.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("key", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=int(dim))
        schema.add_field("text", DataType.VARCHAR, max_length=MAX_TEXT, enable_analyzer=True)
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_field("doc_id", DataType.VARCHAR, max_length=1024)
        schema.add_field("chunk", DataType.INT32)
        schema.add_field("gen", DataType.INT64)
        schema.add_field("metadata", DataType.JSON)
        schema.add_function(Function(name="bm25", function_type=FunctionType.BM25, input_field_names=["text"],
                                     output_field_names=["sparse"]))
        index = c.prepare_index_params()
        index.add_index("vector", index_type="FLAT", metric_type="IP")
        index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
        with milvus_errors(self.spec):
            c.create_collection(self.collection, schema=schema, index_params=index, consistency_level="Strong")

    def insert(self, gen: int, keys: np.ndarray, doc_ids: Sequence[str], chunk_idx: np.ndarray, vectors: np.ndarray,
               texts: Sequence[str], metadata: Sequence[dict], batch: int = 2000) -> None:
        self.ensure(vectors.shape[1])
        rows = [
            {"key": int(k), "vector": v.tolist(), "text": t[: MAX_TEXT // 4], "doc_id": d, "chunk": int(c), "gen": int(gen),
             "metadata": dict(m)}
            for k, d, c, v, t, m in zip(keys.tolist(), doc_ids, chunk_idx.tolist(), np.asarray(vectors, np.float32),
                                        texts, metadata)
        ]
        self.ready()
        with milvus_errors(self.spec):
            for start in range(0, len(rows), batch):
                self.client.insert(self.collection, rows[start : start + batch])

    def delete_keys(self, keys: np.ndarray, batch: int = 5000) -> None:
        if not self.ready():
            return
        keys = np.asarray(keys, dtype=np.int64).tolist()
        with milvus_errors(self.spec):
            for start in range(0, len(keys), batch):
                self.client.delete(self.collection, filter=f"key in {keys[start : start + batch]}")

    def delete_after(self, gen: int) -> None:
        """Drop rows of generations past ``gen`` (an interrupted write's)."""
        if self.ready():
            with milvus_errors(self.spec):
                self.client.delete(self.collection, filter=f"gen > {int(gen)}")

    def drop(self) -> None:
        if self.client.has_collection(self.collection):
            self.client.drop_collection(self.collection)

    def view(self, gen: int, tombstones: np.ndarray, n_rows: int) -> "MilvusSet":
        return MilvusSet(self, gen, np.asarray(tombstones, dtype=np.int64), n_rows)


class MilvusKeyMap:
    """key -> (document id, chunk index), learnt from the output fields of the searches that returned the
    key (a Milvus row's document and chunk never change); bounded."""

    LIMIT = 1_000_000

    def __init__(self) -> None:
        self._refs: dict[int, tuple[str, int]] = {}
        self._lock = threading.Lock()

    def learn(self, pairs) -> None:
        with self._lock:
            if len(self._refs) > self.LIMIT:
                self._refs.clear()
            self._refs.update(pairs)

    def resolve(self, keys: np.ndarray) -> list[tuple[str, int] | None]:
        refs = self._refs
        return [refs.get(k) if k >= 0 else None for k in np.asarray(keys).tolist()]

    def __contains__(self, key) -> bool:
        return key in self._refs

    def __getitem__(self, key) -> tuple[str, int]:
        return self._refs[key]


class MilvusSet:
    """A Milvus-backed collection's searchable state at one generation (the interface of
    :class:`winnow.index.segments.SegmentSet` that retrievers and the collection use)."""

    def __init__(self, store: MilvusStore, gen: int, tombstones: np.ndarray, n_rows: int) -> None:
        self.store, self.gen, self.tombstones_keys, self.n_rows = store, gen, tombstones, n_rows
        self.keymap = MilvusKeyMap()

    def __len__(self) -> int:
        return self.n_rows

    def uses_graphs(self) -> bool:
        return False

    def expression(self, where: dict | None) -> str:
        parts = [f"gen <= {self.gen}"]
        if self.tombstones_keys.size:
            parts.append(f"not (key in {self.tombstones_keys.tolist()})")
        if where:
            parts.append(f"({filter_expression(where)})")
        return " and ".join(parts)

    def dense(self, mode=None, allowed=None, where: dict | None = None) -> "MilvusDenseView":
        return MilvusDenseView(self, allowed, where)

    def lexical(self, allowed=None, where: dict | None = None) -> "MilvusLexicalView":
        return MilvusLexicalView(self, allowed, where)

    def vectors_of(self, doc_ids: Sequence[str]) -> dict[str, np.ndarray]:
        import json

        out: dict[str, list[np.ndarray]] = {}
        if not self.store.ready():
            return {}
        ids = list(doc_ids)
        for start in range(0, len(ids), 500):
            with milvus_errors(self.store.spec):
                rows = self.store.client.query(
                    self.store.collection, filter=f"{self.expression(None)} and doc_id in {json.dumps(ids[start:start + 500])}",
                    output_fields=["doc_id", "vector"],
                )
            for r in rows:
                out.setdefault(r["doc_id"], []).append(np.asarray(r["vector"], dtype=np.float32))
        return {d: np.stack(v) for d, v in out.items()}


class _MilvusView:
    def __init__(self, owner: MilvusSet, allowed, where: dict | None) -> None:
        self.owner = owner
        self.expr = owner.expression(where)
        self._n = owner.n_rows

    def __len__(self) -> int:
        return self._n

    def _search(self, data, k: int, field: str, params: dict | None, n_queries: int) -> SearchResult:
        result = empty_result(n_queries, k)
        store = self.owner.store
        if self._n == 0 or not store.ready():
            return result
        with milvus_errors(store.spec):
            hits = store.client.search(store.collection, data=data, anns_field=field, limit=min(k, MAX_LIMIT),
                                       filter=self.expr, output_fields=["doc_id", "chunk"], search_params=params or {})
        learnt = []
        for qi, row in enumerate(hits):
            for j, h in enumerate(row[:k]):
                result.keys[qi, j] = int(h["key"] if "key" in h else h["id"])
                result.scores[qi, j] = self.score(float(h["distance"]))
                entity = h.get("entity", {})
                learnt.append((int(result.keys[qi, j]), (entity["doc_id"], int(entity["chunk"]))))
        self.owner.keymap.learn(learnt)
        return result


class MilvusDenseView(_MilvusView):
    @staticmethod
    def score(distance: float) -> float:
        return distance  # inner product

    def search(self, queries, k: int) -> SearchResult:
        k = check_k(k)
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        queries = as_vectors(queries, queries.shape[1], "queries")
        return self._search([q.tolist() for q in queries], k, "vector", {"metric_type": "IP"}, queries.shape[0])


class MilvusLexicalView(_MilvusView):
    @staticmethod
    def score(distance: float) -> float:
        return abs(distance)  # milvus-lite reports BM25 negated (best first, most negative); winnow's are > 0

    def search(self, queries, k: int) -> SearchResult:
        k = check_k(k)
        queries = text_queries(queries)
        return self._search(queries, k, "sparse", {"metric_type": "BM25"}, len(queries))
