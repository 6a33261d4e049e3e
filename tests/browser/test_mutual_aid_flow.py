"""Mutual aid in the console: download the page's example files, upload them, plan (with a
progress indicator), read the totals, a chart per member and the transfers; then a bad demand
file, whose line error shows next to it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import expect

SLOW = 60_000
FILES = ("demand", "supply", "distances")


def test_the_coordinator_plans_mutual_aid_from_the_example_files(visit_as: Any, tmp_path: Path) -> None:
    visit = visit_as("coordinator")
    page = visit.open("/console/mutual-aid")
    expect(page.get_by_role("heading", name="Mutual aid", exact=True)).to_be_visible()
    form = page.locator("#mutual-aid-plan")

    paths = {}
    for name in FILES:  # through the page's own links
        with page.expect_download() as download:
            form.get_by_role("link", name=f"Example {name} file").click()
        paths[name] = tmp_path / f"{name}.csv"
        download.value.save_as(paths[name])
    assert paths["demand"].read_text().startswith("member,date,units")

    for name, label in (
        ("demand", "Demand (CSV)"),
        ("supply", "Supply (CSV)"),
        ("distances", "Distances (CSV)"),
    ):
        form.get_by_label(label).set_input_files(paths[name])
    form.get_by_label("Delay (periods in transit)").fill("1")
    page.evaluate(  # note that the progress indicator showed while the plan was solved
        """() => {
          const box = document.querySelector('#mutual-aid-plan [data-progress]');
          new MutationObserver(() => { if (!box.hidden) sessionStorage.setItem('sawProgress', 'yes'); })
            .observe(box, { attributes: true });
        }"""
    )
    form.get_by_role("button", name="Plan").click()
    results = page.locator("#mutual-aid-results")
    expect(results).to_be_visible(timeout=SLOW)
    assert page.evaluate("() => sessionStorage.getItem('sawProgress')") == "yes"
    expect(form.locator("[data-form-status]")).to_contain_text("Planned: shortfall")

    totals = results.get_by_test_id("mutual-aid-totals")
    expect(totals).to_contain_text("Shortfall without sharing")
    expect(totals).to_contain_text("LP, optimal")
    without = float(totals.locator("tr", has_text="Shortfall without sharing").locator("td").inner_text())
    with_sharing = float(totals.locator("tr", has_text="Shortfall with sharing").locator("td").inner_text())
    assert with_sharing < without

    charts = results.get_by_test_id("member-chart")
    expect(charts).to_have_count(3)
    for member in ("North", "Central", "South"):
        figure = results.locator(f'figure[data-member="{member}"]')
        expect(figure.locator("figcaption")).to_have_text(member)
        drawn = figure.evaluate("(node) => !!window.Chart.getChart(node.querySelector('canvas'))")
        assert drawn, member
        expect(figure.get_by_test_id("member-table").locator("tbody tr")).to_have_count(10)
    transfers = results.get_by_test_id("transfers")
    expect(transfers.locator("tbody tr").first).to_be_attached()
    assert not visit.console_errors
    visit.screenshot("mutual-aid")

    lines = paths["demand"].read_text().splitlines()
    lines[3] = "North,2026-13-40,5"
    bad = tmp_path / "bad-demand.csv"
    bad.write_text("\n".join(lines) + "\n")
    form.get_by_label("Demand (CSV)").set_input_files(bad)
    form.get_by_role("button", name="Plan").click()
    slot = form.locator('[data-file-slot="demand"] [data-error-for="demand"]')
    expect(slot).to_contain_text("line 4", timeout=SLOW)
    expect(slot).to_contain_text("not a date")
    expect(form.locator('[data-file-slot="supply"] [data-error-for="supply"]')).to_be_empty()
    expect(form.get_by_label("Demand (CSV)")).to_have_attribute("aria-invalid", "true")
    expect(form.locator("[data-form-status]")).to_have_class("error")
    visit.console_errors.clear()  # the refused plan's 422 was the point


def test_the_coordinator_stores_a_plan_and_approves_its_first_period(visit_as: Any, tmp_path: Path) -> None:
    visit = visit_as("coordinator")
    page = visit.open("/console/mutual-aid")
    held = page.request.get(
        visit.server.base_url + "/api/v1/stock/balances?facility=THA-NW-0001&limit=500"
    ).json()["items"]
    product, free = max(((b["product"], b["available"]) for b in held), key=lambda item: item[1])
    lend = min(free, 40)
    assert lend >= 2, held
    days = ["2026-12-07", "2026-12-14", "2026-12-21"]
    (tmp_path / "demand.csv").write_text(
        "member,date,units\n"
        + "".join(f"LAO,{d},{u}\n" for d, u in zip(days, (lend, lend, 0), strict=True))
        + "".join(f"THA,{d},{u}\n" for d, u in zip(days, (0, 0, lend), strict=True))
    )
    (tmp_path / "supply.csv").write_text(f"member,units\nTHA,{lend}\n")
    (tmp_path / "distances.csv").write_text("from,to,distance,delay\nTHA,LAO,650,0\n")
    form = page.locator("#mutual-aid-plan")
    for name, label in (
        ("demand", "Demand (CSV)"),
        ("supply", "Supply (CSV)"),
        ("distances", "Distances (CSV)"),
    ):
        form.get_by_label(label).set_input_files(tmp_path / f"{name}.csv")
    form.get_by_label("Delay (periods in transit)").fill("0")
    form.get_by_label("Store this plan so it can be approved").check()
    form.get_by_label("Product it moves").select_option(product)
    form.get_by_role("button", name="Plan").click()

    expect(form.locator("[data-form-status]")).to_contain_text("Planned", timeout=SLOW)
    approval = page.locator("#mutual-aid-results [data-approval]")
    expect(approval).to_be_visible(timeout=SLOW)
    expect(approval.locator("[data-stored]")).to_contain_text(f"product {product}")
    moves = approval.get_by_test_id("first-moves")
    expect(moves.locator("tbody tr")).to_have_count(1)
    expect(moves.locator("tbody tr")).to_contain_text(f"THALAO{lend}")
    approval.get_by_role("button", name="Approve: ship the first period's moves").click()
    expect(approval.locator("[data-approval-status]")).to_have_text(
        "Approved: 1 shipments planned.", timeout=SLOW
    )
    shipments = approval.get_by_test_id("approved-shipments")
    expect(shipments.locator("tbody tr")).to_contain_text(f"THA-NW-0001LAO-NW-0001{lend}")
    after = page.request.get(
        f"{visit.server.base_url}/api/v1/stock/balances?facility=THA-NW-0001&product={product}"
    ).json()["items"]
    assert sum(b["reserved"] for b in after) >= lend
    assert not visit.console_errors
    visit.screenshot("mutual-aid-approved")

    # approved once: the button stays disabled (a second approval would be refused with a 409)
    expect(approval.get_by_role("button", name="Approve: ship the first period's moves")).to_be_disabled()
