"""The continent-scale demo, on PostgreSQL only: a tiny run (scale 0.002) has the full run's
shape, every balance is the sum of its events, the same seed gives the same rows, the schema comes
back whole, and the command refuses SQLite and a database that is not empty."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from healthmesh import migrate
from healthmesh.cli import app
from healthmesh.db import make_engine
from healthmesh.demo.continent import (
    BIG_TABLES,
    DELIVERIES,
    HISTORY_DAYS,
    NOT_POSTGRES,
    ContinentError,
    plan_counts,
    seed_continent,
)
from healthmesh.demo.continent_data import AU_MEMBERS, REGIONS, RESERVE_DEPOTS
from healthmesh.registry.codes import is_iso3, validate_time_zone
from tests.conftest import _postgres_database

pytestmark = pytest.mark.slow

SCALE = 0.002
SEED = 7
runner = CliRunner()


@dataclass
class Seeded:
    url: str
    engine: Engine
    output: str
    env: dict[str, str]


def _new_database(prefix: str) -> tuple[str, str, Engine]:
    name = f"healthmesh_{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    url, admin = _postgres_database(name)
    return name, url, admin


def _drop(name: str, admin: Engine) -> None:
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    """A new database seeded by the command, as an operator would: `demo --scale continent`."""
    name, url, admin = _new_database("continent")
    env = {"HEALTHMESH_DATABASE_URL": url, "HEALTHMESH_DATA_DIR": str(tmp_path_factory.mktemp("data"))}
    engine = make_engine(url)
    try:
        result = runner.invoke(
            app,
            ["demo", "--scale", "continent", "--scale-factor", str(SCALE), "--seed", str(SEED), "--no-serve"],
            env=env,
        )
        assert result.exit_code == 0, result.output
        yield Seeded(url, engine, result.output, env)
    finally:
        engine.dispose()
        _drop(name, admin)


def _one(engine: Engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())


def _digest(engine: Engine) -> dict[str, str]:
    """An md5 per table of every generated column, in id order (timestamps of the registry rows,
    stamped at insert, are left out)."""
    queries = {
        "facilities": "code, kind, name, latitude, longitude, cold_chain_2_8, icu_beds",
        "products": "code, name, pack_size, shelf_life_days, who_listing",
        "authorisations": "product_id, jurisdiction_id, status, valid_from, valid_to",
        "lots": "facility_id, product_id, lot_number, expiry_date, created_at",
        "stock_events": "lot_id, kind, quantity, on_hand_delta, reference, occurred_at, batch_id",
        "needs": "jurisdiction_id, facility_id, product_id, quantity, urgency, status, needed_by, created_at",
    }
    with engine.connect() as conn:
        return {
            table: conn.execute(
                text(f"SELECT md5(string_agg(concat_ws('|', id, {columns}), ',' ORDER BY id)) FROM {table}")
            ).scalar_one()
            for table, columns in queries.items()
        }


def _schema(engine: Engine) -> list[tuple[str, ...]]:
    """The big tables' indexes and constraints, as PostgreSQL defines them."""
    with engine.connect() as conn:
        indexes = conn.execute(
            text("SELECT tablename, indexname, indexdef FROM pg_indexes WHERE tablename = ANY(:t)"),
            {"t": list(BIG_TABLES)},
        )
        constraints = conn.execute(
            text(
                "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), convalidated::text "
                "FROM pg_constraint WHERE conrelid::regclass::text = ANY(:t)"
            ),
            {"t": list(BIG_TABLES)},
        )
        return sorted([tuple(row) for row in indexes] + [tuple(row) for row in constraints])


def test_the_plan_at_full_scale_is_the_issue_s() -> None:
    plan = plan_counts(1.0)
    assert (plan.members, plan.facilities, plan.products, plan.lots, plan.needs) == (
        55,
        20_000,
        300,
        2_000_000,
        100_000,
    )
    assert (plan.sample_facilities, plan.streams) == (400, 6_000)
    with pytest.raises(ValueError, match="scale"):
        plan_counts(0)


def test_reference_data_covers_the_african_union() -> None:
    assert len(AU_MEMBERS) == 55
    assert len({m.iso3 for m in AU_MEMBERS}) == 55
    assert {"DJI", "CPV", "COM", "STP", "ESH"} <= {m.iso3 for m in AU_MEMBERS}
    assert all(is_iso3(m.iso3) for m in AU_MEMBERS)
    assert all(validate_time_zone(zone) for m in AU_MEMBERS for zone in m.time_zones)
    assert {m.region for m in AU_MEMBERS} == set(REGIONS)
    assert sorted(d.region for d in RESERVE_DEPOTS) == sorted(REGIONS)


def test_the_command_reports_each_stage(seeded: Seeded) -> None:
    for stage in ("registry", "generate", "lots", "stock events", "balances", "needs", "verify", "analyze"):
        assert stage in seeded.output
    assert "seeded 55 members" in seeded.output
    assert "fp.nga" in seeded.output


def test_counts_follow_the_plan(seeded: Seeded) -> None:
    plan = plan_counts(SCALE)
    engine = seeded.engine
    assert _one(engine, "SELECT count(*) FROM jurisdictions") == 55
    assert _one(engine, "SELECT count(*) FROM jurisdiction_blocs WHERE bloc = 'AU'") == 55
    assert _one(engine, "SELECT count(*) FROM products") == 300
    assert _one(engine, "SELECT count(DISTINCT category) FROM products") == 6
    assert _one(engine, "SELECT count(DISTINCT storage_condition) FROM products") == 4
    assert _one(engine, "SELECT count(*) FROM facilities") == plan.facilities
    assert _one(engine, "SELECT count(*) FROM facilities WHERE kind = 'regional_reserve_depot'") == 5
    assert (
        _one(
            engine, "SELECT count(DISTINCT jurisdiction_id) FROM facilities WHERE kind = 'national_warehouse'"
        )
        == 55
    )
    assert _one(engine, "SELECT count(*) FROM authorisations") > 0.8 * 55 * 300
    assert _one(engine, "SELECT count(*) FROM users WHERE username LIKE 'fp.%'") == 55
    assert _one(engine, "SELECT count(*) FROM lots") == plan.lots
    assert _one(engine, "SELECT count(*) FROM lot_balances") == plan.lots
    assert _one(engine, "SELECT count(*) FROM stock_events WHERE kind = 'receipt'") == plan.lots
    issues = _one(engine, "SELECT count(*) FROM stock_events WHERE kind = 'issue'")
    assert 0.9 * plan.streams * HISTORY_DAYS <= issues <= 1.1 * plan.streams * HISTORY_DAYS
    assert _one(engine, "SELECT count(DISTINCT facility_id) FROM stock_events WHERE kind = 'issue'") == (
        plan.sample_facilities
    )
    # A lot per four-weekly delivery at each sampled facility x product, each with issues.
    assert _one(engine, "SELECT count(DISTINCT lot_id) FROM stock_events WHERE kind = 'issue'") == (
        plan.streams * DELIVERIES
    )
    assert _one(engine, "SELECT count(*) FROM needs") == plan.needs
    assert (
        _one(engine, "SELECT count(*) FROM needs WHERE status NOT IN ('open', 'endorsed', 'submitted')") == 0
    )
    assert (
        _one(
            engine,
            "SELECT count(*) FROM needs n WHERE (SELECT count(*) FROM need_transitions t "
            "WHERE t.need_id = n.id) <> CASE n.status WHEN 'open' THEN 4 WHEN 'endorsed' THEN 3 ELSE 2 END",
        )
        == 0
    )


def test_every_balance_is_the_sum_of_its_events(seeded: Seeded) -> None:
    engine = seeded.engine
    assert (
        _one(
            engine,
            "SELECT count(*) FROM lot_balances b LEFT JOIN (SELECT lot_id, sum(on_hand_delta) AS s, "
            "sum(reserved_delta) AS r FROM stock_events GROUP BY lot_id) e USING (lot_id) "
            "WHERE b.on_hand <> coalesce(e.s, 0) OR b.reserved <> coalesce(e.r, 0)",
        )
        == 0
    )
    assert (
        _one(
            engine,
            "SELECT count(*) FROM stock_balances s FULL JOIN (SELECT facility_id, product_id, "
            "sum(on_hand) AS oh FROM lot_balances GROUP BY 1, 2) l USING (facility_id, product_id) "
            "WHERE s.on_hand IS DISTINCT FROM l.oh",
        )
        == 0
    )
    assert _one(engine, "SELECT count(*) FROM lot_balances WHERE on_hand < 0 OR reserved < 0") == 0
    # In the order the ledger applies them, no lot ever goes below zero.
    assert (
        _one(
            engine,
            "SELECT count(*) FROM (SELECT sum(on_hand_delta) OVER (PARTITION BY lot_id ORDER BY id) "
            "AS running FROM stock_events) r WHERE running < 0",
        )
        == 0
    )
    # Events are numbered in time order, and new rows continue after the generated ids.
    assert (
        _one(
            engine,
            "SELECT count(*) FROM (SELECT occurred_at < lag(occurred_at) OVER (ORDER BY id) AS back "
            "FROM stock_events) e WHERE back",
        )
        == 0
    )
    for table in ("lots", "stock_events", "needs", "facilities"):
        assert _one(engine, f"SELECT nextval(pg_get_serial_sequence('{table}', 'id'))") == (
            _one(engine, f"SELECT max(id) FROM {table}") + 1
        )


def test_a_failed_load_changes_nothing_and_the_same_seed_gives_the_same_rows(seeded: Seeded) -> None:
    name, url, admin = _new_database("continent_again")
    engine = make_engine(url)
    try:
        migrate.upgrade(url)
        schema = _schema(engine)

        def fail_while_rebuilding(stage: str, done: int, total: int) -> None:
            if stage == "indexes":  # every row loaded, the indexes and foreign keys still dropped
                raise RuntimeError("interrupted")

        with pytest.raises(RuntimeError, match="interrupted"):
            seed_continent(engine, seed=SEED, scale=SCALE, today=date.today(), progress=fail_while_rebuilding)
        assert _one(engine, "SELECT count(*) FROM jurisdictions") == 0
        assert _one(engine, "SELECT count(*) FROM stock_events") == 0
        assert _schema(engine) == schema  # the failed load left the database as it was

        summary = seed_continent(engine, seed=SEED, scale=SCALE, today=date.today())
        assert summary.verified
        assert summary.lots == plan_counts(SCALE).lots
        assert _schema(engine) == schema  # every index and constraint rebuilt, and validated
        assert _digest(engine) == _digest(seeded.engine)
    finally:
        engine.dispose()
        _drop(name, admin)


def test_the_command_refuses_a_database_that_is_not_empty(seeded: Seeded) -> None:
    before = _one(seeded.engine, "SELECT count(*) FROM lots")
    result = runner.invoke(
        app, ["demo", "--scale", "continent", "--scale-factor", str(SCALE), "--no-serve"], env=seeded.env
    )
    assert result.exit_code == 1
    assert "not empty" in " ".join(result.output.split())
    assert _one(seeded.engine, "SELECT count(*) FROM lots") == before


def test_sqlite_is_refused(tmp_path: Path) -> None:
    url = f"sqlite+pysqlite:///{tmp_path / 'continent.sqlite3'}"
    result = runner.invoke(
        app,
        ["demo", "--scale", "continent", "--no-serve"],
        env={"HEALTHMESH_DATABASE_URL": url, "HEALTHMESH_DATA_DIR": str(tmp_path / "data")},
    )
    assert result.exit_code == 1
    assert "needs a PostgreSQL database" in " ".join(result.output.split())
    assert not (tmp_path / "continent.sqlite3").exists()
    with pytest.raises(ContinentError, match="PostgreSQL"):
        seed_continent(url, seed=1, scale=SCALE, today=date(2026, 11, 30))
    assert "PostgreSQL" in NOT_POSTGRES
