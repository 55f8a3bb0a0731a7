"""Size limits that hold everywhere a document enters winnow (library, command line, server), with one
message."""

from __future__ import annotations

from typing import Sequence

from winnow.errors import InvalidArgumentError, TooLargeError
from winnow.types import Document

# Characters in one document. A 5 MB text took 247 s and 1.1 GB to index as 5,157 chunks: a document that
# large is a corpus, and should be split (by chapter, page or section) so that search can point into it.
MAX_DOCUMENT_CHARS = 1_000_000


def check_document_sizes(docs: Sequence[Document], max_chars: int = MAX_DOCUMENT_CHARS) -> None:
    """Raise :class:`TooLargeError` naming the first document over ``max_chars`` characters."""
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
        raise InvalidArgumentError(f"max_document_chars must be an integer >= 1, got {max_chars!r}")
    for d in docs:
        n = len(d.text) + len(d.title)
        if n > max_chars:
            raise TooLargeError(
                f"document {d.id!r} has {n:,} characters, over the limit of {max_chars:,} per document "
                f"(max_document_chars; --max-document-chars on the command line and the server): split it into "
                f"smaller documents, or raise the limit"
            )
