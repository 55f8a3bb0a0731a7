"""A ColBERT late-interaction model: one small vector per token, scored by MaxSim.

The model is a BERT-style encoder (winnow starts from the bundled all-MiniLM-L6-v2), a linear projection
to ``dim`` (96 or 128) without bias, and L2 normalisation of every token vector. Texts are marked:

* a query reads ``[CLS] [Q] tokens [SEP]`` and is padded to ``query_length`` with ``[MASK]`` tokens that
  it attends to (ColBERT's query augmentation: the masks become soft expansion terms);
* a document reads ``[CLS] [D] tokens [SEP]``, cut at ``document_length``, and keeps one vector per real
  token (padding dropped).

The markers are two of BERT's unused vocabulary entries (``[unused0]``, ``[unused1]``), put in by id after
tokenisation, so the tokenizer needs no new tokens. A model folder holds the encoder (``save_pretrained``),
its tokenizer, ``projection.npy`` (dim x hidden, float32) and ``colbert.json`` (this config and a format
version). Torch is imported inside functions only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Sequence

import numpy as np

from winnow.errors import IncompatibleCollectionError, InvalidArgumentError
from winnow.models.resolve import COLBERT_CONFIG as CONFIG_FILE  # a ColBERT folder's config file

FORMAT_VERSION = 1
PROJECTION_FILE = "projection.npy"
DIMS = (96, 128)


@dataclass(frozen=True)
class ColBERTConfig:
    dim: int = 96
    query_length: int = 32  # every query is padded with [MASK] to this many tokens (markers included)
    document_length: int = 180
    query_marker: str = "[unused0]"
    document_marker: str = "[unused1]"

    def __post_init__(self) -> None:
        if self.dim not in DIMS:
            raise InvalidArgumentError(f"ColBERT dim must be one of {', '.join(map(str, DIMS))}, got {self.dim!r}")
        if self.query_length < 8 or self.document_length < 8:
            raise InvalidArgumentError(
                f"query_length and document_length must be >= 8 tokens, got {self.query_length} and {self.document_length}"
            )


@dataclass(frozen=True)
class TokenBatch:
    """Token ids for the encoder: ``input_ids`` and ``attention_mask`` (n x length, int64), and ``keep``
    (n x length, bool): which output vectors are the text's (queries keep every position, masks included)."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    keep: np.ndarray


def tokenize_queries(tokenizer, queries: Sequence[str], config: ColBERTConfig) -> TokenBatch:
    """``[CLS] [Q] q... [SEP] [MASK]...`` to exactly ``query_length`` tokens, every position attended."""
    q_id = tokenizer.convert_tokens_to_ids(config.query_marker)
    enc = tokenizer(list(queries), add_special_tokens=True, truncation=True, max_length=config.query_length - 1)
    n, length = len(enc["input_ids"]), config.query_length
    ids = np.full((n, length), tokenizer.mask_token_id, dtype=np.int64)
    for i, row in enumerate(enc["input_ids"]):
        marked = [row[0], q_id, *row[1:]]
        ids[i, : len(marked)] = marked
    ones = np.ones((n, length), dtype=np.int64)
    return TokenBatch(ids, ones, ones.astype(bool))


def tokenize_documents(tokenizer, texts: Sequence[str], config: ColBERTConfig) -> TokenBatch:
    """``[CLS] [D] d... [SEP]`` cut at ``document_length``, padded to the longest of the batch."""
    d_id = tokenizer.convert_tokens_to_ids(config.document_marker)
    enc = tokenizer(list(texts), add_special_tokens=True, truncation=True, max_length=config.document_length - 1)
    rows = [[row[0], d_id, *row[1:]] for row in enc["input_ids"]]
    length = max((len(r) for r in rows), default=1)
    ids = np.full((len(rows), length), tokenizer.pad_token_id, dtype=np.int64)
    mask = np.zeros((len(rows), length), dtype=np.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
        mask[i, : len(r)] = 1
    return TokenBatch(ids, mask, mask.astype(bool))


def build_module(encoder_path: str | Path, config: ColBERTConfig, projection: np.ndarray | None = None, *, seed: int = 0):
    """The torch module: encoder + projection (+ normalisation). ``projection`` None: a new orthogonal one
    (rows orthonormal, so the untrained model keeps the base's token geometry as well as a projection can)."""
    import torch
    from transformers import AutoModel

    from winnow.encode.colbert_torch import ColBERTModule

    encoder = AutoModel.from_pretrained(str(encoder_path), local_files_only=True)
    linear = torch.nn.Linear(encoder.config.hidden_size, config.dim, bias=False)
    if projection is None:
        gen = torch.Generator().manual_seed(seed)
        weight = torch.empty(config.dim, encoder.config.hidden_size)
        torch.nn.init.orthogonal_(weight, generator=gen)
        linear.weight.data.copy_(weight)
    else:
        if projection.shape != (config.dim, encoder.config.hidden_size):
            raise IncompatibleCollectionError(
                f"projection of shape {projection.shape}, the config wants {(config.dim, encoder.config.hidden_size)}"
            )
        linear.weight.data.copy_(torch.from_numpy(np.asarray(projection, dtype=np.float32)))
    return ColBERTModule(encoder, linear)


def read_config(folder: str | Path) -> ColBERTConfig:
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise InvalidArgumentError(f"{str(folder)!r} is not a ColBERT model folder (no {CONFIG_FILE}); give <run>/model")
    payload = json.loads(path.read_text(encoding="utf-8"))
    if payload.get("format_version") != FORMAT_VERSION:
        raise IncompatibleCollectionError(
            f"{path}: format_version {payload.get('format_version')!r}; this winnow reads {FORMAT_VERSION}"
        )
    return ColBERTConfig(**payload["config"])


def save_model(module, tokenizer, config: ColBERTConfig, folder: str | Path, *, extra: dict | None = None) -> Path:
    """Write a ColBERT model folder (encoder, tokenizer, projection.npy, colbert.json) at ``folder``."""
    from winnow.storage import atomic_write_bytes, write_json_atomic

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    module.encoder.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    weight = module.projection.weight.detach().float().cpu().numpy()
    atomic_write_bytes(folder / PROJECTION_FILE, lambda f: np.save(f, weight, allow_pickle=False))
    write_json_atomic(folder / CONFIG_FILE, {"format_version": FORMAT_VERSION, "config": asdict(config), **(extra or {})})
    return folder


ONNX_MANIFEST = "colbert-onnx.json"  # a shipped (ONNX int8) ColBERT folder: see winnow.train.ship_colbert
BACKENDS = ("auto", "torch", "onnx")


class ColBERTEncoder:
    """Encode queries and documents into token matrices (float32, rows of unit length) with a ColBERT
    model folder: ``winnow train colbert``'s ``<run>/model`` (torch) or a shipped one (``winnow train
    ship-colbert``: the encoder as int8 ONNX, the projection applied in numpy). Queries are always
    ``query_length`` x dim; documents one row per kept token. ``backend``: ``auto`` (ONNX where the folder
    has it), ``torch`` or ``onnx``."""

    def __init__(self, folder: str | Path, *, batch_size: int = 32, threads: int | None = None, backend: str = "auto") -> None:
        from winnow.models.resolve import resolve_model

        self.folder = resolve_model(folder).path  # a folder, or a name shipped in winnow/shipped/
        self.config = read_config(self.folder)
        self.batch_size = batch_size
        self.threads = threads
        if backend not in BACKENDS:
            raise InvalidArgumentError(f"unknown ColBERT backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
        has_onnx = (self.folder / ONNX_MANIFEST).is_file()
        if backend == "onnx" and not has_onnx:
            raise InvalidArgumentError(f"{self.folder} has no ONNX export ({ONNX_MANIFEST}); ship it with winnow train ship-colbert")
        if backend == "torch" and not (self.folder / "model.safetensors").is_file():
            raise InvalidArgumentError(f"{self.folder} holds no torch weights; use backend onnx")
        self.backend = "onnx" if backend == "onnx" or (backend == "auto" and has_onnx) else "torch"
        self.name = f"colbert:{self.folder.name}"

    @cached_property
    def _session(self):
        import onnxruntime as ort

        manifest = json.loads((self.folder / ONNX_MANIFEST).read_text(encoding="utf-8"))
        options = ort.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = self.threads
        from winnow.models.graph_passes import DISABLED_OPTIMIZERS

        session = ort.InferenceSession(str(self.folder / manifest["file"]), options, providers=["CPUExecutionProvider"],
                                       disabled_optimizers=list(DISABLED_OPTIMIZERS))
        return session, [i.name for i in session.get_inputs()]

    @cached_property
    def _projection(self) -> np.ndarray:
        return np.load(self.folder / PROJECTION_FILE, allow_pickle=False).astype(np.float32)

    def _vectors_onnx(self, batch: TokenBatch) -> np.ndarray:
        session, names = self._session
        feed = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
        if "token_type_ids" in names:
            feed["token_type_ids"] = np.zeros_like(batch.input_ids)
        hidden = session.run(None, {n: feed[n] for n in names})[0]
        v = hidden.astype(np.float32) @ self._projection.T
        return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)

    @cached_property
    def tokenizer(self):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(self.folder), local_files_only=True)

    @cached_property
    def module(self):
        projection = np.load(self.folder / PROJECTION_FILE, allow_pickle=False)
        module = build_module(self.folder, self.config, projection)
        module.eval()
        return module

    @property
    def dim(self) -> int:
        return self.config.dim

    def encode_queries(self, queries: Sequence[str]) -> list[np.ndarray]:
        return self._encode(queries, tokenize_queries)

    def encode_documents(self, texts: Sequence[str], *, progress: bool = False) -> list[np.ndarray]:
        """One (tokens, dim) float32 matrix a text (its real tokens, cut at the model's document length)."""
        return self._encode(texts, tokenize_documents, progress=progress)

    def _vectors_torch(self, batch: TokenBatch) -> np.ndarray:
        import torch

        if self.threads:
            torch.set_num_threads(self.threads)
        with torch.inference_mode():
            return self.module(torch.from_numpy(batch.input_ids), torch.from_numpy(batch.attention_mask)).float().numpy()

    def _encode(self, texts: Sequence[str], tokenize, *, progress: bool = False) -> list[np.ndarray]:
        texts = list(texts)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths share a batch
        out: list[np.ndarray | None] = [None] * len(texts)
        run = self._vectors_onnx if self.backend == "onnx" else self._vectors_torch
        starts = range(0, len(order), self.batch_size)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="token vectors", unit="batch")
        for start in starts:
            idx = order[start : start + self.batch_size]
            batch = tokenize(self.tokenizer, [texts[i] for i in idx], self.config)
            vectors = run(batch)
            for row, i in enumerate(idx):
                out[i] = np.ascontiguousarray(vectors[row][batch.keep[row]], dtype=np.float32)
        return out  # type: ignore[return-value]
