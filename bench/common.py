"""Shared set-up for benchmarks: throw-away databases on each backend, a small registry, timing."""

from __future__ import annotations

import os
import platform
import secrets
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, create_engine, insert, text
from sqlalchemy.engine import make_url

from healthmesh import migrate
from healthmesh.db import make_engine
from healthmesh.registry.enums import FacilityKind, IncomeGroup, ProductCategory, StorageCondition
from healthmesh.registry.models import Facility, Jurisdiction, Product

PG_ADMIN_URL = os.environ.get(
    "HEALTHMESH_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


@contextmanager
def database(backend: str) -> Iterator[Engine]:
    """A migrated, empty database on `backend` ('sqlite' or 'postgresql'), dropped afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite+pysqlite:///{Path(folder) / 'bench.sqlite3'}"
            migrate.upgrade(url)
            engine = make_engine(url)
            try:
                yield engine
            finally:
                engine.dispose()
        return
    name = f"healthmesh_bench_{secrets.token_hex(4)}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        migrate.upgrade(url)
        engine = make_engine(url)
        try:
            yield engine
        finally:
            engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass(frozen=True)
class Registry:
    facilities: list[str]
    products: list[str]


def seed_registry(engine: Engine, facilities: int, products: int) -> Registry:
    """One member with `facilities` hospitals and `products` ambient products (bulk inserts)."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        jurisdiction_id = conn.execute(
            insert(Jurisdiction).returning(Jurisdiction.id),
            {
                "iso3": "THA",
                "name": "Thailand",
                "income_group": IncomeGroup.UPPER_MIDDLE,
                "population": 71_702_435,
                "data_protection_regime": "",
                "time_zones": ["Asia/Bangkok"],
                "capital": "Bangkok",
                "created_at": now,
                "updated_at": now,
            },
        ).scalar_one()
        conn.execute(
            insert(Facility),
            [
                {
                    "code": f"THA-HO-{n:04d}",
                    "jurisdiction_id": jurisdiction_id,
                    "kind": FacilityKind.HOSPITAL,
                    "name": f"Hospital {n}",
                    "latitude": 13.7,
                    "longitude": 100.5,
                    "time_zone": "Asia/Bangkok",
                    "parent_organisation": "",
                    "cold_chain_2_8": True,
                    "cold_chain_minus20": False,
                    "cold_chain_minus70": False,
                    "icu_beds": 10,
                    "oxygen_plant": False,
                    "active": True,
                    "created_at": now,
                    "updated_at": now,
                }
                for n in range(facilities)
            ],
        )
        conn.execute(
            insert(Product),
            [
                {
                    "code": f"PPE-{n:03d}",
                    "name": f"Product {n}",
                    "category": ProductCategory.PPE,
                    "unit_of_issue": "box",
                    "pack_size": 1,
                    "storage_condition": StorageCondition.AMBIENT,
                    "min_temp_c": 2,
                    "max_temp_c": 30,
                    "excursion_tolerance_minutes": 1440,
                    "shelf_life_days": 730,
                    "is_discrete_equipment": False,
                    "created_at": now,
                    "updated_at": now,
                }
                for n in range(products)
            ],
        )
    return Registry([f"THA-HO-{n:04d}" for n in range(facilities)], [f"PPE-{n:03d}" for n in range(products)])


class Stopwatch:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start
