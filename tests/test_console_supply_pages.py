"""Console pages of supply: a member's page, the shortage board and the needs queue, rendered on
the server for each role, within scope, with the numbers that matter."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from healthmesh.supply import snapshots
from healthmesh.supply.models import StockSnapshot
from healthmesh.web.deps import CSRF_HEADER, SESSION_COOKIE
from tests.conftest import TEST_PASSWORD, Actor, Region

TODAY = date.today()
PRODUCT = "DX-AGRDT-25"


def _day(days_ago: int) -> str:
    return (TODAY - timedelta(days=days_ago)).isoformat()


def _sign_in(client: TestClient, username: str) -> str:
    """Sign in a browser session (the cookie stays on the client); returns the page's CSRF token."""
    client.cookies.clear()
    response = client.post("/api/v1/auth/login", json={"username": username, "password": TEST_PASSWORD})
    assert response.status_code == 200, response.text
    assert client.cookies.get(SESSION_COOKIE)
    return str(response.json()["csrf_token"])


def _stock(client: TestClient, actor: Actor, **event: object) -> None:
    response = client.post("/api/v1/stock/events", json={"product": PRODUCT, **event}, headers=actor.headers)
    assert response.status_code == 201, response.text


@pytest.fixture
def supplied(client: TestClient, actors: dict[str, Actor], region: Region) -> dict[str, int]:
    """Thailand: 600 usable tests (100 of them expiring within the month), 300 issued in the last
    30 days (10 a day) and a submitted need for 2,000: coverage 600 / 2,000 = 30 %. Lao PDR holds
    50 tests nobody uses or asks for (no demand, so not on the board)."""
    admin = actors["admin"]
    _stock(
        client,
        admin,
        facility="THA-HO-0001",
        lot_number="A",
        expiry_date="2099-12-31",
        kind="receipt",
        quantity=800,
        occurred_at=_day(20),
    )
    _stock(
        client, admin, facility="THA-HO-0001", lot_number="A", kind="issue", quantity=300, occurred_at=_day(5)
    )
    _stock(
        client,
        admin,
        facility="THA-HO-0002",
        lot_number="B",
        expiry_date=_day(-30),
        kind="receipt",
        quantity=100,
        occurred_at=_day(10),
    )
    _stock(
        client,
        admin,
        facility="LAO-HO-0001",
        lot_number="L",
        expiry_date="2099-12-31",
        kind="receipt",
        quantity=50,
        occurred_at=_day(10),
    )
    need = client.post(
        "/api/v1/needs",
        json={
            "facility": "THA-HO-0001",
            "product": PRODUCT,
            "quantity": 2000,
            "urgency": "emergency",
            "needed_by": (TODAY + timedelta(days=10)).isoformat(),
            "justification": "Outbreak screening at the border crossing",
            "submit": True,
        },
        headers=actors["manager_tha"].headers,
    )
    assert need.status_code == 201, need.text
    return {"need": int(need.json()["id"])}


def _row(html: str, marker: str) -> str:
    """The table row carrying `marker` (an attribute such as data-product="X")."""
    found = re.search(rf"<tr[^>]*{re.escape(marker)}[^>]*>(.*?)</tr>", html, re.S)
    assert found, f"no row {marker}"
    return re.sub(r"\s+", " ", found.group(1))


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


# --- sign-in and scope ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/console/members/THA", "/console/shortages?product=DX-AGRDT-25", "/console/needs?status=submitted"],
)
def test_pages_send_a_visitor_to_sign_in_and_back(client: TestClient, path: str) -> None:
    response = client.get(path, follow_redirects=False)
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith("/console/login?next=")
    assert location.split("next=", 1)[1].replace("%3F", "?").replace("%3D", "=") == path


@pytest.mark.parametrize(
    ("username", "path"),
    [
        ("fp.lao", "/console/members/THA"),
        ("manager.tha", "/console/members/LAO"),
        ("researcher", "/console/needs"),
        ("researcher", "/console/needs/table"),
    ],
)
def test_out_of_scope_or_role_is_the_403_page(
    client: TestClient, actors: dict[str, Actor], username: str, path: str
) -> None:
    _sign_in(client, username)
    response = client.get(path)
    assert response.status_code == 403
    assert "Not for your role" in response.text


def test_an_unknown_member_is_not_found(client: TestClient, actors: dict[str, Actor]) -> None:
    _sign_in(client, "coordinator")
    response = client.get("/console/members/XYZ")
    assert response.status_code == 404
    assert "No member" in response.text


# --- the member page ------------------------------------------------------------------------------


def test_member_page_shows_stock_coverage_trend_and_needs(
    client: TestClient, actors: dict[str, Actor], supplied: dict[str, int]
) -> None:
    _sign_in(client, "fp.tha")
    response = client.get("/console/members/tha")
    assert response.status_code == 200
    html = response.text
    assert "<h1>Thailand" in html
    stock = _row(html, f'data-product="{PRODUCT}"')
    cells = re.findall(r'<td class="num">\s*(.*?)\s*</td>', stock)
    # on hand, usable, near expiry, expired, pipeline, days of stock (600 / 10 a day), coverage
    assert cells[:6] == ["600", "600", "100", "0", "0", "60"]
    assert '<span class="badge red">30%</span>' in stock
    assert 'data-testid="products-short">1<' in html
    assert 'data-testid="open-needs">1<' in html
    # the trend: the product is the most used, nothing on hand 12 weeks ago, 600 today
    trend = html.split('data-testid="trend-table"', 1)[1].split("</table>", 1)[0]
    assert f'<th scope="col" class="num">{PRODUCT}</th>' in trend
    first_week = (TODAY - timedelta(weeks=12)).isoformat()
    assert re.search(
        rf'<th scope="row"><time datetime="{first_week}">[^<]+</time></th><td class="num" data-value="0">',
        trend,
    )
    assert '<th scope="row">today</th><td class="num" data-value="600">600</td>' in trend
    assert 'data-chart="line"' in html
    assert "/static/vendor/chartjs/chart.umd.min.js" in html
    needs = html.split('data-testid="member-needs"', 1)[1]
    assert f"#{supplied['need']}" in needs
    assert "emergency" in needs
    assert "Endorse need" not in html  # decisions are taken in the queue


def test_member_trend_reads_the_daily_snapshots(
    client: TestClient, actors: dict[str, Actor], supplied: dict[str, int], db: Session
) -> None:
    week_ago = TODAY - timedelta(weeks=1)
    snapshots.take_snapshot(db, week_ago)
    assert db.scalar(select(StockSnapshot.on_hand).where(StockSnapshot.day == week_ago)) is not None
    # what the snapshot says is what the chart shows (the ledger rebuild is only for missing days)
    db.execute(update(StockSnapshot).where(StockSnapshot.day == week_ago).values(on_hand=4321))
    db.flush()
    _sign_in(client, "coordinator")
    html = client.get("/console/members/THA").text
    label = f'<time datetime="{week_ago.isoformat()}">{week_ago.day} {week_ago:%b}</time>'
    assert f'{label}</th><td class="num" data-value="8642">8,642</td>' in html  # 2 facilities x 4,321
    assert "11 of 12 past weeks have no snapshot" in html


def test_member_page_for_a_researcher_and_a_facility(
    client: TestClient, actors: dict[str, Actor], supplied: dict[str, int]
) -> None:
    _sign_in(client, "researcher")
    html = client.get("/console/members/THA").text
    assert f'data-product="{PRODUCT}"' in html
    assert "Open needs" not in html
    assert "Endorse need" not in html
    _sign_in(client, "manager.tha")
    response = client.get("/console/members/THA")
    assert response.status_code == 200
    stock = _row(response.text, f'data-product="{PRODUCT}"')
    assert re.findall(r'<td class="num">\s*(.*?)\s*</td>', stock)[:2] == ["500", "500"]  # THA-HO-0001 only
    assert "Coverage" not in response.text  # member-wide, not a facility's


# --- the shortage board ---------------------------------------------------------------------------


def test_shortage_board_sorted_filtered_and_live(
    client: TestClient, actors: dict[str, Actor], supplied: dict[str, int]
) -> None:
    _sign_in(client, "coordinator")
    html = client.get("/console/shortages").text
    row = _row(html, f'data-product="{PRODUCT}" data-member="THA"')
    assert '<span class="badge red">30%</span>' in row
    assert 'data-member="LAO"' not in html  # stock but no demand
    assert 'data-live="stock,need"' in html
    assert 'hx-get="/console/shortages/table"' in html
    filtered = client.get(f"/console/shortages?product={PRODUCT}&member=THA").text
    assert 'hx-get="/console/shortages/table?product=DX-AGRDT-25&amp;member=THA"' in filtered
    assert f'data-product="{PRODUCT}"' in filtered
    other = client.get("/console/shortages?product=VAC-COMIRNATY").text
    assert "data-member=" not in other
    assert "No demand for VAC-COMIRNATY" in other
    fragment = client.get(f"/console/shortages/table?product={PRODUCT}")
    assert fragment.status_code == 200
    assert "<html" not in fragment.text
    assert 'data-member="THA"' in fragment.text
    assert 'data-testid="critical">1<' in fragment.text


def test_shortage_board_within_scope_and_not_for_a_facility(
    client: TestClient, actors: dict[str, Actor], supplied: dict[str, int]
) -> None:
    _sign_in(client, "fp.lao")
    html = client.get("/console/shortages").text
    assert 'data-member="THA"' not in html
    assert 'id="member"' not in html  # one member: no member filter
    _sign_in(client, "manager.tha")
    response = client.get("/console/shortages")
    assert response.status_code == 200
    assert 'data-testid="facility-note"' in response.text
    assert "data-live=" not in response.text


# --- the needs queue ------------------------------------------------------------------------------


def test_focal_point_endorses_from_the_queue(
    client: TestClient, actors: dict[str, Actor], supplied: dict[str, int]
) -> None:
    need = supplied["need"]
    _sign_in(client, "fp.tha")
    response = client.get("/console/needs?status=submitted")
    html = response.text
    assert response.status_code == 200
    row = _row(html, f'data-need="{need}"')
    assert "submitted" in row
    assert f'aria-label="Endorse need #{need}"' in row
    assert f'data-api="/api/v1/needs/{need}/reject"' in row
    assert 'data-error-for="reason"' in row
    assert 'data-testid="awaiting">1 need awaiting endorsement' in html
    assert 'data-live="need"' in html
    # the page's CSRF token is the session's: the buttons' API calls go through
    csrf = re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', html)
    assert csrf
    endorsed = client.post(f"/api/v1/needs/{need}/endorse", headers={CSRF_HEADER: csrf.group(1)})
    assert endorsed.status_code == 200, endorsed.text
    assert endorsed.json()["status"] == "open"
    fragment = client.get("/console/needs/table").text
    assert "<html" not in fragment
    row = _row(fragment, f'data-need="{need}"')
    assert ">open<" in row
    assert "Endorse need" not in row
    assert f'data-need="{need}"' not in client.get("/console/needs/table?status=submitted").text


def test_queue_filters(client: TestClient, actors: dict[str, Actor], supplied: dict[str, int]) -> None:
    need = supplied["need"]
    _sign_in(client, "coordinator")
    marker = f'data-need="{need}"'
    assert marker in client.get(f"/console/needs?urgency=emergency&product={PRODUCT}&member=THA").text
    assert marker not in client.get("/console/needs?urgency=routine").text
    assert marker not in client.get("/console/needs?product=VAC-COMIRNATY").text
    assert marker not in client.get("/console/needs?status=rejected").text
    assert marker not in client.get("/console/needs?member=LAO").text
    assert marker in client.get("/console/needs?status=all&urgency=bogus").text  # unknown values: ignored


@pytest.mark.parametrize("username", ["clinician.tha", "coordinator", "fp.lao"])
def test_no_endorse_button_without_the_right_to_endorse(
    client: TestClient, actors: dict[str, Actor], supplied: dict[str, int], username: str
) -> None:
    _sign_in(client, username)
    response = client.get("/console/needs")
    assert response.status_code == 200
    assert "Endorse need" not in response.text
    assert "/endorse" not in response.text
    visible = f'data-need="{supplied["need"]}"' in response.text
    assert visible is (username != "fp.lao")  # the clinician's own facility; the region


def test_member_page_lists_the_least_covered_products_first_and_all_on_request(
    client: TestClient, actors: dict[str, Actor], supplied: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    from healthmesh.web.console.pages import members

    more = client.post(  # a second product, requested: 100 % short, so listed before the first
        "/api/v1/needs",
        json={
            "facility": "THA-HO-0001",
            "product": "BME-VENT-ICU",
            "quantity": 4,
            "urgency": "urgent",
            "needed_by": (TODAY + timedelta(days=10)).isoformat(),
            "justification": "ICU expansion for the outbreak",
            "submit": True,
        },
        headers=actors["manager_tha"].headers,
    )
    assert more.status_code == 201, more.text
    _sign_in(client, "coordinator")
    full = client.get("/console/members/THA?all=1").text
    every = re.findall(r'<tr data-product="([^"]+)">', full)
    assert every == ["BME-VENT-ICU", PRODUCT]
    monkeypatch.setattr(members, "ROWS_SHOWN", 1)  # a continent member holds 300 products
    first = client.get("/console/members/THA").text
    assert re.findall(r'<tr data-product="([^"]+)">', first) == every[:1]
    assert f"the first 1 of {len(every)}" in first
    assert '<a href="?all=1">show all</a>' in first
    assert re.findall(r'<tr data-product="([^"]+)">', client.get("/console/members/THA?all=1").text) == every
