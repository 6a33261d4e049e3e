"""A shipment from a regional depot, in the browser: the coordinator picks and dispatches it; the
destination's focal point uploads a logger file with an excursion, sees it flagged, and confirms
receipt with a discrepancy (a count that does not add up is refused next to its line)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from playwright.sync_api import expect


def heat_log(path: Path) -> Path:
    """30 hours at 80 °C: beyond every product's range and tolerance (at most 60 °C, 24 h)."""
    start = datetime.now(UTC) - timedelta(hours=40)
    rows = ["logger_id,timestamp,temperature_c,battery"]
    for half_hour in range(0, 80):
        at = start + timedelta(minutes=30 * half_hour)
        hot = 10 <= half_hour < 70
        rows.append(f"LG-TEST-1,{at.strftime('%Y-%m-%dT%H:%M:%SZ')},{80.0 if hot else 5.0},97")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_dispatch_then_receive_with_a_logger_excursion_and_a_discrepancy(
    visit_as: Any, tmp_path: Path
) -> None:
    sender = visit_as("coordinator")
    page = sender.open("/console/shipments?status=planned")
    expect(page.get_by_role("heading", name="Shipments", exact=True)).to_be_visible()
    depot_rows = page.locator('tr[data-status="planned"][data-source-kind="regional_reserve_depot"]')
    expect(depot_rows.first).to_be_visible()
    expect(page.locator("svg#shipments-map polyline.route").first).to_be_attached()
    sender.screenshot("shipments-list")

    row = depot_rows.last
    shipment_id = row.get_attribute("data-shipment")
    member = row.get_attribute("data-destination-member")
    assert shipment_id
    assert member
    row.get_by_role("link").click()
    status = page.get_by_test_id("status")
    expect(status).to_have_text("planned")
    expect(page.locator("#receipt")).to_have_count(0)
    page.get_by_role("button", name="Mark picked").click()
    expect(status).to_have_text("picked")
    page.get_by_label("Place").first.fill("Depot bay 2")
    page.get_by_role("button", name="Dispatch", exact=True).click()
    expect(status).to_have_text("dispatched")
    expect(page.locator("#receipt")).to_have_count(0)  # the coordinator sends; it does not receive
    history = page.get_by_test_id("history")
    expect(history).to_contain_text("Depot bay 2")
    expect(history).to_contain_text("(coordinator)")
    assert not sender.console_errors

    receiver = visit_as(f"fp.{member.lower()}")
    page = receiver.open(f"/console/shipments/{shipment_id}")
    status = page.get_by_test_id("status")
    expect(status).to_have_text("dispatched")
    page.get_by_label("Logger file", exact=True).set_input_files(str(heat_log(tmp_path / "logger.csv")))
    page.get_by_role("button", name="Upload logger file").click()
    expect(page.get_by_test_id("excursion")).to_have_text("excursion beyond tolerance")
    expect(page.get_by_test_id("temperature-log")).to_contain_text("beyond tolerance")

    form = page.locator("#receipt")
    line = form.locator("fieldset.receipt-line").first
    shipped = int(line.get_attribute("data-quantity") or "0")
    line.get_by_label("Accepted").fill(str(shipped - 1))
    expect(line.locator("[data-tally]")).to_have_text(f"Accounted for: {shipped - 1:,} of {shipped:,}")
    form.get_by_label("Received by (name)").fill("Store keeper Anan")
    form.get_by_role("button", name="Confirm receipt").click()
    error = line.locator('[data-error-for="lines[0].rejected"]')
    expect(error).to_contain_text("not accounted for")
    expect(line.get_by_label("Damaged")).to_have_attribute("aria-invalid", "true")
    expect(status).to_have_text("dispatched")  # refused whole: nothing changed

    line.get_by_label("Damaged").fill("1")
    form.get_by_role("button", name="Confirm receipt").click()
    expect(form.locator('[data-error-for="excursion_decision"]')).to_contain_text("excursion")
    expect(error).to_be_empty()
    receiver.console_errors.clear()  # the two refusals (422) were the point
    form.get_by_label(re.compile("^Quarantine")).check()
    form.get_by_role("button", name="Confirm receipt").click()
    expect(status).to_have_text("received")
    expect(page.locator("#receipt")).to_have_count(0)
    lines = page.get_by_test_id("lines")
    expect(lines).to_contain_text("1 damaged")
    expect(page.get_by_role("button", name="Release from quarantine")).to_be_visible()
    expect(page.locator("dl.facts")).to_contain_text("by Store keeper Anan")
    expect(page.get_by_test_id("history")).to_contain_text("delivered → received")
    receiver.screenshot("shipment-detail")
    assert not receiver.console_errors


def test_the_list_filters_overdue_shipments_and_fits_a_tablet(visit_as: Any) -> None:
    visit = visit_as("coordinator")
    page = visit.open("/console/shipments")
    page.get_by_label("On the road past its ETA").select_option("1")
    page.get_by_role("button", name="Show").click()
    page.wait_for_load_state("networkidle")
    rows = page.locator("tbody tr[data-shipment]")
    expect(rows.first).to_be_visible()
    assert rows.count() == page.locator('tbody tr[data-shipment] [data-testid="overdue"]').count()
    expect(page.locator("svg#shipments-map polyline.route.overdue").first).to_be_attached()
    page.set_viewport_size({"width": 820, "height": 1180})
    page.goto(visit.server.base_url + "/console/shipments")
    page.wait_for_load_state("networkidle")
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than a tablet"
    visit.screenshot("shipments-list-tablet")
    assert not visit.console_errors
