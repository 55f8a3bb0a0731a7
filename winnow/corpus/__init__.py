"""winnow.corpus: reading corpora into documents, and cutting documents into chunks."""

from winnow.corpus.chunking import Chunker
from winnow.corpus.readers import FORMATS, detect_format, read_documents

__all__ = ["FORMATS", "Chunker", "detect_format", "read_documents"]
