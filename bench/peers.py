"""The three implementations the benchmark runs side by side, each written the way its users write it.

- ``seed``: the seed notebook. ``model.encode(corpus)``; per query a Python loop of ``util.cos_sim``
  over every document embedding, sort, then ``CrossEncoder.predict`` on the top candidates.
- ``st``: the sentence-transformers retrieve & re-rank recipe. ``model.encode(corpus,
  convert_to_tensor=True)``, ``util.semantic_search`` and ``CrossEncoder.predict``, all with defaults.
- ``winnow``: a :class:`~winnow.collection.Collection` with its defaults (chunking, exact + HNSW + BM25
  indexes, hybrid first stage, depth 100) and :class:`~winnow.rerank.cross_encoder.CrossEncoderReranker`.

Every implementation reads the same passages (``title + " " + text``, as winnow's chunks do), keeps
``DEPTH`` candidates and returns the best ``TOP_K`` document ids. Heavy imports happen in methods.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from winnow.types import with_title

DEPTH = 100
TOP_K = 10


def passage(doc: dict) -> str:
    return with_title(doc.get("title") or "", doc["text"])


class SeedNotebook:
    name = "seed"
    label = "seed notebook"
    describe = "Python loop of util.cos_sim per document, then CrossEncoder.predict"

    def __init__(self, bi_encoder: str, cross_encoder: str, docs: list[dict]) -> None:
        self.bi_path, self.ce_path = bi_encoder, cross_encoder
        self.ids = [d["_id"] for d in docs]
        self.texts = [passage(d) for d in docs]
        self.embeddings = None

    def prepare(self, directory: Path) -> None:
        pass

    def backends(self) -> dict:
        return {"bi_encoder": "torch", "cross_encoder": "torch"}

    def load_bi_encoder(self) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(self.bi_path)

    def load_cross_encoder(self) -> None:
        from sentence_transformers import CrossEncoder

        self.cross_encoder = CrossEncoder(self.ce_path)

    def index(self) -> None:
        self.embeddings = self.model.encode(self.texts)

    def save(self, directory: Path) -> None:
        np.save(directory / "embeddings.npy", np.asarray(self.embeddings), allow_pickle=False)

    def load(self, directory: Path) -> None:
        self.embeddings = np.load(directory / "embeddings.npy", allow_pickle=False)

    def encode_query(self, query: str):
        return self.model.encode(query)

    def first_stage(self, query_embedding, k: int = DEPTH) -> list[int]:
        from sentence_transformers import util

        scores = []
        for doc_embedding in self.embeddings:
            scores.append(float(util.cos_sim(query_embedding, doc_embedding)))
        return sorted(range(len(scores)), key=lambda i: scores[i], reverse=True)[:k]

    def rerank(self, query: str, candidates: list[int]) -> list[int]:
        scores = self.cross_encoder.predict([(query, self.texts[i]) for i in candidates])
        order = sorted(range(len(candidates)), key=lambda j: scores[j], reverse=True)
        return [candidates[j] for j in order]

    def search(self, query: str) -> tuple[list[str], dict[str, float]]:
        """The pipeline as the notebook runs it; returns the top ids and each stage's milliseconds
        (timed around the same calls, so the code path is unchanged)."""
        t0 = time.perf_counter()
        query_embedding = self.encode_query(query)
        t1 = time.perf_counter()
        candidates = self.first_stage(query_embedding, DEPTH)
        t2 = time.perf_counter()
        ranked = self.rerank(query, candidates)
        t3 = time.perf_counter()
        ids = [self.ids[i] for i in ranked[:TOP_K]]
        ms = lambda a, b: (b - a) * 1000.0
        return ids, {"encode": ms(t0, t1), "first_stage": ms(t1, t2), "rerank": ms(t2, t3), "pairs": len(candidates)}


class SentenceTransformersRecipe(SeedNotebook):
    name = "st"
    label = "sentence-transformers recipe"
    describe = "util.semantic_search + CrossEncoder.predict, defaults"

    def index(self) -> None:
        self.embeddings = self.model.encode(self.texts, convert_to_tensor=True)

    def save(self, directory: Path) -> None:
        np.save(directory / "embeddings.npy", self.embeddings.cpu().numpy(), allow_pickle=False)

    def load(self, directory: Path) -> None:
        import torch

        self.embeddings = torch.from_numpy(np.load(directory / "embeddings.npy", allow_pickle=False))

    def encode_query(self, query: str):
        return self.model.encode(query, convert_to_tensor=True)

    def first_stage(self, query_embedding, k: int = DEPTH) -> list[int]:
        from sentence_transformers import util

        hits = util.semantic_search(query_embedding, self.embeddings, top_k=k)[0]
        return [h["corpus_id"] for h in hits]

    def rerank(self, query: str, candidates: list[int]) -> list[int]:
        scores = self.cross_encoder.predict([(query, self.texts[i]) for i in candidates])
        order = np.argsort(-np.asarray(scores), kind="stable")
        return [candidates[j] for j in order]


class Winnow:
    name = "winnow"
    label = "winnow"
    describe = "Collection defaults (hybrid, depth 100, backend auto) + CrossEncoderReranker defaults (score cache off)"

    def __init__(self, bi_encoder: str, cross_encoder: str, docs: list[dict]) -> None:
        self.bi_path, self.ce_path = bi_encoder, cross_encoder
        self.docs = docs
        self.ids = [d["_id"] for d in docs]
        self.texts = [passage(d) for d in docs]
        self.home: Path | None = None
        self.col = None

    def prepare(self, directory: Path) -> None:
        self.home = Path(directory) / "collections"

    def load_bi_encoder(self) -> None:
        from winnow.collection import Collection

        if self.col is None:
            self.col = Collection.create("bench", home=self.home, model=self.bi_path)
        self.encoder = self.col.encoder
        self.encoder.encode_query("warm up")  # loads the model (and its ONNX export, where that is the backend)

    def load_cross_encoder(self) -> None:
        import inspect

        from winnow.rerank.cross_encoder import CrossEncoderReranker

        # Defaults, except the score cache: the same queries come back in every loop here, and a
        # cache hit would time a dictionary lookup instead of the model.
        no_cache = {"cache": False} if "cache" in inspect.signature(CrossEncoderReranker).parameters else {}
        self.reranker = CrossEncoderReranker(self.ce_path, **no_cache)
        self.reranker.score("warm", ["up"])  # loads the model

    def backends(self) -> dict:
        return {"bi_encoder": str(getattr(self.encoder, "backend", "torch")),
                "cross_encoder": str(getattr(self.reranker, "backend", "torch"))}

    def index(self) -> None:
        from winnow.types import Document

        self.col.add([Document(d["_id"], d["text"], d.get("title") or "") for d in self.docs])

    def save(self, directory: Path) -> None:
        self.col.close()

    def load(self, directory: Path) -> None:
        from winnow.collection import Collection

        state = Path(directory) / "collection.txt"  # a prepared collection elsewhere (the eval cache)
        self.col = Collection(Path(state.read_text().strip())) if state.is_file() else Collection.open("bench", home=self.home)
        from winnow.index.hnsw import HNSWIndex
        from winnow.index.segments import DenseMode

        segments = self.col.load().segment_set  # open the segments now, as a server does at start
        self.exact, self.lexical = segments.dense(DenseMode.EXACT), segments.lexical()
        if segments.uses_graphs():
            self.hnsw = segments.dense(DenseMode.HNSW)
        else:  # a collection this small keeps no graph: build one over its vectors for the HNSW row
            keys = segments.live_keys()
            vectors = np.concatenate([np.asarray(s.vectors)[np.isin(s.keys, keys)] for s in segments.segments])
            self.hnsw = HNSWIndex.from_vectors(np.concatenate([s.keys[np.isin(s.keys, keys)] for s in segments.segments]), vectors)
        self.row_of = {doc_id: i for i, doc_id in enumerate(self.ids)}

    def encode_query(self, query: str):
        return self.encoder.encode_query(query)

    def _rows(self, keys) -> list[int]:
        keymap = self.col.keymap
        return [self.row_of[keymap[int(k)][0]] for k in np.asarray(keys).ravel() if k >= 0]

    def first_stage(self, query_embedding, k: int = DEPTH) -> list[int]:
        return self._rows(self.exact.search(query_embedding, k).keys)

    def first_stage_hnsw(self, query_embedding, k: int = DEPTH) -> list[int]:
        return self._rows(self.hnsw.search(query_embedding, k).keys)

    def first_stage_bm25(self, query: str, k: int = DEPTH) -> list[int]:
        return self._rows(self.lexical.search([query], k).keys)

    def rerank(self, query: str, candidates: list[int]) -> list[int]:
        scores = self.reranker.score(query, [self.texts[i] for i in candidates])
        order = np.argsort(-scores, kind="stable")
        return [candidates[j] for j in order]

    def search(self, query: str, method: str = "hybrid") -> tuple[list[str], dict[str, float]]:
        """``Collection.search`` with its defaults (hybrid, depth 100, top 10); its own stage timings."""
        ranking = self.col.search(query, method=method, reranker=self.reranker)
        return ranking.doc_ids, {**ranking.timings_ms, "pairs": DEPTH}


IMPLEMENTATIONS = {cls.name: cls for cls in (SeedNotebook, SentenceTransformersRecipe, Winnow)}


def read_docs(corpus: Path, limit: int | None) -> list[dict]:
    docs = []
    with open(corpus, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                record = json.loads(line)
                docs.append({"_id": str(record["_id"]), "title": record.get("title") or "", "text": record["text"]})
                if limit is not None and len(docs) >= limit:
                    break
    return docs


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, (time.perf_counter() - start) * 1000.0
