"""A focal point works the needs queue: endorses one submitted need, rejects another with a reason
(an empty reason is refused next to the field first), and sees each status change on the page,
while another viewer's queue follows live. Screenshots of the member, shortage and needs pages,
on a laptop and on a tablet."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import Page, expect

TABLET = {"width": 820, "height": 1180}
CHARTS_DRAWN = """() => {
  const canvases = [...document.querySelectorAll('canvas[data-chart="line"]')];
  return canvases.length > 0 && window.Chart && canvases.every((c) => window.Chart.getChart(c));
}"""


def _fits(page: Page) -> None:
    """Nothing wider than the window: wide tables scroll inside their own box."""
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"the page is {overflow}px wider than the window"


def _row(page: Page, need: str) -> Any:
    return page.locator(f'[data-testid="needs-queue"] tr[data-need="{need}"]')


def test_focal_point_endorses_and_rejects_submitted_needs(visit_as: Any) -> None:
    visit = visit_as("fp.tha")
    page = visit.open("/console/needs?status=submitted")
    expect(page.get_by_role("heading", name="Needs queue")).to_be_visible()
    waiting = page.locator('[data-testid="needs-queue"] tr[data-need]').evaluate_all(
        "rows => rows.map((row) => row.dataset.need)"
    )
    assert len(waiting) >= 2, "the demo region has submitted needs in Thailand"
    endorse, reject = waiting[0], waiting[1]

    # A coordinator watching the outstanding queue sees the endorsement arrive, without reloading.
    watcher = visit_as("coordinator")
    watching = watcher.open("/console/needs?member=THA")
    expect(watching.locator("[data-live-status]")).to_contain_text("live")
    expect(_row(watching, endorse).get_by_test_id("need-status")).to_have_text("submitted")

    page = visit.open("/console/needs")  # outstanding needs: an endorsed need stays in view
    expect(_row(page, endorse).get_by_test_id("need-status")).to_have_text("submitted")
    page.get_by_role("button", name=f"Endorse need #{endorse}").click()
    expect(page.get_by_test_id("needs-status")).to_have_text(
        f"Need #{endorse} endorsed: it is now open to regional allocation."
    )
    expect(page.get_by_test_id("needs-status")).to_be_focused()
    expect(_row(page, endorse).get_by_test_id("need-status")).to_have_text("open")
    expect(_row(page, endorse)).to_have_class(re.compile("just-changed"))
    expect(page.get_by_role("button", name=f"Endorse need #{endorse}")).to_have_count(0)
    expect(_row(watching, endorse).get_by_test_id("need-status")).to_have_text("open", timeout=10_000)

    # Reject, by keyboard: open the form, try without a reason, then give one.
    row = _row(page, reject)
    row.locator("summary").focus()
    page.keyboard.press("Enter")
    reason = page.get_by_label(f"Reason for rejecting #{reject}")
    expect(reason).to_be_focused()
    page.keyboard.press("Enter")  # submits the empty form
    expect(row.locator('[data-error-for="reason"]')).not_to_be_empty()
    expect(reason).to_have_attribute("aria-invalid", "true")
    expect(_row(page, reject).get_by_test_id("need-status")).to_have_text("submitted")
    visit.screenshot("needs-reject-reason")
    # A live update arriving while the reason is being written waits: nothing is swapped away.
    reason.fill("Dup")
    page.evaluate("window.htmx.trigger('#needs-queue', 'refresh')")
    page.wait_for_timeout(1500)
    expect(reason).to_have_value("Dup")
    expect(reason).to_be_focused()
    visit.console_errors.clear()  # the refused rejection's 422 was the point
    reason.fill("Duplicate of an earlier request from the same hospital")
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("needs-status")).to_have_text(
        f"Need #{reject} rejected: Duplicate of an earlier request from the same hospital"
    )
    expect(_row(page, reject)).to_have_count(0)  # no longer outstanding
    expect(_row(page, endorse).get_by_test_id("need-status")).to_have_text("open")

    page = visit.open("/console/needs?status=rejected")
    expect(_row(page, reject).get_by_test_id("need-status")).to_contain_text("rejected")
    expect(_row(page, reject)).to_contain_text("Duplicate of an earlier request")
    page = visit.open("/console/needs?status=submitted")
    expect(_row(page, endorse)).to_have_count(0)
    expect(_row(page, reject)).to_have_count(0)
    visit.screenshot("needs")
    assert not visit.console_errors
    assert not watcher.console_errors


def test_member_and_shortage_pages_on_a_laptop_and_a_tablet(visit_as: Any) -> None:
    visit = visit_as("fp.tha")
    page = visit.open("/console/members/THA")
    expect(page.get_by_role("heading", level=1)).to_have_text("Thailand THA")
    expect(page.get_by_test_id("stock-table").locator("tbody tr").first).to_be_visible()
    page.wait_for_function(CHARTS_DRAWN)
    assert page.locator('canvas[data-chart="line"]').count() == 4
    visit.screenshot("member")
    page.set_viewport_size(TABLET)
    page.wait_for_function(CHARTS_DRAWN)
    _fits(page)
    visit.screenshot("member-tablet")

    coordinator = visit_as("coordinator")
    page = coordinator.open("/console/shortages")
    board = page.get_by_test_id("shortage-board")
    expect(board.locator("tbody tr").first).to_be_visible()
    first = board.locator("tbody tr").first.get_attribute("data-product")
    expect(page.locator("[data-live-status]")).to_contain_text("live")
    coordinator.screenshot("shortages")
    page.get_by_label("Product").select_option(str(first))
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(rf"product={first}"))
    products = board.locator("tbody tr").evaluate_all("rows => rows.map((row) => row.dataset.product)")
    assert products
    assert set(products) == {first}
    page.set_viewport_size(TABLET)
    _fits(page)
    coordinator.screenshot("shortages-tablet")

    page = visit.open("/console/needs")
    page.set_viewport_size(TABLET)
    _fits(page)
    visit.screenshot("needs-tablet")
    assert not visit.console_errors
    assert not coordinator.console_errors


def test_a_facility_sees_why_there_is_no_board(visit_as: Any) -> None:
    visit = visit_as("manager.tha")
    page = visit.open("/console/shortages")
    expect(page.get_by_test_id("facility-note")).to_contain_text("member- and region-wide roles")
    page = visit.open("/console/needs")
    expect(page.get_by_test_id("needs-queue")).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("^Endorse"))).to_have_count(0)
