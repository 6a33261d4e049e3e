"""Console page: administration. Accounts with their role and scope (and, for those who may,
a form to change them: an administrator anywhere, a focal point within its member), and the
registry lists with their CSV templates, exports and import forms."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from healthmesh.accounts import service as accounts
from healthmesh.accounts.access import ROLE_SCOPES, Permission, Principal, Role, ScopeKind
from healthmesh.accounts.models import User
from healthmesh.registry import service as registry
from healthmesh.registry import transfer
from healthmesh.registry.models import Facility, Jurisdiction
from healthmesh.web.console.base import Viewer, render, viewer_with
from healthmesh.web.deps import DbSession

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
USERS_SHOWN = 500


@dataclass(frozen=True)
class RegistryList:
    kind: str  # the CSV kind and API path: /api/v1/{kind}
    label: str
    columns: tuple[tuple[str, str], ...]  # (field of the API shape, heading)
    searchable: bool  # by name or exact code
    by_member: bool  # filtered by member


LISTS: dict[str, RegistryList] = {
    r.kind: r
    for r in (
        RegistryList(
            "jurisdictions",
            "Members",
            (
                ("iso3", "ISO3"),
                ("name", "Name"),
                ("income_group", "Income group"),
                ("population", "Population"),
                ("blocs", "Blocs"),
                ("capital", "Capital"),
            ),
            searchable=True,
            by_member=False,
        ),
        RegistryList(
            "facilities",
            "Facilities",
            (
                ("code", "Code"),
                ("name", "Name"),
                ("jurisdiction", "Member"),
                ("kind", "Kind"),
                ("icu_beds", "ICU beds"),
                ("cold_chain_2_8", "Cold chain 2 to 8 °C"),
                ("active", "Active"),
            ),
            searchable=True,
            by_member=True,
        ),
        RegistryList(
            "products",
            "Products",
            (
                ("code", "Code"),
                ("name", "Name"),
                ("category", "Category"),
                ("storage_condition", "Storage"),
                ("min_temp_c", "Min °C"),
                ("max_temp_c", "Max °C"),
                ("excursion_tolerance_minutes", "Tolerance (min)"),
            ),
            searchable=True,
            by_member=False,
        ),
        RegistryList(
            "authorisations",
            "Authorisations",
            (
                ("product", "Product"),
                ("jurisdiction", "Member"),
                ("status", "Status"),
                ("pathway", "Pathway"),
                ("relied_on_authority", "Relied on"),
                ("valid_from", "From"),
                ("valid_to", "To"),
            ),
            searchable=False,
            by_member=True,
        ),
        RegistryList(
            "recognitions",
            "Recognitions",
            (
                ("jurisdiction", "Member"),
                ("recognised_authority", "Recognises"),
                ("categories", "Categories"),
                ("valid_from", "From"),
                ("valid_to", "To"),
            ),
            searchable=False,
            by_member=True,
        ),
    )
}


def _cell(value: Any) -> str:
    if value is None or value == []:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("_", " ") if isinstance(value, str) and value.islower() else str(value)


def _registry_rows(
    db: Session, chosen: RegistryList, q: str, member: str, offset: int
) -> tuple[list[list[str]], int]:
    page: dict[str, int] = {"limit": PAGE_SIZE, "offset": offset}
    rows: list[Any]
    if chosen.kind == "jurisdictions":
        rows, total = registry.list_jurisdictions(db, bloc=None, income_group=None, q=q or None, **page)
    elif chosen.kind == "facilities":
        rows, total = registry.list_facilities(
            db, jurisdiction=member or None, kind=None, capability=None, active=None, q=q or None, **page
        )
    elif chosen.kind == "products":
        rows, total = registry.list_products(
            db, category=None, storage_condition=None, gtin=None, q=q or None, **page
        )
    elif chosen.kind == "authorisations":
        rows, total = registry.list_authorisations(
            db, product=None, jurisdiction=member or None, status=None, valid_on=None, **page
        )
    else:
        rows, total = registry.list_recognitions(db, jurisdiction=member or None, authority=None, **page)
    shape = transfer.KINDS[chosen.kind].out
    cells = []
    for row in rows:
        data = shape.model_validate(row).model_dump(mode="json")
        cells.append([_cell(data[field]) for field, _ in chosen.columns])
    return cells, total


def assignable_roles(principal: Principal) -> list[Role]:
    """The roles the viewer may hand out somewhere in its scope."""
    if not principal.has(Permission.USER_WRITE):
        return []
    return [
        role
        for role in Role
        if any(
            principal.can_assign(role, principal.jurisdiction_id if kind is not ScopeKind.REGION else None)
            for kind in ROLE_SCOPES[role]
        )
    ]


def _scope(user: User) -> str:
    return user.facility_code or user.jurisdiction_iso3 or "region"


@router.get("/console/admin", response_class=HTMLResponse)
def admin_page(
    request: Request,
    db: DbSession,
    viewer: Viewer = viewer_with(Permission.USER_READ),
    registry_list: str = Query(default="jurisdictions", alias="registry"),
    q: str = Query(default="", max_length=100),
    member: str = Query(default="", max_length=3),
    offset: int = Query(default=0, ge=0),
    user: str = "",
    changed: int | None = None,
    created: int | None = None,
    updated: int | None = None,
) -> HTMLResponse:
    principal = viewer.principal
    users, users_total = accounts.list_users(db, principal, role=None, limit=USERS_SHOWN, offset=0)
    roles = assignable_roles(principal)
    changeable = [
        u for u in users if u.id != principal.user_id and principal.can_assign(u.role, u.jurisdiction_id)
    ]
    if principal.scope is ScopeKind.REGION:
        members = list(db.scalars(select(Jurisdiction).order_by(Jurisdiction.name)))
        facility_codes = list(db.scalars(select(Facility.code).order_by(Facility.code)))
    else:
        members = list(db.scalars(select(Jurisdiction).where(Jurisdiction.id == principal.jurisdiction_id)))
        facility_codes = list(
            db.scalars(
                select(Facility.code)
                .where(Facility.jurisdiction_id == principal.jurisdiction_id)
                .order_by(Facility.code)
            )
        )
    chosen = LISTS.get(registry_list, LISTS["jurisdictions"])
    rows, total = _registry_rows(db, chosen, q.strip(), member.strip().upper(), offset)
    just_changed = next((u for u in users if u.id == changed), None) if changed is not None else None
    all_members = list(db.execute(select(Jurisdiction.iso3, Jurisdiction.name).order_by(Jurisdiction.name)))
    return render(
        request,
        viewer,
        "console/admin.html",
        users=users,
        users_total=users_total,
        scope_of=_scope,
        may_write=bool(roles) and bool(changeable),
        roles=roles,
        changeable=changeable,
        selected=next((u for u in changeable if u.username == user), changeable[0] if changeable else None),
        members=members,
        region_wide=principal.scope is ScopeKind.REGION,
        facility_codes=facility_codes,
        just_changed=just_changed,
        lists=list(LISTS.values()),
        chosen=chosen,
        rows=rows,
        total=total,
        offset=offset,
        page_size=PAGE_SIZE,
        q=q,
        member=member.upper(),
        all_members=all_members,
        can_import=principal.has(transfer.KINDS[chosen.kind].permission),
        imported=(created, updated) if created is not None and updated is not None else None,
    )
