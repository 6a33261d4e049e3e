"""Build a round's snapshot from the database: what can be shared, who needs what, and where
each product may be used over the coming weeks."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date, timedelta

from sqlalchemy import ColumnElement, select, tuple_
from sqlalchemy.orm import Session

from healthmesh.accounts.access import Principal, Role
from healthmesh.allocation.snapshot import (
    EligibilityJSON,
    LotJSON,
    MemberJSON,
    NeedJSON,
    ProductJSON,
    Snapshot,
    WindowJSON,
)
from healthmesh.needs.models import Need
from healthmesh.needs.workflow import ALLOCATABLE
from healthmesh.registry import eligibility as rules
from healthmesh.registry import service as registry
from healthmesh.registry.enums import FacilityKind
from healthmesh.registry.models import Facility, Jurisdiction, Product
from healthmesh.supply import analytics
from healthmesh.supply.enums import PledgeStatus
from healthmesh.supply.models import Lot, LotBalance, Pledge

#: Eligibility is evaluated day by day this far ahead (a shipment arrives well within it).
ELIGIBILITY_HORIZON_DAYS = 60
CAPABILITIES = ("cold_chain_2_8", "cold_chain_minus20", "cold_chain_minus70")
SYSTEM = Principal(user_id=0, username="allocation", role=Role.ADMIN)


def _storage(facility: Facility) -> list[str]:
    return [name for name in CAPABILITIES if getattr(facility, name)]


def shareable_lots(db: Session, day: date) -> list[LotJSON]:
    """Unexpired, unreserved stock at the regional reserve depots, and members' pledged surplus
    (the pledging facility's lots, earliest expiry first, up to the pledge)."""
    pledged: dict[tuple[int, int], int] = defaultdict(int)
    for pledge in db.scalars(
        select(Pledge).where(
            Pledge.status == PledgeStatus.ACTIVE, Pledge.valid_from <= day, Pledge.valid_to >= day
        )
    ):
        pledged[(pledge.facility_id, pledge.product_id)] += pledge.quantity
    # only lots that can be shared: at a depot, or of a pledged (facility, product)
    depots = select(Facility.id).where(Facility.kind == FacilityKind.REGIONAL_RESERVE_DEPOT)
    source: ColumnElement[bool] = Lot.facility_id.in_(depots)
    if pledged:
        source = source | tuple_(Lot.facility_id, Lot.product_id).in_(sorted(pledged))
    rows = db.execute(
        select(
            Lot.id,
            Lot.product_id,
            Lot.expiry_date,
            LotBalance.on_hand - LotBalance.reserved,
            Facility.id,
            Facility.code,
            Facility.kind,
            Facility.latitude,
            Facility.longitude,
            Jurisdiction.iso3,
            Product.code,
        )
        .join(LotBalance, LotBalance.lot_id == Lot.id)
        .join(Facility, Facility.id == Lot.facility_id)
        .join(Jurisdiction, Jurisdiction.id == Facility.jurisdiction_id)
        .join(Product, Product.id == Lot.product_id)
        .where(LotBalance.on_hand > LotBalance.reserved, source)
        .where((Lot.expiry_date.is_(None)) | (Lot.expiry_date > day))
        .order_by(Lot.expiry_date, Lot.id)
    ).all()
    out = []
    for lot_id, product_id, expiry, available, facility_id, code, kind, lat, lon, iso3, product in rows:
        if kind is FacilityKind.REGIONAL_RESERVE_DEPOT:
            quantity, origin = int(available), "reserve"
        else:
            key = (facility_id, product_id)
            quantity, origin = min(int(available), pledged.get(key, 0)), "pledge"
            if quantity <= 0:
                continue
            pledged[key] -= quantity
        out.append(
            LotJSON(
                id=f"lot:{lot_id}",
                product=product,
                source=code,
                source_member=iso3,
                quantity=quantity,
                expiry=expiry,
                lat=lat,
                lon=lon,
                origin=origin,
            )
        )
    return out


def national_warehouses(db: Session) -> dict[int, Facility]:
    """Each member's national warehouse (the first registered), where a member-level need is delivered."""
    return {
        f.jurisdiction_id: f
        for f in db.scalars(
            select(Facility)
            .where(Facility.kind == FacilityKind.NATIONAL_WAREHOUSE)
            .order_by(Facility.id.desc())
        )
    }


def destination(need: Need, warehouses: dict[int, Facility]) -> Facility | None:
    """Where a need's supplies go: its facility, or its member's national warehouse."""
    if need.facility is not None:
        return need.facility
    return warehouses.get(need.jurisdiction_id)


def open_needs(db: Session, day: date) -> list[NeedJSON]:
    """Needs open to allocation, each with its destination, the member's coverage and its order.
    Columns, not need objects: a continent round reads 100,000 needs."""
    warehouses = national_warehouses(db)
    coverage = {
        (row.jurisdiction, row.product): row.coverage
        for row in analytics.shortage_board(db, SYSTEM, window=analytics.Window(day))
    }
    rows = db.execute(
        select(
            Need.id,
            Need.jurisdiction_id,
            Need.quantity - Need.quantity_allocated,
            Need.urgency,
            Need.population_served,
            Jurisdiction.iso3,
            Product.code,
            Facility.code,
            Facility.latitude,
            Facility.longitude,
            *(getattr(Facility, name) for name in CAPABILITIES),
        )
        .join(Jurisdiction, Jurisdiction.id == Need.jurisdiction_id)
        .join(Product, Product.id == Need.product_id)
        .outerjoin(Facility, Facility.id == Need.facility_id)
        .where(Need.status.in_(list(ALLOCATABLE)))
        .order_by(Need.submitted_at, Need.id)
    )
    out = []
    for order, (need_id, member_id, outstanding, urgency, population, iso3, product, *place) in enumerate(
        rows
    ):
        code, lat, lon, *capabilities = place
        if code is None:  # a member-level need: delivered to the member's national warehouse
            warehouse = warehouses.get(member_id)
            if warehouse is None:
                continue
            code, lat, lon = warehouse.code, warehouse.latitude, warehouse.longitude
            capabilities = [getattr(warehouse, name) for name in CAPABILITIES]
        if outstanding <= 0:
            continue
        out.append(
            NeedJSON(
                id=f"need:{need_id}",
                product=product,
                member=iso3,
                facility=code,
                lat=lat,
                lon=lon,
                quantity=outstanding,
                urgency=urgency.value,
                coverage=coverage.get((iso3, product)),
                population_served=population,
                order=order,
                storage=[name for name, held in zip(CAPABILITIES, capabilities, strict=True) if held],
            )
        )
    return out


def _change_days(records: Iterable[rules.AuthorisationRecord | rules.RecognitionRecord]) -> set[date]:
    """The days on which a record comes into force or lapses: a decision can change only then."""
    days = {record.valid_from for record in records}
    days |= {record.valid_to + timedelta(days=1) for record in records if record.valid_to is not None}
    return days


def eligibility_windows(db: Session, pairs: set[tuple[str, str]], day: date) -> list[EligibilityJSON]:
    """For each (product, member): the days in the horizon on which the product may be used there.
    Decided on the first day and on each day an authorisation or agreement starts or lapses (the
    only days a decision can change), not on every day: 11,000 pairs at continent scale."""
    products = {p.code: p for p in db.scalars(select(Product).where(Product.code.in_({p for p, _ in pairs})))}
    recognitions = registry.recognition_records(db)
    by_id = registry.authorisation_records_by_product(db, [product.id for product in products.values()])
    authorisations = {code: by_id[product.id] for code, product in products.items()}
    horizon_end = day + timedelta(days=ELIGIBILITY_HORIZON_DAYS)
    recognised_changes = _change_days(recognitions)
    product_changes = {code: _change_days(records) for code, records in authorisations.items()}
    out = []
    for code, member in sorted(pairs):
        product = products[code]
        changes = recognised_changes | product_changes[code]
        days = [day, *sorted(when for when in changes if day < when <= horizon_end)]
        decisions = [
            rules.decide(
                product_code=code,
                category=product.category.value,
                who_listing=product.who_listing,
                jurisdiction=member,
                day=when,
                authorisations=authorisations[code],
                recognitions=recognitions,
            )
            for when in days
        ]
        windows: list[WindowJSON] = []
        allowed_before = False
        for when, decision in zip(days, decisions, strict=True):
            if decision.allowed and not allowed_before:
                windows.append(WindowJSON(start=when, end=None))
            if not decision.allowed and allowed_before:
                windows[-1] = WindowJSON(start=windows[-1].start, end=when - timedelta(days=1))
            allowed_before = decision.allowed
        basis = next((d.explanation for d in decisions if d.allowed), decisions[0].explanation)
        out.append(EligibilityJSON(product=code, member=member, windows=windows, basis=basis))
    return out


def build_snapshot(db: Session, day: date) -> Snapshot:
    lots = shareable_lots(db, day)
    needs = open_needs(db, day)
    codes = {lot.product for lot in lots} | {need.product for need in needs}
    products = [
        ProductJSON(
            code=p.code,
            storage_condition=p.storage_condition.value,
            pack_size=p.pack_size,
            discrete=p.is_discrete_equipment,
        )
        for p in db.scalars(select(Product).where(Product.code.in_(codes)).order_by(Product.code))
    ]
    members = [
        MemberJSON(iso3=j.iso3, population=j.population, income_group=j.income_group.value)
        for j in db.scalars(select(Jurisdiction).order_by(Jurisdiction.iso3))
    ]
    pairs = {(need.product, need.member) for need in needs}
    return Snapshot(
        day=day,
        lots=lots,
        needs=needs,
        products=products,
        members=members,
        eligibility=eligibility_windows(db, pairs, day),
    )
