"""The API docs at /docs: Swagger UI served from this service, not from a CDN.

The assets come from the ``swagger-ui-bundle-v2`` package (Swagger UI's own dist
files, Apache-2.0), so the page works with no internet and runs no third-party
script on the origin where ``/ui`` keeps an API key in sessionStorage.
"""

from __future__ import annotations

from functools import cache

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, Response
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

__all__ = ["router"]

router = APIRouter(tags=["docs"], include_in_schema=False)

ASSETS = "/docs/assets/"
# Only what the page loads; name -> media type.
_FILES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}


@cache
def _read(name: str) -> bytes:
    content: bytes = swagger_ui_path.joinpath(name).read_bytes()
    return content


@router.get("/docs")
async def docs() -> HTMLResponse:
    """Swagger UI for this API."""
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="session-memory - API docs",
        swagger_js_url=ASSETS + "swagger-ui-bundle.js",
        swagger_css_url=ASSETS + "swagger-ui.css",
        swagger_favicon_url=ASSETS + "favicon-32x32.png",
        # No spec validator badge: it would send the spec to validator.swagger.io.
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get("/docs/assets/{name}")
async def docs_asset(name: str) -> Response:
    """One of Swagger UI's files, from the installed package."""
    media_type = _FILES.get(name)
    if media_type is None:
        raise HTTPException(404)
    return Response(
        _read(name), media_type=media_type, headers={"Cache-Control": "public, max-age=86400"}
    )
