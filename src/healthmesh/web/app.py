"""The FastAPI application factory."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import healthmesh
from healthmesh.accounts.api import router as accounts_router
from healthmesh.allocation.api import router as allocation_router
from healthmesh.changes.api import router as changes_router
from healthmesh.config import Settings, load_settings
from healthmesh.db import make_engine, make_sessionmaker
from healthmesh.interop.api import router as fhir_router
from healthmesh.ledger.api import router as ledger_router
from healthmesh.logistics.api import router as logistics_router
from healthmesh.mutual_aid.api import router as mutual_aid_router
from healthmesh.needs.api import router as needs_router
from healthmesh.registry.api import router as registry_router
from healthmesh.registry.enums import FacilityKind
from healthmesh.registry.models import Facility, Jurisdiction, Product
from healthmesh.supply.api import router as supply_router
from healthmesh.web import problems
from healthmesh.web.console import routes as console
from healthmesh.web.deps import SESSION_COOKIE, DbSession, Public, refuse_nul

STATIC_DIR = Path(__file__).parent / "static"
TEMPLATES_DIR = Path(__file__).parent / "templates"

#: No inline script, no eval and no other host: an injected <script> or on*= handler does not
#: run, and nothing leaves the platform. Inline styles stay allowed (pages and Chart.js use them;
#: a style cannot run code).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'self'; "
    "form-action 'self'"
)
#: Browser features no page uses: a script that got in still may not ask for them.
PERMISSIONS_POLICY = (
    "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), "
    "payment=(), usb=()"
)
#: Two years, the HSTS preload list's minimum; only sent on responses served over HTTPS.
STRICT_TRANSPORT_SECURITY = "max-age=63072000"
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Permissions-Policy": PERMISSIONS_POLICY,
    "Cross-Origin-Opener-Policy": "same-origin",
}


class SecurityHeaders:
    """Headers on every response: pages, JSON, problems, static files, and the 500 page.

    A plain ASGI middleware wrapped around the whole stack (see `HealthMeshApp`), so even the
    response to an unhandled exception carries them. A response that is for one caller (it came
    with a credential, or sets one) is never stored by a browser or proxy.
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_headers = Headers(scope=scope)
        cookies = request_headers.get("cookie", "")
        credentialed = "authorization" in request_headers or f"{SESSION_COOKIE}=" in cookies
        is_static = scope["path"].startswith("/static/")
        secure = self.settings.served_securely(scope.get("scheme", "http"))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if secure:
                    headers.setdefault("Strict-Transport-Security", STRICT_TRANSPORT_SECURITY)
                if (credentialed and not is_static) or "set-cookie" in headers:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


class HealthMeshApp(FastAPI):
    """FastAPI with the security headers outside even the server-error handler."""

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeaders(super().build_middleware_stack(), self.state.settings)


def _docs_policy(html: str) -> str:
    """The API explorer's page starts Swagger UI with one inline script: allow exactly that script
    (by its hash), and still no other."""
    inline = re.search(r"<script>(.*?)</script>", html, re.DOTALL)
    if inline is None:
        return CONTENT_SECURITY_POLICY
    digest = base64.b64encode(hashlib.sha256(inline.group(1).encode()).digest()).decode()
    return CONTENT_SECURITY_POLICY.replace("script-src 'self'", f"script-src 'self' 'sha256-{digest}'")


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    """Build the application; tests pass their own settings and engine."""
    settings = settings or load_settings()
    engine = engine or make_engine(settings.effective_database_url)
    app = HealthMeshApp(
        title="HealthMesh",
        version=healthmesh.__version__,
        description="Cross-border medical resource integration: registry, supply, allocation, logistics "
        "and a verifiable transparency log. Errors are RFC 9457 problem details.",
        docs_url=None,
        redoc_url=None,
        license_info={"name": "Apache-2.0", "identifier": "Apache-2.0"},
        dependencies=[Depends(refuse_nul)],
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.stream_sessions = app.state.sessionmaker
    problems.install(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(accounts_router)
    app.include_router(registry_router)
    app.include_router(supply_router)
    app.include_router(needs_router)
    app.include_router(allocation_router)
    app.include_router(logistics_router)
    app.include_router(ledger_router)
    app.include_router(changes_router)
    app.include_router(fhir_router)
    app.include_router(mutual_aid_router)
    _add_pages(app)
    console.install(app)
    return app


def _region_overview(db: Session) -> tuple[dict[str, int], list[dict[str, object]]]:
    """Public headline figures of the registry for the landing page."""
    per_member: dict[int, int] = {
        jurisdiction_id: count
        for jurisdiction_id, count in db.execute(
            select(Facility.jurisdiction_id, func.count()).group_by(Facility.jurisdiction_id)
        )
    }
    members = [
        {
            "iso3": j.iso3,
            "name": j.name,
            "income_group": j.income_group,
            "population": j.population,
            "facilities": per_member.get(j.id, 0),
        }
        for j in db.scalars(select(Jurisdiction).order_by(Jurisdiction.name))
    ]
    counts = {
        "jurisdictions": len(members),
        "facilities": sum(per_member.values()),
        "depots": db.scalar(
            select(func.count())
            .select_from(Facility)
            .where(Facility.kind == FacilityKind.REGIONAL_RESERVE_DEPOT)
        )
        or 0,
        "products": db.scalar(select(func.count()).select_from(Product)) or 0,
    }
    return counts, members


def _add_pages(app: FastAPI) -> None:
    templates = Jinja2Templates(directory=TEMPLATES_DIR)

    @app.get("/", include_in_schema=False, dependencies=[Public])
    def home(request: Request, db: DbSession) -> HTMLResponse:
        counts, members = _region_overview(db)
        settings = request.app.state.settings
        return templates.TemplateResponse(
            request,
            "home.html",
            {
                "counts": counts,
                "members": members,
                "region_name": settings.region_name,
                "version": healthmesh.__version__,
            },
        )

    @app.get("/docs", include_in_schema=False, dependencies=[Public])
    def docs() -> HTMLResponse:
        """Swagger UI from vendored assets: the API explorer works with no internet."""
        page = get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="HealthMesh API",
            swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/static/vendor/swagger-ui/favicon-32x32.png",
            # no badge from validator.swagger.io: the explorer asks no other host
            swagger_ui_parameters={"validatorUrl": None},
        )
        page.headers["Content-Security-Policy"] = _docs_policy(bytes(page.body).decode())
        return page

    @app.get("/healthz", tags=["operations"], dependencies=[Public])
    def healthz(db: DbSession) -> dict[str, object]:
        """Liveness and database reachability, with the size of the registry."""
        counts = {
            "jurisdictions": db.scalar(select(func.count()).select_from(Jurisdiction)) or 0,
            "facilities": db.scalar(select(func.count()).select_from(Facility)) or 0,
            "products": db.scalar(select(func.count()).select_from(Product)) or 0,
        }
        return {"status": "ok", "version": healthmesh.__version__, "registry": counts}
