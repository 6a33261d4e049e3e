"""Indicators and the shortage board, computed from the projections and the event log in a few
grouped queries, then folded by the pure functions of `supply.indicators`."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Date, cast, func, select
from sqlalchemy.orm import Session

from healthmesh.accounts.access import Principal, ScopeKind
from healthmesh.errors import PermissionDenied
from healthmesh.needs.models import Need
from healthmesh.needs.workflow import OUTSTANDING
from healthmesh.registry.enums import FacilityKind
from healthmesh.registry.models import Facility, Jurisdiction, Product
from healthmesh.supply import indicators as ind
from healthmesh.supply.enums import EventKind
from healthmesh.supply.models import Lot, LotBalance, StockBalance, StockEvent
from healthmesh.supply.service import scoped

FP = tuple[int, int]  # (facility id, product id)


class Level(StrEnum):
    FACILITY = "facility"
    JURISDICTION = "jurisdiction"
    REGION = "region"


@dataclass(frozen=True)
class Window:
    today: date
    window_days: int = 30
    near_expiry_days: int = 90
    period_days: int = 30

    @property
    def window_start(self) -> datetime:
        start = self.today - timedelta(days=self.window_days - 1)
        return datetime(start.year, start.month, start.day, tzinfo=UTC)


def _day(db: Session, column: Any) -> Any:
    return func.date(column) if db.get_bind().dialect.name == "sqlite" else cast(column, Date)


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _facility_scope(
    db: Session,
    actor: Principal,
    jurisdiction_id: int | None,
    facility_id: int | None,
    *,
    national_only: bool = False,
) -> dict[int, int]:
    """Facility id -> jurisdiction id for the facilities this query covers. `national_only` leaves
    out the regional reserve depots: their stock is the region's, not the host member's."""
    stmt = scoped(select(Facility.id, Facility.jurisdiction_id), actor, Facility.id)
    if jurisdiction_id is not None:
        stmt = stmt.where(Facility.jurisdiction_id == jurisdiction_id)
    if facility_id is not None:
        stmt = stmt.where(Facility.id == facility_id)
    if national_only:
        stmt = stmt.where(Facility.kind != FacilityKind.REGIONAL_RESERVE_DEPOT)
    return {f: j for f, j in db.execute(stmt)}


def facility_positions(
    db: Session,
    facilities: dict[int, int],
    window: Window,
    product_id: int | None = None,
    *,
    stockout_history: bool = True,
) -> dict[FP, ind.Position]:
    """The position of every (facility, product) that holds or moved stock, within `facilities`.
    `stockout_history=False` skips the day-by-day replay behind stock-out days (the shortage
    board does not show them, and it is most of the cost)."""

    def keep(f: int, p: int) -> bool:
        return f in facilities and (product_id is None or p == product_id)

    positions: dict[FP, ind.Position] = {}
    lots: dict[FP, list[ind.LotPosition]] = defaultdict(list)
    stmt = select(
        StockBalance.facility_id, StockBalance.product_id, StockBalance.on_hand, StockBalance.reserved
    )
    if product_id is not None:
        stmt = stmt.where(StockBalance.product_id == product_id)
    for f, p, on_hand, reserved in db.execute(stmt):
        if keep(f, p):
            positions[(f, p)] = ind.Position(on_hand=on_hand, reserved=reserved, facilities=1)
    lot_stmt = (
        select(
            LotBalance.facility_id,
            LotBalance.product_id,
            Lot.expiry_date,
            LotBalance.on_hand,
            LotBalance.reserved,
        )
        .join(Lot, Lot.id == LotBalance.lot_id)
        .where(LotBalance.on_hand > 0)
    )
    if product_id is not None:
        lot_stmt = lot_stmt.where(LotBalance.product_id == product_id)
    for f, p, expiry, on_hand, reserved in db.execute(lot_stmt):
        if keep(f, p):
            lots[(f, p)].append(ind.LotPosition(expiry, on_hand, reserved))
    issued_stmt = (
        select(StockEvent.facility_id, StockEvent.product_id, func.sum(StockEvent.quantity))
        .where(StockEvent.kind == EventKind.ISSUE, StockEvent.occurred_at >= window.window_start)
        .group_by(StockEvent.facility_id, StockEvent.product_id)
    )
    for f, p, issued in db.execute(issued_stmt):
        if keep(f, p):
            positions.setdefault((f, p), ind.Position(facilities=1)).issued_in_window = int(issued)
    for key, pipeline in _pipeline(db).items():
        if keep(*key):
            positions.setdefault(key, ind.Position(facilities=1)).pipeline = pipeline
    daily = _daily_changes(db, window, product_id) if stockout_history else {}
    first = window.today - timedelta(days=window.period_days - 1)
    for key, position in positions.items():
        split = ind.split_by_expiry(lots.get(key, []), window.today, window.near_expiry_days)
        position.usable, position.near_expiry, position.expired = (
            split.usable,
            split.near_expiry,
            split.expired,
        )
        position.stocked_out = int(position.usable == 0)
        if stockout_history:
            closing = ind.closing_balances(position.on_hand, daily.get(key, {}), first, window.today)
            position.stockout_days = ind.stockout_days(closing)
        position.members = {facilities[key[0]]}
    return positions


def _units_by_reference(db: Session, kind: EventKind, destination: Any) -> dict[tuple[str, int, int], int]:
    """Units of one event kind per (reference, destination facility, product); `destination` is
    the column that names the destination for this kind."""
    stmt = (
        select(StockEvent.reference, destination, StockEvent.product_id, func.sum(StockEvent.quantity))
        .where(StockEvent.kind == kind, destination.is_not(None))
        .group_by(StockEvent.reference, destination, StockEvent.product_id)
    )
    return {(ref, dest, p): int(q) for ref, dest, p, q in db.execute(stmt)}


def _pipeline(db: Session) -> dict[FP, int]:
    """Units sent to a facility (transfer-out naming it) and not yet received there (transfer-in
    with the same reference) nor lost on the way (transit loss naming it), per destination
    facility and product."""
    sent = _units_by_reference(db, EventKind.TRANSFER_OUT, StockEvent.counterpart_facility_id)
    if not sent:
        return {}
    received = _units_by_reference(db, EventKind.TRANSFER_IN, StockEvent.facility_id)
    lost = _units_by_reference(db, EventKind.TRANSIT_LOSS, StockEvent.counterpart_facility_id)
    pipeline: dict[FP, int] = defaultdict(int)
    for (ref, dest, p), quantity in sent.items():
        arrived = received.get((ref, dest, p), 0) + lost.get((ref, dest, p), 0)
        pipeline[(dest, p)] += max(quantity - arrived, 0)
    return {key: value for key, value in pipeline.items() if value}


def _daily_changes(db: Session, window: Window, product_id: int | None) -> dict[FP, dict[date, int]]:
    start = window.today - timedelta(days=window.period_days - 1)
    day = _day(db, StockEvent.occurred_at)
    stmt = (
        select(StockEvent.facility_id, StockEvent.product_id, day, func.sum(StockEvent.on_hand_delta))
        .where(StockEvent.occurred_at >= datetime(start.year, start.month, start.day, tzinfo=UTC))
        .group_by(StockEvent.facility_id, StockEvent.product_id, day)
    )
    if product_id is not None:
        stmt = stmt.where(StockEvent.product_id == product_id)
    out: dict[FP, dict[date, int]] = defaultdict(dict)
    for f, p, d, change in db.execute(stmt):
        out[(f, p)][_as_date(d)] = int(change)
    return out


def outstanding_requests(
    db: Session, horizon_end: date, product_id: int | None = None
) -> dict[tuple[int, int], int]:
    """Unallocated quantity of outstanding needs due by `horizon_end`, per (member, product)."""
    stmt = (
        select(Need.jurisdiction_id, Need.product_id, func.sum(Need.quantity - Need.quantity_allocated))
        .where(Need.status.in_(list(OUTSTANDING)), Need.needed_by <= horizon_end)
        .group_by(Need.jurisdiction_id, Need.product_id)
    )
    if product_id is not None:
        stmt = stmt.where(Need.product_id == product_id)
    return {(j, p): int(q) for j, p, q in db.execute(stmt)}


@dataclass
class IndicatorRow:
    level: Level
    key: str
    name: str
    product: str
    position: ind.Position
    adc: float
    days_of_stock: float | None


def _names(db: Session) -> tuple[dict[int, tuple[str, str]], dict[int, tuple[str, str]], dict[int, str]]:
    facilities = {
        f: (code, name) for f, code, name in db.execute(select(Facility.id, Facility.code, Facility.name))
    }
    members = {
        j: (iso3, name)
        for j, iso3, name in db.execute(select(Jurisdiction.id, Jurisdiction.iso3, Jurisdiction.name))
    }
    products = {p: code for p, code in db.execute(select(Product.id, Product.code))}
    return facilities, members, products


def indicator_rows(
    db: Session,
    actor: Principal,
    *,
    level: Level,
    window: Window,
    product_id: int | None = None,
    jurisdiction_id: int | None = None,
    facility_id: int | None = None,
) -> list[IndicatorRow]:
    """Indicators per product at the chosen level, over what the actor may see."""
    if level is Level.REGION and actor.scope is not ScopeKind.REGION:
        raise PermissionDenied(
            "region-wide indicators are for region-wide roles; ask for your member or facility"
        )
    if level is Level.JURISDICTION and actor.scope is ScopeKind.FACILITY:
        raise PermissionDenied("member-wide indicators are not in a facility's scope")
    facilities = _facility_scope(db, actor, jurisdiction_id, facility_id)
    positions = facility_positions(db, facilities, window, product_id)
    groups: dict[tuple[int, int], ind.Position] = {}
    for (f, p), position in positions.items():
        group = f if level is Level.FACILITY else facilities[f] if level is Level.JURISDICTION else 0
        groups.setdefault((group, p), ind.Position()).add(position)
    facility_names, member_names, product_codes = _names(db)
    rows = []
    for (group, p), position in sorted(groups.items()):
        adc = ind.average_daily_consumption(position.issued_in_window, window.window_days)
        key, name = (
            facility_names[group]
            if level is Level.FACILITY
            else member_names[group]
            if level is Level.JURISDICTION
            else ("REGION", "Region")
        )
        rows.append(
            IndicatorRow(
                level, key, name, product_codes[p], position, adc, ind.days_of_stock(position.usable, adc)
            )
        )
    return rows


@dataclass
class ShortageRow:
    product: str
    product_name: str
    jurisdiction: str
    usable: int
    pipeline: int
    adc: float
    outstanding_requests: int
    demand: float
    coverage: float | None
    days_of_stock: float | None
    facilities_stocked_out: int


def shortage_board(
    db: Session,
    actor: Principal,
    *,
    window: Window,
    horizon_days: int = 30,
    product_id: int | None = None,
) -> list[ShortageRow]:
    """Product x member rows with coverage over the horizon, the most severe first. National
    stock only: the regional reserve is shown apart (`service.shareable_supply`)."""
    if actor.scope is ScopeKind.FACILITY:
        raise PermissionDenied("the shortage board is for member- and region-wide roles")
    facilities = _facility_scope(db, actor, None, None, national_only=True)
    positions = facility_positions(db, facilities, window, product_id, stockout_history=False)
    per_member: dict[tuple[int, int], ind.Position] = {}
    for (f, p), position in positions.items():
        per_member.setdefault((facilities[f], p), ind.Position()).add(position)
    requests = outstanding_requests(db, window.today + timedelta(days=horizon_days), product_id)
    visible_members = set(facilities.values())
    for (j, p), quantity in requests.items():
        if j in visible_members:
            per_member.setdefault((j, p), ind.Position()).outstanding_requests = quantity
    _, member_names, product_codes = _names(db)
    product_names = {code: name for code, name in db.execute(select(Product.code, Product.name))}
    rows = []
    for (j, p), position in per_member.items():
        adc = ind.average_daily_consumption(position.issued_in_window, window.window_days)
        demand = ind.demand_over_horizon(adc, horizon_days, position.outstanding_requests)
        if demand <= 0:
            continue
        code = product_codes[p]
        rows.append(
            ShortageRow(
                product=code,
                product_name=product_names[code],
                jurisdiction=member_names[j][0],
                usable=position.usable,
                pipeline=position.pipeline,
                adc=round(adc, 2),
                outstanding_requests=position.outstanding_requests,
                demand=round(demand, 1),
                coverage=ind.coverage(position.usable, position.pipeline, demand),
                days_of_stock=ind.days_of_stock(position.usable, adc),
                facilities_stocked_out=position.stocked_out,
            )
        )
    rows.sort(key=lambda row: ind.severity_key(row.coverage, row.demand))
    return rows
