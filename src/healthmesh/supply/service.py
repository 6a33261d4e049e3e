"""Supply use cases: record stock events (single, batch, CSV), read balances, lots and events
within the caller's scope, and manage pledges to the regional pool."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session, aliased

from healthmesh.accounts.access import Principal, ScopeKind
from healthmesh.db import SelectT, utcnow
from healthmesh.errors import FieldError, InvalidInput, NotFound, PermissionDenied
from healthmesh.registry.enums import FacilityKind
from healthmesh.registry.models import Facility, Jurisdiction, Product
from healthmesh.supply import ledger, rules
from healthmesh.supply.enums import PledgeStatus
from healthmesh.supply.models import Lot, LotBalance, Pledge, StockBalance, StockEvent
from healthmesh.supply.schemas import (
    BalanceOut,
    LotOut,
    PledgeIn,
    PledgeOut,
    StockEventIn,
    StockEventOut,
)


@dataclass(frozen=True)
class FacilityRef:
    id: int
    code: str
    jurisdiction_id: int
    kind: FacilityKind


class CodeBook:
    """Facility and product codes resolved to ids in bulk, once per write."""

    def __init__(self, db: Session, facility_codes: set[str], product_codes: set[str]) -> None:
        self.facilities: dict[str, FacilityRef] = {}
        codes = sorted(facility_codes)
        for start in range(0, len(codes), 500):
            stmt = select(Facility.id, Facility.code, Facility.jurisdiction_id, Facility.kind).where(
                Facility.code.in_(codes[start : start + 500])
            )
            for facility_id, code, jurisdiction_id, kind in db.execute(stmt):
                self.facilities[code] = FacilityRef(facility_id, code, jurisdiction_id, kind)
        self.products: dict[str, int] = {
            code: product_id
            for product_id, code in db.execute(
                select(Product.id, Product.code).where(Product.code.in_(product_codes))
            )
        }


EventRow = StockEventIn | Mapping[str, Any]


def _fields(item: EventRow) -> Mapping[str, Any]:
    """An event's fields whether it came as an API model or a validated file row (a dict)."""
    return item.__dict__ if isinstance(item, StockEventIn) else item


def prepare_events(
    db: Session, actor: Principal, items: Sequence[tuple[int, EventRow]]
) -> list[ledger.EventInput]:
    """Resolve codes and check the actor's scope for every event; all problems at once."""
    rows = [(line, _fields(item)) for line, item in items]
    book = CodeBook(
        db,
        {row["facility"] for _, row in rows}
        | {row["counterpart_facility"] for _, row in rows if row.get("counterpart_facility")},
        {row["product"] for _, row in rows},
    )
    errors: list[FieldError] = []
    out: list[ledger.EventInput] = []
    now = utcnow()
    allowed: dict[int, bool] = {}
    facilities, products = book.facilities, book.products
    for line, row in rows:
        facility = facilities.get(row["facility"])
        product_id = products.get(row["product"])
        counterpart_code = row.get("counterpart_facility")
        counterpart = facilities.get(counterpart_code) if counterpart_code else None
        if facility is None:
            errors.append(FieldError("facility", f"unknown facility {row['facility']!r}", line))
        if product_id is None:
            errors.append(FieldError("product", f"unknown product {row['product']!r}", line))
        if counterpart_code and counterpart is None:
            errors.append(FieldError("counterpart_facility", f"unknown facility {counterpart_code!r}", line))
        if facility is None or product_id is None:
            continue
        if facility.id not in allowed:
            allowed[facility.id] = actor.manages_facility(
                facility.id,
                facility.jurisdiction_id,
                regional_depot=facility.kind is FacilityKind.REGIONAL_RESERVE_DEPOT,
            )
        if not allowed[facility.id]:
            errors.append(FieldError("facility", f"you may not record stock at {facility.code}", line))
            continue
        out.append(
            ledger.EventInput(
                line,
                facility.id,
                facility.jurisdiction_id,
                product_id,
                row["lot_number"],
                row.get("expiry_date"),
                row["kind"],
                row["quantity"],
                row.get("occurred_at") or now,
                row.get("from_reservation", False),
                row.get("reason", ""),
                row.get("reference", ""),
                counterpart.id if counterpart else None,
            )
        )
    if errors:
        raise InvalidInput(f"{len(errors)} event(s) refused; nothing was recorded", errors)
    return out


def record(
    db: Session,
    actor: Principal,
    items: Sequence[tuple[int, EventRow]],
    *,
    source: str,
    request_digest: str,
    idempotency_key: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> ledger.BatchResult:
    """Record events, all or nothing; a retry under the same idempotency key changes nothing."""
    events = prepare_events(db, actor, items)  # scope first: a replay must not answer for another member
    earlier = ledger.earlier_batch(db, idempotency_key, request_digest)
    if earlier is not None:
        return ledger.BatchResult(earlier.id, earlier.events, replayed=True)
    return ledger.record_events(
        db,
        events,
        user_id=actor.user_id or None,
        source=source,
        request_digest=request_digest,
        idempotency_key=idempotency_key,
        progress=progress,
    )


# --- reading -------------------------------------------------------------------------------------


def scoped(stmt: SelectT, actor: Principal, facility_id_column: Any) -> SelectT:
    """Restrict a query over facility-owned rows to what the actor may see."""
    if actor.scope is ScopeKind.FACILITY:
        return stmt.where(facility_id_column == actor.facility_id)
    if actor.scope is ScopeKind.JURISDICTION:
        return stmt.where(
            facility_id_column.in_(
                select(Facility.id).where(Facility.jurisdiction_id == actor.jurisdiction_id)
            )
        )
    return stmt


def _filters(
    stmt: SelectT,
    facility_col: Any,
    product_col: Any,
    *,
    facility: str | None,
    product: str | None,
    jurisdiction: str | None,
) -> SelectT:
    if facility:
        stmt = stmt.where(
            facility_col == select(Facility.id).where(Facility.code == facility).scalar_subquery()
        )
    if product:
        stmt = stmt.where(product_col == select(Product.id).where(Product.code == product).scalar_subquery())
    if jurisdiction:
        stmt = stmt.where(
            facility_col.in_(
                select(Facility.id)
                .join(Facility.jurisdiction)
                .where(Jurisdiction.iso3 == jurisdiction.upper())
            )
        )
    return stmt


def active_pledges_by_stock(db: Session, day: date) -> dict[tuple[int, int], int]:
    stmt = (
        select(Pledge.facility_id, Pledge.product_id, func.sum(Pledge.quantity))
        .where(Pledge.status == PledgeStatus.ACTIVE, Pledge.valid_from <= day, Pledge.valid_to >= day)
        .group_by(Pledge.facility_id, Pledge.product_id)
    )
    return {(f, p): int(q) for f, p, q in db.execute(stmt)}


def list_balances(
    db: Session,
    actor: Principal,
    *,
    facility: str | None,
    product: str | None,
    jurisdiction: str | None,
    limit: int,
    offset: int,
) -> tuple[list[BalanceOut], int]:
    stmt = (
        select(
            StockBalance.facility_id,
            StockBalance.product_id,
            StockBalance.on_hand,
            StockBalance.reserved,
            Facility.code,
            Jurisdiction.iso3,
            Product.code,
        )
        .join(Facility, Facility.id == StockBalance.facility_id)
        .join(Jurisdiction, Jurisdiction.id == Facility.jurisdiction_id)
        .join(Product, Product.id == StockBalance.product_id)
    )
    stmt = _filters(
        scoped(stmt, actor, StockBalance.facility_id),
        StockBalance.facility_id,
        StockBalance.product_id,
        facility=facility,
        product=product,
        jurisdiction=jurisdiction,
    )
    total = db.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = db.execute(stmt.order_by(Facility.code, Product.code).limit(limit).offset(offset)).all()
    pledged = active_pledges_by_stock(db, date.today())
    out = []
    for f, p, on_hand, reserved, facility_code, iso3, product_code in rows:
        pledge = pledged.get((f, p), 0)
        out.append(
            BalanceOut(
                facility=facility_code,
                jurisdiction=iso3,
                product=product_code,
                on_hand=on_hand,
                reserved=reserved,
                pledged=pledge,
                available=max(on_hand - reserved - pledge, 0),
            )
        )
    return out, total


def list_lots(
    db: Session,
    actor: Principal,
    *,
    facility: str | None,
    product: str | None,
    jurisdiction: str | None,
    include_empty: bool,
    limit: int,
    offset: int,
) -> tuple[list[LotOut], int]:
    stmt = (
        select(
            Facility.code,
            Product.code,
            Lot.lot_number,
            Lot.expiry_date,
            LotBalance.on_hand,
            LotBalance.reserved,
        )
        .select_from(LotBalance)
        .join(Lot, Lot.id == LotBalance.lot_id)
        .join(Facility, Facility.id == LotBalance.facility_id)
        .join(Product, Product.id == LotBalance.product_id)
    )
    if not include_empty:
        stmt = stmt.where(LotBalance.on_hand > 0)
    stmt = _filters(
        scoped(stmt, actor, LotBalance.facility_id),
        LotBalance.facility_id,
        LotBalance.product_id,
        facility=facility,
        product=product,
        jurisdiction=jurisdiction,
    )
    total = db.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = db.execute(
        stmt.order_by(Facility.code, Product.code, Lot.expiry_date, Lot.lot_number)
        .limit(limit)
        .offset(offset)
    ).all()
    return [
        LotOut(facility=f, product=p, lot_number=n, expiry_date=x, on_hand=o, reserved=r)
        for f, p, n, x, o, r in rows
    ], total


def list_events(
    db: Session,
    actor: Principal,
    *,
    facility: str | None,
    product: str | None,
    jurisdiction: str | None,
    after_id: int,
    limit: int,
) -> list[StockEventOut]:
    counterpart = aliased(Facility)
    stmt = (
        select(StockEvent, Facility.code, Product.code, Lot.lot_number, counterpart.code)
        .join(Facility, Facility.id == StockEvent.facility_id)
        .join(Product, Product.id == StockEvent.product_id)
        .join(Lot, Lot.id == StockEvent.lot_id)
        .outerjoin(counterpart, counterpart.id == StockEvent.counterpart_facility_id)
        .where(StockEvent.id > after_id)
    )
    stmt = _filters(
        scoped(stmt, actor, StockEvent.facility_id),
        StockEvent.facility_id,
        StockEvent.product_id,
        facility=facility,
        product=product,
        jurisdiction=jurisdiction,
    )
    rows = db.execute(stmt.order_by(StockEvent.id).limit(limit)).all()
    return [
        StockEventOut(
            id=e.id,
            facility=f,
            product=p,
            lot_number=n,
            kind=e.kind,
            quantity=e.quantity,
            on_hand_delta=e.on_hand_delta,
            reserved_delta=e.reserved_delta,
            reason=e.reason,
            reference=e.reference,
            counterpart_facility=c,
            occurred_at=e.occurred_at,
            recorded_at=e.recorded_at,
        )
        for e, f, p, n, c in rows
    ]


def facility_balance(db: Session, facility_id: int, product_id: int) -> rules.Balance:
    row = db.get(StockBalance, (facility_id, product_id))
    return rules.Balance(row.on_hand, row.reserved) if row else rules.Balance()


# --- pledges -------------------------------------------------------------------------------------


def _pledge_out(pledge: Pledge) -> PledgeOut:
    return PledgeOut(
        id=pledge.id,
        jurisdiction=pledge.jurisdiction.iso3,
        facility=pledge.facility.code,
        product=pledge.product.code,
        quantity=pledge.quantity,
        valid_from=pledge.valid_from,
        valid_to=pledge.valid_to,
        status=pledge.status,
        note=pledge.note,
    )


def create_pledge(db: Session, actor: Principal, data: PledgeIn) -> PledgeOut:
    """Offer stock to the regional pool: never more than is available and not already pledged."""
    facility = db.scalar(select(Facility).where(Facility.code == data.facility))
    if facility is None:
        raise InvalidInput.on("facility", f"unknown facility {data.facility!r}")
    product = db.scalar(select(Product).where(Product.code == data.product))
    if product is None:
        raise InvalidInput.on("product", f"unknown product {data.product!r}")
    depot = facility.kind is FacilityKind.REGIONAL_RESERVE_DEPOT
    if not actor.covers_jurisdiction(facility.jurisdiction_id) or (
        depot and actor.scope is not ScopeKind.REGION
    ):
        raise PermissionDenied(f"you may not pledge stock of {facility.code}")
    if depot:
        raise InvalidInput.on(
            "facility", f"{facility.code} is a regional reserve depot: its stock is the region's already"
        )
    balance = facility_balance(db, facility.id, product.id)
    overlapping = (
        db.scalar(
            select(func.coalesce(func.sum(Pledge.quantity), 0)).where(
                Pledge.facility_id == facility.id,
                Pledge.product_id == product.id,
                Pledge.status == PledgeStatus.ACTIVE,
                and_(Pledge.valid_from <= data.valid_to, Pledge.valid_to >= data.valid_from),
            )
        )
        or 0
    )
    free = balance.available - overlapping
    if data.quantity > free:
        raise InvalidInput.on(
            "quantity",
            f"only {max(free, 0)} available to pledge (on hand {balance.on_hand}, "
            f"reserved {balance.reserved}, already pledged {overlapping})",
        )
    pledge = Pledge(
        jurisdiction_id=facility.jurisdiction_id,
        facility=facility,
        product=product,
        quantity=data.quantity,
        valid_from=data.valid_from,
        valid_to=data.valid_to,
        note=data.note,
        created_by=actor.user_id or None,
    )
    db.add(pledge)
    db.flush()
    return _pledge_out(pledge)


def list_pledges(
    db: Session,
    actor: Principal,
    *,
    product: str | None,
    jurisdiction: str | None,
    active_on: date | None,
    limit: int,
    offset: int,
) -> tuple[list[PledgeOut], int]:
    stmt = select(Pledge).order_by(Pledge.id)
    stmt = _filters(
        scoped(stmt, actor, Pledge.facility_id),
        Pledge.facility_id,
        Pledge.product_id,
        facility=None,
        product=product,
        jurisdiction=jurisdiction,
    )
    if active_on is not None:
        stmt = stmt.where(
            Pledge.status == PledgeStatus.ACTIVE, Pledge.valid_from <= active_on, Pledge.valid_to >= active_on
        )
    total = db.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    return [_pledge_out(p) for p in db.scalars(stmt.limit(limit).offset(offset))], total


def withdraw_pledge(db: Session, actor: Principal, pledge_id: int) -> PledgeOut:
    pledge = db.get(Pledge, pledge_id)
    if pledge is None or not actor.covers_facility(pledge.facility_id, pledge.jurisdiction_id):
        raise NotFound(f"no pledge {pledge_id}")
    if not actor.covers_jurisdiction(pledge.jurisdiction_id):
        raise PermissionDenied("only the member's focal point may withdraw its pledge")
    pledge.status = PledgeStatus.WITHDRAWN
    db.flush()
    return _pledge_out(pledge)


# --- the shareable pool --------------------------------------------------------------------------


def shareable_supply(
    db: Session, actor: Principal, *, product: str | None, day: date
) -> list[dict[str, Any]]:
    """What the region can share, per product: stock at the regional reserve depots (available,
    not reserved) and members' active pledges, kept apart. Region-wide roles see every member's
    pledges; a member sees the reserve and its own pledges."""
    depot_ids = select(Facility.id).where(Facility.kind == FacilityKind.REGIONAL_RESERVE_DEPOT)
    reserve = (
        select(StockBalance.product_id, func.sum(StockBalance.on_hand - StockBalance.reserved))
        .where(StockBalance.facility_id.in_(depot_ids))
        .group_by(StockBalance.product_id)
    )
    pledges = scoped(
        select(Pledge.product_id, func.sum(Pledge.quantity), func.count()).where(
            Pledge.status == PledgeStatus.ACTIVE, Pledge.valid_from <= day, Pledge.valid_to >= day
        ),
        actor,
        Pledge.facility_id,
    ).group_by(Pledge.product_id)
    if product:
        wanted = select(Product.id).where(Product.code == product).scalar_subquery()
        reserve = reserve.where(StockBalance.product_id == wanted)
        pledges = pledges.where(Pledge.product_id == wanted)
    codes = {
        pid: (code, name) for pid, code, name in db.execute(select(Product.id, Product.code, Product.name))
    }
    out: dict[int, dict[str, Any]] = {}
    for product_id, quantity in db.execute(reserve):
        out.setdefault(product_id, {"reserve": 0, "pledged": 0, "pledges": 0})["reserve"] = int(quantity)
    for product_id, quantity, count in db.execute(pledges):
        row = out.setdefault(product_id, {"reserve": 0, "pledged": 0, "pledges": 0})
        row["pledged"], row["pledges"] = int(quantity), int(count)
    return [
        {
            "product": codes[pid][0],
            "product_name": codes[pid][1],
            **row,
            "total": row["reserve"] + row["pledged"],
        }
        for pid, row in sorted(out.items(), key=lambda item: codes[item[0]][0])
    ]
