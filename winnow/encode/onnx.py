"""ONNX Runtime inference for encoders: one session and one fast tokenizer, built once and reused.

:class:`OnnxRunner` turns texts (or query/passage pairs) into model outputs with no per-call setup:
the ``tokenizers`` tokenizer and the ``InferenceSession`` are created in ``__init__``, inputs are cut
into token-budget batches (:mod:`winnow.encode.batching`), and outputs come back in the caller's order.
Threads: ONNX Runtime gets one intra-op thread per available core and no inter-op pool, except where rows
run alone (int8): then each core runs its own rows, one intra-op thread each (``streams``; see
:class:`OnnxRunner`).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from winnow.encode.batching import DEFAULT_MAX_TOKENS, token_budget_batches
from winnow.errors import InvalidArgumentError
from winnow.runtime import cpu_count

log = logging.getLogger(__name__)

WINDOW = 4096  # texts tokenized at a time: bounds tokenizer memory on very large inputs


@dataclass(frozen=True)
class EmbeddingLayout:
    """What a sentence-transformers folder does after the transformer: pooling, normalization, prompts."""

    pooling: str  # "mean" | "cls" | "max"
    normalize: bool
    max_seq_length: int
    prompts: dict


def read_embedding_layout(folder: Path) -> EmbeddingLayout:
    """Read modules.json & co. Raises :class:`InvalidArgumentError` for layouts ONNX can't reproduce here."""
    modules_file = folder / "modules.json"
    modules = json.loads(modules_file.read_text(encoding="utf-8")) if modules_file.is_file() else []
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    supported = {"Transformer", "Pooling", "Normalize"}
    unknown = [k for k in kinds if k not in supported]
    if unknown:
        raise InvalidArgumentError(
            f"model {folder} has modules {unknown} that the ONNX backends do not run; use backend='torch'"
        )
    pooling = "mean"
    pooling_dirs = [m.get("path", "") for m in modules if m.get("type", "").endswith("Pooling")]
    if pooling_dirs and (folder / pooling_dirs[0] / "config.json").is_file():
        cfg = json.loads((folder / pooling_dirs[0] / "config.json").read_text(encoding="utf-8"))
        modes = [m for m in ("cls", "mean", "max") if cfg.get(f"pooling_mode_{m}_token" if m == "cls" else
                                                              f"pooling_mode_{m}_tokens")]
        other = [k for k, v in cfg.items() if k.startswith("pooling_mode_") and v and
                 k not in ("pooling_mode_cls_token", "pooling_mode_mean_tokens", "pooling_mode_max_tokens")]
        if len(modes) != 1 or other or cfg.get("include_prompt", True) is False:
            raise InvalidArgumentError(
                f"model {folder} pools with {cfg}; the ONNX backends pool by one of cls/mean/max: use backend='torch'"
            )
        pooling = modes[0]
    max_len = 512
    sbert = folder / "sentence_bert_config.json"
    if sbert.is_file():
        max_len = int(json.loads(sbert.read_text(encoding="utf-8")).get("max_seq_length") or max_len)
    prompts = {}
    st_config = folder / "config_sentence_transformers.json"
    if st_config.is_file():
        prompts = dict(json.loads(st_config.read_text(encoding="utf-8")).get("prompts") or {})
    return EmbeddingLayout(pooling, "Normalize" in kinds, max_len, prompts)


def tokenizer_file(folder: Path) -> Path:
    found = [folder / "tokenizer.json", *sorted(folder.glob("*/tokenizer.json"))]
    for path in found:
        if path.is_file():
            return path
    raise InvalidArgumentError(
        f"no tokenizer.json in model folder {str(folder)!r}; the ONNX backends need a fast tokenizer: "
        f"save the model with transformers >= 4, or use backend='torch'"
    )


def model_max_length(folder: Path, default: int = 512) -> int:
    """The tokenizer's ``model_max_length``, capped by the model's position embeddings."""
    limit = default
    cfg = folder / "tokenizer_config.json"
    if cfg.is_file():
        value = json.loads(cfg.read_text(encoding="utf-8")).get("model_max_length")
        if isinstance(value, int) and 0 < value < 1_000_000:
            limit = value
    config = folder / "config.json"
    if config.is_file():
        positions = json.loads(config.read_text(encoding="utf-8")).get("max_position_embeddings")
        if isinstance(positions, int) and positions > 0:
            limit = min(limit, positions)
    return limit


def session_options(threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or cpu_count()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # The CPU memory arena stays on: without it every op's output is a fresh mmap (measured up to 2x
    # slower); it grows to the largest batch shape seen, which the token budget bounds (docs/performance.md).
    return options


class OnnxRunner:
    """Tokenize, batch by token budget, run, and hand each batch's output to the caller by position.

    ``rows_alone``: run every row by itself. Dynamically quantized (int8) models quantize activations with
    one scale per tensor, computed at run time over the whole batch, so a row's output depends on its batch
    neighbours and their padding (a reranker pair's logit moved by up to 0.83 between alone and in a batch
    of 20). One row a run makes each output a function of its own input only, whatever the batch, position,
    padding or concurrency; on the 2-core development CPU it cost nothing measurable for 40 reranker pairs
    (0.136 s batched, 0.140 s row by row), see docs/performance.md.

    ``streams``: with ``rows_alone``, how many rows run at once, each on one intra-op thread of its own
    (ONNX Runtime's ``run`` releases the GIL and is safe to call from several threads on one session). A
    row of ~100 tokens is too small a matrix to split well between cores; giving each core whole rows keeps
    them busy without a barrier per operator. ``None``: one stream per thread the runner may use. Outputs
    are the same as with one stream (each row is still computed alone, the same way)."""

    def __init__(
        self,
        model_file: Path,
        tokenizer_json: Path,
        *,
        max_length: int,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        threads: int | None = None,
        rows_alone: bool = False,
        streams: int | None = None,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        if max_length < 2:
            raise InvalidArgumentError(f"max_length must be >= 2 tokens, got {max_length}")
        self.max_length = int(max_length)
        self.max_tokens = max(int(max_tokens), self.max_length)
        self.rows_alone = rows_alone
        threads = threads or cpu_count()
        if streams is not None and (isinstance(streams, bool) or not isinstance(streams, int) or streams < 1):
            raise InvalidArgumentError(f"streams must be an integer >= 1 (or None: one per thread), got {streams!r}")
        self.streams = (streams or threads) if rows_alone else 1
        self._pool = None
        self.tokenizer = Tokenizer.from_file(str(tokenizer_json))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length, strategy="longest_first")
        from winnow.models.graph_passes import DISABLED_OPTIMIZERS

        self.session = ort.InferenceSession(
            str(model_file), session_options(max(1, threads // self.streams)), providers=["CPUExecutionProvider"],
            disabled_optimizers=list(DISABLED_OPTIMIZERS),
        )
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_name = self.session.get_outputs()[0].name
        self.pad_id = self.tokenizer.token_to_id("[PAD]") or self.tokenizer.token_to_id("<pad>") or 0
        padding = json.loads(Path(tokenizer_json).read_text(encoding="utf-8")).get("padding") or {}
        self.pad_id = int(padding.get("pad_id", self.pad_id))

    def tokenize(self, items: Sequence) -> list:
        """Encodings (``ids``, ``type_ids``) of texts or (query, passage) pairs, truncated to max_length."""
        return self.tokenizer.encode_batch(list(items), add_special_tokens=True)

    def run_batches(self, items: Sequence, consume: Callable[[np.ndarray, np.ndarray, np.ndarray], None]) -> None:
        """Run every item; ``consume(positions, output, attention_mask)`` gets each batch (positions index
        ``items``). Items are tokenized WINDOW at a time, so memory stays bounded for any input size."""
        for lo in range(0, len(items), WINDOW):
            encodings = self.tokenize(items[lo : lo + WINDOW])
            for positions, output, mask in self._run_window(encodings):
                consume(positions + lo, output, mask)

    def _run_window(self, encodings: list) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        if self.rows_alone:
            batches = [np.array([i]) for i in range(len(encodings))]
        else:
            batches = token_budget_batches(lengths, self.max_tokens)
        if self.streams > 1 and len(batches) > 1:
            yield from self._run_streams(encodings, lengths, batches)
            return
        for batch in batches:
            yield self._run_batch(encodings, lengths, batch)

    def _run_streams(self, encodings: list, lengths: np.ndarray, batches: list) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The batches on ``streams`` threads, in order, at most two a stream in flight (bounded memory)."""
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.streams, thread_name_prefix="winnow-onnx")
        pending: deque = deque()
        todo = iter(batches)
        for batch in todo:
            pending.append(self._pool.submit(self._run_batch, encodings, lengths, batch))
            if len(pending) >= 2 * self.streams:
                break
        while pending:
            yield pending.popleft().result()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append(self._pool.submit(self._run_batch, encodings, lengths, nxt))

    def _run_batch(self, encodings: list, lengths: np.ndarray, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        longest = int(lengths[batch].max())
        ids = np.full((len(batch), longest), self.pad_id, dtype=np.int64)
        types = np.zeros((len(batch), longest), dtype=np.int64)
        mask = np.zeros((len(batch), longest), dtype=np.int64)
        for row, i in enumerate(batch):
            e = encodings[i]
            n = len(e.ids)
            ids[row, :n] = e.ids
            types[row, :n] = e.type_ids
            mask[row, :n] = 1
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self.input_names:
            feed["token_type_ids"] = types
        return batch, self.session.run([self.output_name], feed)[0], mask


def pool(hidden: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    """(rows, tokens, dim) hidden states -> (rows, dim) by ``mode`` over the unmasked tokens."""
    if mode == "cls":
        return hidden[:, 0, :]
    m = mask[:, :, None].astype(hidden.dtype)
    if mode == "max":
        return np.where(m > 0, hidden, -np.inf).max(axis=1)
    summed = np.einsum("btd,bt->bd", hidden, mask.astype(hidden.dtype))
    return summed / np.maximum(m.sum(axis=1), 1e-9)


def normalize_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def env_threads() -> int | None:
    """``WINNOW_THREADS`` when set (an override for shared machines), else None (one per core)."""
    value = os.environ.get("WINNOW_THREADS")
    return int(value) if value and value.isdigit() and int(value) > 0 else None


def runner_for(resolved, task: str, backend: str, *, max_length: int, max_tokens: int, threads: int | None) -> OnnxRunner:
    """An :class:`OnnxRunner` for a resolved model: its ONNX file (exported once and cached, or the file
    an ONNX-only folder ships) and its fast tokenizer. ``threads`` None: ``WINNOW_THREADS`` or all cores."""
    from winnow.models.backends import Backend
    from winnow.models.export import exported_model

    exported = exported_model(resolved, task, backend)
    log.info("%s %s on %s (%s)", task, resolved.name, backend, exported.folder)
    return OnnxRunner(
        exported.path,
        tokenizer_file(resolved.path),
        max_length=max_length,
        max_tokens=max_tokens,
        threads=threads or env_threads(),
        rows_alone=Backend(backend) is Backend.ONNX_INT8,
    )
