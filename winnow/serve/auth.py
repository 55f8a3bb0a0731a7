"""API keys: ``Authorization: Bearer KEY`` (what OpenAI and Cohere clients send) or ``X-API-Key: KEY``.

With no key configured (only allowed on a loopback host, see :func:`winnow.serve.settings.check_exposure`)
every request is let through. ``/health`` and the OpenAPI pages stay open either way.
"""

import hmac

from winnow.serve.errors import ApiError


MISSING_KEY = "missing API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"
INVALID_KEY = "invalid API key"


def key_problem(headers: dict[bytes, bytes], api_key: str) -> str | None:
    """Why a request's raw ASGI headers fail the key check (a message), or None when they pass: the body-size
    middleware asks this before reading any body, so an unauthenticated client learns nothing of the limits."""
    auth = headers.get(b"authorization", b"").decode("latin-1")
    given = auth[7:].strip() if auth.lower().startswith("bearer ") else headers.get(b"x-api-key", b"").decode("latin-1")
    if not given:
        return MISSING_KEY
    if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), api_key.encode("utf-8")):
        return INVALID_KEY
    return None


def key_dependency(api_key: str | None):
    """A FastAPI dependency that checks the key; it also declares the bearer scheme in the OpenAPI schema.
    (No ``from __future__ import annotations`` here: FastAPI reads these annotations at run time.)"""
    from fastapi import Depends, Request
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

    if api_key is None:

        async def open_access() -> None:
            return None

        return open_access

    bearer = HTTPBearer(auto_error=False, description="the server's API key")
    expected = api_key.encode("utf-8")

    async def require_key(
        request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
    ) -> None:
        given = credentials.credentials if credentials is not None else request.headers.get("x-api-key")
        if not given:
            raise ApiError(401, MISSING_KEY, {"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected):
            raise ApiError(401, INVALID_KEY, {"WWW-Authenticate": "Bearer"})

    return require_key
