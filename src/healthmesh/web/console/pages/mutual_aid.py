"""Mutual aid in the console: upload demand, supply and distances as CSV files, choose the policy,
and plan lending between members over time (the totals, a chart per member, the transfers).

The plan is computed by the REST API (`POST /api/v1/mutual-aid/plans`) from the browser
(`mutual_aid.js`); it is stored only when asked (members as ISO3 codes, with the product it
moves), and a coordinator may then approve it on the page: its first period's moves become
shipments. The page also serves a tiny example of each file (three members over ten days, with
staggered peaks) so the formats can be tried at once.
"""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from sqlalchemy import select

from healthmesh.accounts.access import Permission
from healthmesh.mutual_aid import transfer
from healthmesh.registry.models import Product
from healthmesh.web.console.base import Viewer, render, viewer_with
from healthmesh.web.deps import DbSession

router = APIRouter(include_in_schema=False)

EXAMPLE_START = date(2026, 1, 1)
EXAMPLE_DAYS = 10
EXAMPLE_MEMBERS = ("North", "Central", "South")
#: Each member's peak day (0-based): the peaks are staggered, so a member can lend between its own.
EXAMPLE_PEAKS = {"North": 2, "Central": 5, "South": 8}
EXAMPLE_STOCK = {"North": 10, "Central": 10, "South": 10}
EXAMPLE_RESERVE = 2
EXAMPLE_DISTANCES = (("North", "Central", 120), ("Central", "South", 150), ("North", "South", 270))


def _demand_units(member: str, day: int) -> int:
    """A base of 4 units, rising to 16 on the peak day (11 the day either side)."""
    return {0: 16, 1: 11}.get(abs(day - EXAMPLE_PEAKS[member]), 4)


def _csv(header: tuple[str, ...], rows: list[tuple[object, ...]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def example_files() -> dict[str, str]:
    """The three example files, by name: demand, supply and distances."""
    days = [EXAMPLE_START + timedelta(days=i) for i in range(EXAMPLE_DAYS)]
    demand = [
        (member, day.isoformat(), _demand_units(member, i))
        for member in EXAMPLE_MEMBERS
        for i, day in enumerate(days)
    ]
    supply: list[tuple[object, ...]] = [(m, EXAMPLE_STOCK[m], "") for m in EXAMPLE_MEMBERS]
    supply.append((transfer.RESERVE, EXAMPLE_RESERVE, days[0].isoformat()))
    return {
        "demand": _csv(("member", "date", "units"), list(demand)),
        "supply": _csv(("member", "units", "date"), supply),
        "distances": _csv(("from", "to", "distance"), list(EXAMPLE_DISTANCES)),
    }


#: What each file holds, for the form's labels and help.
FILES: tuple[tuple[str, str, str], ...] = (
    (
        "demand",
        "Demand",
        "Columns member,date,units: the units each member needs on each date (YYYY-MM-DD). "
        "The dates are the plan's periods.",
    ),
    (
        "supply",
        "Supply",
        "Columns member,units and optionally date: stock each member holds from the start (or gets "
        f"on the date). Member “{transfer.RESERVE}” is the shared reserve.",
    ),
    (
        "distances",
        "Distances",
        "Columns from,to,distance and optionally delay (periods in transit), or a square matrix "
        "with an empty first cell. A pair given one way counts both ways; no row: no transfers.",
    ),
)


@router.get("/console/mutual-aid", response_class=HTMLResponse)
def mutual_aid_page(
    request: Request, db: DbSession, viewer: Viewer = viewer_with(Permission.ALLOCATION_RUN)
) -> HTMLResponse:
    return render(
        request,
        viewer,
        "console/mutual_aid.html",
        files=FILES,
        reserve=transfer.RESERVE,
        example_members=EXAMPLE_MEMBERS,
        example_days=EXAMPLE_DAYS,
        products=list(db.execute(select(Product.code, Product.name).order_by(Product.code))),
        can_approve=viewer.principal.has(Permission.ALLOCATION_APPROVE),
    )


@router.get("/console/mutual-aid/example/{name}.csv")
def example_file(name: str, viewer: Viewer = viewer_with(Permission.ALLOCATION_RUN)) -> Response:
    files = example_files()
    if name not in files:
        return PlainTextResponse(f"no example file {name!r}", status_code=404)
    return Response(
        files[name],
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="mutual-aid-{name}.csv"'},
    )
