"""Console pages for allocation rounds and the transparency log, rendered server-side: what each
role sees (and is refused), a focal point's view scoped to its member, the decision buttons for
approvers only, and log entries shown byte for byte with the tree's leaf hashes."""

from __future__ import annotations

import html
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from healthmesh.allocation import service as allocation
from healthmesh.allocation.models import AllocationPlan
from healthmesh.config import Settings
from healthmesh.ledger import merkle, service, witness_app
from healthmesh.ledger.models import LogCosignature, LogEntry
from healthmesh.needs.models import Need
from tests.conftest import TEST_PASSWORD, Actor, Region
from tests.test_allocation_rounds import DAY, _world

NEED_ROW = re.compile(r'<tr data-need="(\d+)">')
ENTRY_ROW = re.compile(r'<tr data-entry="(\d+)">')


def sign_in(client: TestClient, username: str) -> None:
    response = client.post("/api/v1/auth/login", json={"username": username, "password": TEST_PASSWORD})
    assert response.status_code == 200, response.text


@pytest.fixture
def plan(db: Session, region: Region, actors: dict[str, Actor]) -> AllocationPlan:
    """A proposed equity round: 600 Ag-RDTs shared by Thailand and Lao PDR, Singapore not eligible."""
    _world(db, region)
    return allocation.create_plan(db, actors["coordinator"].principal, "equity", DAY)


def need_of(db: Session, region: Region, iso3: str) -> int:
    need_id = db.scalar(select(Need.id).where(Need.jurisdiction_id == region.members[iso3].id))
    assert need_id is not None
    return need_id


# --- allocation ---------------------------------------------------------------------------------


def test_the_coordinator_sees_the_plans_and_may_run_and_compare(
    client: TestClient, plan: AllocationPlan
) -> None:
    sign_in(client, "coordinator")
    page = client.get("/console/allocation")
    assert page.status_code == 200
    text = page.text
    assert f'href="/console/allocation/{plan.id}"' in text
    row = text[text.index(f'href="/console/allocation/{plan.id}"') :]
    row = row[: row.index("</tr>")]
    assert "equity" in row
    assert "proposed" in row
    assert "600" in row
    assert "60.0%" in row  # the round's minimum fill rate
    assert 'id="run-round"' in text
    assert 'id="compare-policies"' in text
    for name in ("equity", "covax", "efficiency", "emergency", "pro_rata", "population", "fcfs"):
        assert f'value="{name}"' in text
    assert "/static/vendor/chartjs/chart.umd.min.js" in text
    assert '<canvas id="chart-member"' in text
    assert '<canvas id="chart-gini"' in text


def test_a_focal_point_reads_the_plans_but_runs_nothing(client: TestClient, plan: AllocationPlan) -> None:
    sign_in(client, "fp.lao")
    page = client.get("/console/allocation")
    assert page.status_code == 200
    assert f'href="/console/allocation/{plan.id}"' in page.text
    assert 'id="run-round"' not in page.text
    assert 'id="compare-policies"' not in page.text


def test_roles_without_allocation_read_are_refused(client: TestClient, plan: AllocationPlan) -> None:
    anonymous = client.get(f"/console/allocation/{plan.id}", follow_redirects=False)
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == f"/console/login?next=/console/allocation/{plan.id}"
    for username in ("researcher", "clinician.tha", "manager.tha"):
        sign_in(client, username)
        for path in ("/console/allocation", f"/console/allocation/{plan.id}"):
            refused = client.get(path)
            assert refused.status_code == 403, (username, path)
            assert "Not for your role" in refused.text


def test_the_plan_page_explains_every_need_to_the_coordinator(
    client: TestClient, db: Session, region: Region, plan: AllocationPlan
) -> None:
    sign_in(client, "coordinator")
    page = client.get(f"/console/allocation/{plan.id}")
    assert page.status_code == 200
    text = page.text
    assert sorted(int(n) for n in NEED_ROW.findall(text)) == sorted(r.need_id for r in plan.results)
    singapore = text[text.index(f'<tr data-need="{need_of(db, region, "SGP")}">') :]
    singapore = html.unescape(singapore[: singapore.index("</tr>")])
    assert "not authorised in the member" in singapore
    sgp_result = next(r for r in plan.results if r.jurisdiction_id == region.members["SGP"].id)
    assert sgp_result.explanation in singapore  # the engine's plain words, as stored
    assert 'data-testid="min-fill">60.0%' in text
    assert 'data-testid="fill-by-member"' in text
    assert "Lao PDR (LAO)" in text
    assert "Thailand (THA)" in text
    assert 'data-testid="fill-by-income"' in text
    assert "lower middle" in text
    assert 'id="plan-chart-member"' in text
    assert 'id="plan-chart-data"' in text
    assert text.count("RRMS-AG-01") == 2  # both lines, from the depot's lot
    assert f'data-api="/api/v1/allocation/plans/{plan.id}/approve"' in text
    assert f'data-api="/api/v1/allocation/plans/{plan.id}/reject"' in text

    only_refused = client.get(f"/console/allocation/{plan.id}", params={"reason": "not_authorised"}).text
    assert NEED_ROW.findall(only_refused) == [str(need_of(db, region, "SGP"))]
    only_lao = client.get(f"/console/allocation/{plan.id}", params={"member": "LAO"}).text
    assert NEED_ROW.findall(only_lao) == [str(need_of(db, region, "LAO"))]


def test_a_focal_point_sees_only_its_members_needs_and_lines(
    client: TestClient, db: Session, region: Region, plan: AllocationPlan
) -> None:
    sign_in(client, "fp.lao")
    page = client.get(f"/console/allocation/{plan.id}")
    assert page.status_code == 200
    lao = need_of(db, region, "LAO")
    assert NEED_ROW.findall(page.text) == [str(lao)]
    assert f"#{need_of(db, region, 'THA')}" not in page.text
    assert f"#{need_of(db, region, 'SGP')}" not in page.text
    lines = page.text[page.text.index('data-testid="lines"') :]
    assert lines.count("<tr><td>#") == 1
    assert f"<tr><td>#{lao}</td>" in lines
    assert "at least 60%" in html.unescape(page.text)  # its explanation
    assert "/approve" not in page.text  # reads, does not decide
    assert 'id="filter-member"' not in page.text


def test_approve_is_offered_only_to_approvers_and_only_while_proposed(
    client: TestClient, db: Session, actors: dict[str, Actor], plan: AllocationPlan
) -> None:
    sign_in(client, "auditor")
    audited = client.get(f"/console/allocation/{plan.id}")
    assert audited.status_code == 200
    assert "/approve" not in audited.text
    assert "/reject" not in audited.text
    assert "waiting for a regional coordinator" in audited.text

    sign_in(client, "coordinator")
    assert f"/api/v1/allocation/plans/{plan.id}/approve" in client.get(f"/console/allocation/{plan.id}").text
    allocation.approve(db, actors["coordinator"].principal, plan.id)
    approved = client.get(f"/console/allocation/{plan.id}").text
    assert 'data-testid="plan-status">approved' in approved
    assert "/approve" not in approved
    assert "/console/ledger?kind=allocation.plan_approved" in approved


def test_an_unknown_plan_is_a_404_page(client: TestClient, actors: dict[str, Actor]) -> None:
    sign_in(client, "coordinator")
    missing = client.get("/console/allocation/987654")
    assert missing.status_code == 404
    assert "no allocation plan 987654" in missing.text


# --- transparency log ---------------------------------------------------------------------------


def _fill(db: Session, count: int) -> None:
    service.append_many(
        db,
        [("shipment.dispatched", {"shipment": f"SHP-{n:06d}", "mode": "road"}) for n in range(count)],
    )


def test_the_ledger_shows_entries_byte_for_byte_with_the_trees_leaf_hashes(
    client: TestClient, db: Session, actors: dict[str, Actor], plan: AllocationPlan
) -> None:
    allocation.approve(db, actors["coordinator"].principal, plan.id)
    entry = db.scalars(select(LogEntry).where(LogEntry.kind == "allocation.plan_approved")).one()
    sign_in(client, "clinician.tha")  # every signed-in user
    page = client.get("/console/ledger")
    assert page.status_code == 200
    row = page.text[page.text.index(f'<tr data-entry="{entry.index}">') :]
    row = row[: row.index("</tr>")]
    assert "allocation.plan_approved" in row
    assert f"plan {plan.id}" in row
    assert "units 600" in row
    assert "2 lines" in row
    body = re.search(r"<pre class=\"body\" data-entry-body>(.*?)</pre>", row, re.S)
    assert body is not None
    assert html.unescape(body.group(1)) == entry.body
    assert merkle.leaf_hash(entry.body.encode()).hex() in row
    assert f'data-verify="{entry.index}"' in row
    assert "/static/js/ledger.js" in page.text
    assert "healthmesh ledger verify" in page.text  # where the full check is
    assert "Ed25519" in page.text

    shipments = client.get("/console/ledger", params={"kind": "shipment.dispatched"})
    assert shipments.status_code == 200
    assert "No entries of kind shipment.dispatched" in shipments.text


def test_the_ledger_pages_newest_first_and_filters_by_kind(
    client: TestClient, db: Session, actors: dict[str, Actor]
) -> None:
    _fill(db, 60)
    service.append(db, "allocation.policy_changed", {"policy": "equity", "version": 2, "changes": {}})
    sign_in(client, "researcher")
    first = client.get("/console/ledger").text
    assert [int(i) for i in ENTRY_ROW.findall(first)] == list(range(60, 35, -1))
    assert "page 1 of 3" in first
    assert 'rel="next"' in first
    assert 'rel="prev"' not in first
    last = client.get("/console/ledger", params={"page": 3}).text
    assert [int(i) for i in ENTRY_ROW.findall(last)] == list(range(10, -1, -1))
    assert 'rel="next"' not in last
    changed = client.get("/console/ledger", params={"kind": "allocation.policy_changed"}).text
    assert ENTRY_ROW.findall(changed) == ["60"]
    dispatched = client.get("/console/ledger", params={"kind": "shipment.dispatched", "page": 2}).text
    assert [int(i) for i in ENTRY_ROW.findall(dispatched)] == list(range(34, 9, -1))
    assert "kind=shipment.dispatched" in dispatched  # the page links keep the filter


def test_the_ledger_shows_the_latest_and_the_cosigned_checkpoint(
    client: TestClient, db: Session, settings: Settings, actors: dict[str, Actor]
) -> None:
    sign_in(client, "fp.tha")
    empty = client.get("/console/ledger")
    assert empty.status_code == 200
    assert "No checkpoint has been signed yet" in empty.text
    assert 'data-testid="no-cosigned"' in empty.text

    signer = service.load_signer(settings)
    _fill(db, 7)
    cosigned = service.publish_checkpoint(db, signer)
    _, vkey = witness_app.generate_witness_key("witness.moh.gov.la")
    witness = service.register_witness(db, vkey, "http://witness.moh.gov.la")
    db.add(
        LogCosignature(checkpoint_size=cosigned.size, witness=witness.name, line="— witness.moh.gov.la AAAA")
    )
    _fill(db, 3)
    latest = service.publish_checkpoint(db, signer)
    _fill(db, 2)
    db.flush()

    page = client.get("/console/ledger").text
    assert 'data-testid="log-size">12<' in page
    assert f"<dd data-cp-size>{latest.size}</dd>" in page
    assert service.b64(bytes(latest.root_hash)) in page
    assert "2 newer entries are not in a signed checkpoint yet" in page
    assert f'data-testid="cosigned-size">{cosigned.size}<' in page
    witnesses = page[page.index('data-testid="witnesses"') :]
    assert "witness.moh.gov.la" in witnesses[: witnesses.index("</table>")]
    assert signer.name in page  # the origin


def test_the_ledger_needs_a_signed_in_user(client: TestClient) -> None:
    response = client.get("/console/ledger", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/console/login?next=/console/ledger"
