"""winnow: two-stage search. A fast first stage (BM25, dense, hybrid) finds candidates; a reranker
reorders them. Importing winnow is cheap: heavy libraries load only when a stage needs them."""

from winnow.errors import (
    CollectionError,
    CorpusError,
    InvalidArgumentError,
    ModelNotFoundError,
    WinnowError,
)
from winnow.types import Chunk, Document, Hit, Ranking

__version__ = "0.1.0"

__all__ = [
    "Chunk",
    "CollectionError",
    "CorpusError",
    "Document",
    "Hit",
    "InvalidArgumentError",
    "ModelNotFoundError",
    "Ranking",
    "WinnowError",
    "__version__",
]
