"""Cut documents into overlapping windows of tokens, kept as character spans of the original text.

The tokenizer is the model's own ``tokenizer.json`` (through the ``tokenizers`` library, no torch), so a
window of ``window`` tokens is what the encoder actually reads. Every chunk satisfies
``chunk.text == doc.text[chunk.start:chunk.end]``; together the chunks cover the whole text (the first
starts at 0, the last ends at ``len(text)``, each other one runs up to where the token after its window
begins, so nothing between windows is lost).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable, Sequence

from winnow.errors import InvalidArgumentError
from winnow.types import Chunk, Document

log = logging.getLogger(__name__)

MIN_WINDOW = 8
BATCH_SIZE = 1024  # documents per encode_batch call in chunk_many


def _check_int(name: str, value: object, low: int, high: int | None, allowed: str) -> int:
    ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok or value < low or (high is not None and value > high):
        raise InvalidArgumentError(f"{name}={value!r} is out of range; {name} must be an integer {allowed}")
    return value


class Chunker:
    """Split documents into windows of ``window`` tokens that step by ``window - overlap`` tokens."""

    def __init__(self, tokenizer_file: str | os.PathLike[str], window: int = 256, overlap: int = 32) -> None:
        self.window = _check_int("window", window, MIN_WINDOW, None, f">= {MIN_WINDOW}")
        self.overlap = _check_int("overlap", overlap, 0, window - 1, f"with 0 <= overlap < window ({window})")
        path = Path(tokenizer_file)
        if not path.is_file():
            raise InvalidArgumentError(
                f"tokenizer file {str(path)!r} does not exist; give a Hugging Face tokenizer.json, "
                f"or use Chunker.for_model(model_folder)"
            )
        from tokenizers import Tokenizer

        self.tokenizer_file = path
        self._tokenizer = Tokenizer.from_file(str(path))
        self._tokenizer.no_truncation()  # long texts must be tokenized in full
        self._tokenizer.no_padding()

    @classmethod
    def for_model(
        cls, model: str | os.PathLike[str] | None = None, *, window: int = 256, overlap: int = 32
    ) -> Chunker:
        """A chunker using the tokenizer of a sentence-transformers model (a folder or a model name;
        default: the bundled bi-encoder)."""
        from winnow.models.resolve import DEFAULT_BI_ENCODER, resolve_model

        folder = resolve_model(model if model is not None else DEFAULT_BI_ENCODER).path
        found = [folder / "tokenizer.json", *sorted(folder.glob("*/tokenizer.json"))]
        found = [p for p in found if p.is_file()]
        if not found:
            raise InvalidArgumentError(
                f"no tokenizer.json in model folder {str(folder)!r}; give a folder saved by "
                f"sentence-transformers or transformers with a fast tokenizer"
            )
        return cls(found[0], window=window, overlap=overlap)

    def __repr__(self) -> str:
        return f"Chunker({str(self.tokenizer_file)!r}, window={self.window}, overlap={self.overlap})"

    def chunk(self, doc: Document) -> tuple[Chunk, ...]:
        """The chunks of one document, in order."""
        encoding = self._tokenizer.encode(doc.text, add_special_tokens=False)
        return self._split(doc, encoding.offsets)

    def chunk_many(self, docs: Iterable[Document]) -> list[Chunk]:
        """The chunks of many documents, in document order (tokenized in batches)."""
        docs = list(docs)
        chunks: list[Chunk] = []
        for i in range(0, len(docs), BATCH_SIZE):
            batch = docs[i : i + BATCH_SIZE]
            encodings = self._tokenizer.encode_batch([d.text for d in batch], add_special_tokens=False)
            for doc, encoding in zip(batch, encodings):
                chunks.extend(self._split(doc, encoding.offsets))
        log.debug("chunked %d documents into %d chunks", len(docs), len(chunks))
        return chunks

    def _split(self, doc: Document, offsets: Sequence[tuple[int, int]]) -> tuple[Chunk, ...]:
        text, n = doc.text, len(offsets)
        if n <= self.window:
            return (Chunk(doc.id, 0, text, 0, len(text), doc.title),)
        step = self.window - self.overlap
        chunks: list[Chunk] = []
        first = 0
        while True:
            stop = min(first + self.window, n)  # token after the window
            start = 0 if first == 0 else offsets[first][0]
            end = len(text) if stop == n else max(offsets[stop][0], start)
            chunks.append(Chunk(doc.id, len(chunks), text[start:end], start, end, doc.title))
            if stop == n:
                return tuple(chunks)
            first += step
