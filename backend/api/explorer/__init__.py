"""The web explorer: every project, round, payout and source, as server-rendered pages of the API process.

`install(app, services)` mounts the pages at `/` and below, the bundled assets at `/static/explorer` and the
live stream at `/explorer/events`; docs/explorer.md describes the pages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

    from backend.api.explorer.service import ExplorerSettings
    from backend.api.services import ApiServices

__all__ = ["install"]


def install(app: FastAPI, services: ApiServices, settings: ExplorerSettings | None = None) -> None:
    """Add the explorer to `app` (its parts are built on the first page view)."""
    from fastapi.staticfiles import StaticFiles

    from backend.api.explorer.routes import router
    from backend.api.explorer.service import STATIC_DIR, Explorer

    app.state.explorer = Explorer(services, settings)
    app.include_router(router)
    app.mount("/static/explorer", StaticFiles(directory=str(STATIC_DIR)), name="explorer-static")
