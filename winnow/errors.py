"""Typed errors. Every failure a user can cause raises one of these, with a message that names the
bad value and what is allowed instead."""

from __future__ import annotations


class WinnowError(Exception):
    """Base class of every error winnow raises on purpose."""


class InvalidArgumentError(WinnowError, ValueError):
    """A parameter has a value outside what is allowed."""


class TooLargeError(InvalidArgumentError):
    """An input over a size limit (a document's characters...): the message names the limit and its setting."""


class CorpusError(WinnowError):
    """A corpus file could not be read: names the file and the line or record."""

    def __init__(self, path: str, location: str | int | None, message: str) -> None:
        self.path = str(path)
        self.location = location
        self.reason = message
        where = f"{self.path}" if location is None else f"{self.path}, {_where(location)}"
        super().__init__(f"{where}: {message}")


def _where(location: str | int) -> str:
    return f"line {location}" if isinstance(location, int) else str(location)


class ModelNotFoundError(WinnowError):
    """A model name resolved to nothing offline and the hub could not be reached."""


class MissingDependencyError(WinnowError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class CollectionError(WinnowError):
    """A collection is missing, already exists, or cannot be used as asked."""


class CollectionNotFoundError(CollectionError):
    pass


class CollectionExistsError(CollectionError):
    pass


class IncompatibleCollectionError(CollectionError):
    """The collection was built with another model or an unknown format version."""


class CollectionDamagedError(CollectionError):
    """A collection's files were damaged from outside (a truncated manifest, a missing segment): the
    message says what is wrong and how to repair it (``winnow check`` / ``winnow repair``)."""


class ClusterError(WinnowError):
    """A compute cluster (Ray) could not be reached or started, or a distributed job lost work:
    the message names the address or the rows and what to do."""


class StoreError(WinnowError):
    """A collection's external first-stage store (Milvus) failed or could not be reached."""
