"""Console pages of shipments and administration, rendered on the server: what each role and
side sees, which forms it gets, and what it may not open."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from healthmesh.allocation import service as allocation
from healthmesh.db import utcnow
from healthmesh.logistics import service as logistics
from healthmesh.logistics.models import Shipment
from healthmesh.logistics.schemas import MoveIn, ReceiptIn
from healthmesh.web.deps import CSRF_HEADER
from tests.conftest import TEST_PASSWORD, Actor, Region
from tests.test_allocation_rounds import DAY, _world

BANGKOK, VIENTIANE = "THA-HO-0001", "LAO-HO-0001"


def sign_in(client: TestClient, username: str) -> str:
    """A browser session for `username` (the previous one dropped); returns its CSRF token."""
    client.cookies.clear()
    response = client.post("/api/v1/auth/login", json={"username": username, "password": TEST_PASSWORD})
    assert response.status_code == 200, response.text
    return str(response.json()["csrf_token"])


def page(client: TestClient, username: str, path: str, expected: int = 200) -> str:
    sign_in(client, username)
    response = client.get(path, follow_redirects=False)
    assert response.status_code == expected, (username, path, response.text[:500])
    return str(response.text)


def json_island(html: str, element_id: str) -> Any:
    found = re.search(rf'<script type="application/json" id="{element_id}">(.*?)</script>', html, re.S)
    assert found is not None, element_id
    return json.loads(found.group(1))


def listed(html: str) -> set[str]:
    """The shipment codes in the list's table."""
    return set(re.findall(r'<a href="/console/shipments/\d+">(SHP-\d{6})</a>', html))


@pytest.fixture
def shipped(db: Session, region: Region, actors: dict[str, Actor]) -> dict[str, Shipment]:
    """The equity plan's two shipments from the Chainat depot: to Rajavithi, Bangkok (by road)
    and to Mahosot, Vientiane (an emergency, by air); both planned."""
    _world(db, region)
    coordinator = actors["coordinator"].principal
    plan = allocation.create_plan(db, coordinator, "equity", DAY)
    allocation.approve(db, coordinator, plan.id)
    shipments = logistics.plan_shipments(db, coordinator, plan.id)
    return {s.destination.code: s for s in shipments}


def move(db: Session, actor: Actor, shipment: Shipment, status: str, **where: object) -> None:
    logistics.move(db, actor.principal, shipment.id, MoveIn.model_validate({"status": status, **where}))
    db.flush()


def heat_log(hours: int = 30, celsius: float = 40.0) -> bytes:
    """A logger file with `hours` of readings above the Ag-RDT's 30 °C (tolerance: 24 h)."""
    start = utcnow() - timedelta(hours=hours + 2)
    rows = ["timestamp,temperature_c"]
    rows += [f"{(start + timedelta(hours=h)).isoformat()},{celsius}" for h in range(hours + 1)]
    rows.append(f"{(start + timedelta(hours=hours + 1)).isoformat()},20.0")
    return ("\n".join(rows) + "\n").encode()


# --- shipments: the list ----------------------------------------------------------------------


def test_the_list_shows_shipments_their_routes_and_filters(
    client: TestClient, actors: dict[str, Actor], shipped: dict[str, Shipment]
) -> None:
    bangkok, vientiane = shipped[BANGKOK], shipped[VIENTIANE]
    html = page(client, "coordinator", "/console/shipments")
    assert listed(html) == {bangkok.code, vientiane.code}
    assert "2 shipment(s)" in html
    assert "DELSA Chainat" in html
    assert "Rajavithi Hospital" in html
    assert "regional depot" in html
    routes = json_island(html, "route-data")
    assert isinstance(routes, list)
    by_id = {route["id"]: route for route in routes}
    assert by_id[bangkok.id]["coordinates"] == [[100.12, 15.18], [100.537, 13.765]]
    assert by_id[bangkok.id]["status"] == "planned"
    assert by_id[bangkok.id]["overdue"] is False
    members = json_island(html, "map-data")
    assert isinstance(members, dict)
    assert {"THA", "LAO", "SGP"} <= set(members)

    assert listed(page(client, "coordinator", "/console/shipments?member=LAO")) == {vientiane.code}
    assert listed(page(client, "coordinator", "/console/shipments?product=VAC-COMIRNATY")) == set()
    empty = page(client, "coordinator", "/console/shipments?status=dispatched")
    assert "No shipment matches these filters." in empty
    assert json_island(empty, "route-data") == []
    # A filter a browser sends empty, or a value that is no status, does not break the page.
    assert listed(page(client, "coordinator", "/console/shipments?status=&member=&overdue=")) == {
        bangkok.code,
        vientiane.code,
    }
    assert len(listed(page(client, "coordinator", "/console/shipments?status=nonsense"))) == 2


def test_a_shipment_past_its_eta_is_flagged_and_filtered(
    client: TestClient, db: Session, actors: dict[str, Actor], shipped: dict[str, Shipment]
) -> None:
    bangkok = shipped[BANGKOK]
    move(db, actors["coordinator"], bangkok, "picked")
    move(db, actors["coordinator"], bangkok, "dispatched")
    move(db, actors["coordinator"], bangkok, "in_transit", place="Route 32", latitude=14.59, longitude=100.45)
    bangkok.eta = utcnow() - timedelta(hours=3)
    db.flush()

    html = page(client, "coordinator", "/console/shipments")
    row = re.search(rf'<tr data-shipment="{bangkok.id}".*?</tr>', html, re.S)
    assert row is not None
    assert 'data-testid="overdue"' in row.group(0)
    route = {r["id"]: r for r in json_island(html, "route-data")}[bangkok.id]
    assert route["overdue"] is True
    assert route["coordinates"][-1] == [100.45, 14.59]
    assert listed(page(client, "coordinator", "/console/shipments?overdue=1")) == {bangkok.code}
    assert listed(page(client, "coordinator", "/console/shipments?overdue=0")) == {shipped[VIENTIANE].code}
    detail = page(client, "coordinator", f"/console/shipments/{bangkok.id}")
    assert 'data-testid="overdue"' in detail


def test_each_viewer_sees_only_its_scope(
    client: TestClient, actors: dict[str, Actor], shipped: dict[str, Shipment]
) -> None:
    bangkok, vientiane = shipped[BANGKOK], shipped[VIENTIANE]
    assert listed(page(client, "fp.lao", "/console/shipments")) == {vientiane.code}
    assert listed(page(client, "manager.tha", "/console/shipments")) == {bangkok.code}
    missing = page(client, "fp.lao", f"/console/shipments/{bangkok.id}", 404)
    assert "No such shipment" in missing
    assert "DELSA" not in missing
    page(client, "fp.lao", "/console/shipments/999999", 404)
    assert "Not for your role" in page(client, "researcher", "/console/shipments", 403)
    assert "Not for your role" in page(client, "researcher", f"/console/shipments/{bangkok.id}", 403)
    client.cookies.clear()
    response = client.get(f"/console/shipments/{bangkok.id}", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == f"/console/login?next=/console/shipments/{bangkok.id}"


# --- shipments: one shipment and its forms ------------------------------------------------------


def forms(html: str) -> dict[str, bool]:
    """Which action forms a detail page offers."""
    moves = set(re.findall(r'data-move="([a-z_]+)"', html))
    return {
        "receipt": 'id="receipt"' in html,
        "logger": 'id="logger-upload"' in html,
        "quarantine": "/quarantine" in html,
        **{f"move:{status}": True for status in moves},
    }


def test_the_sending_side_gets_the_moves_its_status_allows(
    client: TestClient, db: Session, actors: dict[str, Actor], shipped: dict[str, Shipment]
) -> None:
    bangkok = shipped[BANGKOK]
    path = f"/console/shipments/{bangkok.id}"
    assert forms(page(client, "coordinator", path)) == {
        "receipt": False,
        "logger": False,
        "quarantine": False,
        "move:picked": True,
        "move:cancelled": True,
    }
    move(db, actors["coordinator"], bangkok, "picked")
    assert set(forms(page(client, "coordinator", path))) >= {"move:dispatched", "move:cancelled"}
    move(db, actors["coordinator"], bangkok, "dispatched")
    html = page(client, "coordinator", path)
    assert forms(html) == {
        "receipt": False,  # the coordinator sends; it does not receive
        "logger": False,
        "quarantine": False,
        "move:in_transit": True,
        "move:delivered": True,
        "move:lost": True,
    }
    assert 'name="latitude"' in html
    assert 'name="longitude"' in html
    assert 'name="place"' in html
    # Nobody may move a shipment from a side it does not cover, or without the permission.
    assert not any(forms(page(client, "clinician.tha", path)).values())
    assert "Confirm receipt" not in page(client, "auditor", path)


def test_the_receipt_form_is_for_the_destination_side_once_dispatched(
    client: TestClient, db: Session, actors: dict[str, Actor], shipped: dict[str, Shipment]
) -> None:
    bangkok, vientiane = shipped[BANGKOK], shipped[VIENTIANE]
    path = f"/console/shipments/{bangkok.id}"
    assert not any(forms(page(client, "manager.tha", path)).values())  # planned: nothing to receive yet
    assert not forms(page(client, "fp.lao", f"/console/shipments/{vientiane.id}"))["receipt"]
    move(db, actors["coordinator"], bangkok, "picked")
    assert not forms(page(client, "manager.tha", path))["receipt"]

    move(db, actors["coordinator"], bangkok, "dispatched")
    html = page(client, "manager.tha", path)
    assert forms(html) == {"receipt": True, "logger": True, "quarantine": False, "move:delivered": True}
    line = bangkok.lines[0]
    assert f'data-line-id="{line.id}"' in html
    assert f'data-quantity="{line.quantity}"' in html
    # The server's field errors have a place next to the line's fields.
    for field in ("lines[0].accepted", "lines[0].rejected", "lines", "receiver", "excursion_decision"):
        assert f'data-error-for="{field}"' in html, field
    for reason in ("damaged", "expired", "temperature_excursion", "short_shipped"):
        assert f'data-reason="{reason}"' in html
    assert 'name="excursion_decision"' not in html  # no log flagged an excursion

    # The depot is in Thailand, but its stock is the region's: Thailand's focal point acts for the
    # receiving end only (it may receive, not move the shipment on the road or declare it lost).
    receiving = forms(page(client, "fp.tha", path))
    assert receiving["receipt"]
    assert not receiving.get("move:in_transit")
    assert not receiving.get("move:lost")

    logistics.receive(
        db,
        actors["manager_tha"].principal,
        bangkok.id,
        ReceiptIn.model_validate(
            {
                "lines": [
                    {
                        "line_id": line.id,
                        "accepted": line.quantity - 10,
                        "rejected": [{"reason": "damaged", "quantity": 10}],
                    }
                ],
                "receiver": "Dr Somchai Wongsawat",
            }
        ),
    )
    db.flush()
    done = page(client, "manager.tha", path)
    assert not any(forms(done).values())
    assert "Dr Somchai Wongsawat" in done
    assert "10 damaged" in done


def test_a_refused_receipt_names_the_line_the_page_shows_it_next_to(
    client: TestClient, db: Session, actors: dict[str, Actor], shipped: dict[str, Shipment]
) -> None:
    """The page's error slots and the API's field names are one contract."""
    bangkok = shipped[BANGKOK]
    move(db, actors["coordinator"], bangkok, "picked")
    move(db, actors["coordinator"], bangkok, "dispatched")
    csrf = sign_in(client, "manager.tha")
    line = bangkok.lines[0]
    response = client.post(
        f"/api/v1/logistics/shipments/{bangkok.id}/receipt",
        json={
            "lines": [{"line_id": line.id, "accepted": line.quantity - 5, "rejected": []}],
            "receiver": "Nok",
        },
        headers={CSRF_HEADER: csrf},
    )
    assert response.status_code == 422
    fields = {error["field"] for error in response.json()["errors"]}
    assert fields == {"lines[0].rejected"}
    html = client.get(f"/console/shipments/{bangkok.id}").text
    assert all(f'data-error-for="{field}"' in html for field in fields)


def test_logs_findings_history_and_quarantine(
    client: TestClient, db: Session, actors: dict[str, Actor], shipped: dict[str, Shipment]
) -> None:
    bangkok = shipped[BANGKOK]
    path = f"/console/shipments/{bangkok.id}"
    move(db, actors["coordinator"], bangkok, "picked", place="Chainat depot bay 3")
    move(db, actors["coordinator"], bangkok, "dispatched")
    move(db, actors["coordinator"], bangkok, "in_transit", place="Route 32", latitude=14.59, longitude=100.45)
    logistics.upload_log(db, actors["manager_tha"].principal, bangkok.id, heat_log())
    db.flush()

    html = page(client, "manager.tha", path)
    assert 'data-testid="excursion"' in html
    assert "excursion beyond tolerance" in html
    assert "DX-AGRDT-25" in html
    assert "2 °C to 30 °C" in html
    assert "1 d" in html
    assert "beyond tolerance</strong>" in html
    assert "by manager.tha" in html
    assert html.count('name="excursion_decision"') == 3  # accept, quarantine, discard
    history = re.search(r'data-testid="history".*?</table>', html, re.S)
    assert history is not None
    for seen in ("(coordinator)", "Chainat depot bay 3", "Route 32 · 14.5900, 100.4500", "in transit"):
        assert seen in history.group(0), seen

    line = bangkok.lines[0]
    logistics.receive(
        db,
        actors["manager_tha"].principal,
        bangkok.id,
        ReceiptIn.model_validate(
            {
                "lines": [{"line_id": line.id, "accepted": line.quantity, "rejected": []}],
                "receiver": "Nok",
                "excursion_decision": "quarantine",
            }
        ),
    )
    db.flush()
    held = page(client, "manager.tha", path)
    assert forms(held)["quarantine"]
    assert "Release from quarantine" in held
    assert "stock in quarantine" in held
    assert not forms(page(client, "coordinator", path))["quarantine"]  # the receiving side decides


# --- administration ----------------------------------------------------------------------------


def users_listed(html: str) -> set[str]:
    return set(re.findall(r'<tr data-user="([^"]+)"', html))


def role_options(html: str) -> set[str]:
    found = re.search(r'<select id="cu-role".*?</select>', html, re.S)
    return set(re.findall(r'<option value="([a-z_]+)"', found.group(0))) if found else set()


def test_the_admin_may_change_every_account(client: TestClient, actors: dict[str, Actor]) -> None:
    html = page(client, "admin", "/console/admin")
    assert users_listed(html) == {spec.replace("_", ".") for spec in actors}
    assert 'id="change-user"' in html
    assert 'data-method="PATCH"' in html
    assert role_options(html) == {
        "admin",
        "regional_coordinator",
        "national_focal_point",
        "facility_manager",
        "clinician",
        "researcher",
        "auditor",
    }
    account_options = re.search(r'<select id="cu-user".*?</select>', html, re.S)
    assert account_options is not None
    assert 'value="admin"' not in account_options.group(0)
    assert 'value="fp.lao"' in account_options.group(0)
    assert 'data-error-for="role"' in html
    assert 'data-error-for="jurisdiction"' in html
    assert 'data-error-for="facility"' in html


@pytest.mark.parametrize("username", ["coordinator", "auditor"])
def test_readers_see_accounts_without_the_change_form(
    client: TestClient, actors: dict[str, Actor], username: str
) -> None:
    html = page(client, username, "/console/admin")
    assert {"fp.tha", "fp.lao", "admin"} <= users_listed(html)
    assert 'id="change-user"' not in html
    assert "Change a role" not in html
    assert "?user=" not in html


def test_a_focal_point_changes_accounts_of_its_member_only(
    client: TestClient, actors: dict[str, Actor]
) -> None:
    html = page(client, "fp.tha", "/console/admin")
    assert users_listed(html) == {"fp.tha", "manager.tha", "clinician.tha"}
    assert role_options(html) == {"national_focal_point", "facility_manager", "clinician", "researcher"}
    members = re.search(r'<select id="cu-jurisdiction".*?</select>', html, re.S)
    assert members is not None
    assert "THA" in members.group(0)
    assert "LAO" not in members.group(0)
    assert "Region-wide" not in members.group(0)
    accounts = re.search(r'<select id="cu-user".*?</select>', html, re.S)
    assert accounts is not None
    assert 'value="fp.tha"' not in accounts.group(0)  # not oneself
    assert "Not for your role" in page(client, "manager.tha", "/console/admin", 403)


def test_a_changed_account_is_confirmed(client: TestClient, actors: dict[str, Actor]) -> None:
    csrf = sign_in(client, "admin")
    response = client.patch(
        "/api/v1/users/clinician.tha", json={"role": "researcher"}, headers={CSRF_HEADER: csrf}
    )
    assert response.status_code == 200, response.text
    html = client.get(f"/console/admin?changed={response.json()['id']}").text
    assert "clinician.tha is now researcher (THA)" in html
    assert re.search(r'<tr data-user="clinician.tha".*?data-col="role">researcher<', html, re.S)


def test_registry_lists_with_templates_and_the_imports_each_role_may_make(
    client: TestClient, actors: dict[str, Actor], region: Region
) -> None:
    html = page(client, "coordinator", "/console/admin")
    assert "Members: 3" in html
    assert "Lao PDR" in html
    assert 'data-import="/api/v1/jurisdictions/import"' in html
    assert 'href="/api/v1/jurisdictions/template.csv"' in html
    facilities = page(client, "coordinator", "/console/admin?registry=facilities&member=THA")
    assert "Facilities: 2" in facilities
    assert "THA-HO-0002" in facilities
    assert "LAO-HO-0001" not in facilities
    assert 'data-import="/api/v1/facilities/import"' in facilities
    assert "VAC-COMIRNATY" in page(client, "coordinator", "/console/admin?registry=products&q=comirnaty")
    authorisations = page(client, "coordinator", "/console/admin?registry=authorisations")
    assert "Authorisations: 4" in authorisations
    assert "EUA" in authorisations
    assert "data-import=" not in authorisations  # regulatory decisions are the members' to import
    assert 'href="/api/v1/authorisations/template.csv"' in authorisations
    assert 'data-import="/api/v1/authorisations/import"' in page(
        client, "fp.tha", "/console/admin?registry=authorisations"
    )
    assert "data-import=" not in page(client, "auditor", "/console/admin?registry=facilities")
    recognitions = page(client, "auditor", "/console/admin?registry=recognitions")
    assert "WHO-EUL" in recognitions
    # The template the page links to is the import's header.
    template = client.get("/api/v1/facilities/template.csv")
    assert template.status_code == 200
    assert template.text.startswith("code,")
