"""The FastAPI application factory."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.responses import Response

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
from healthmesh.web.deps import DbSession, Public

STATIC_DIR = Path(__file__).parent / "static"
TEMPLATES_DIR = Path(__file__).parent / "templates"

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'"
)


class SecurityHeaders(BaseHTTPMiddleware):
    """Headers every response carries; the CSP also keeps pages from reaching any other host."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    """Build the application; tests pass their own settings and engine."""
    settings = settings or load_settings()
    engine = engine or make_engine(settings.effective_database_url)
    app = FastAPI(
        title="HealthMesh",
        version=healthmesh.__version__,
        description="Cross-border medical resource integration: registry, supply, allocation, logistics "
        "and a verifiable transparency log. Errors are RFC 9457 problem details.",
        docs_url=None,
        redoc_url=None,
        license_info={"name": "Apache-2.0", "identifier": "Apache-2.0"},
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.stream_sessions = app.state.sessionmaker
    problems.install(app)
    app.add_middleware(SecurityHeaders)
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
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="HealthMesh API",
            swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/static/vendor/swagger-ui/favicon-32x32.png",
            # no badge from validator.swagger.io: the explorer asks no other host
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/healthz", tags=["operations"], dependencies=[Public])
    def healthz(db: DbSession) -> dict[str, object]:
        """Liveness and database reachability, with the size of the registry."""
        counts = {
            "jurisdictions": db.scalar(select(func.count()).select_from(Jurisdiction)) or 0,
            "facilities": db.scalar(select(func.count()).select_from(Facility)) or 0,
            "products": db.scalar(select(func.count()).select_from(Product)) or 0,
        }
        return {"status": "ok", "version": healthmesh.__version__, "registry": counts}
