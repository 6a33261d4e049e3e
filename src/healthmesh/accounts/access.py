"""Who may do what, where. Pure: no database, no web.

A user has one role and one scope. The role grants permissions; the scope (the region, one
jurisdiction or one facility) limits which members' non-public data those permissions reach.
Every API route declares the permission it needs (`healthmesh.web.deps.require`); services then
check the scope against the object they touch.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    REGIONAL_COORDINATOR = "regional_coordinator"
    NATIONAL_FOCAL_POINT = "national_focal_point"
    FACILITY_MANAGER = "facility_manager"
    CLINICIAN = "clinician"
    RESEARCHER = "researcher"
    AUDITOR = "auditor"


class ScopeKind(StrEnum):
    REGION = "region"
    JURISDICTION = "jurisdiction"
    FACILITY = "facility"


class Permission(StrEnum):
    REGISTRY_READ = "registry:read"
    JURISDICTION_WRITE = "jurisdiction:write"
    PRODUCT_WRITE = "product:write"
    FACILITY_WRITE = "facility:write"
    REGULATORY_WRITE = "regulatory:write"
    USER_READ = "user:read"
    USER_WRITE = "user:write"
    AUDIT_READ = "audit:read"
    STOCK_READ = "stock:read"
    STOCK_WRITE = "stock:write"
    PLEDGE_WRITE = "pledge:write"
    NEED_READ = "need:read"
    NEED_WRITE = "need:write"
    NEED_ENDORSE = "need:endorse"
    ALLOCATION_READ = "allocation:read"
    ALLOCATION_RUN = "allocation:run"
    ALLOCATION_APPROVE = "allocation:approve"
    SHIPMENT_READ = "shipment:read"
    SHIPMENT_PLAN = "shipment:plan"  # turn an approved allocation into shipments
    SHIPMENT_SEND = "shipment:send"  # pick, dispatch, track, cancel, declare lost (source side)
    SHIPMENT_RECEIVE = "shipment:receive"  # confirm receipt, decide on excursions (destination side)
    SELF = "self"  # one's own profile, sessions and tokens


_EVERYONE = frozenset({Permission.REGISTRY_READ, Permission.SELF})

_SUPPLY_READ = frozenset({Permission.STOCK_READ, Permission.NEED_READ, Permission.SHIPMENT_READ})
_SHIPPING = frozenset({Permission.SHIPMENT_SEND, Permission.SHIPMENT_RECEIVE})

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.REGIONAL_COORDINATOR: _EVERYONE
    | _SUPPLY_READ
    | {
        Permission.JURISDICTION_WRITE,
        Permission.PRODUCT_WRITE,
        Permission.FACILITY_WRITE,
        Permission.USER_READ,
        Permission.STOCK_WRITE,  # the regional reserve depots
        Permission.ALLOCATION_READ,
        Permission.ALLOCATION_RUN,
        Permission.ALLOCATION_APPROVE,
        Permission.SHIPMENT_PLAN,
        Permission.SHIPMENT_SEND,  # from the regional reserve depots
    },
    Role.NATIONAL_FOCAL_POINT: _EVERYONE
    | _SUPPLY_READ
    | {
        Permission.FACILITY_WRITE,
        Permission.REGULATORY_WRITE,
        Permission.USER_READ,
        Permission.USER_WRITE,
        Permission.STOCK_WRITE,
        Permission.PLEDGE_WRITE,
        Permission.NEED_WRITE,
        Permission.NEED_ENDORSE,
        Permission.ALLOCATION_READ,  # its own needs' results and explanations
    }
    | _SHIPPING,
    Role.FACILITY_MANAGER: _EVERYONE
    | _SUPPLY_READ
    | {Permission.FACILITY_WRITE, Permission.STOCK_WRITE, Permission.NEED_WRITE}
    | _SHIPPING,
    Role.CLINICIAN: _EVERYONE | _SUPPLY_READ | {Permission.NEED_WRITE},
    Role.RESEARCHER: _EVERYONE | {Permission.STOCK_READ},
    Role.AUDITOR: _EVERYONE
    | _SUPPLY_READ
    | {Permission.USER_READ, Permission.AUDIT_READ, Permission.ALLOCATION_READ},
}

ROLE_SCOPES: dict[Role, frozenset[ScopeKind]] = {
    Role.ADMIN: frozenset({ScopeKind.REGION}),
    Role.REGIONAL_COORDINATOR: frozenset({ScopeKind.REGION}),
    Role.AUDITOR: frozenset({ScopeKind.REGION}),
    Role.NATIONAL_FOCAL_POINT: frozenset({ScopeKind.JURISDICTION}),
    Role.RESEARCHER: frozenset({ScopeKind.REGION, ScopeKind.JURISDICTION}),
    Role.FACILITY_MANAGER: frozenset({ScopeKind.FACILITY}),
    Role.CLINICIAN: frozenset({ScopeKind.FACILITY}),
}

#: Roles a national focal point may hand out inside its own jurisdiction.
DELEGABLE_BY_FOCAL_POINT = frozenset(
    {Role.NATIONAL_FOCAL_POINT, Role.FACILITY_MANAGER, Role.CLINICIAN, Role.RESEARCHER}
)


@dataclass(frozen=True)
class Principal:
    """The authenticated actor of a request or command."""

    user_id: int
    username: str
    role: Role
    jurisdiction_id: int | None = None
    facility_id: int | None = None

    @property
    def scope(self) -> ScopeKind:
        if self.facility_id is not None:
            return ScopeKind.FACILITY
        if self.jurisdiction_id is not None:
            return ScopeKind.JURISDICTION
        return ScopeKind.REGION

    def has(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]

    def covers_jurisdiction(self, jurisdiction_id: int) -> bool:
        """May act on this member's data as a whole (a facility scope never may)."""
        if self.scope is ScopeKind.REGION:
            return True
        return self.scope is ScopeKind.JURISDICTION and self.jurisdiction_id == jurisdiction_id

    def covers_facility(self, facility_id: int, facility_jurisdiction_id: int) -> bool:
        if self.scope is ScopeKind.FACILITY:
            return self.facility_id == facility_id
        return self.covers_jurisdiction(facility_jurisdiction_id)

    def manages_facility(
        self, facility_id: int, facility_jurisdiction_id: int, *, regional_depot: bool
    ) -> bool:
        """May change this facility's stock or record. A regional reserve depot holds the region's
        stock, not its host member's: only region-wide roles and the depot's own staff manage it
        (the host's focal point still reads it)."""
        if regional_depot:
            return self.scope is ScopeKind.REGION or (
                self.scope is ScopeKind.FACILITY and self.facility_id == facility_id
            )
        return self.covers_facility(facility_id, facility_jurisdiction_id)

    def can_assign(self, role: Role, jurisdiction_id: int | None) -> bool:
        """May give an account this role in this jurisdiction (None: region-wide)."""
        if not self.has(Permission.USER_WRITE):
            return False
        if self.scope is ScopeKind.REGION:
            return True
        return (
            role in DELEGABLE_BY_FOCAL_POINT
            and jurisdiction_id is not None
            and self.covers_jurisdiction(jurisdiction_id)
        )
