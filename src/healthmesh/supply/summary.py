"""Stock statistics per facility and product, aggregated in SQL, and an in-process cache of them
per member that the change outbox keeps exact.

`load` computes, for every (facility, product) with a stock balance (or issues in the window), one
row of integers: on hand and reserved (the projection), usable, near-expiry and expired units (the
lots split by expiry in a GROUP BY, not lot by lot in Python), units issued in the ADC window and
the stock-out days of the period. The indicators and the shortage board are sums of these rows.

At continent scale (2 million lots) one full aggregation takes seconds, so `Cache` keeps the rows
of each member it was asked for, plus each member's per-product totals, and refreshes only what
changed:

* Every stock write publishes `change_events` rows (topic `stock`, with the facility) in its own
  transaction (`supply.ledger`). Before answering, the cache reads the ids above a floor (the
  newest id it saw less `MARGIN`, so a writer that took its id earlier but committed later is
  still caught) and reloads the facilities of ids it has not seen: a few rows each, and the
  member totals move by the difference. A result is never older than the last committed change.
* A change in the registry (a facility added, or moved to another member or kind; detected by the
  largest facility id and `updated_at`) empties the cache.
* The cache reads committed data only, on its own connection. A caller whose transaction wrote
  stock or facilities it has not committed (tests do; so may a CLI command) sees something the
  cache must not keep: such a caller is told to compute directly (`stats` returns None). On
  PostgreSQL a transaction without a transaction id has written nothing; otherwise every change
  id above the floor that the caller sees must be committed (read after the caller's), and its
  registry the committed one. (An API token's `last_used_at` gives its request a transaction
  id: that alone does not keep it from the cache.)
* Each member's rows are reloaded after `TTL_SECONDS` (with jitter, so members do not all reload
  at once): a bound on staleness from anything that bypasses the ledger.

The cache holds stock figures, and (`Cache.derived`) results that depend on other topics of the
outbox and are kept until a change of one of them is committed: the outstanding needs per member
and product and their counts (topic `need`), the past weeks of a member page's trend (topic
`snapshot`). The pipeline (transfers on their way, which cross members) is read live by
`analytics` for every answer (index scans). It is
per process (each API worker has its own) and per engine; a few windows (date and window
lengths) are kept, the least recently used dropped first. `HEALTHMESH_ANALYTICS_CACHE=0` turns it
off (every answer is then aggregated in SQL, which is exact and, at continent scale, seconds).
"""

from __future__ import annotations

import itertools
import os
import random
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import ARRAY, BigInteger, Connection, Date, Engine, any_, bindparam, case, cast, func, select
from sqlalchemy.orm import Session

from healthmesh.changes.models import ChangeEvent
from healthmesh.db import make_engine
from healthmesh.registry.enums import FacilityKind
from healthmesh.registry.models import Facility
from healthmesh.supply.enums import EventKind
from healthmesh.supply.models import Lot, LotBalance, StockBalance, StockEvent

if TYPE_CHECKING:
    from healthmesh.supply.analytics import Window

Rows = NDArray[np.int64]
T = TypeVar("T")

#: Columns of a facility's rows (one row per product).
PRODUCT, ON_HAND, RESERVED, USABLE, NEAR_EXPIRY, EXPIRED, ISSUED, STOCKOUT_DAYS = range(8)
WIDTH = 8
#: Columns of a member's totals (one row per product id): the sums of ON_HAND..STOCKOUT_DAYS, the
#: number of (facility, product) positions, and how many of them have no usable stock.
FACILITIES, STOCKED_OUT = 8, 9
TOTALS_WIDTH = 10
#: First index of a member's totals: its national facilities, or the regional reserve depots it hosts.
NATIONAL, RESERVE = 0, 1

MARGIN = 1000
TTL_SECONDS = 600.0
WINDOWS_KEPT = 3
#: `Cache.derived` results kept (least recently used dropped first).
DERIVED_KEPT = 256
ENABLED = os.environ.get("HEALTHMESH_ANALYTICS_CACHE", "1") != "0"
#: Past this many facility ids, SQLite gets no IN list (its bind limit) and rows are filtered here.
SQLITE_IN_LIMIT = 900
_KEY = 1 << 21  # composite key facility * _KEY + product (product ids stay below it)

Executor = Session | Connection


def _dialect(db: Executor) -> str:
    return db.get_bind().dialect.name if isinstance(db, Session) else db.dialect.name


def _day(dialect: str, column: Any) -> Any:
    return func.date(column) if dialect == "sqlite" else cast(column, Date)


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def matrix(found: Sequence[Sequence[Any]], width: int) -> Rows:
    """Result rows of integers as an array (flattened first: numpy is slow on SQLAlchemy rows)."""
    flat = np.fromiter(itertools.chain.from_iterable(found), dtype=np.int64, count=len(found) * width)
    return flat.reshape(len(found), width)


@dataclass(frozen=True)
class Filter:
    """Which rows to compute: facilities of some members, some facilities, one product (None: all)."""

    members: Sequence[int] | None = None
    facility_ids: Sequence[int] | None = None
    product_id: int | None = None

    def clauses(self, dialect: str, facility: Any, product: Any) -> list[Any]:
        out = []
        if self.members is not None:
            out.append(facility.in_(select(Facility.id).where(Facility.jurisdiction_id.in_(self.members))))
        if self.facility_ids is not None:
            ids = sorted(set(self.facility_ids))
            if dialect == "postgresql":
                out.append(facility == any_(bindparam("facility_ids", ids, type_=ARRAY(BigInteger))))
            elif len(ids) <= SQLITE_IN_LIMIT:
                out.append(facility.in_(ids))
        if self.product_id is not None:
            out.append(product == self.product_id)
        return out


def load(db: Executor, window: Window, where: Filter = Filter(), *, stockout_history: bool = True) -> Rows:
    """Rows (facility, then the WIDTH columns) for every (facility, product) that holds a balance or
    issued in the window, within `where`, sorted by facility then product. Without
    `stockout_history` the stock-out days are left at zero (the day-by-day replay is skipped)."""
    dialect = _dialect(db)
    today = window.today
    horizon = today + timedelta(days=window.near_expiry_days)
    expired = Lot.expiry_date.is_not(None) & (Lot.expiry_date < today)
    near = Lot.expiry_date.is_not(None) & (Lot.expiry_date >= today) & (Lot.expiry_date <= horizon)
    free = case((LotBalance.on_hand > LotBalance.reserved, LotBalance.on_hand - LotBalance.reserved), else_=0)
    lots = (
        select(
            LotBalance.facility_id,
            LotBalance.product_id,
            func.sum(case((expired, 0), else_=free)).label("usable"),
            func.sum(case((near, free), else_=0)).label("near"),
            func.sum(case((expired, LotBalance.on_hand), else_=0)).label("expired"),
        )
        .join(Lot, Lot.id == LotBalance.lot_id)
        .where(LotBalance.on_hand > 0, *where.clauses(dialect, LotBalance.facility_id, LotBalance.product_id))
        .group_by(LotBalance.facility_id, LotBalance.product_id)
        .subquery()
    )
    base = (
        select(
            StockBalance.facility_id,
            StockBalance.product_id,
            StockBalance.on_hand,
            StockBalance.reserved,
            func.coalesce(lots.c.usable, 0),
            func.coalesce(lots.c.near, 0),
            func.coalesce(lots.c.expired, 0),
        )
        .outerjoin(
            lots,
            (lots.c.facility_id == StockBalance.facility_id) & (lots.c.product_id == StockBalance.product_id),
        )
        .where(*where.clauses(dialect, StockBalance.facility_id, StockBalance.product_id))
    )
    found = db.execute(base).all()
    rows = np.zeros((len(found), WIDTH + 1), dtype=np.int64)
    if found:
        rows[:, : WIDTH - 1] = matrix(found, WIDTH - 1)  # all but issued and stock-out days
    issued = db.execute(
        select(StockEvent.facility_id, StockEvent.product_id, func.sum(StockEvent.quantity))
        .where(
            StockEvent.kind == EventKind.ISSUE,
            StockEvent.occurred_at >= window.window_start,
            *where.clauses(dialect, StockEvent.facility_id, StockEvent.product_id),
        )
        .group_by(StockEvent.facility_id, StockEvent.product_id)
    ).all()
    if issued:
        rows = _merge(rows, matrix(issued, 3), 1 + ISSUED)
    if stockout_history:
        rows[:, 1 + STOCKOUT_DAYS] = np.where(rows[:, 1 + ON_HAND] <= 0, window.period_days, 0)
        _stockout_days(db, dialect, window, where, rows)
    ids = where.facility_ids
    if ids is not None and dialect != "postgresql" and len(ids) > SQLITE_IN_LIMIT:
        rows = rows[np.isin(rows[:, 0], np.asarray(sorted(set(ids)), dtype=np.int64))]
    order = np.lexsort((rows[:, 1], rows[:, 0]))
    return rows[order]


def _keys(rows: Rows) -> Rows:
    return rows[:, 0] * _KEY + rows[:, 1]


def _merge(rows: Rows, extra: Rows, column: int) -> Rows:
    """Put extra[:, 2] into `column` of the rows with the same (facility, product); rows missing
    are added (zero elsewhere)."""
    hit = np.zeros(len(extra), dtype=bool)
    if len(rows):
        keys = _keys(rows)
        order = np.argsort(keys, kind="stable")
        wanted = _keys(extra)
        at = order[np.minimum(np.searchsorted(keys, wanted, sorter=order), len(keys) - 1)]
        hit = keys[at] == wanted
        rows[at[hit], column] = extra[hit, 2]
    missing = extra[~hit]
    if len(missing):
        added = np.zeros((len(missing), rows.shape[1]), dtype=np.int64)
        added[:, 0], added[:, 1], added[:, column] = missing[:, 0], missing[:, 1], missing[:, 2]
        rows = np.concatenate([rows, added])
    return rows


def _stockout_days(db: Executor, dialect: str, window: Window, where: Filter, rows: Rows) -> None:
    """Stock-out days of the period for the rows with movements since it began: the closing
    balance of each day, walked back from today's (as `indicators.closing_balances`), counted
    where it is zero or less. Rows without movements keep their constant balance's count."""
    first = window.today - timedelta(days=window.period_days - 1)
    day = _day(dialect, StockEvent.occurred_at)
    daily = db.execute(
        select(StockEvent.facility_id, StockEvent.product_id, day, func.sum(StockEvent.on_hand_delta))
        .where(
            StockEvent.kind.in_(list(EventKind)),  # every kind: lets the (kind, occurred_at) index serve
            StockEvent.occurred_at >= _start(first),
            *where.clauses(dialect, StockEvent.facility_id, StockEvent.product_id),
        )
        .group_by(StockEvent.facility_id, StockEvent.product_id, day)
    ).all()
    if not daily or not len(rows):
        return
    days: dict[Any, int] = {}
    period = window.period_days
    offsets = []
    for _, _, value, _ in daily:
        offset = days.get(value)
        if offset is None:
            offset = days[value] = min((_as_date(value) - first).days, period)  # period: after today
        offsets.append(offset)
    found = np.asarray([(f, p, change) for f, p, _, change in daily], dtype=np.int64)
    keys = _keys(rows)
    order = np.argsort(keys, kind="stable")
    wanted = found[:, 0] * _KEY + found[:, 1]
    at = np.minimum(np.searchsorted(keys, wanted, sorter=order), len(keys) - 1)
    hit = keys[order[at]] == wanted
    if not hit.any():
        return
    targets, inverse = np.unique(order[at[hit]], return_inverse=True)
    changes = np.zeros((len(targets), period + 1), dtype=np.int64)
    np.add.at(changes, (inverse, np.asarray(offsets, dtype=np.int64)[hit]), found[hit, 2])
    # closing(day i) = on hand - changes after today - changes of the days after i, up to today
    later = changes[:, period]
    within = changes[:, :period]
    after = within.sum(axis=1, keepdims=True) - np.cumsum(within, axis=1)
    closing = rows[targets, 1 + ON_HAND][:, None] - later[:, None] - after
    rows[targets, 1 + STOCKOUT_DAYS] = (closing <= 0).sum(axis=1)


def split(rows: Rows) -> dict[int, Rows]:
    """Rows with their facility column, sorted by facility -> facility id: its WIDTH-column rows."""
    if not len(rows):
        return {}
    facilities = rows[:, 0]
    bounds = np.flatnonzero(np.diff(facilities)) + 1
    return {
        int(chunk[0, 0]): np.ascontiguousarray(chunk[:, 1:]) for chunk in np.split(rows, bounds) if len(chunk)
    }


def contribution(rows: Rows) -> Rows:
    """What a facility's rows add to its member's totals, row for row (TOTALS_WIDTH columns)."""
    out = np.zeros((len(rows), TOTALS_WIDTH), dtype=np.int64)
    out[:, ON_HAND : STOCKOUT_DAYS + 1] = rows[:, ON_HAND : STOCKOUT_DAYS + 1]
    out[:, FACILITIES] = 1
    out[:, STOCKED_OUT] = rows[:, USABLE] == 0
    return out


def totals(rows: Rows, member_of: dict[int, tuple[int, int]], width: int) -> dict[int, Rows]:
    """Per-member totals (2 x `width` products x TOTALS_WIDTH) of rows with their facility
    column; `member_of` maps a facility to (member, NATIONAL or RESERVE)."""
    if not len(rows):
        return {}
    members = sorted({member for member, _ in member_of.values()})
    slot = {member: index for index, member in enumerate(members)}
    top = int(rows[:, 0].max()) + 1
    place = np.full(top, -1, dtype=np.int64)
    for f, (member, kind) in member_of.items():
        if f < top:
            place[f] = slot[member] * 2 + kind
    where = place[rows[:, 0]]
    if (where < 0).any():
        raise KeyError("rows of a facility the registry does not know")
    index = where * width + rows[:, 1 + PRODUCT]
    size = len(members) * 2 * width
    contrib = contribution(rows[:, 1:])
    summed = np.zeros((size, TOTALS_WIDTH), dtype=np.int64)
    for column in range(ON_HAND, TOTALS_WIDTH):
        summed[:, column] = np.rint(np.bincount(index, weights=contrib[:, column], minlength=size))
    shaped = summed.reshape(len(members), 2, width, TOTALS_WIDTH)
    present = {member for member, _ in (member_of[int(f)] for f in np.unique(rows[:, 0]))}
    return {member: shaped[slot[member]].copy() for member in present}


def facility_kinds(db: Executor) -> dict[int, tuple[int, int]]:
    """Facility id -> (member, NATIONAL or RESERVE)."""
    return {
        f: (j, RESERVE if kind is FacilityKind.REGIONAL_RESERVE_DEPOT else NATIONAL)
        for f, j, kind in db.execute(select(Facility.id, Facility.jurisdiction_id, Facility.kind))
    }


# --- the cache -----------------------------------------------------------------------------------


@dataclass
class Stats:
    """What a caller asked the cache for: member totals (copies) and facilities' rows (shared,
    never modified once stored), with the facility -> (member, kind) map they were built on."""

    totals: dict[int, Rows]
    facilities: dict[int, Rows]
    member_of: dict[int, tuple[int, int]]


@dataclass
class _WindowState:
    facilities: dict[int, Rows] = field(default_factory=dict)
    totals: dict[int, Rows] = field(default_factory=dict)
    deadline: dict[int, float] = field(default_factory=dict)
    dirty: set[int] = field(default_factory=set)
    width: int = 0


@dataclass(frozen=True)
class _Derived:
    version: tuple[int, ...]
    deadline: float
    value: Any


class _Inconsistent(Exception):
    """The registry changed under a load: start again from nothing."""


class Cache:
    def __init__(self, url: str) -> None:
        # Its own connection (one: the lock serialises its use), not one of the request pool's: a
        # request holding a pooled connection while waiting for the cache must not starve it.
        self.engine = make_engine(url, pool_size=1, max_overflow=0)
        weakref.finalize(self, self.engine.dispose)
        self.lock = threading.Lock()
        self.loads = 0  # full or member loads, for benchmarks and tests
        self.refreshed = 0  # facilities reloaded after a change
        self.derived_hits = 0  # `derived` answers served without computing
        self._reset()

    def _reset(self) -> None:
        self.floor: int | None = None
        self.seen: set[int] = set()
        self.registry: tuple[Any, ...] | None = None
        self.member_of: dict[int, tuple[int, int]] = {}
        self.windows: OrderedDict[Window, _WindowState] = OrderedDict()
        #: topic -> how many syncs have seen a new change of it (what `derived` values depend on)
        self.versions: dict[str, int] = {}
        self.derived_values: OrderedDict[Hashable, _Derived] = OrderedDict()

    # signatures ---------------------------------------------------------------------------------

    @staticmethod
    def _registry(db: Executor) -> tuple[Any, ...]:
        return tuple(
            db.execute(
                select(
                    select(func.max(Facility.id)).scalar_subquery(),
                    select(func.max(Facility.updated_at)).scalar_subquery(),
                )
            ).one()
        )

    def _caller_view(self, db: Session) -> tuple[set[int], tuple[Any, ...]] | None:
        """What the caller's transaction sees of the changes above the floor and of the registry;
        None when it has written nothing at all (PostgreSQL knows: no transaction id yet), so
        every statement of it sees exactly the latest commits."""
        if _dialect(db) == "postgresql" and db.scalar(select(func.pg_current_xact_id_if_assigned())) is None:
            return None
        changes = set(db.scalars(select(ChangeEvent.id).where(ChangeEvent.id > self.floor)))
        return changes, self._registry(db)

    def _sync(self, conn: Connection) -> set[int]:
        """Catch up with the committed changes: mark the facilities they name, or start afresh.
        Returns the ids above the floor (as it was) that are committed."""
        registry = self._registry(conn)
        if registry != self.registry:
            self._reset()
            self.registry = registry
            self.member_of = facility_kinds(conn)
        if self.floor is None:
            top = conn.scalar(select(func.max(ChangeEvent.id))) or 0
            self.floor = top - MARGIN
            self.seen = set(conn.scalars(select(ChangeEvent.id).where(ChangeEvent.id > self.floor)))
            return set(self.seen)
        visible = conn.scalars(select(ChangeEvent.id).where(ChangeEvent.id > self.floor)).all()
        new = [change for change in visible if change not in self.seen]
        if new:
            touched: set[int] = set()
            topics: set[str] = set()
            for start in range(0, len(new), 1000):
                for topic, facility in conn.execute(
                    select(ChangeEvent.topic, ChangeEvent.facility_id)
                    .where(ChangeEvent.id.in_(new[start : start + 1000]))
                    .distinct()
                ):
                    topics.add(topic)
                    if topic == "stock" and facility is not None:
                        touched.add(facility)
            for state in self.windows.values():
                state.dirty |= touched
            for topic in topics:
                self.versions[topic] = self.versions.get(topic, 0) + 1
            self.seen.update(new)
            floor = max(visible) - MARGIN
            if floor > self.floor:
                self.floor = floor
                self.seen = {change for change in self.seen if change > floor}
        return set(visible)

    # loading ------------------------------------------------------------------------------------

    def _member(self, facility: int) -> int | None:
        found = self.member_of.get(facility)
        return found[0] if found else None

    def _state(self, window: Window) -> _WindowState:
        state = self.windows.get(window)
        if state is None:
            state = self.windows[window] = _WindowState()
            while len(self.windows) > WINDOWS_KEPT:
                self.windows.popitem(last=False)
        self.windows.move_to_end(window)
        return state

    def _grow(self, state: _WindowState, width: int) -> None:
        if width <= state.width:
            return
        width = max(width, state.width + 64)
        for member, table in state.totals.items():
            grown = np.zeros((2, width, TOTALS_WIDTH), dtype=np.int64)
            grown[:, : table.shape[1]] = table
            state.totals[member] = grown
        state.width = width

    def _load_members(self, conn: Connection, window: Window, state: _WindowState, members: set[int]) -> None:
        everyone = {member for member, _ in self.member_of.values()}
        rows = load(conn, window, Filter(members=None if members >= everyone else sorted(members)))
        self.loads += 1
        unknown = set(np.unique(rows[:, 0]).tolist()) - set(self.member_of) if len(rows) else set()
        if unknown:
            raise _Inconsistent
        self._grow(state, int(rows[:, 1].max()) + 1 if len(rows) else 1)
        state.facilities = {
            f: table for f, table in state.facilities.items() if self._member(f) not in members
        }
        state.facilities.update(split(rows))
        loaded = totals(rows, self.member_of, state.width)
        now = time.monotonic()
        for member in members:
            empty = np.zeros((2, state.width, TOTALS_WIDTH), dtype=np.int64)
            state.totals[member] = loaded.get(member, empty)
            state.deadline[member] = now + TTL_SECONDS * (1 + random.random() / 2)  # noqa: S311 - jitter
        state.dirty = {f for f in state.dirty if self._member(f) not in members}

    def _refresh(self, conn: Connection, window: Window, state: _WindowState) -> None:
        """Reload the changed facilities of loaded members and move their members' totals."""
        wanted = sorted(f for f in state.dirty if self._member(f) in state.totals)
        state.dirty.clear()
        if not wanted:
            return
        fresh = split(load(conn, window, Filter(facility_ids=wanted)))
        self.refreshed += len(wanted)
        if fresh:
            self._grow(state, max(int(table[:, PRODUCT].max()) for table in fresh.values()) + 1)
        for f in wanted:
            member, kind = self.member_of[f]
            table = state.totals[member][kind]
            old = state.facilities.pop(f, None)
            if old is not None and len(old):
                table[old[:, PRODUCT]] -= contribution(old)
            new = fresh.get(f)
            if new is not None and len(new):
                table[new[:, PRODUCT]] += contribution(new)
                state.facilities[f] = new

    def _caught_up(self, db: Session, conn: Connection) -> bool:
        """Apply the committed changes; False if the caller sees writes of its own (uncommitted)
        that the cache must not keep."""
        if self.floor is None:
            self._sync(conn)
        # The caller first, then the committed state: whatever the caller sees must be committed
        # by then, or it is its own write (commits in between are harmless).
        mine = self._caller_view(db)
        committed = self._sync(conn)
        return mine is None or (mine[0] <= committed and mine[1] == self.registry)

    def derived(
        self,
        db: Session,
        key: Hashable,
        topics: Iterable[str],
        compute: Callable[[Connection], T],
        *,
        fill: bool = True,
    ) -> T | None:
        """`compute` run on the cache's connection (committed data) and kept until a change of one
        of `topics` is committed (or `TTL_SECONDS` pass: a bound for writes that bypass the
        outbox); None if the caller must compute it itself (see the module docstring), or if
        nothing current is kept and not `fill` (a caller that needs a small part of a costly
        result computes its part instead). For results that are costly and change far less often
        than they are read: outstanding needs per member, the weeks of a trend already in the
        snapshots."""
        with self.lock, self.engine.connect() as conn:
            if not self._caught_up(db, conn):
                return None
            version = tuple(self.versions.get(topic, 0) for topic in sorted(set(topics)))
            now = time.monotonic()
            found = self.derived_values.get(key)
            if found is not None and found.version == version and found.deadline > now:
                self.derived_values.move_to_end(key)
                self.derived_hits += 1
                return found.value  # type: ignore[no-any-return]
            if not fill:
                return None
            value = compute(conn)
            self.derived_values[key] = _Derived(version, now + TTL_SECONDS, value)
            self.derived_values.move_to_end(key)
            while len(self.derived_values) > DERIVED_KEPT:
                self.derived_values.popitem(last=False)
            return value

    def stats(
        self,
        db: Session,
        window: Window,
        *,
        members: Iterable[int] | None = None,
        facility_ids: Iterable[int] = (),
        load_their_members: bool = True,
    ) -> Stats | None:
        """Totals of `members` (None: every member) and the rows of `facility_ids` (of those in
        the members loaded, unless `load_their_members`), current as of the last committed change;
        None if the caller must compute them itself (see the module docstring)."""
        facility_ids = list(facility_ids)
        with self.lock:
            try:
                with self.engine.connect() as conn:
                    if not self._caught_up(db, conn):
                        return None
                    state = self._state(window)
                    wanted = (
                        {member for member, _ in self.member_of.values()} if members is None else set(members)
                    )
                    if load_their_members:
                        wanted |= {self.member_of[f][0] for f in facility_ids if f in self.member_of}
                    now = time.monotonic()
                    stale = {m for m in wanted if m not in state.totals or state.deadline.get(m, 0) < now}
                    if stale:
                        self._load_members(conn, window, state, stale)
                    self._refresh(conn, window, state)
            except _Inconsistent:
                self._reset()
                return None
            chosen = wanted if members is None else set(members)
            return Stats(
                totals={m: state.totals[m].copy() for m in chosen if m in state.totals},
                facilities={f: state.facilities[f] for f in facility_ids if f in state.facilities},
                member_of=self.member_of,
            )

    def warm(self, window: Window, *, lead_seconds: float = 0.0) -> int:
        """Load every member not yet loaded (all in one statement), then reload at most one member
        due within `lead_seconds`, and apply the committed changes: what a background warmer calls
        so that requests find every member loaded and never pay a reload. Returns members loaded."""
        with self.lock:
            try:
                with self.engine.connect() as conn:
                    self._sync(conn)
                    state = self._state(window)
                    everyone = {member for member, _ in self.member_of.values()}
                    due = everyone - set(state.totals)
                    if not due:
                        soon = time.monotonic() + lead_seconds
                        expiring = sorted((state.deadline.get(m, 0.0), m) for m in everyone)
                        due = {m for deadline, m in expiring[:1] if deadline < soon}
                    if due:
                        self._load_members(conn, window, state, due)
                    self._refresh(conn, window, state)
                    return len(due)
            except _Inconsistent:
                self._reset()
                return 0


_caches: weakref.WeakKeyDictionary[Engine, Cache] = weakref.WeakKeyDictionary()
_caches_lock = threading.Lock()


def _engine(db: Session) -> Engine:
    bind = db.get_bind()
    return bind if isinstance(bind, Engine) else bind.engine


def cache_for(db: Session) -> Cache | None:
    """This database's cache in this process, or None when caching is off (or the database is
    in memory: no other connection could read it)."""
    return cache_for_engine(_engine(db))


def cache_for_engine(engine: Engine) -> Cache | None:
    """`cache_for` by engine (a warmer has no session)."""
    if not ENABLED:
        return None
    with _caches_lock:
        cache = _caches.get(engine)
        if cache is None:
            url = engine.url
            if url.get_backend_name() == "sqlite" and (
                url.database in (None, "", ":memory:") or "mode=memory" in str(url)
            ):
                return None
            cache = _caches[engine] = Cache(url.render_as_string(hide_password=False))
        return cache


def clear() -> None:
    """Forget every cache of this process (benchmarks measure the cold path with it)."""
    with _caches_lock:
        _caches.clear()
