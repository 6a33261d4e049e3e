"""REST routes of supply: stock events (single, batch, CSV), balances, lots, pledges, indicators."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, File, Query, UploadFile, status
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from healthmesh.accounts.access import Permission, Principal
from healthmesh.errors import InvalidInput
from healthmesh.registry import service as registry
from healthmesh.registry.schemas import Day, Position, RowId
from healthmesh.supply import analytics, ledger, service, snapshots, transfer
from healthmesh.supply.schemas import (
    BalanceOut,
    BatchOut,
    LotOut,
    PledgeIn,
    PledgeOut,
    StockBatchIn,
    StockEventIn,
    StockEventOut,
)
from healthmesh.web.deps import DbSession, IdempotencyKey, Page, require
from healthmesh.web.pagination import PageOut

router = APIRouter(prefix="/api/v1", tags=["supply"])

StockReader = Annotated[Principal, Depends(require(Permission.STOCK_READ))]
StockWriter = Annotated[Principal, Depends(require(Permission.STOCK_WRITE))]
PledgeWriter = Annotated[Principal, Depends(require(Permission.PLEDGE_WRITE))]


def _batch_out(result: ledger.BatchResult) -> BatchOut:
    return BatchOut(batch_id=result.batch_id, events=result.events, replayed=result.replayed)


@router.post("/stock/events", response_model=BatchOut, status_code=status.HTTP_201_CREATED)
def record_event(
    data: StockEventIn, db: DbSession, actor: StockWriter, key: IdempotencyKey = None
) -> BatchOut:
    """Record one stock movement."""
    digest = ledger.digest(data.model_dump_json().encode())
    return _batch_out(
        service.record(db, actor, [(1, data)], source="api", request_digest=digest, idempotency_key=key)
    )


@router.post("/stock/events/batch", response_model=BatchOut, status_code=status.HTTP_201_CREATED)
def record_batch(
    data: StockBatchIn, db: DbSession, actor: StockWriter, key: IdempotencyKey = None
) -> BatchOut:
    """Record many movements at once, all or nothing; errors name the event by its 1-based position."""
    digest = ledger.digest(data.model_dump_json().encode())
    items = list(enumerate(data.events, start=1))
    return _batch_out(
        service.record(db, actor, items, source="api-batch", request_digest=digest, idempotency_key=key)
    )


@router.post("/stock/events/import", response_model=BatchOut, status_code=status.HTTP_201_CREATED)
def import_events(
    db: DbSession, actor: StockWriter, file: Annotated[UploadFile, File()], key: IdempotencyKey = None
) -> BatchOut:
    """Import a CSV of events (see the template); the file is checked whole, any bad line changes nothing."""
    try:
        text = file.file.read().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput.on("file", "not UTF-8 text") from None
    return _batch_out(transfer.import_events(db, actor, text, idempotency_key=key))


@router.get("/stock/events/template.csv", response_class=PlainTextResponse)
def events_template(_: StockReader) -> PlainTextResponse:
    return PlainTextResponse(transfer.template(), media_type="text/csv")


@router.get("/stock/events", response_model=list[StockEventOut])
def list_events(
    db: DbSession,
    actor: StockReader,
    facility: str | None = None,
    product: str | None = None,
    jurisdiction: str | None = None,
    after_id: Annotated[Position, Query()] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[StockEventOut]:
    """Events after `after_id` (pass the last id you saw to page on)."""
    return service.list_events(
        db,
        actor,
        facility=facility,
        product=product,
        jurisdiction=jurisdiction,
        after_id=after_id,
        limit=limit,
    )


@router.get("/stock/balances", response_model=PageOut[BalanceOut])
def balances(
    db: DbSession,
    actor: StockReader,
    page: Page,
    facility: str | None = None,
    product: str | None = None,
    jurisdiction: str | None = None,
) -> PageOut[BalanceOut]:
    """Stock per facility and product: on hand, reserved, pledged to the pool, and available."""
    rows, total = service.list_balances(
        db,
        actor,
        facility=facility,
        product=product,
        jurisdiction=jurisdiction,
        limit=page[0],
        offset=page[1],
    )
    return PageOut[BalanceOut](items=rows, total=total, limit=page[0], offset=page[1])


@router.get("/stock/lots", response_model=PageOut[LotOut])
def lots(
    db: DbSession,
    actor: StockReader,
    page: Page,
    facility: str | None = None,
    product: str | None = None,
    jurisdiction: str | None = None,
    include_empty: bool = False,
) -> PageOut[LotOut]:
    rows, total = service.list_lots(
        db,
        actor,
        facility=facility,
        product=product,
        jurisdiction=jurisdiction,
        include_empty=include_empty,
        limit=page[0],
        offset=page[1],
    )
    return PageOut[LotOut](items=rows, total=total, limit=page[0], offset=page[1])


# --- pledges -------------------------------------------------------------------------------------


@router.post("/pledges", response_model=PledgeOut, status_code=status.HTTP_201_CREATED)
def create_pledge(data: PledgeIn, db: DbSession, actor: PledgeWriter) -> PledgeOut:
    """Offer part of a facility's stock to the regional pool for a period."""
    return service.create_pledge(db, actor, data)


@router.get("/pledges", response_model=PageOut[PledgeOut])
def list_pledges(
    db: DbSession,
    actor: StockReader,
    page: Page,
    product: str | None = None,
    jurisdiction: str | None = None,
    active_on: Day | None = None,
) -> PageOut[PledgeOut]:
    rows, total = service.list_pledges(
        db,
        actor,
        product=product,
        jurisdiction=jurisdiction,
        active_on=active_on,
        limit=page[0],
        offset=page[1],
    )
    return PageOut[PledgeOut](items=rows, total=total, limit=page[0], offset=page[1])


@router.post("/pledges/{pledge_id}/withdraw", response_model=PledgeOut)
def withdraw_pledge(pledge_id: RowId, db: DbSession, actor: PledgeWriter) -> PledgeOut:
    return service.withdraw_pledge(db, actor, pledge_id)


# --- indicators ----------------------------------------------------------------------------------


class IndicatorOut(BaseModel):
    level: analytics.Level
    key: str
    name: str
    product: str
    on_hand: int
    reserved: int
    usable: int
    near_expiry: int
    expired: int
    pipeline: int
    issued_in_window: int
    average_daily_consumption: float
    days_of_stock: float | None
    facilities: int
    facilities_stocked_out: int
    stockout_days: int


class ShortageOut(BaseModel):
    product: str
    product_name: str
    jurisdiction: str
    usable: int
    pipeline: int
    average_daily_consumption: float
    outstanding_requests: int
    demand: float
    coverage: float | None
    days_of_stock: float | None
    facilities_stocked_out: int


def _window(on: date | None, window_days: int, near_expiry_days: int, period_days: int) -> analytics.Window:
    return analytics.Window(on or date.today(), window_days, near_expiry_days, period_days)


def _ids(
    db: DbSession, product: str | None, jurisdiction: str | None, facility: str | None
) -> tuple[int | None, int | None, int | None]:
    product_id = registry.get_product(db, product).id if product else None
    jurisdiction_id = registry.get_jurisdiction(db, jurisdiction).id if jurisdiction else None
    facility_id = registry.get_facility(db, facility).id if facility else None
    return product_id, jurisdiction_id, facility_id


@router.get("/indicators", response_model=list[IndicatorOut])
def indicators(
    db: DbSession,
    actor: StockReader,
    level: analytics.Level = analytics.Level.JURISDICTION,
    product: str | None = None,
    jurisdiction: str | None = None,
    facility: str | None = None,
    on: Annotated[Day | None, Query(alias="date")] = None,
    window_days: Annotated[int, Query(ge=1, le=365, description="ADC window")] = 30,
    near_expiry_days: Annotated[int, Query(ge=1, le=730)] = 90,
    period_days: Annotated[int, Query(ge=1, le=365, description="Stock-out days period")] = 30,
) -> list[IndicatorOut]:
    """ADC, days of stock, stock-outs and stock-out days, near-expiry and expired units, per product
    at the level asked (facility, member or region) within your scope."""
    product_id, jurisdiction_id, facility_id = _ids(db, product, jurisdiction, facility)
    rows = analytics.indicator_rows(
        db,
        actor,
        level=level,
        window=_window(on, window_days, near_expiry_days, period_days),
        product_id=product_id,
        jurisdiction_id=jurisdiction_id,
        facility_id=facility_id,
    )
    return [
        IndicatorOut(
            level=row.level,
            key=row.key,
            name=row.name,
            product=row.product,
            on_hand=row.position.on_hand,
            reserved=row.position.reserved,
            usable=row.position.usable,
            near_expiry=row.position.near_expiry,
            expired=row.position.expired,
            pipeline=row.position.pipeline,
            issued_in_window=row.position.issued_in_window,
            average_daily_consumption=round(row.adc, 3),
            days_of_stock=round(row.days_of_stock, 1) if row.days_of_stock is not None else None,
            facilities=row.position.facilities,
            facilities_stocked_out=row.position.stocked_out,
            stockout_days=row.position.stockout_days,
        )
        for row in rows
    ]


@router.get("/shortages", response_model=list[ShortageOut])
def shortages(
    db: DbSession,
    actor: StockReader,
    product: str | None = None,
    horizon_days: Annotated[int, Query(ge=1, le=365)] = 30,
    on: Annotated[Day | None, Query(alias="date")] = None,
    window_days: Annotated[int, Query(ge=1, le=365)] = 30,
    limit: Annotated[int, Query(ge=1, le=5000)] = 200,
) -> list[ShortageOut]:
    """The shortage board: product x member, coverage = (usable + pipeline) / demand over the horizon,
    most severe first."""
    product_id = registry.get_product(db, product).id if product else None
    rows = analytics.shortage_board(
        db, actor, window=_window(on, window_days, 90, 30), horizon_days=horizon_days, product_id=product_id
    )
    return [
        ShortageOut(
            product=r.product,
            product_name=r.product_name,
            jurisdiction=r.jurisdiction,
            usable=r.usable,
            pipeline=r.pipeline,
            average_daily_consumption=r.adc,
            outstanding_requests=r.outstanding_requests,
            demand=r.demand,
            coverage=round(r.coverage, 3) if r.coverage is not None else None,
            days_of_stock=round(r.days_of_stock, 1) if r.days_of_stock is not None else None,
            facilities_stocked_out=r.facilities_stocked_out,
        )
        for r in rows[:limit]
    ]


class ShareableOut(BaseModel):
    product: str
    product_name: str
    reserve: int
    pledged: int
    pledges: int
    total: int


@router.get("/stock/shareable", response_model=list[ShareableOut])
def shareable(
    db: DbSession,
    actor: StockReader,
    product: str | None = None,
    on: Annotated[Day | None, Query(alias="date")] = None,
) -> list[ShareableOut]:
    """The regional pool per product: the reserve depots' available stock and active pledges, apart."""
    rows = service.shareable_supply(db, actor, product=product, day=on or date.today())
    return [ShareableOut(**row) for row in rows]


class TrendOut(BaseModel):
    day: date
    on_hand: int
    usable: int
    expired: int
    issued_in_window: int
    facilities: int
    facilities_stocked_out: int


@router.get("/stock/trends", response_model=list[TrendOut])
def trends(
    db: DbSession,
    actor: StockReader,
    product: str,
    jurisdiction: str | None = None,
    facility: str | None = None,
    days: Annotated[int, Query(ge=1, le=730)] = 84,
    on: Annotated[Day | None, Query(alias="date")] = None,
) -> list[TrendOut]:
    """A product's daily snapshots over the last `days`, summed over your scope (or a member or facility)."""
    product_id, jurisdiction_id, facility_id = _ids(db, product, jurisdiction, facility)
    assert product_id is not None
    since = (on or date.today()) - timedelta(days=days - 1)
    points = snapshots.trend(
        db,
        actor,
        product_id=product_id,
        since=since,
        jurisdiction_id=jurisdiction_id,
        facility_id=facility_id,
    )
    return [TrendOut(**vars(point)) for point in points]
