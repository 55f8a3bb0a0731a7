"""Routes: the ``winnow eval`` reports the server was pointed at (``--reports DIR``), read-only."""

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import Path as PathParam

from winnow.serve import schemas as S
from winnow.serve.context import AppContext
from winnow.serve.errors import ApiError
from winnow.serve.reports import REPORT_NAME_RE, ReportNotFoundError, ReportShelf

ReportName = Annotated[str, PathParam(pattern=REPORT_NAME_RE.pattern, description="a report's folder name")]


def reports_router(ctx: AppContext):
    api = ctx.router()
    shelf = ReportShelf(ctx.settings.reports)

    @api.get("/reports", response_model=S.ReportList, tags=["reports"])
    def list_reports() -> S.ReportList:
        """The eval output folders under ``--reports DIR``, newest first (empty when none was given)."""
        return S.ReportList(
            configured=shelf.configured,
            reports=[S.ReportSummary(**asdict(r)) for r in shelf.infos()],
        )

    @api.get("/reports/{name}", response_model=dict[str, Any], tags=["reports"])
    def get_report(name: ReportName) -> dict[str, Any]:
        """One report's ``report.json`` as ``winnow eval`` wrote it (per method: metrics, latency per stage,
        significance, and ``per_query`` values of every metric; ``query_texts`` where recorded), less the
        server's filesystem paths."""
        try:
            return shelf.read(name)
        except ReportNotFoundError as exc:
            raise ApiError(404, str(exc)) from None

    return api
