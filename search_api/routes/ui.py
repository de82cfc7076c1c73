"""The browser pages: the trace explorer at ``/`` and the OpenAPI pages (``/docs``, ``/redoc``),
all served from the package with no request to any other host.

FastAPI's own ``/docs`` and ``/redoc`` load Swagger UI and ReDoc from a CDN (a blank page on a
machine without internet access), so ``create_app`` turns them off and these routes serve the
same pages with the pinned copies of ``static/vendor/`` (see its README). The explorer is plain
JavaScript with no build step: ``static/index.html``, ``explorer.js``, ``explorer.css``.

The pages themselves are public, like the OpenAPI schema: with API keys set, the explorer asks
for a key and sends it with each data request, which is where the key is checked.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
# Mounted by create_app at this path (a router cannot hold a mount).
STATIC_PATH = "/static"
SWAGGER_UI = f"{STATIC_PATH}/vendor/swagger-ui-5.36.0"
REDOC = f"{STATIC_PATH}/vendor/redoc-2.5.4"
OAUTH2_REDIRECT_PATH = "/docs/oauth2-redirect"

router = APIRouter(include_in_schema=False)


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


@router.get("/")
def explorer() -> FileResponse:
    """The trace explorer (search page, trace page), one HTML page driven by explorer.js."""
    # no-cache: a page from an older version must not outlive an upgrade of its script.
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    root = _root(request)
    return get_swagger_ui_html(
        openapi_url=root + (request.app.openapi_url or "/openapi.json"),
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{root}{SWAGGER_UI}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{SWAGGER_UI}/swagger-ui.css",
        swagger_favicon_url=f"{root}{SWAGGER_UI}/favicon-32x32.png",
        oauth2_redirect_url=root + OAUTH2_REDIRECT_PATH,
        # Swagger UI's validator badge would call validator.swagger.io.
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get(OAUTH2_REDIRECT_PATH)
def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    root = _root(request)
    return get_redoc_html(
        openapi_url=root + (request.app.openapi_url or "/openapi.json"),
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{root}{REDOC}/redoc.standalone.js",
        redoc_favicon_url=f"{root}{SWAGGER_UI}/favicon-32x32.png",
        with_google_fonts=False,
    )
