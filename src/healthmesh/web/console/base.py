"""What every console page shares: who is signed in (or a redirect to the sign-in page), the
CSRF token its scripts send on writes, the navigation the role may use, and rendering."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

import healthmesh
from healthmesh.accounts import service as accounts
from healthmesh.accounts.access import Permission, Principal
from healthmesh.web.deps import SESSION_COOKIE, AppSettings, DbSession, csrf_token_for

TEMPLATES_DIR = Path(__file__).parent.parent / "templates"
templates = Jinja2Templates(directory=TEMPLATES_DIR)


@dataclass(frozen=True)
class NavItem:
    href: str
    label: str
    permission: Permission | None  # None: every signed-in user


NAV: tuple[NavItem, ...] = (
    NavItem("/console", "Overview", Permission.STOCK_READ),
    NavItem("/console/shortages", "Shortages", Permission.STOCK_READ),
    NavItem("/console/needs", "Needs", Permission.NEED_READ),
    NavItem("/console/allocation", "Allocation", Permission.ALLOCATION_READ),
    NavItem("/console/mutual-aid", "Mutual aid", Permission.ALLOCATION_RUN),
    NavItem("/console/shipments", "Shipments", Permission.SHIPMENT_READ),
    NavItem("/console/ledger", "Transparency log", None),
    NavItem("/console/admin", "Administration", Permission.USER_READ),
)


class SignInRequired(Exception):
    """Raised by page dependencies; answered with a redirect to the sign-in page."""

    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


@dataclass(frozen=True)
class Viewer:
    """The signed-in user of a page, with the CSRF token its forms and scripts send."""

    principal: Principal
    full_name: str
    csrf: str


def current_viewer(request: Request, db: DbSession, settings: AppSettings) -> Viewer:
    raw = request.cookies.get(SESSION_COOKIE)
    found = accounts.session_user(db, raw) if raw else None
    if found is None or raw is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(target)
    user = found[0]
    principal = user.principal()
    request.state.principal = principal
    return Viewer(principal, user.full_name, csrf_token_for(settings, raw))


ViewerDep = Annotated[Viewer, Depends(current_viewer)]


def viewer_with(permission: Permission) -> Any:
    """A page dependency admitting only viewers holding `permission` (others get a 403 page)."""

    def dependency(viewer: ViewerDep) -> Viewer:
        if not viewer.principal.has(permission):
            raise PageForbidden(f"your role ({viewer.principal.role.value}) may not open this page", viewer)
        return viewer

    dependency.required_permission = permission  # type: ignore[attr-defined]
    return Depends(dependency)


class PageForbidden(Exception):
    """Answered with the 403 page (with the viewer's navigation, when known)."""

    def __init__(self, message: str, viewer: Viewer | None = None) -> None:
        self.message = message
        self.viewer = viewer


def render(request: Request, viewer: Viewer | None, template: str, **context: Any) -> HTMLResponse:
    """A page with the shared context: navigation for the role, CSRF token, region, version."""
    settings = request.app.state.settings
    nav = [
        item
        for item in NAV
        if viewer is not None and (item.permission is None or viewer.principal.has(item.permission))
    ]
    return templates.TemplateResponse(
        request,
        template,
        {
            "viewer": viewer,
            "nav": nav,
            "path": request.url.path,
            "region_name": settings.region_name,
            "version": healthmesh.__version__,
            **context,
        },
    )


def sign_in_redirect(exc: SignInRequired) -> RedirectResponse:
    return RedirectResponse(f"/console/login?next={quote(exc.next_url)}", status_code=303)
