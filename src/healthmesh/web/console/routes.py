"""The console's routes: sign-in, the pages, and how a page answers a visitor who is not signed
in (a redirect to sign-in) or whose role may not see it (a 403 page)."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, Response

from healthmesh.web.console.base import PageForbidden, SignInRequired, render, sign_in_redirect
from healthmesh.web.console.pages import (
    admin,
    allocation,
    ledger,
    members,
    mutual_aid,
    needs,
    overview,
    shipments,
    shortages,
)
from healthmesh.web.deps import Public

router = APIRouter(include_in_schema=False)
PAGES: list[APIRouter] = [
    overview.router,
    members.router,
    shortages.router,
    needs.router,
    allocation.router,
    mutual_aid.router,
    shipments.router,
    ledger.router,
    admin.router,
]


@router.get("/console/login", response_class=HTMLResponse, dependencies=[Public])
def login_page(request: Request) -> HTMLResponse:
    return render(request, None, "console/login.html")


def install(app: FastAPI) -> None:
    """Add the console to the application."""

    async def on_sign_in_required(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SignInRequired)
        return sign_in_redirect(exc)

    async def on_forbidden(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PageForbidden)
        response = render(request, exc.viewer, "console/forbidden.html", message=exc.message)
        response.status_code = 403
        return response

    app.add_exception_handler(SignInRequired, on_sign_in_required)
    app.add_exception_handler(PageForbidden, on_forbidden)
    app.include_router(router)
    for page in PAGES:
        app.include_router(page)
