"""Builds the FastAPI application: routes, problem+json errors, and the store's lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.types import ASGIApp

from .api.errors import install_problem_handlers
from .api.fast_path import FastPath
from .api.main import api_router
from .auth import ApiKeys
from .config import Settings
from .draining import Draining
from .middleware.access import AccessLog
from .middleware.head import HeadAsGet
from .middleware.host_guard import HostGuard, allowed_hosts
from .middleware.raw_path import RawPath
from .middleware.request_id import RequestId
from .observability import Metrics, configure_logging
from .problems import PROBLEM_MEDIA_TYPE
from .services import Services
from .storage import StoreError, store_for
from .storage.contract import HistoryStore, SessionStore

__all__ = ["app_version", "create_app", "create_asgi_app"]

logger = logging.getLogger("session_memory")

DESCRIPTION = """\
Networked session memory for AI agents. Each session is an ordered list of JSON
items (the OpenAI Agents SDK's conversation items), stored exactly as sent and
returned byte for byte. Errors are RFC 9457 `application/problem+json`.
"""


def app_version() -> str:
    """The installed distribution's version."""
    try:
        return version("session-memory")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0"


def create_app(
    settings: Settings | None = None,
    *,
    store: HistoryStore | None = None,
    api_keys: ApiKeys | None = None,
    draining: Draining | None = None,
) -> FastAPI:
    """Build the app. Its lifespan opens the store and builds the services container,
    and closes the store (writes flushed) on shutdown."""
    settings = settings or Settings()
    keys = ApiKeys.from_settings(settings) if api_keys is None else api_keys
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if keys.open:
            logger.warning(
                "NO API KEYS CONFIGURED: anyone who can reach this server can read and write "
                "every session. Set SESSION_MEMORY_API_KEYS or SESSION_MEMORY_API_KEYS_FILE."
            )
        opened = store or store_for(settings)
        await opened.open()
        services = Services.build(settings, keys, metrics, opened)
        if draining is not None:  # live streams end as connections do, before this shutdown
            draining.add(services.hub.stop)
        if services.hub.feed is not None:
            await services.hub.feed.start()
        app.state.services = services
        sweeper = asyncio.create_task(_sweep_forever(opened, metrics), name="expiry-sweeper")
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            services.hub.stop()
            if services.hub.feed is not None:
                await services.hub.feed.stop()
            await opened.close()

    app = FastAPI(
        title="session-memory",
        version=app_version(),
        description=DESCRIPTION,
        lifespan=lifespan,
        # /docs is served from the package's own copy of Swagger UI (api/routes/docs.py);
        # FastAPI's pages would load their scripts from a public CDN.
        docs_url=None,
        redoc_url=None,
    )
    # Before the lifespan runs: the middleware counts every request, served or not.
    app.state.settings = settings
    app.state.api_keys = keys
    app.state.metrics = metrics
    install_problem_handlers(app)
    app.include_router(api_router)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


SWEEP_INTERVAL_SECONDS = 60.0


async def _sweep_forever(store: SessionStore, metrics: Metrics) -> None:
    """Now and then delete what expired and count the live sessions; retry on failure."""
    while True:
        try:
            swept = await store.sweep()
            metrics.sessions.set(await store.count_sessions())
        except StoreError as exc:
            logger.warning("sweep failed: %s", exc)
        else:
            if swept.sessions or swept.items or swept.records:
                logger.info(
                    "swept %d expired sessions, %d items and %d idempotency records "
                    "in %d transactions",
                    swept.sessions,
                    swept.items,
                    swept.records,
                    swept.batches,
                )
        await asyncio.sleep(SWEEP_INTERVAL_SECONDS)


def create_asgi_app(
    settings: Settings | None = None,
    *,
    api_keys: ApiKeys | None = None,
    draining: Draining | None = None,
) -> ASGIApp:
    """What the server runs: the app behind the middleware (see ``middleware``).

    The fast path sits outside FastAPI's own middleware, which is where its saving is;
    with ``hot_path`` off every request goes to FastAPI. Header size is bounded
    earlier, by the server's protocol (``server.protocol``), while headers arrive.
    """
    settings = settings or Settings()
    app = create_app(settings, api_keys=api_keys, draining=draining)
    configure_logging(settings.log_level)
    inner: ASGIApp = FastPath(app, app) if settings.hot_path else app
    hosts = allowed_hosts(settings.allowed_hosts, open_mode=app.state.api_keys.open)
    guarded = HostGuard(HeadAsGet(RawPath(inner)), hosts)
    return RequestId(AccessLog(guarded, app.state.metrics, enabled=settings.access_log))


def _drop_null(parameter: dict[str, Any]) -> None:
    """An optional parameter is one that may be left out, not one that may be "null"."""
    schema = parameter.get("schema", {})
    choices = [choice for choice in schema.get("anyOf", []) if choice.get("type") != "null"]
    if len(choices) == 1 and len(schema["anyOf"]) == 2:
        rest = {key: value for key, value in schema.items() if key != "anyOf"}
        parameter["schema"] = {**choices[0], **rest}


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's spec, with error responses listed under problem+json only."""
    if app.openapi_schema is None:
        spec = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        for operations in spec["paths"].values():
            for operation in operations.values():
                for parameter in operation.get("parameters", []):
                    _drop_null(parameter)
                for status, response in operation.get("responses", {}).items():
                    content = response.get("content", {})
                    if status[0] in "45" and PROBLEM_MEDIA_TYPE in content:
                        content.pop("application/json", None)
        app.openapi_schema = spec
    return app.openapi_schema


def openapi_spec() -> dict[str, Any]:
    """The API's OpenAPI document, as committed in ``openapi.json``."""
    return create_app(Settings()).openapi()
