"""HTTP errors: every failure answers ``{"error": {"message", "type", "code"}}`` (OpenAI's shape), with the
status that says whose fault it is and a message that names the bad value and what is allowed."""

from __future__ import annotations

import logging

from winnow.errors import (
    CollectionDamagedError,
    StoreError,
    CollectionExistsError,
    CollectionNotFoundError,
    IncompatibleCollectionError,
    InvalidArgumentError,
    TooLargeError,
    ModelNotFoundError,
    WinnowError,
)
from winnow.serve.models import ModelNotServedError, NoDefaultModelError

log = logging.getLogger(__name__)

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "request_too_large",
    422: "invalid_request_error",
    500: "server_error",
    503: "unavailable_error",
}

# most specific first
WINNOW_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (CollectionNotFoundError, 404),
    (CollectionExistsError, 409),
    (IncompatibleCollectionError, 409),
    (CollectionDamagedError, 409),
    (StoreError, 503),
    (ModelNotServedError, 404),
    (ModelNotFoundError, 404),
    (NoDefaultModelError, 422),
    (TooLargeError, 413),
    (InvalidArgumentError, 422),
    (WinnowError, 400),
)


class ApiError(Exception):
    """Raised by handlers for an answer other than 200; ``status`` and ``message`` go to the client."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def error_body(status: int, message: str) -> dict:
    return {"error": {"message": message, "type": ERROR_TYPES.get(status, "error"), "code": status}}


def status_for(exc: WinnowError) -> int:
    for cls, status in WINNOW_STATUS:
        if isinstance(exc, cls):
            return status
    return 400  # pragma: no cover - WinnowError is last above


def validation_message(errors) -> str:
    """Pydantic's errors as one line: ``body.documents.0.text: String should have at least 1 character``."""
    parts = []
    for err in list(errors)[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    more = len(list(errors)) - 5
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def allowed_methods(request) -> list[str]:
    """Every method some route accepts for this request's path (``app.state.route_methods``, set by
    :func:`winnow.serve.app.create_app`: pairs of a route's path regex and its methods)."""
    path = request.scope.get("path", "")
    methods: set[str] = set()
    for regex, route_methods in getattr(request.app.state, "route_methods", ()):
        if regex.match(path):
            methods |= route_methods
    return sorted(methods)


def install(app) -> None:
    """Register the handlers that give every error the one shape."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    def respond(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(error_body(status, message), status_code=status, headers=headers)

    @app.exception_handler(ApiError)
    async def _api(request, exc: ApiError):
        return respond(exc.status, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc: RequestValidationError):
        return respond(422, validation_message(exc.errors()))

    @app.exception_handler(HTTPException)
    async def _http(request, exc: HTTPException):
        headers = dict(getattr(exc, "headers", None) or {})
        message = str(exc.detail)
        if exc.status_code == 405:  # Starlette lists one route's methods; a path may have several routes
            allowed = allowed_methods(request)
            headers["Allow"] = ", ".join(allowed)
            message = f"method {request.method} is not allowed on {request.url.path}; allowed: {', '.join(allowed)}"
        return respond(exc.status_code, message, headers or None)

    @app.exception_handler(WinnowError)
    async def _winnow(request, exc: WinnowError):
        return respond(status_for(exc), str(exc))

    @app.exception_handler(Exception)
    async def _unexpected(request, exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return respond(500, f"internal error ({type(exc).__name__}); see the server log")
