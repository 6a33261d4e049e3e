"""The seeded world the access matrix calls every route on: the test region and its identities
(tests/conftest.py), plus stock, pledges, needs in every state, allocation plans at each step
and shipments on the road or held in quarantine, at three places: Rajavithi (THA-HO-0001, the
facility of the Thai manager and clinician), Chiang Mai (THA-HO-0002, the same member, another
facility) and Mahosot (LAO-HO-0001, another member).

Shipments leave from a regional reserve depot hosted by Singapore, where no identity has a
scope, so who may see or act on a shipment depends on its destination alone.
"""

from __future__ import annotations

import base64
import copy
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from healthmesh.accounts import service as accounts
from healthmesh.accounts.access import Principal, Role
from healthmesh.accounts.models import ApiToken, User
from healthmesh.accounts.security import new_token, token_digest
from healthmesh.allocation import service as allocation
from healthmesh.changes.models import ChangeEvent
from healthmesh.config import Settings
from healthmesh.interop import supply_delivery
from healthmesh.ledger import service as transparency
from healthmesh.logistics import service as logistics
from healthmesh.logistics.models import Shipment
from healthmesh.logistics.schemas import MoveIn, ReceiptIn
from healthmesh.mutual_aid import approval
from healthmesh.mutual_aid import service as mutual_aid
from healthmesh.mutual_aid.api import PlanIn
from healthmesh.needs import service as needs
from healthmesh.needs.models import Need
from healthmesh.needs.schemas import NeedIn
from healthmesh.needs.workflow import NeedStatus, Urgency
from healthmesh.registry.enums import FacilityKind
from healthmesh.registry.models import Facility
from healthmesh.supply import ledger, snapshots
from healthmesh.supply import service as supply
from healthmesh.supply.enums import EventKind
from healthmesh.supply.models import StockSnapshot
from healthmesh.supply.schemas import PledgeIn
from healthmesh.web.deps import csrf_token_for
from tests import conftest
from tests.conftest import ACTOR_SPECS, Region

AGRDT = "DX-AGRDT-25"
RAJAVITHI, CHIANG_MAI, MAHOSOT = "THA-HO-0001", "THA-HO-0002", "LAO-HO-0001"
DEPOT = "RRD-SGP-TUAS"
#: The facilities that hold stock, needs and shipments, with their member.
PLACES: dict[str, str] = {RAJAVITHI: "THA", CHIANG_MAI: "THA", MAHOSOT: "LAO"}
#: Units on hand at each place (one lot each), so a listing shows whose stock it holds.
ON_HAND: dict[str, int] = {RAJAVITHI: 400, CHIANG_MAI: 150, MAHOSOT: 300}
#: Units pledged to the regional pool by each member (from its first facility).
PLEDGED: dict[str, int] = {"THA": 40, "LAO": 70}
#: Users beside the identities of ACTOR_SPECS: an account to administer in each member.
NURSES: dict[str, str] = {"THA": "nurse.tha", "LAO": "nurse.lao"}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(32)
ADMIN = "admin"
#: Where a row belongs: (member ISO3, facility code); None for national or region-wide rows.
Place = tuple[str | None, str | None]


def logger_csv(hot: bool, start: datetime) -> bytes:
    """A truck logger's hourly readings over 36 h; `hot`: 33.5 °C for 27 h (Ag-RDT kits tolerate
    24 h above 30 °C), otherwise 27 °C throughout."""
    rows = [
        f"{(start + timedelta(hours=h)).isoformat()},{33.5 if hot and 4 <= h <= 30 else 27.0}\n"
        for h in range(36)
    ]
    return ("timestamp,temperature_c\n" + "".join(rows)).encode()


@dataclass
class Identity:
    """One caller: its API token, and a signed-in browser session with its CSRF token."""

    name: str
    principal: Principal
    token: str
    token_id: int
    session: str
    csrf: str


@dataclass
class Plans:
    shipped: list[int] = field(default_factory=list)  # approved and turned into shipments
    approved: int = 0  # approved, not shipped yet
    proposed: int = 0  # waiting for a decision


@dataclass
class World:
    """Ids and codes of what was seeded; the tests never hold ORM objects across requests."""

    settings: Settings
    identities: dict[str, Identity]
    member_ids: dict[str, int]
    facility_ids: dict[str, int]
    product_ids: dict[str, int]
    facility_members: dict[str, str]  # every facility's member, the depot's included
    #: Where every user, seeded need and published change belongs: (member, facility).
    user_places: dict[str, Place]
    change_places: set[Place]
    plans: Plans
    mutual_aid_plan: int  # stored, proposed
    #: Needs by state and place: draft, submitted, allocated (by the shipped rounds).
    needs: dict[str, dict[str, int]]
    #: The member of every seeded need (national needs have no facility).
    need_places: dict[int, Place]
    pledges: dict[str, int]
    #: Shipments by state and destination: road (dispatched), held (received, in quarantine).
    shipments: dict[str, dict[str, int]]
    shipment_lines: dict[int, list[tuple[int, int]]]  # shipment id -> [(line id, quantity)]
    deliveries: dict[str, dict[str, Any]]  # destination -> a SupplyDelivery receipt for its road shipment
    nurse_token_id: int
    checkpoint_size: int
    snapshot_on_hand: dict[str, int]  # facility code -> units on hand in today's snapshot
    today: date


def _identities(db: Session, settings: Settings, region: Region) -> dict[str, Identity]:
    """The conftest identities (ACTOR_SPECS), each with a browser session beside its API token."""
    actors: dict[str, conftest.Actor] = conftest.actors.__wrapped__(db, region)  # type: ignore[attr-defined]
    out = {}
    for name, actor in actors.items():
        token = db.scalar(select(ApiToken).where(ApiToken.token_hash == token_digest(actor.token)))
        user = db.get(User, actor.principal.user_id)
        assert token is not None
        assert user is not None
        session, _ = accounts.open_session(db, settings, user)
        csrf = csrf_token_for(settings, session)
        out[name] = Identity(name, actor.principal, actor.token, token.id, session, csrf)
    assert set(out) == set(ACTOR_SPECS)
    return out


def _nurses(db: Session, region: Region) -> int:
    """A clinician at Chiang Mai and one at Mahosot; returns the id of the Thai nurse's token."""
    thai = conftest.make_user(db, region, NURSES["THA"], Role.CLINICIAN, "THA", CHIANG_MAI)
    conftest.make_user(db, region, NURSES["LAO"], Role.CLINICIAN, "LAO", MAHOSOT)
    raw = new_token("at")
    token = ApiToken(user_id=thai.id, name="ward tablet", prefix=raw[:12], token_hash=token_digest(raw))
    db.add(token)
    db.flush()
    return token.id


def receive_stock(
    db: Session, facility: Facility, product_id: int, lot: str, quantity: int, day: date
) -> None:
    ledger.record_events(
        db,
        [
            ledger.EventInput(
                line=1,
                facility_id=facility.id,
                jurisdiction_id=facility.jurisdiction_id,
                product_id=product_id,
                lot_number=lot,
                expiry_date=date(2028, 6, 30),
                kind=EventKind.RECEIPT,
                quantity=quantity,
                occurred_at=datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(days=10),
            )
        ],
        user_id=None,
        source="test",
        request_digest=f"matrix-{lot}",
    )


def _depot(db: Session, region: Region) -> Facility:
    depot = Facility(
        code=DEPOT,
        jurisdiction=region.members["SGP"],
        kind=FacilityKind.REGIONAL_RESERVE_DEPOT,
        name="Regional reserve, Tuas",
        latitude=1.32,
        longitude=103.64,
        time_zone="Asia/Singapore",
        cold_chain_2_8=True,
    )
    db.add(depot)
    db.flush()
    return depot


def _open_needs(db: Session, region: Region, today: date, round_: int) -> dict[str, int]:
    """An open need at each place, for one allocation round."""
    out = {}
    for code in PLACES:
        place = region.facilities[code]
        need = Need(
            jurisdiction_id=place.jurisdiction_id,
            facility=place,
            product=region.products[AGRDT],
            quantity=50 + 25 * round_,
            urgency=Urgency.URGENT,
            needed_by=today + timedelta(days=40),
            status=NeedStatus.OPEN,
            population_served=50_000,
        )
        db.add(need)
        db.flush()
        out[code] = need.id
    return out


def _round(db: Session, coordinator: Principal, today: date, *, approve: bool) -> int:
    plan = allocation.create_plan(db, coordinator, "equity", today)
    assert plan.allocated_units > 0, [(r.reason, r.explanation) for r in plan.results]
    if approve:
        allocation.approve(db, coordinator, plan.id)
    return plan.id


def _shipments(db: Session, coordinator: Principal, plan_id: int) -> dict[str, Shipment]:
    shipped = logistics.plan_shipments(db, coordinator, plan_id)
    out = {s.destination.code: s for s in shipped}
    assert set(out) == set(PLACES), out
    for shipment in shipped:
        for step in ("picked", "dispatched"):
            logistics.move(db, coordinator, shipment.id, MoveIn.model_validate({"status": step}))
    return out


def _hold_in_quarantine(db: Session, admin: Principal, shipment: Shipment, now: datetime) -> None:
    """A hot logger file, then a receipt that keeps the units in quarantine, signed."""
    logistics.upload_log(db, admin, shipment.id, logger_csv(True, now - timedelta(hours=40)))
    receipt = ReceiptIn.model_validate(
        {
            "lines": [{"line_id": line.id, "accepted": line.quantity} for line in shipment.lines],
            "receiver": "Pharmacy store keeper",
            "excursion_decision": "quarantine",
            "signature": {"media_type": "image/png", "data_base64": base64.b64encode(PNG).decode()},
        }
    )
    received, _ = logistics.receive(db, admin, shipment.id, receipt)
    assert received.quarantine_open


def _delivery_receipt(db: Session, admin: Principal, shipment: Shipment) -> dict[str, Any]:
    """What a receiving system posts back for a one-line shipment: its SupplyDelivery at the
    reception stage, with every unit accepted."""
    [line] = shipment.lines
    exported = supply_delivery.read(db, admin, f"shp-{shipment.id}-{line.id}")
    resource = copy.deepcopy(exported)
    resource["status"] = "completed"
    resource["extension"] = [
        {
            "url": "urn:healthmesh:fhir:StructureDefinition:supply-delivery-stage",
            "valueCodeableConcept": {
                "coding": [{"system": "http://hl7.org/fhir/supplydelivery-stage", "code": "reception"}]
            },
        }
    ]
    resource["suppliedItem"][0]["quantity"] = {"value": line.quantity, "unit": "kit"}
    resource["receiver"] = [{"display": "Pharmacy store keeper"}]
    resource.pop("occurrenceDateTime", None)
    return resource


def _workflow_needs(db: Session, admin: Principal, today: date) -> dict[str, dict[str, int]]:
    """A draft and a submitted need at each place, and a submitted national need of each member."""
    out: dict[str, dict[str, int]] = {"draft": {}, "submitted": {}}
    for code in PLACES:
        for state in ("draft", "submitted"):
            data = NeedIn(
                facility=code,
                product=AGRDT,
                quantity=60,
                urgency=Urgency.URGENT,
                needed_by=today + timedelta(days=30),
                justification="Dengue season: fever clinic testing",
                population_served=80_000,
                submit=state == "submitted",
            )
            out[state][code] = needs.create(db, admin, data).id
    for iso3 in ("THA", "LAO"):
        data = NeedIn(
            jurisdiction=iso3,
            product=AGRDT,
            quantity=500,
            needed_by=today + timedelta(days=45),
            justification="National buffer for the provinces",
            submit=True,
        )
        out["submitted"][iso3] = needs.create(db, admin, data).id
    return out


def _mutual_aid_plan(db: Session, region: Region, coordinator: Principal, today: date) -> int:
    """National warehouses, and a stored mutual-aid plan releasing 50 kits of the reserve to Lao PDR."""
    for iso3, code, lat, lon in (("THA", "THA-NW-01", 13.80, 100.55), ("LAO", "LAO-NW-01", 17.97, 102.60)):
        member = region.members[iso3]
        db.add(
            Facility(
                code=code,
                jurisdiction=member,
                kind=FacilityKind.NATIONAL_WAREHOUSE,
                name=f"{member.name} national warehouse",
                latitude=lat,
                longitude=lon,
                time_zone=member.time_zones[0],
            )
        )
    db.flush()
    body = PlanIn.model_validate(
        {
            "demand": [{"member": "LAO", "date": today.isoformat(), "units": 50}],
            "supply": [
                {"member": "LAO", "units": 0},
                {"member": "reserve", "units": 100, "date": today.isoformat()},
            ],
            "distances": [],
            "policy": {"delay_periods": 0},
        }
    )
    inputs, policy = body.inputs(), body.policy.policy()
    plan = mutual_aid.plan_from_inputs(inputs, policy)
    return approval.save(db, coordinator, AGRDT, inputs, policy, plan).id


def build(db: Session, settings: Settings) -> World:
    """Seed the world in `db` (the caller's transaction, rolled back after the module)."""
    today = date.today()
    now = datetime.now(UTC)
    region: Region = conftest.region.__wrapped__(db)  # type: ignore[attr-defined]
    identities = _identities(db, settings, region)
    nurse_token_id = _nurses(db, region)
    admin, coordinator = identities[ADMIN].principal, identities["coordinator"].principal
    product_id = region.products[AGRDT].id

    depot = _depot(db, region)
    receive_stock(db, depot, product_id, "RRS-AG-01", 5000, today)
    for code, units in ON_HAND.items():
        receive_stock(db, region.facilities[code], product_id, f"{code}-AG", units, today)

    plans = Plans()
    allocated: dict[str, int] = {}
    road: dict[str, Shipment] = {}
    held: dict[str, Shipment] = {}
    for round_ in range(4):
        opened = _open_needs(db, region, today, round_)
        plan_id = _round(db, coordinator, today, approve=round_ < 3)
        if round_ == 0:
            allocated = opened
            road = _shipments(db, coordinator, plan_id)
        elif round_ == 1:
            held = _shipments(db, coordinator, plan_id)
            for shipment in held.values():
                _hold_in_quarantine(db, admin, shipment, now)
        if round_ < 2:
            plans.shipped.append(plan_id)
        elif round_ == 2:
            plans.approved = plan_id
        else:
            plans.proposed = plan_id

    pledges = {}
    for iso3, units in PLEDGED.items():
        code = next(c for c, member in PLACES.items() if member == iso3)
        pledge = PledgeIn(
            facility=code,
            product=AGRDT,
            quantity=units,
            valid_from=today - timedelta(days=1),
            valid_to=today + timedelta(days=90),
            note="Surplus after the campaign",
        )
        pledges[iso3] = supply.create_pledge(db, admin, pledge).id
    workflow = _workflow_needs(db, admin, today)
    mutual_aid_plan = _mutual_aid_plan(db, region, coordinator, today)
    snapshots.take_snapshot(db, today)
    checkpoint = transparency.publish_checkpoint(db, transparency.load_signer(settings))

    facility_ids = {code: f.id for code, f in region.facilities.items()} | {DEPOT: depot.id}
    codes = {fid: code for code, fid in facility_ids.items()}
    members = {m.id: iso3 for iso3, m in region.members.items()}

    def place(jurisdiction_id: int | None, facility_id: int | None) -> Place:
        return (members.get(jurisdiction_id or 0), codes.get(facility_id or 0))

    snapshot_rows = db.execute(
        select(StockSnapshot.facility_id, StockSnapshot.on_hand).where(
            StockSnapshot.day == today, StockSnapshot.product_id == product_id
        )
    ).all()
    return World(
        settings=settings,
        identities=identities,
        member_ids={iso3: m.id for iso3, m in region.members.items()},
        facility_ids=facility_ids,
        product_ids={code: p.id for code, p in region.products.items()},
        facility_members={code: members[f.jurisdiction_id] for code, f in region.facilities.items()}
        | {DEPOT: "SGP"},
        user_places={u.username: place(u.jurisdiction_id, u.facility_id) for u in db.scalars(select(User))},
        change_places={place(c.jurisdiction_id, c.facility_id) for c in db.scalars(select(ChangeEvent))},
        plans=plans,
        mutual_aid_plan=mutual_aid_plan,
        needs={"allocated": allocated, **workflow},
        need_places={n.id: place(n.jurisdiction_id, n.facility_id) for n in db.scalars(select(Need))},
        pledges=pledges,
        shipments={
            "road": {code: s.id for code, s in road.items()},
            "held": {code: s.id for code, s in held.items()},
        },
        shipment_lines={
            s.id: [(line.id, line.quantity) for line in s.lines] for s in [*road.values(), *held.values()]
        },
        deliveries={code: _delivery_receipt(db, admin, s) for code, s in road.items()},
        nurse_token_id=nurse_token_id,
        checkpoint_size=checkpoint.size,
        snapshot_on_hand={codes[f]: units for f, units in snapshot_rows},
        today=today,
    )
