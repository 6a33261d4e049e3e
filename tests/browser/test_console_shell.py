"""Signing in, the overview, and what each role sees in the navigation."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

NAV_BY_ROLE = {
    "coordinator": [
        "Overview",
        "Shortages",
        "Needs",
        "Allocation",
        "Mutual aid",
        "Shipments",
        "Transparency log",
        "Administration",
    ],
    "fp.tha": [
        "Overview",
        "Shortages",
        "Needs",
        "Allocation",
        "Shipments",
        "Transparency log",
        "Administration",
    ],
    "manager.tha": ["Overview", "Shortages", "Needs", "Shipments", "Transparency log"],
    "researcher": ["Overview", "Shortages", "Transparency log"],
}


def test_sign_in_through_the_form_lands_on_the_overview(visit_as: Any) -> None:
    visit = visit_as(None)
    page = visit.open("/console")
    expect(page).to_have_url(visit.server.base_url + "/console/login?next=/console")
    page.get_by_label("Username").fill("coordinator")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("[data-form-status]")).to_contain_text("wrong username or password")
    visit.console_errors.clear()  # the refused sign-in's 401 was the point
    page.get_by_label("Password").fill("healthmesh-demo-2026")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Regional overview")).to_be_visible()
    expect(page.get_by_test_id("who")).to_contain_text("Regional Coordination Centre")
    expect(page.locator("svg#region-map path.member").first).to_be_attached()
    visit.screenshot("overview")
    assert not visit.console_errors


def test_each_role_sees_only_its_pages(visit_as: Any) -> None:
    for username, expected in NAV_BY_ROLE.items():
        visit = visit_as(username)
        page = visit.open("/console/shipments")
        labels = page.locator("nav.console-nav a").all_inner_texts()
        assert labels == expected, username
        if "Shipments" not in expected:
            expect(page.get_by_role("heading", name="Not for your role")).to_be_visible()
