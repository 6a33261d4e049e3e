"""Test fixtures: every database test runs on SQLite and on PostgreSQL, each test rolled back.

PostgreSQL is the machine's server (HEALTHMESH_TEST_POSTGRES_URL, default the local trust-auth
`postgres` user); a database is created for the run and dropped after. Where the server is
unreachable the PostgreSQL half is skipped, unless HEALTHMESH_TEST_REQUIRE_POSTGRES=1 (CI),
where it fails.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from healthmesh import migrate
from healthmesh.accounts.access import Principal, Role
from healthmesh.accounts.models import ApiToken, User
from healthmesh.accounts.security import hash_password, new_token, token_digest
from healthmesh.config import Settings
from healthmesh.db import make_engine
from healthmesh.registry.enums import (
    AuthorisationStatus,
    FacilityKind,
    IncomeGroup,
    ProductCategory,
    StorageCondition,
    WhoListing,
)
from healthmesh.registry.models import (
    Authorisation,
    Facility,
    Jurisdiction,
    JurisdictionBloc,
    Product,
    RecognitionAgreement,
)
from healthmesh.web.app import create_app
from healthmesh.web.deps import get_db

PG_ADMIN_URL = os.environ.get(
    "HEALTHMESH_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REQUIRE_POSTGRES = os.environ.get("HEALTHMESH_TEST_REQUIRE_POSTGRES") == "1"
TEST_PASSWORD = "correct-horse-battery-staple"
_TEST_HASH = hash_password(TEST_PASSWORD)


def _postgres_database(tmp_name: str) -> tuple[str, Engine]:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{tmp_name}"'))
    except Exception as exc:
        admin.dispose()
        message = f"PostgreSQL unreachable at {PG_ADMIN_URL}: {exc.__class__.__name__}"
        if REQUIRE_POSTGRES:
            pytest.fail(message)
        pytest.skip(message)
    url = make_url(PG_ADMIN_URL).set(database=tmp_name).render_as_string(hide_password=False)
    return url, admin


@contextmanager
def new_database(backend: str, directory: Path, label: str) -> Iterator[str]:
    """An empty, unmigrated database URL: a SQLite file `label.sqlite3` in `directory`, or a new
    PostgreSQL database dropped afterwards (skipped, or failed on CI, when PostgreSQL is
    unreachable)."""
    if backend == "sqlite":
        yield f"sqlite+pysqlite:///{directory / f'{label}.sqlite3'}"
        return
    name = f"healthmesh_{label}_{os.getpid()}_{secrets.token_hex(3)}"
    url, admin = _postgres_database(name)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated, empty database for the whole run, one per backend."""
    with new_database(request.param, tmp_path_factory.mktemp("db"), "test") as url:
        migrate.upgrade(url)
        yield url


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def backend(engine: Engine) -> str:
    return engine.dialect.name


@pytest.fixture
def db(engine: Engine) -> Iterator[Session]:
    """A session inside a transaction that is rolled back after the test; commits become savepoints."""
    connection = engine.connect()
    outer = connection.begin()
    session = Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
    try:
        yield session
    finally:
        session.close()
        outer.rollback()
        connection.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", secret_key="test-secret-key", database_url="sqlite://")


def app_on_session(db: Session, engine: Engine, settings: Settings) -> FastAPI:
    """The application on a test's session: each request is a savepoint, released on success and
    rolled back on error, as the real `get_db` commits or rolls back its transaction."""
    app = create_app(settings, engine)

    def _db() -> Iterator[Session]:
        savepoint = db.begin_nested()
        try:
            yield db
            savepoint.commit()
        except BaseException:
            savepoint.rollback()
            raise

    app.dependency_overrides[get_db] = _db
    app.state.stream_sessions = lambda: nullcontext(db)  # the stream reads the test's transaction
    return app


@pytest.fixture
def client(db: Session, engine: Engine, settings: Settings) -> Iterator[TestClient]:
    """The application on the test's session (`app_on_session`)."""
    app = app_on_session(db, engine, settings)
    with TestClient(
        app, raise_server_exceptions=os.environ.get("HEALTHMESH_TEST_RAISE") == "1"
    ) as test_client:
        yield test_client


# --- a small, realistic region -------------------------------------------------------------------


@dataclass
class Region:
    members: dict[str, Jurisdiction]
    facilities: dict[str, Facility]
    products: dict[str, Product]


def _member(
    iso3: str, name: str, income: IncomeGroup, population: int, zone: str, capital: str
) -> Jurisdiction:
    return Jurisdiction(
        iso3=iso3,
        name=name,
        income_group=income,
        population=population,
        data_protection_regime="",
        time_zones=[zone],
        capital=capital,
        bloc_rows=[JurisdictionBloc(bloc="ASEAN")],
    )


@pytest.fixture
def region(db: Session) -> Region:
    """Thailand, Lao PDR and Singapore with a few facilities, products and regulatory decisions."""
    members = {
        "THA": _member("THA", "Thailand", IncomeGroup.UPPER_MIDDLE, 71_702_435, "Asia/Bangkok", "Bangkok"),
        "LAO": _member("LAO", "Lao PDR", IncomeGroup.LOWER_MIDDLE, 7_664_993, "Asia/Vientiane", "Vientiane"),
        "SGP": _member("SGP", "Singapore", IncomeGroup.HIGH, 5_917_648, "Asia/Singapore", "Singapore"),
    }
    db.add_all(members.values())
    db.flush()

    def facility(
        code: str, iso3: str, kind: FacilityKind, name: str, lat: float, lon: float, **caps: object
    ) -> Facility:
        return Facility(
            code=code,
            jurisdiction=members[iso3],
            kind=kind,
            name=name,
            latitude=lat,
            longitude=lon,
            time_zone=members[iso3].time_zones[0],
            **caps,
        )

    facilities = {
        f.code: f
        for f in [
            facility(
                "THA-HO-0001",
                "THA",
                FacilityKind.HOSPITAL,
                "Rajavithi Hospital",
                13.765,
                100.537,
                cold_chain_2_8=True,
                cold_chain_minus20=True,
                icu_beds=60,
                oxygen_plant=True,
            ),
            facility(
                "THA-HO-0002",
                "THA",
                FacilityKind.HOSPITAL,
                "Chiang Mai General Hospital",
                18.79,
                98.98,
                cold_chain_2_8=True,
                icu_beds=20,
            ),
            facility(
                "LAO-HO-0001",
                "LAO",
                FacilityKind.HOSPITAL,
                "Mahosot Hospital",
                17.96,
                102.61,
                cold_chain_2_8=True,
                icu_beds=12,
            ),
            facility(
                "SGP-HO-0001",
                "SGP",
                FacilityKind.HOSPITAL,
                "Tan Tock Seng Hospital",
                1.321,
                103.846,
                cold_chain_2_8=True,
                cold_chain_minus20=True,
                cold_chain_minus70=True,
                icu_beds=80,
            ),
        ]
    }
    db.add_all(facilities.values())
    products = {
        p.code: p
        for p in [
            Product(
                code="DX-AGRDT-25",
                gtin="00614141000012",
                name="SARS-CoV-2 Ag-RDT, 25 tests",
                category=ProductCategory.DIAGNOSTICS,
                unit_of_issue="kit",
                pack_size=25,
                storage_condition=StorageCondition.AMBIENT,
                min_temp_c=2,
                max_temp_c=30,
                excursion_tolerance_minutes=1440,
                shelf_life_days=540,
                who_listing=WhoListing.EMERGENCY_USE_LISTING,
            ),
            Product(
                code="VAC-COMIRNATY",
                gtin=None,
                name="Comirnaty COVID-19 mRNA vaccine, 6-dose vial",
                category=ProductCategory.VACCINE,
                unit_of_issue="vial",
                pack_size=1,
                storage_condition=StorageCondition.ULTRA_COLD_MINUS70,
                min_temp_c=-90,
                max_temp_c=-60,
                excursion_tolerance_minutes=30,
                shelf_life_days=270,
                who_listing=WhoListing.EMERGENCY_USE_LISTING,
            ),
            Product(
                code="BME-VENT-ICU",
                gtin=None,
                name="ICU ventilator, adult/paediatric",
                category=ProductCategory.BIOMEDICAL_EQUIPMENT,
                unit_of_issue="each",
                pack_size=1,
                storage_condition=StorageCondition.AMBIENT,
                min_temp_c=-10,
                max_temp_c=50,
                excursion_tolerance_minutes=10080,
                shelf_life_days=3650,
                is_discrete_equipment=True,
            ),
        ]
    }
    db.add_all(products.values())
    db.flush()
    db.add_all(
        [
            Authorisation(
                product=products["DX-AGRDT-25"],
                jurisdiction=members["THA"],
                status=AuthorisationStatus.AUTHORISED,
                pathway="full",
                valid_from=date(2021, 1, 1),
            ),
            Authorisation(
                product=products["VAC-COMIRNATY"],
                jurisdiction=members["THA"],
                status=AuthorisationStatus.EMERGENCY_USE,
                pathway="EUA",
                valid_from=date(2021, 6, 1),
                valid_to=date(2023, 12, 31),
            ),
            Authorisation(
                product=products["VAC-COMIRNATY"],
                jurisdiction=members["SGP"],
                status=AuthorisationStatus.AUTHORISED,
                pathway="full",
                valid_from=date(2021, 1, 1),
            ),
            Authorisation(
                product=products["BME-VENT-ICU"],
                jurisdiction=members["SGP"],
                status=AuthorisationStatus.NOT_AUTHORISED,
                pathway="refused",
                valid_from=date(2020, 5, 1),
            ),
            RecognitionAgreement(
                jurisdiction=members["LAO"],
                recognised_authority="WHO-EUL",
                categories=[],
                valid_from=date(2020, 3, 1),
            ),
            RecognitionAgreement(
                jurisdiction=members["LAO"],
                recognised_authority="THA",
                categories=["biomedical_equipment"],
                valid_from=date(2020, 3, 1),
            ),
        ]
    )
    db.flush()
    return Region(members, facilities, products)


# --- actors --------------------------------------------------------------------------------------


@dataclass
class Actor:
    principal: Principal
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


ACTOR_SPECS: dict[str, tuple[Role, str | None, str | None]] = {
    "admin": (Role.ADMIN, None, None),
    "coordinator": (Role.REGIONAL_COORDINATOR, None, None),
    "auditor": (Role.AUDITOR, None, None),
    "researcher": (Role.RESEARCHER, None, None),
    "fp_tha": (Role.NATIONAL_FOCAL_POINT, "THA", None),
    "fp_lao": (Role.NATIONAL_FOCAL_POINT, "LAO", None),
    "manager_tha": (Role.FACILITY_MANAGER, "THA", "THA-HO-0001"),
    "clinician_tha": (Role.CLINICIAN, "THA", "THA-HO-0001"),
}


def make_user(
    db: Session, region: Region, username: str, role: Role, iso3: str | None, facility: str | None
) -> User:
    user = User(
        username=username,
        full_name=username,
        password_hash=_TEST_HASH,
        role=role,
        jurisdiction_id=region.members[iso3].id if iso3 else None,
        facility_id=region.facilities[facility].id if facility else None,
    )
    db.add(user)
    db.flush()
    return user


@pytest.fixture
def actors(db: Session, region: Region) -> dict[str, Actor]:
    """One signed-in API client identity per role and scope that the tests use."""
    out = {}
    for name, (role, iso3, facility) in ACTOR_SPECS.items():
        user = make_user(db, region, name.replace("_", "."), role, iso3, facility)
        raw = new_token("at")
        db.add(ApiToken(user_id=user.id, name="test", prefix=raw[:12], token_hash=token_digest(raw)))
        out[name] = Actor(user.principal(), raw)
    db.flush()
    return out


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty, unmigrated database for tests that commit (the CLI): a file, or a new PG database."""
    with new_database(request.param, tmp_path, "fresh") as url:
        yield url
