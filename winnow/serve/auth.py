"""API keys: ``Authorization: Bearer KEY`` (what OpenAI and Cohere clients send) or ``X-API-Key: KEY``.

With no key configured (only allowed on a loopback host, see :func:`winnow.serve.settings.check_exposure`)
every request is let through. ``/health`` and the OpenAPI pages stay open either way.
"""

import hmac

from winnow.serve.errors import ApiError


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
            raise ApiError(
                401,
                "missing API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                {"WWW-Authenticate": "Bearer"},
            )
        if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected):
            raise ApiError(401, "invalid API key", {"WWW-Authenticate": "Bearer"})

    return require_key
