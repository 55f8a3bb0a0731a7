"""What the route modules share: the server's parts (settings, metrics, models, collections), the error
responses every route documents, and the collection-name path parameter."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Path as PathParam

from winnow.collection import NAME_RE
from winnow.serve import schemas as S
from winnow.serve.catalog import CollectionCatalog
from winnow.serve.metrics import Metrics
from winnow.serve.models import ModelRegistry
from winnow.serve.settings import Limits, ServeSettings

ERRORS = {s: {"model": S.ErrorResponse} for s in (400, 401, 404, 409, 413, 422)}
CollectionName = Annotated[str, PathParam(pattern=NAME_RE.pattern, description="collection name")]


@dataclass(frozen=True)
class AppContext:
    settings: ServeSettings
    metrics: Metrics
    registry: ModelRegistry
    catalog: CollectionCatalog

    @property
    def limits(self) -> Limits:
        return self.settings.limits

    def router(self):
        """An APIRouter whose routes want the API key (when one is set) and document the error responses."""
        from fastapi import APIRouter, Depends

        from winnow.serve.auth import key_dependency

        return APIRouter(dependencies=[Depends(key_dependency(self.settings.api_key))], responses=ERRORS)
