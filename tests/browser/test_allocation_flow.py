"""An allocation round in the console: compare policies (tables and charts), run a round with a
progress indicator, read a need's explanation on the new plan, approve it."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

SLOW = 60_000  # a round or a comparison on the demo region takes seconds, not minutes


def test_the_coordinator_compares_runs_reads_and_approves_a_round(visit_as: Any) -> None:
    visit = visit_as("coordinator")
    page = visit.open("/console/allocation")
    expect(page.get_by_role("heading", name="Allocation rounds")).to_be_visible()
    expect(page.get_by_test_id("plans")).to_contain_text("approved")  # the demo's round

    compare = page.locator("#compare-policies")
    compare.get_by_label("fcfs").check()
    compare.get_by_role("button", name="Compare").click()
    results = page.locator("#compare-results")
    expect(results).to_be_visible(timeout=SLOW)
    summary = results.get_by_test_id("compare-summary")
    expect(summary.locator("tbody tr")).to_have_count(5)  # equity, covax, efficiency, pro_rata, fcfs
    expect(summary).to_contain_text("fcfs")
    expect(results.get_by_test_id("compare-members").locator("tbody tr").first).to_be_attached()
    expect(results.get_by_test_id("compare-income").locator("tbody tr").first).to_be_attached()
    for chart in ("chart-member", "chart-income", "chart-min", "chart-gini"):
        drawn = page.evaluate("(id) => !!window.Chart.getChart(document.getElementById(id))", chart)
        assert drawn, chart
    expect(compare.locator("[data-form-status]")).to_have_text("Compared 5 policies.")
    visit.screenshot("allocation")

    run = page.locator("#run-round")
    run.get_by_label("Policy").select_option("equity")
    page.evaluate(  # note that the progress indicator showed while the round ran
        """() => {
          const box = document.querySelector('#run-round [data-progress]');
          new MutationObserver(() => { if (!box.hidden) sessionStorage.setItem('sawProgress', 'yes'); })
            .observe(box, { attributes: true });
        }"""
    )
    run.get_by_role("button", name="Run the round").click()
    page.wait_for_url(re.compile(r"/console/allocation/\d+$"), timeout=SLOW)
    plan_id = int(page.url.rsplit("/", 1)[1])
    assert plan_id > 1
    assert page.evaluate("() => sessionStorage.getItem('sawProgress')") == "yes"
    expect(page.get_by_role("heading", name=f"Allocation plan {plan_id}")).to_be_visible()
    expect(page.get_by_test_id("plan-status")).to_have_text("proposed")
    expect(page.get_by_test_id("fill-by-member").locator("tbody tr").first).to_be_attached()
    assert page.evaluate("() => !!window.Chart.getChart(document.getElementById('plan-chart-member'))")

    explanation = page.get_by_test_id("explanation").first
    expect(explanation).not_to_be_empty()
    assert len(explanation.inner_text()) > 20  # plain words, not a code
    visit.screenshot("allocation-plan")

    stale = visit.context.new_page()  # the same plan in another tab, opened before the decision
    stale.goto(page.url)
    page.get_by_role("button", name=f"Approve plan {plan_id}").click()
    expect(page.get_by_test_id("plan-status")).to_have_text("approved", timeout=SLOW)
    expect(page.get_by_role("button", name=f"Approve plan {plan_id}")).to_have_count(0)

    stale.get_by_role("button", name=f"Approve plan {plan_id}").click()  # too late: a 409
    refused = stale.locator("#approve-plan [data-form-status]")
    expect(refused).to_have_text(f"plan {plan_id} is approved")
    expect(refused).to_have_class("error")
    stale.close()
    visit.console_errors.clear()  # the refused approval's 409 was the point
    page.get_by_role("link", name="All plans").click()
    row = page.get_by_test_id("plans").locator(
        "tr", has=page.get_by_role("link", name=f"Plan {plan_id}", exact=True)
    )
    expect(row).to_contain_text("approved")
    assert not visit.console_errors
