"""Benchmark: 100,000 stock events through the CSV import and the batch API, on SQLite and on
PostgreSQL, against a bare bulk insert of the same rows into the same table (the limit).

    .venv/bin/python -m bench.ingest [--events 100000] [--backends sqlite,postgresql]

The import and the API do everything a real write does: parse, validate every field, resolve
codes, check scope, lock and check every lot's balance in order, write the events, move both
balance projections and publish changes, in one transaction. The bare insert only writes the
event rows. Targets (issue 3): >= 20,000 events/s for the SQLite import, and >= 0.3 of the
bare-insert rate.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, insert, select

from bench.common import Registry, Stopwatch, database, machine, seed_registry
from healthmesh.accounts.access import Principal, Role
from healthmesh.config import Settings
from healthmesh.db import make_sessionmaker, unit_of_work
from healthmesh.registry.models import Facility, Product
from healthmesh.supply import ledger, transfer
from healthmesh.supply.models import Lot, StockEvent
from healthmesh.web.app import create_app
from healthmesh.web.deps import current_principal

OPERATOR = Principal(user_id=0, username="bench", role=Role.ADMIN)
COLUMNS = ["facility", "product", "lot_number", "expiry_date", "kind", "quantity", "occurred_at"]


def make_events(registry: Registry, count: int, seed: int = 7) -> list[dict[str, str]]:
    """Opening receipts for one lot per facility x product, then issues spread over 90 days."""
    rng = random.Random(seed)
    lots = [
        (f, p, f"L{i:05d}")
        for i, (f, p) in enumerate((f, p) for f in registry.facilities for p in registry.products)
    ]
    start = datetime(2026, 9, 1, tzinfo=UTC)
    events = [
        {
            "facility": f,
            "product": p,
            "lot_number": n,
            "expiry_date": "2028-06-30",
            "kind": "receipt",
            "quantity": "100000",
            "occurred_at": start.isoformat(),
        }
        for f, p, n in lots
    ]
    for index in range(count - len(events)):
        f, p, n = lots[rng.randrange(len(lots))]
        when = start + timedelta(minutes=10 * (index + 1))
        events.append(
            {
                "facility": f,
                "product": p,
                "lot_number": n,
                "expiry_date": "",
                "kind": "issue",
                "quantity": str(rng.randint(1, 5)),
                "occurred_at": when.isoformat(),
            }
        )
    return events


def to_csv(events: list[dict[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(events)
    return buffer.getvalue()


def run_csv(engine: Engine, events: list[dict[str, str]]) -> float:
    text = to_csv(events)
    factory = make_sessionmaker(engine)
    watch = Stopwatch()
    with unit_of_work(factory) as db:
        result = transfer.import_events(db, OPERATOR, text)
    seconds = watch.seconds
    assert result.events == len(events), result
    return seconds


def run_api(engine: Engine, events: list[dict[str, str]]) -> float:
    """POST /api/v1/stock/events/batch in-process (ASGI): JSON parsing and validation included."""
    app = create_app(Settings(database_url="sqlite://", secret_key="bench"), engine)
    app.dependency_overrides[current_principal] = lambda: OPERATOR
    body = json.dumps(
        {
            "events": [
                {k: v for k, v in e.items() if v != ""} | {"quantity": int(e["quantity"])} for e in events
            ]
        }
    )
    with TestClient(app) as client:
        watch = Stopwatch()
        response = client.post(
            "/api/v1/stock/events/batch", content=body, headers={"Content-Type": "application/json"}
        )
        seconds = watch.seconds
    assert response.status_code == 201, response.text[:500]
    assert response.json()["events"] == len(events)
    return seconds


def run_bare(engine: Engine, events: list[dict[str, str]]) -> float:
    """The same rows straight into stock_events with the same driver-level executemany the ledger
    uses: lots created and ids resolved beforehand (not timed); no validation, no balance checks,
    no projections, no change feed."""
    factory = make_sessionmaker(engine)
    with unit_of_work(factory) as db:
        facilities = {code: fid for code, fid in db.execute(select(Facility.code, Facility.id))}
        products = {code: pid for code, pid in db.execute(select(Product.code, Product.id))}
        now = datetime.now(UTC)
        lots: dict[tuple[int, int, str], int] = {}
        for e in events:
            key = (facilities[e["facility"]], products[e["product"]], e["lot_number"])
            if key not in lots:
                lots[key] = db.execute(
                    insert(Lot).returning(Lot.id),
                    {
                        "facility_id": key[0],
                        "product_id": key[1],
                        "lot_number": key[2],
                        "expiry_date": date(2028, 6, 30),
                        "created_at": now,
                    },
                ).scalar_one()
        stamp = ledger._row_converter(db)
        rows = []
        for e in events:
            f, p = facilities[e["facility"]], products[e["product"]]
            quantity = int(e["quantity"])
            rows.append(
                (
                    lots[(f, p, e["lot_number"])],
                    f,
                    p,
                    e["kind"],
                    quantity,
                    quantity if e["kind"] == "receipt" else -quantity,
                    0,
                    "",
                    "",
                    None,
                    stamp(datetime.fromisoformat(e["occurred_at"])),
                    stamp(now),
                    None,
                    None,
                )
            )
    watch = Stopwatch()
    with unit_of_work(factory) as db:
        ledger._insert_events(db, rows)
    seconds = watch.seconds
    with factory() as db:
        assert db.scalar(select(func.count()).select_from(StockEvent)) == len(events)
    return seconds


@dataclass
class Figure:
    backend: str
    path: str
    seconds: float
    events: int

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def measure(
    backend: str, path: str, runner: Callable[[Engine, list[dict[str, str]]], float], count: int
) -> Figure:
    with database(backend) as engine:
        registry = seed_registry(engine, facilities=100, products=20)
        events = make_events(registry, count)
        return Figure(backend, path, runner(engine, events), len(events))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    print(f"ingest benchmark: {args.events:,} events, 100 facilities x 20 products (2,000 lots); {machine()}")
    print(f"{'backend':<11} {'path':<22} {'seconds':>8} {'events/s':>10} {'of bare':>8}")
    verdicts = []
    for backend in args.backends.split(","):
        bare = measure(backend, "bare insert (limit)", run_bare, args.events)
        figures = [
            measure(backend, "CSV import", run_csv, args.events),
            measure(backend, "batch API (in-process)", run_api, args.events),
            bare,
        ]
        for figure in figures:
            share = figure.rate / bare.rate
            print(
                f"{backend:<11} {figure.path:<22} {figure.seconds:>8.2f} {figure.rate:>10,.0f} {share:>8.2f}"
            )
        csv_figure = figures[0]
        if backend == "sqlite":
            verdicts.append(("SQLite CSV import >= 20,000 events/s", csv_figure.rate >= 20_000))
        verdicts.append((f"{backend} CSV import >= 0.3 of bare insert", csv_figure.rate >= 0.3 * bare.rate))
    for label, ok in verdicts:
        print(f"target: {label}: {'met' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
