"""The command line and the demo region, each command run as an operator would, on both backends."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from healthmesh.cli import app
from healthmesh.db import make_engine, make_sessionmaker
from healthmesh.registry import service
from healthmesh.registry.enums import FacilityKind, IncomeGroup
from healthmesh.registry.models import Facility, Jurisdiction, Product
from healthmesh.registry.transfer import KINDS, export_csv

runner = CliRunner()


@pytest.fixture
def cli_env(fresh_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("HEALTHMESH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HEALTHMESH_DATABASE_URL", fresh_database_url)
    return fresh_database_url


def _invoke(*args: str, **kwargs: str) -> str:
    result = runner.invoke(app, list(args), **kwargs)  # type: ignore[arg-type]
    assert result.exit_code == 0, result.output
    return result.output


def _session(url: str) -> Session:
    return make_sessionmaker(make_engine(url))()


def test_demo_seeds_the_asean_region_once(cli_env: str) -> None:
    output = _invoke("demo", "--no-serve", "--no-history")
    assert "seeded 11 members" in output
    assert "fp.tha" in output
    again = _invoke("demo", "--no-serve", "--no-history")
    assert "already present" in again
    with _session(cli_env) as db:
        members = {j.iso3: j for j in db.scalars(select(Jurisdiction))}
        assert set(members) == {"BRN", "KHM", "IDN", "LAO", "MYS", "MMR", "PHL", "SGP", "THA", "VNM", "TLS"}
        assert all(j.blocs[:1] == ["APEC"] or "ASEAN" in j.blocs for j in members.values())
        assert members["SGP"].income_group is IncomeGroup.HIGH
        assert len(members["IDN"].time_zones) == 4
        assert 250_000_000 < members["IDN"].population < 300_000_000
        facilities = db.scalar(select(func.count()).select_from(Facility)) or 0
        assert 380 <= facilities <= 420
        depots = db.scalars(
            select(Facility).where(Facility.kind == FacilityKind.REGIONAL_RESERVE_DEPOT)
        ).all()
        assert len(depots) >= 3
        assert 45 <= (db.scalar(select(func.count()).select_from(Product)) or 0) <= 70


def test_demo_authorisations_differ_between_members(cli_env: str) -> None:
    _invoke("demo", "--no-serve", "--no-history")
    from datetime import date

    with _session(cli_env) as db:
        products = db.scalars(select(Product.code)).all()
        differing = 0
        for code in products:
            answers = {
                service.check_eligibility(db, code, iso3, date(2025, 6, 1)).allowed
                for iso3 in ("SGP", "LAO", "MMR", "BRN", "THA")
            }
            differing += len(answers) > 1
        assert differing >= 5


def test_demo_is_deterministic_from_its_seed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exports = []
    for run in ("a", "b"):
        url = f"sqlite+pysqlite:///{tmp_path / run}.sqlite3"
        monkeypatch.setenv("HEALTHMESH_DATA_DIR", str(tmp_path / run))
        monkeypatch.setenv("HEALTHMESH_DATABASE_URL", url)
        _invoke("demo", "--no-serve", "--no-history", "--seed", "11")
        with _session(url) as db:
            exports.append({kind: export_csv(db, KINDS[kind]) for kind in KINDS})
    assert exports[0] == exports[1]


def test_import_export_and_users_commands(cli_env: str, tmp_path: Path) -> None:
    _invoke("db", "upgrade")
    members = tmp_path / "members.csv"
    members.write_text(
        "iso3,name,blocs,income_group,population,time_zones,capital\n"
        "THA,Thailand,ASEAN;APEC,upper_middle,71702435,Asia/Bangkok,Bangkok\n"
        "LAO,Lao PDR,ASEAN,lower_middle,7664993,Asia/Vientiane,Vientiane\n"
    )
    assert "2 created" in _invoke("import", "jurisdictions", str(members))
    out = tmp_path / "export.csv"
    _invoke("export", "jurisdictions", "--out", str(out))
    assert "THA,Thailand,APEC;ASEAN,upper_middle,71702435" in out.read_text()
    _invoke(
        "users",
        "create",
        "fp.lao",
        "--role",
        "national_focal_point",
        "--jurisdiction",
        "LAO",
        env={"HEALTHMESH_NEW_PASSWORD": "vientiane-focal-point"},
    )
    facilities = tmp_path / "facilities.csv"
    facilities.write_text(
        "code,jurisdiction,kind,name,latitude,longitude,time_zone\n"
        "THA-HO-0100,THA,hospital,Siriraj Hospital,13.759,100.485,Asia/Bangkok\n"
    )
    refused = runner.invoke(app, ["import", "facilities", str(facilities), "--as", "fp.lao"])
    assert refused.exit_code == 1
    assert "line 2, jurisdiction" in refused.output
    with _session(cli_env) as db:
        assert db.scalar(select(func.count()).select_from(Facility)) == 0
    assert "1 created" in _invoke("import", "facilities", str(facilities))


def test_bad_import_exits_non_zero_and_changes_nothing(cli_env: str, tmp_path: Path) -> None:
    _invoke("db", "upgrade")
    members = tmp_path / "members.csv"
    members.write_text(
        "iso3,name,income_group,population,time_zones\n"
        "THA,Thailand,upper_middle,71702435,Asia/Bangkok\n"
        "XXZ,Atlantis,low,-1,Asia/Bangkok\n"
    )
    result = runner.invoke(app, ["import", "jurisdictions", str(members)])
    assert result.exit_code == 1
    assert "line 3, iso3" in result.output
    assert "line 3, population" in result.output
    with _session(cli_env) as db:
        assert db.scalar(select(func.count()).select_from(Jurisdiction)) == 0


def test_weak_password_for_new_user_is_refused(cli_env: str) -> None:
    _invoke("db", "upgrade")
    result = runner.invoke(
        app, ["users", "create", "boss", "--role", "admin"], env={"HEALTHMESH_NEW_PASSWORD": "short"}
    )
    assert result.exit_code == 1
    assert "password" in result.output
