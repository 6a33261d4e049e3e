"""Indicators and the shortage board, computed from the projections and the event log in a few
grouped queries (`supply.summary`: per facility and product, in SQL; per member from its cache
when it may answer), then folded by the pure functions of `supply.indicators`."""

from __future__ import annotations

import gc
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from functools import cached_property
from typing import Any, overload

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import BigInteger, Connection, Date, cast, func, select
from sqlalchemy.orm import Session

from healthmesh.accounts.access import Principal, ScopeKind
from healthmesh.errors import PermissionDenied
from healthmesh.needs.models import Need
from healthmesh.needs.workflow import OUTSTANDING
from healthmesh.registry.enums import FacilityKind
from healthmesh.registry.models import Facility, Jurisdiction, Product
from healthmesh.supply import indicators as ind
from healthmesh.supply import summary
from healthmesh.supply.enums import EventKind
from healthmesh.supply.models import StockEvent
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


def _facility_rows(
    db: Session, window: Window, facilities: Collection[int], product_id: int | None, stockout_history: bool
) -> dict[int, summary.Rows]:
    """Each facility's rows (`summary` columns): from the cache when it may answer, else in SQL."""
    cache = summary.cache_for(db)
    if cache is not None:
        found = cache.stats(db, window, members=(), facility_ids=facilities)
        if found is not None:
            return found.facilities
    where = summary.Filter(facility_ids=list(facilities), product_id=product_id)
    return summary.split(summary.load(db, window, where, stockout_history=stockout_history))


def facility_positions(
    db: Session,
    facilities: dict[int, int],
    window: Window,
    product_id: int | None = None,
    *,
    stockout_history: bool = True,
) -> dict[FP, ind.Position]:
    """The position of every (facility, product) that holds or moved stock, within `facilities`
    (facility id -> the member it counts for). `stockout_history=False` leaves stock-out days at
    zero (the shortage board does not show them)."""
    if not facilities:
        return {}
    tables = _facility_rows(db, window, facilities, product_id, stockout_history)
    with _collector_paused():
        positions = _positions(tables, facilities, product_id, stockout_history)
    for (f, p), units in _pipeline(db).items():
        if f in facilities and (product_id is None or p == product_id):
            position = positions.get((f, p))
            if position is None:  # stock on its way to a facility that never held the product
                position = positions[(f, p)] = ind.Position(
                    facilities=1,
                    stocked_out=1,
                    stockout_days=window.period_days if stockout_history else 0,
                    members={facilities[f]},
                )
            position.pipeline = units
    return positions


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while tens of thousands of positions are made: they
    hold no cycles, and the full collections their number triggers would cost more than the work."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _positions(
    tables: dict[int, summary.Rows],
    facilities: dict[int, int],
    product_id: int | None,
    stockout_history: bool,
) -> dict[FP, ind.Position]:
    positions: dict[FP, ind.Position] = {}
    for f in sorted(tables):
        member = facilities.get(f)
        if member is None:
            continue
        table = tables[f]
        if product_id is not None:
            table = table[table[:, summary.PRODUCT] == product_id]
        for p, on_hand, reserved, usable, near, expired, issued, days in table.tolist():
            positions[(f, p)] = ind.Position(
                on_hand=on_hand,
                reserved=reserved,
                usable=usable,
                near_expiry=near,
                expired=expired,
                issued_in_window=issued,
                facilities=1,
                stocked_out=int(usable == 0),
                stockout_days=days if stockout_history else 0,
                members={member},
            )
    return positions


@dataclass
class MemberPositions:
    """A member's page in one call: per product, the positions of its national facilities and of
    the regional reserve depots it hosts, summed, and which national positions have no usable stock."""

    national: dict[int, ind.Position]
    reserve: dict[int, ind.Position]
    stocked_out: list[FP]  # (facility, product), national facilities only


def member_positions(
    db: Session, facilities: dict[int, bool], window: Window, *, stockout_history: bool = True
) -> MemberPositions:
    """What `facility_positions` gives folded by product and split national / reserve (facility
    id -> True for a regional reserve depot), without making a position per facility and product:
    the same sums (members left empty, as `Position.add` leaves them), from the same rows."""
    out = MemberPositions({}, {}, [])
    if not facilities:
        return out
    tables = _facility_rows(db, window, facilities, None, stockout_history)
    columns = [
        summary.ON_HAND,
        summary.RESERVED,
        summary.USABLE,
        summary.NEAR_EXPIRY,
        summary.EXPIRED,
        summary.ISSUED,
        summary.STOCKOUT_DAYS,
    ]
    sums, stocked_out = _fold_by_kind(tables, facilities, stockout_history)
    width = sums.shape[1]
    pipeline_only: list[tuple[int, int, int]] = []
    pipeline: dict[tuple[int, int], int] = defaultdict(int)
    for (f, p), units in _pipeline(db).items():
        depot = facilities.get(f)
        if depot is None:
            continue
        pipeline[(int(depot), p)] += units
        held = tables.get(f)
        if held is None or not (held[:, summary.PRODUCT] == p).any():
            pipeline_only.append((int(depot), p, f))
    extra: dict[tuple[int, int], int] = defaultdict(int)
    for kind, p, f in pipeline_only:
        extra[(kind, p)] += 1
        if kind == 0:
            stocked_out.append((f, p))
    for kind, target in ((0, out.national), (1, out.reserve)):
        present = set(np.flatnonzero(sums[kind, :, summary.FACILITIES]).tolist())
        present |= {p for k, p in extra if k == kind}
        for p in sorted(present):
            row = sums[kind, p].tolist() if p < width else [0] * summary.TOTALS_WIDTH
            more = extra.get((kind, p), 0)
            on_hand, reserved, usable, near, expired, issued, days = (row[c] for c in columns)
            target[p] = ind.Position(
                on_hand=on_hand,
                reserved=reserved,
                usable=usable,
                near_expiry=near,
                expired=expired,
                issued_in_window=issued,
                pipeline=pipeline.get((kind, p), 0),
                facilities=row[summary.FACILITIES] + more,
                stocked_out=row[summary.STOCKED_OUT] + more,
                stockout_days=days + (more * window.period_days if stockout_history else 0),
            )
    out.stocked_out = sorted(stocked_out)
    return out


def _fold_by_kind(
    tables: dict[int, summary.Rows], facilities: dict[int, bool], stockout_history: bool
) -> tuple[summary.Rows, list[FP]]:
    """The facilities' rows summed per (national or reserve, product) as `summary` totals, and
    the national (facility, product) positions without usable stock: all rows stacked into one
    array (Nigeria: 1,286 facilities, 49,503 rows), not folded facility by facility."""
    kept = [f for f in sorted(tables) if f in facilities and len(tables[f])]
    if not kept:
        return np.zeros((2, 1, summary.TOTALS_WIDTH), dtype=np.int64), []
    lengths = [len(tables[f]) for f in kept]
    rows = np.concatenate([tables[f] for f in kept])
    owner = np.repeat(np.asarray(kept, dtype=np.int64), lengths)
    kind = np.repeat(np.asarray([int(facilities[f]) for f in kept], dtype=np.int64), lengths)
    products = rows[:, summary.PRODUCT]
    width = int(products.max()) + 1
    contribution = summary.contribution(rows)
    if not stockout_history:
        contribution[:, summary.STOCKOUT_DAYS] = 0
    index = kind * width + products
    sums = np.zeros((2 * width, summary.TOTALS_WIDTH), dtype=np.int64)
    for column in range(summary.TOTALS_WIDTH):  # bincount: exact below 2**53, and fast
        sums[:, column] = np.rint(np.bincount(index, weights=contribution[:, column], minlength=2 * width))
    out = (kind == 0) & (rows[:, summary.USABLE] == 0)
    stocked_out = list(zip(owner[out].tolist(), products[out].tolist(), strict=True))
    return sums.reshape(2, width, summary.TOTALS_WIDTH), stocked_out


@dataclass
class _MemberTotals:
    """Per member and product, the sums of its facilities' positions (`summary` totals), split
    national / regional reserve, with the stock on its way (pipeline) added apart."""

    totals: dict[int, summary.Rows]
    member_of: dict[int, tuple[int, int]]
    pipeline: dict[tuple[int, int, int], int]  # (member, NATIONAL or RESERVE, product) -> units
    #: positions that exist only because stock is on its way: (member, kind, product) -> count
    pipeline_only: dict[tuple[int, int, int], int]

    def positions(
        self, member: int, kinds: Sequence[int], products: Sequence[int], window: Window
    ) -> list[ind.Position]:
        """The member's position in each of `products`, over its facilities of these kinds."""
        table = self.totals.get(member)
        width = table.shape[1] if table is not None else 0
        inside = [p for p in products if p < width]
        found: dict[int, list[int]] = {}
        if table is not None and inside:
            summed = table[list(kinds)].sum(axis=0)
            found = dict(zip(inside, summed[inside].tolist(), strict=True))
        zero = [0] * summary.TOTALS_WIDTH
        out = []
        for p in products:
            row = found.get(p, zero)
            extra = sum(self.pipeline_only.get((member, k, p), 0) for k in kinds) if self.pipeline_only else 0
            out.append(
                ind.Position(
                    on_hand=row[summary.ON_HAND],
                    reserved=row[summary.RESERVED],
                    usable=row[summary.USABLE],
                    near_expiry=row[summary.NEAR_EXPIRY],
                    expired=row[summary.EXPIRED],
                    issued_in_window=row[summary.ISSUED],
                    pipeline=sum(self.pipeline.get((member, k, p), 0) for k in kinds) if self.pipeline else 0,
                    facilities=row[summary.FACILITIES] + extra,
                    stocked_out=row[summary.STOCKED_OUT] + extra,
                    stockout_days=row[summary.STOCKOUT_DAYS] + extra * window.period_days,
                )
            )
        return out

    def board_table(self, member: int, asked: NDArray[np.int64], product_id: int | None) -> NDArray[np.int64]:
        """The member's board rows as `BOARD_COLUMNS`, one per product consumed in the window by
        its national facilities or requested (`asked`: product, outstanding units), in
        product order (of `product_id` only, if given): arrays, not positions."""
        table = self.totals.get(member)
        width = table.shape[1] if table is not None else 0
        products = asked[:, 0]
        if table is not None:
            products = np.union1d(products, np.flatnonzero(table[summary.NATIONAL, :, summary.ISSUED]))
        else:
            products = np.unique(products)
        if product_id is not None:
            products = products[products == product_id]
        out = np.zeros((len(products), len(BOARD_COLUMNS)), dtype=np.int64)
        out[:, 0], out[:, 1] = member, products
        if table is not None:
            inside = products < width
            national = table[summary.NATIONAL]
            out[inside, 2] = national[products[inside], summary.USABLE]
            out[inside, 4] = national[products[inside], summary.ISSUED]
            out[inside, 5] = national[products[inside], summary.STOCKED_OUT]
        if len(asked):
            at = np.searchsorted(products, asked[:, 0])
            found = (at < len(products)) & (products[np.minimum(at, len(products) - 1)] == asked[:, 0])
            out[at[found], 6] = asked[found, 1]
        for p, units, extra in self._national_pipeline.get(member, ()):
            self._add(out, products, p, 3, units)
            self._add(out, products, p, 5, extra)
        return out

    @cached_property
    def _national_pipeline(self) -> dict[int, list[tuple[int, int, int]]]:
        """Member -> (product, units on their way, positions with only those) of its national
        facilities: the pipeline grouped once, not scanned per member."""
        out: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
        for j, kind, p in set(self.pipeline) | set(self.pipeline_only):
            if kind == summary.NATIONAL:
                out[j].append(
                    (p, self.pipeline.get((j, kind, p), 0), self.pipeline_only.get((j, kind, p), 0))
                )
        return out

    @staticmethod
    def _add(
        out: NDArray[np.int64], products: NDArray[np.int64], product: int, column: int, units: int
    ) -> None:
        at = int(np.searchsorted(products, product))
        if at < len(products) and products[at] == product:
            out[at, column] += units

    def products(self, member: int, kinds: Iterable[int]) -> set[int]:
        """Products with at least one position in the member (of these kinds)."""
        out: set[int] = set()
        table = self.totals.get(member)
        for kind in kinds:
            if table is not None:
                out.update(np.flatnonzero(table[kind, :, summary.FACILITIES]).tolist())
            out.update(p for (j, k, p) in self.pipeline_only if j == member and k == kind)
        return out


def _member_totals(db: Session, window: Window, members: set[int] | None) -> _MemberTotals:
    """Totals of `members` (None: all), from the cache when it may answer, else in SQL."""
    pipeline = _pipeline(db)
    cache = summary.cache_for(db)
    destinations = {f for f, _ in pipeline}
    found = (
        cache.stats(db, window, members=members, facility_ids=destinations, load_their_members=False)
        if cache is not None
        else None
    )
    if found is not None:
        totals, member_of, tables = found.totals, found.member_of, found.facilities
    else:
        where = summary.Filter(members=sorted(members) if members is not None else None)
        rows = summary.load(db, window, where)
        member_of = summary.facility_kinds(db)  # after the rows: every facility in them is known
        width = int(rows[:, 1 + summary.PRODUCT].max()) + 1 if len(rows) else 1
        totals = summary.totals(rows, member_of, width)
        tables = summary.split(rows)
    result = _MemberTotals(totals, member_of, defaultdict(int), defaultdict(int))
    for (f, p), units in pipeline.items():
        if f not in member_of:
            continue
        member, kind = member_of[f]
        if members is not None and member not in members:
            continue
        result.pipeline[(member, kind, p)] += units
        table = tables.get(f)
        if table is None or not (table[:, summary.PRODUCT] == p).any():
            result.pipeline_only[(member, kind, p)] += 1
    return result


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


def member_outstanding_requests(db: Session, member_id: int, horizon_end: date) -> dict[int, int]:
    """`outstanding_requests` of one member, per product (its needs only, read by the index)."""
    found = _outstanding_by_member(db, horizon_end, None, {member_id}).get(member_id)
    return {} if found is None else dict(zip(found[:, 0].tolist(), found[:, 1].tolist(), strict=True))


def _outstanding_by_member(
    db: Session, horizon_end: date, product_id: int | None, members: set[int] | None
) -> dict[int, NDArray[np.int64]]:
    """`outstanding_requests` as arrays: member -> (product, units) rows in product order, none
    zero; of `members` only (None: all). Region-wide, they are kept in the analytics cache until a
    need changes (75,000 outstanding needs summed take ~40 ms; a page reads them on every view);
    a member's are taken from there while current, else read alone."""
    cache = summary.cache_for(db)
    found = (
        cache.derived(
            db,
            ("outstanding_by_member", horizon_end),
            ["need"],
            lambda conn: _read_outstanding_by_member(conn, horizon_end, None, None),
            fill=members is None,  # one member's part alone is a few index reads
        )
        if cache is not None
        else None
    )
    if found is None:
        return _read_outstanding_by_member(db.connection(), horizon_end, product_id, members)
    chosen = found if members is None else {j: found[j] for j in members if j in found}
    if product_id is None:
        return chosen
    narrowed = {j: rows[rows[:, 0] == product_id] for j, rows in chosen.items()}
    return {j: rows for j, rows in narrowed.items() if len(rows)}


def _read_outstanding_by_member(
    conn: Connection, horizon_end: date, product_id: int | None, members: set[int] | None
) -> dict[int, NDArray[np.int64]]:
    """`_outstanding_by_member` read on a connection, without the ORM's row objects (16,500
    groups region-wide at continent scale)."""
    stmt = (
        select(
            Need.jurisdiction_id,
            Need.product_id,
            cast(func.sum(Need.quantity - Need.quantity_allocated), BigInteger),
        )
        .where(Need.status.in_(list(OUTSTANDING)), Need.needed_by <= horizon_end)
        .group_by(Need.jurisdiction_id, Need.product_id)
        .order_by(Need.jurisdiction_id, Need.product_id)
    )
    if product_id is not None:
        stmt = stmt.where(Need.product_id == product_id)
    if members is not None:
        stmt = stmt.where(Need.jurisdiction_id.in_(sorted(members)))
    rows = summary.matrix(conn.execute(stmt).all(), 3)
    rows = rows[rows[:, 2] != 0]
    starts = np.flatnonzero(np.diff(rows[:, 0])) + 1
    return {int(part[0, 0]): part[:, 1:] for part in np.split(rows, starts) if len(part)}


@dataclass
class IndicatorRow:
    level: Level
    key: str
    name: str
    product: str
    position: ind.Position
    adc: float
    days_of_stock: float | None


def _member_names(db: Session) -> dict[int, tuple[str, str]]:
    return {
        j: (iso3, name)
        for j, iso3, name in db.execute(select(Jurisdiction.id, Jurisdiction.iso3, Jurisdiction.name))
    }


def _product_names(db: Session) -> dict[int, tuple[str, str]]:
    return {p: (code, name) for p, code, name in db.execute(select(Product.id, Product.code, Product.name))}


def _facility_names(db: Session, ids: Collection[int]) -> dict[int, tuple[str, str]]:
    stmt = select(Facility.id, Facility.code, Facility.name)
    if len(ids) <= summary.SQLITE_IN_LIMIT:
        stmt = stmt.where(Facility.id.in_(sorted(ids)))
    return {f: (code, name) for f, code, name in db.execute(stmt)}


def _members_in_scope(actor: Principal, jurisdiction_id: int | None) -> set[int] | None:
    """The members whose facilities a region- or member-wide actor sees (None: all of them)."""
    chosen = None if actor.scope is ScopeKind.REGION else {actor.jurisdiction_id or 0}
    if jurisdiction_id is not None:
        chosen = {jurisdiction_id} if chosen is None else chosen & {jurisdiction_id}
    return chosen


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
    groups: dict[tuple[int, int], ind.Position] = {}
    if level is Level.FACILITY or facility_id is not None or actor.scope is ScopeKind.FACILITY:
        facilities = _facility_scope(db, actor, jurisdiction_id, facility_id)
        for (f, p), position in facility_positions(db, facilities, window, product_id).items():
            group = f if level is Level.FACILITY else facilities[f] if level is Level.JURISDICTION else 0
            groups.setdefault((group, p), ind.Position()).add(position)
    else:  # whole members: their totals, not their facilities one by one
        members = _members_in_scope(actor, jurisdiction_id)
        found = _member_totals(db, window, members)
        for member in sorted(found.totals.keys() | {j for j, _, _ in found.pipeline_only}):
            kinds = (summary.NATIONAL, summary.RESERVE)
            products = sorted(found.products(member, kinds))
            if product_id is not None:
                products = [p for p in products if p == product_id]
            group = member if level is Level.JURISDICTION else 0
            for p, position in zip(products, found.positions(member, kinds, products, window), strict=True):
                groups.setdefault((group, p), ind.Position()).add(position)
    if not groups:
        return []
    product_codes = _product_names(db)
    names = (
        _facility_names(db, {group for group, _ in groups})
        if level is Level.FACILITY
        else _member_names(db)
        if level is Level.JURISDICTION
        else {0: ("REGION", "Region")}
    )
    rows = []
    for (group, p), position in sorted(groups.items()):
        adc = ind.average_daily_consumption(position.issued_in_window, window.window_days)
        key, name = names[group]
        rows.append(
            IndicatorRow(
                level, key, name, product_codes[p][0], position, adc, ind.days_of_stock(position.usable, adc)
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
) -> ShortageBoard:
    """Product x member rows with coverage over the horizon, the most severe first (ties by
    member, then product). National stock only: the regional reserve is shown apart
    (`service.shareable_supply`)."""
    if actor.scope is ScopeKind.FACILITY:
        raise PermissionDenied("the shortage board is for member- and region-wide roles")
    members = _members_in_scope(actor, None)
    found = _member_totals(db, window, members)
    visible = {j for j, kind in found.member_of.values() if kind == summary.NATIONAL}
    if members is not None:
        visible &= members
    horizon_end = window.today + timedelta(days=horizon_days)
    requested = {
        j: asked
        for j, asked in _outstanding_by_member(db, horizon_end, product_id, members).items()
        if j in visible
    }
    member_names, product_names = _member_names(db), _product_names(db)
    empty = np.zeros((0, 2), np.int64)
    parts = [
        found.board_table(j, requested.get(j, empty), product_id) for j in sorted(visible | set(requested))
    ]
    table = np.concatenate(parts) if parts else np.zeros((0, len(BOARD_COLUMNS)), np.int64)
    return _board_rows(table, window, horizon_days, member_names, product_names)


def _rounded(values: NDArray[np.float64], digits: int) -> NDArray[np.float64]:
    """`round(value, digits)` of each value exactly as Python rounds it (the decimal nearest the
    exact binary value, half to even). NumPy's rint(value * 10**digits) / 10**digits gives the
    same double except within a hair of a half, where Python's `round` is applied."""
    scale = 10.0**digits
    scaled = values * scale
    out: NDArray[np.float64] = np.rint(scaled) / scale
    for at in np.flatnonzero(np.abs(scaled - np.floor(scaled) - 0.5) < 1e-6).tolist():
        out[at] = round(float(values[at]), digits)
    return out


#: Columns of the board's table before it is ordered: one row per member and product.
BOARD_COLUMNS = ("member", "product", "usable", "pipeline", "issued", "stocked_out", "outstanding")


def _board_rows(
    table: NDArray[np.int64],
    window: Window,
    horizon_days: int,
    member_names: dict[int, tuple[str, str]],
    product_names: dict[int, tuple[str, str]],
) -> ShortageBoard:
    """The board's rows, most severe first, from its table (`BOARD_COLUMNS`, in member, product
    order). Arithmetic on arrays where it is exactly Python's (int to float conversions and IEEE
    division, products and maxima); `round` stays Python's."""
    if not len(table):
        return ShortageBoard.empty(member_names, product_names)
    keys = table[:, :2]
    usable, pipeline, issued, stocked_out, outstanding = table[:, 2:].T
    adc = issued / window.window_days if window.window_days > 0 else np.zeros(len(keys))
    demand = np.maximum(adc * horizon_days, outstanding.astype(np.float64))
    kept = np.flatnonzero(demand > 0)
    demand, adc = demand[kept], adc[kept]
    covered = (usable[kept] + pipeline[kept]) / demand
    # rounding to 1 or 2 decimals changes only fractional values: those of products consumed
    consumed = issued[kept] > 0
    shown_demand = np.where(consumed, _rounded(demand, 1), demand)
    shown_adc = np.where(consumed, _rounded(adc, 2), 0.0)
    order = np.lexsort((-shown_demand, covered))  # stable: ties keep the member, product order
    picked = kept[order]
    return ShortageBoard(
        keys=keys[picked],
        columns=np.stack(
            [usable[picked], pipeline[picked], stocked_out[picked], outstanding[picked]], axis=1
        ),
        figures=np.stack([covered[order], shown_demand[order], shown_adc[order], adc[order]], axis=1),
        member_names=member_names,
        product_names=product_names,
    )


class ShortageBoard(Sequence[ShortageRow]):
    """The board's rows in order, made into `ShortageRow`s only when read: a region-wide board
    has one row per member and product consumed or requested (16,500 at continent scale) and a
    page shows a hundred, so building every row would cost more than computing the board."""

    def __init__(
        self,
        keys: NDArray[np.int64],
        columns: NDArray[np.int64],
        figures: NDArray[np.float64],
        member_names: dict[int, tuple[str, str]],
        product_names: dict[int, tuple[str, str]],
    ) -> None:
        self._keys = keys  # (member id, product id) per row
        self._columns = columns  # usable, pipeline, stocked out, outstanding requests
        self._figures = figures  # coverage, demand shown, ADC shown, ADC exact
        self._members = member_names
        self._products = product_names

    @classmethod
    def empty(
        cls,
        member_names: dict[int, tuple[str, str]] | None = None,
        product_names: dict[int, tuple[str, str]] | None = None,
    ) -> ShortageBoard:
        return cls(
            np.zeros((0, 2), np.int64),
            np.zeros((0, 4), np.int64),
            np.zeros((0, 4), np.float64),
            member_names or {},
            product_names or {},
        )

    def __len__(self) -> int:
        return len(self._keys)

    @overload
    def __getitem__(self, index: int) -> ShortageRow: ...

    @overload
    def __getitem__(self, index: slice) -> list[ShortageRow]: ...

    def __getitem__(self, index: int | slice) -> ShortageRow | list[ShortageRow]:
        if isinstance(index, slice):
            return self._rows(range(len(self))[index])
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        return self._rows([index % len(self)])[0]

    def __eq__(self, other: object) -> bool:
        """Equal to any sequence of the same rows, as the list it stands for would be."""
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # mutable-looking, like a list

    def __iter__(self) -> Iterator[ShortageRow]:
        return iter(self._rows(range(len(self))))

    def _rows(self, at: Sequence[int]) -> list[ShortageRow]:
        picked = np.asarray(at, dtype=np.int64)
        out = []
        columns = zip(
            self._keys[picked].tolist(),
            self._columns[picked].tolist(),
            self._figures[picked].tolist(),
            strict=True,
        )
        for (j, p), (units, on_the_way, out_of_stock, requested), (coverage, shown, daily, exact) in columns:
            code, name = self._products[p]
            out.append(
                ShortageRow(
                    product=code,
                    product_name=name,
                    jurisdiction=self._members[j][0],
                    usable=units,
                    pipeline=on_the_way,
                    adc=daily,
                    outstanding_requests=requested,
                    demand=shown,
                    coverage=coverage,
                    days_of_stock=ind.days_of_stock(units, exact),
                    facilities_stocked_out=out_of_stock,
                )
            )
        return out

    def of_member(self, iso3: str) -> ShortageBoard:
        """The rows of one member, in the same order."""
        ids = [j for j, (code, _) in self._members.items() if code == iso3]
        return self._subset(np.isin(self._keys[:, 0], ids))

    def of_product(self, code: str) -> ShortageBoard:
        """The rows of one product, in the same order."""
        ids = [p for p, (product, _) in self._products.items() if product == code]
        return self._subset(np.isin(self._keys[:, 1], ids))

    def _subset(self, mask: NDArray[np.bool_]) -> ShortageBoard:
        return ShortageBoard(
            self._keys[mask], self._columns[mask], self._figures[mask], self._members, self._products
        )

    def coverage_counts(self) -> tuple[int, int, int]:
        """Rows covered under half, rows covered from half to under full, and members with at
        least one row under full coverage."""
        coverage = self._figures[:, 0]
        critical = int(np.count_nonzero(coverage < 0.5))
        short = int(np.count_nonzero((coverage >= 0.5) & (coverage < 1)))
        members = len(np.unique(self._keys[coverage < 1, 0]))
        return critical, short, members
