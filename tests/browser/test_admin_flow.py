"""Administration in the browser: the administrator changes an account's role (a scope the role
does not allow is refused next to its field) and sees it; a CSV import with a bad line lists the
line's problem and imports nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import expect


def test_the_admin_changes_a_role_and_sees_it(visit_as: Any) -> None:
    visit = visit_as("admin")
    page = visit.open("/console/admin")
    expect(page.get_by_role("heading", name="Accounts")).to_be_visible()
    row = page.locator('tr[data-user="clinician.phl"]')
    expect(row.locator('[data-col="role"]')).to_have_text("clinician")

    form = page.locator("#change-user")
    form.get_by_label("Account").select_option("clinician.phl")
    form.get_by_label("New role").select_option("regional_coordinator")
    form.locator("#cu-jurisdiction").select_option(label="Philippines (PHL)")
    form.get_by_role("button", name="Change role and scope").click()
    expect(form.locator('[data-error-for="jurisdiction"]')).to_contain_text("region-wide")
    expect(form.locator("#cu-jurisdiction")).to_have_attribute("aria-invalid", "true")
    visit.console_errors.clear()  # the refusal (422) was the point

    form.locator("#cu-jurisdiction").select_option("")
    form.get_by_label("New role").select_option("researcher")
    form.get_by_role("button", name="Change role and scope").click()
    expect(page.get_by_test_id("changed")).to_have_text("clinician.phl is now researcher (PHL).")
    expect(row.locator('[data-col="role"]')).to_have_text("researcher")
    expect(row.locator('[data-col="scope"]')).to_have_text("PHL")
    visit.screenshot("admin")

    # Back as it was, through the row's own link: a clinician of the same hospital.
    row.get_by_role("link", name="Change clinician.phl").click()
    expect(form.get_by_label("Account")).to_have_value("clinician.phl")
    form.get_by_label("New role").select_option("clinician")
    form.get_by_label("Facility code").fill("PHL-HO-0001")
    form.get_by_role("button", name="Change role and scope").click()
    expect(page.get_by_test_id("changed")).to_have_text("clinician.phl is now clinician (PHL-HO-0001).")
    assert not visit.console_errors


def test_an_import_with_a_bad_line_lists_it_and_imports_nothing(visit_as: Any, tmp_path: Path) -> None:
    visit = visit_as("admin")
    page = visit.open("/console/admin?registry=facilities")
    expect(page.get_by_role("heading", name="Import facilities from CSV")).to_be_visible()
    template = page.request.get(visit.server.base_url + "/api/v1/facilities/template.csv")
    header = template.text().strip()
    assert header.startswith("code,jurisdiction,kind,name,latitude,longitude")
    good = (
        "THA-HO-9901,THA,hospital,Test Hospital One,13.7,100.5,Asia/Bangkok,,true,false,false,4,false,,true"
    )
    bad = "THA-HO-9902,THA,hospital,Test Hospital Two,123,100.5,Asia/Bangkok,,true,false,false,4,false,,true"
    upload = tmp_path / "facilities.csv"
    upload.write_text(f"{header}\n{good}\n{bad}\n", encoding="utf-8")

    form = page.locator("#import-form")
    form.get_by_label("CSV file").set_input_files(str(upload))
    form.get_by_role("button", name="Import facilities").click()
    problems = form.locator("[data-problems] li")
    expect(problems).to_have_count(1)
    expect(problems.first).to_contain_text("Line 3, latitude:")
    expect(form.locator("[data-form-status]")).to_contain_text("nothing was imported")
    visit.console_errors.clear()  # the refusal (422) was the point
    visit.screenshot("admin-import-error")

    page.get_by_label("Name or exact code").fill("THA-HO-9901")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_test_id("registry")).to_contain_text("None.")  # the good line was not applied

    # A file without problems: the existing record is updated in place.
    page = visit.open("/console/admin?registry=products")
    export = page.request.get(visit.server.base_url + "/api/v1/products/export.csv").text().splitlines()
    again = tmp_path / "products.csv"
    again.write_text("\n".join(export[:2]) + "\n", encoding="utf-8")
    page.locator("#import-form").get_by_label("CSV file").set_input_files(str(again))
    page.get_by_role("button", name="Import products").click()
    expect(page.get_by_role("status").filter(has_text="Imported")).to_have_text(
        "Imported: 0 created, 1 updated."
    )
    assert not visit.console_errors
