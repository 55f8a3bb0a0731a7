"""What a server is started with: where collections live, which models it serves, its limits and batching."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from winnow.errors import InvalidArgumentError
from winnow.limits import MAX_DOCUMENT_CHARS
from winnow.models.resolve import DEFAULT_BI_ENCODER
from winnow.runtime import cpu_count

API_KEY_ENV = "WINNOW_API_KEY"


@dataclass(frozen=True)
class Limits:
    """Per-request limits; a request over one is answered 413 with a message naming the limit."""

    max_documents: int = 1000  # documents (or texts) in one request
    max_chars: int = 20_000  # characters in one text to score or embed (query, rerank document, embedding input)
    max_body_bytes: int = 8 * 1024 * 1024  # bytes of one request body
    max_document_chars: int = MAX_DOCUMENT_CHARS  # characters in one collection document: the library's limit

    def __post_init__(self) -> None:
        for name in ("max_documents", "max_chars", "max_body_bytes", "max_document_chars"):
            if getattr(self, name) < 1:
                raise InvalidArgumentError(f"limit {name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class Batching:
    """Micro-batching of model calls: concurrent requests wait up to ``max_wait_ms`` to share one call of at
    most ``max_tokens`` (estimated) tokens; ``workers`` calls run at once (default one per core).
    ``enabled=False`` makes every request call the model itself."""

    enabled: bool = True
    max_wait_ms: float = 5.0
    max_tokens: int = 32_768
    max_items: int = 256  # requests in one batch
    workers: int = field(default_factory=cpu_count)

    def __post_init__(self) -> None:
        if self.max_wait_ms < 0 or self.max_tokens < 1 or self.max_items < 1 or self.workers < 1:
            raise InvalidArgumentError(
                f"batching needs max_wait_ms >= 0, max_tokens >= 1, max_items >= 1, workers >= 1; got "
                f"{self.max_wait_ms}, {self.max_tokens}, {self.max_items}, {self.workers}"
            )


@dataclass(frozen=True)
class ServeSettings:
    """``rerank_models[0]`` is the default reranker (when empty: winnow's default reranker, else the one winnow
    ships); ``embed_models[0]`` the default embedder. Only listed models and winnow's shipped rerankers are
    served: a request naming another gets 404, never a download."""

    home: Path
    host: str = "127.0.0.1"
    port: int = 8080
    api_key: str | None = None
    rerank_models: tuple[str, ...] = ()
    embed_models: tuple[str, ...] = (DEFAULT_BI_ENCODER,)
    rerank_max_length: int | None = None  # the model's own, as the library uses
    # threads inside one model call: 1 (parallelism comes from concurrent calls) is the most CPU-efficient
    # under load; None lets the backend use every core for each call (lower latency when idle)
    model_threads: int | None = 1
    limits: Limits = field(default_factory=Limits)
    batching: Batching = field(default_factory=Batching)
    reports: Path | None = None  # winnow eval output folders shown by GET /reports and the page (--reports)

    def __post_init__(self) -> None:
        object.__setattr__(self, "home", Path(self.home))
        if self.reports is not None:
            object.__setattr__(self, "reports", Path(self.reports))
            if not self.reports.is_dir():
                raise InvalidArgumentError(f"reports folder {str(self.reports)!r} does not exist: pass --reports DIR, "
                                           "a winnow eval output folder or a folder of them")
        object.__setattr__(self, "rerank_models", tuple(self.rerank_models))
        object.__setattr__(self, "embed_models", tuple(self.embed_models))
        if self.api_key is not None and not self.api_key.strip():
            raise InvalidArgumentError("api key is empty: pass a non-empty --api-key (or unset it)")
        check_exposure(self.host, self.api_key)


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, api_key: str | None) -> None:
    """A server reachable from other machines must require an API key."""
    if api_key is None and not is_loopback(host):
        raise InvalidArgumentError(
            f"refusing to serve on {host!r} without an API key: a non-loopback host needs --api-key KEY "
            f"(or ${API_KEY_ENV}); or bind 127.0.0.1"
        )


def api_key_from_env() -> str | None:
    value = os.environ.get(API_KEY_ENV)
    return value if value else None
