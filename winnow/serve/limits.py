"""Request limits. Over one, the answer is 413 with a message naming the limit and its value.

The body limit is an ASGI middleware: it reads at most ``max_body_bytes`` (refusing at once when
Content-Length says more) before the app sees the request.
"""

from __future__ import annotations

import json
from typing import Sequence

from winnow.serve.auth import key_problem
from winnow.serve.errors import ApiError, error_body
from winnow.serve.settings import Limits


def check_count(n: int, limits: Limits, what: str) -> None:
    if n > limits.max_documents:
        raise ApiError(
            413, f"{n} {what} in one request; the limit is {limits.max_documents} per request (max_documents)"
        )


def check_text(text: str, limits: Limits, what: str) -> None:
    if len(text) > limits.max_chars:
        raise ApiError(
            413, f"{what} has {len(text)} characters; the limit is {limits.max_chars} per text (max_chars)"
        )


def check_texts(texts: Sequence[str], limits: Limits, what: str, ids: Sequence[str] | None = None) -> None:
    check_count(len(texts), limits, f"{what}s")
    for i, text in enumerate(texts):
        label = f"{what} {i}" + (f" (id {ids[i]!r})" if ids is not None else "")
        check_text(text, limits, label)


DRAIN_FACTOR = 4  # an oversized body is read (and dropped) up to this many times the limit...
DRAIN_MIN_BYTES = 8 << 20  # ...or this many bytes, whichever is more, so the client reads the 413


class BodyLimitMiddleware:
    """Answers 413 for a request body over ``max_bytes``; otherwise hands the app the buffered body. With
    ``api_key`` set, a request to a route outside ``open_paths`` without the key is answered 401 first,
    before its body is read or measured."""

    def __init__(self, app, max_bytes: int, *, api_key: str | None = None, open_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.api_key = api_key
        self.open_paths = open_paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        if self.api_key is not None and scope.get("path") not in self.open_paths:
            problem = key_problem(headers, self.api_key)
            if problem is not None:
                await self._drain(receive, 0)
                return await self._refuse(send, 401, problem, [(b"www-authenticate", b"Bearer")])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._drain(receive, 0)
            return await self._too_large(send, int(declared))
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._drain(receive, size)
                return await self._too_large(send, None)
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    async def _drain(self, receive, size: int) -> None:
        """Read (and drop) the rest of an oversized body, up to a bound, before answering: a server that
        closes a socket with unread data makes the kernel reset it, and the client then sees a
        connection error instead of the 413. A body beyond the bound is cut off all the same."""
        bound = max(DRAIN_FACTOR * self.max_bytes, DRAIN_MIN_BYTES)
        while size <= bound:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    async def _too_large(self, send, declared: int | None) -> None:
        size = f"{declared} bytes" if declared is not None else "more"
        message = f"request body is {size}; the limit is {self.max_bytes} bytes per request (max_body_bytes)"
        await self._refuse(send, 413, message)

    @staticmethod
    async def _refuse(send, status: int, message: str, extra: list[tuple[bytes, bytes]] = ()) -> None:
        body = json.dumps(error_body(status, message)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *extra],
            }
        )
        await send({"type": "http.response.body", "body": body})
