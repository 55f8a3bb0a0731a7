"""The web page at ``/``: plain HTML, CSS and JavaScript shipped in ``winnow/serve/static`` (no build step,
nothing fetched from elsewhere). It speaks only the public HTTP API, with the key the user types when the
server wants one; the page and its files themselves are open, as ``/health`` and ``/docs`` are."""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).with_name("static")
PAGE = "index.html"


def open_paths() -> frozenset[str]:
    """The page's URL paths: ``/`` and ``/static/<file>`` for every file shipped (no key needed)."""
    files = (p for p in STATIC.rglob("*") if p.is_file())
    return frozenset({"/", *(f"/static/{p.relative_to(STATIC).as_posix()}" for p in files)})


def install_page(app) -> None:
    from fastapi.responses import FileResponse
    from fastapi.staticfiles import StaticFiles

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / PAGE, headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
