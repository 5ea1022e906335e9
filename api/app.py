"""The FastAPI application: routers by resource, errors translated once, the live hub
started and stopped with the app. ``create_app(settings)``; ``coldchain api`` serves it."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import OperationalError
from swagger_ui_bundle import swagger_ui_path

from alerts.db import make_engine, upgrade
from alerts.errors import Busy, Conflict, DomainError, NotFound
from api import pages, pages_alarm, pages_batch, pages_custody, pages_history, pages_setup
from api.deps import Services
from api.i18n import language, words
from api.limits import BodyLimit
from api.live import LiveHub
from api.routes import (
    admin,
    alarms,
    auth,
    batches,
    calibrations,
    custody,
    history,
    live,
    public,
    receipts,
    setup,
    signatures,
    sites,
    trucks,
)
from api.settings import ApiSettings
from coldchain.http_headers import SecurityHeaders
from coldchain.settings import load_toml
from collector.chunks import DamagedChunk
from collector.config import CollectorConfig, SqliteStoreConfig
from collector.store import Store, check_secrets, open_store

log = logging.getLogger("coldchain.api")

#: the API's routers, one per resource (the role tests walk them)
ROUTERS = tuple(
    m.router
    for m in (
        auth,
        sites,
        alarms,
        batches,
        signatures,
        custody,
        calibrations,
        admin,
        setup,
        public,
        receipts,
        live,
        history,
        trucks,
    )
)


#: the HTTP status of each kind of refusal by the domain, decided by class
REFUSALS: tuple[tuple[type[DomainError], int], ...] = (
    (NotFound, status.HTTP_404_NOT_FOUND),
    (Conflict, status.HTTP_409_CONFLICT),
    (Busy, status.HTTP_503_SERVICE_UNAVAILABLE),
    (DomainError, status.HTTP_400_BAD_REQUEST),
)


def _store_opener(settings: ApiSettings) -> Callable[[], Store]:
    if settings.store_config is not None:
        store = load_toml(settings.store_config, CollectorConfig).store
    else:
        assert settings.readings_db is not None
        store = SqliteStoreConfig(kind="sqlite", path=settings.readings_db)
    check_secrets(store)  # opened lazily: a bad token must stop it at start
    return functools.partial(open_store, store)


API_DOCS = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>coldchain API</title>
<link rel="stylesheet" href="/static/swagger/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/static/swagger/swagger-ui-bundle.js"></script>
<script src="/static/api-docs.js"></script></body></html>
"""


async def _api_docs() -> HTMLResponse:
    """Swagger UI from the swagger-ui-bundle package's files, started by a script file:
    it works on a county network without internet, under the pages' CSP."""
    return HTMLResponse(API_DOCS)


def create_app(settings: ApiSettings, *, live_updates: bool = True) -> FastAPI:
    upgrade(settings.db_url)
    engine = make_engine(settings.db_url)
    hub = None
    if live_updates:
        hub = LiveHub(engine, settings.mqtt, settings.sites)
    services = Services(settings, engine, _store_opener(settings), hub)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if hub is not None:
            await hub.start()
        try:
            yield
        finally:
            if hub is not None:
                await hub.stop()
            engine.dispose()

    app = FastAPI(
        title="coldchain",
        version="0.1.0",
        summary="Cold-chain monitoring: sites, sensors, batches, alarms, reports, audit.",
        openapi_url="/api/openapi.json",
        docs_url=None,  # served below from the app's own files: no CDN, no inline script
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.services = services
    app.add_middleware(BodyLimit)
    app.add_middleware(SecurityHeaders, https=settings.secure_cookies)  # outermost
    for router in ROUTERS:
        app.include_router(router)
    for page_router in (
        pages.router,
        pages_alarm.router,
        pages_batch.router,
        pages_custody.router,
        pages_setup.router,
        pages_history.router,
    ):
        app.include_router(page_router)
    app.get("/api/docs", include_in_schema=False)(_api_docs)
    app.mount("/static/swagger", StaticFiles(directory=str(swagger_ui_path)), name="swagger")
    for library in ("dygraphs", "leaflet"):  # Debian's packages: the charts, the map
        folder = settings.js_dir / library
        if folder.is_dir():
            app.mount(f"/static/vendor/{library}", StaticFiles(directory=folder), name=library)
        else:
            log.error("%s is missing (apt-get install libjs-%s): no charts or map", folder, library)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")

    @app.exception_handler(pages.SignInFirst)
    async def _sign_in(_request: Request, exc: pages.SignInFirst) -> RedirectResponse:
        return RedirectResponse(f"/login?next={quote(exc.next_path)}", status_code=303)

    @app.exception_handler(pages.OwnPasswordFirst)
    async def _own_password(_request: Request, _exc: pages.OwnPasswordFirst) -> RedirectResponse:
        return RedirectResponse("/password", status_code=303)

    @app.exception_handler(pages.NotForYourRole)
    async def _not_yours(request: Request, _exc: pages.NotForYourRole) -> HTMLResponse:
        lang = language(request)
        return pages.templates.TemplateResponse(
            request,
            "error.html",
            {"lang": lang, "t": words(lang), "user": None, "message": words(lang)["forbidden"]},
            status_code=403,
        )

    @app.exception_handler(DomainError)
    async def _refused(_request: Request, exc: DomainError) -> JSONResponse:
        code = next(code for kind, code in REFUSALS if isinstance(exc, kind))
        # a refused import lists each problem (file, row, column)
        detail = getattr(exc, "problems", None) or str(exc)
        return JSONResponse({"detail": detail}, status_code=code)

    @app.exception_handler(DamagedChunk)
    async def _damaged(_request: Request, exc: DamagedChunk) -> JSONResponse:
        log.error("damaged history: %s", exc)
        return JSONResponse(
            {"detail": f"the stored history is damaged ({exc}); `coldchain store check` "
                       "names every damaged day"},
            status_code=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )  # fmt: skip

    @app.exception_handler(OperationalError)
    async def _database_down(_request: Request, exc: OperationalError) -> JSONResponse:
        log.error("database unavailable: %s", exc.orig)
        return JSONResponse(
            {"detail": "the database is unavailable; try again shortly"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        )

    return app
