"""The console works with no internet: no page asks any host but the platform itself."""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import urlparse

from playwright.sync_api import Error as PlaywrightError

PAGES = (
    "/console",
    "/console/members/THA",
    "/console/shortages",
    "/console/needs",
    "/console/allocation",
    "/console/shipments",
    "/console/ledger",
    "/console/admin",
    "/console/login",
    "/",
    "/docs",
)


def test_no_page_requests_another_host(visit_as: Any) -> None:
    visit = visit_as("admin")
    own = urlparse(visit.server.base_url).netloc
    for path in PAGES:
        page = visit.open(path)
        assert page.url.startswith(visit.server.base_url), path
        outside = page.evaluate(  # what the page loads (links a reader may follow are not requests)
            """(own) => [...document.querySelectorAll(
                    'script[src],link[href],img[src],iframe[src],source[src]')]
                .map((el) => el.getAttribute('src') || el.getAttribute('href'))
                .filter((url) => /^(https?:)?\\/\\//.test(url))
                .filter((url) => new URL(url, location.href).host !== own)""",
            own,
        )
        assert outside == [], f"{path} links to other hosts: {outside}"
    assert visit.hosts == {own}, f"requests went to {sorted(visit.hosts)}"


def test_a_request_to_another_host_would_be_caught(visit_as: Any) -> None:
    """The guard itself: a request to another host is recorded (and blocked here, so the
    machine's closed network is never touched). The pages' Content-Security-Policy also stops
    scripts from reaching other hosts; a navigation is how one could still leave."""
    visit = visit_as("admin")
    visit.context.route(
        "**/*", lambda route: route.abort() if "example.org" in route.request.url else route.continue_()
    )
    visit.open("/console")
    with contextlib.suppress(PlaywrightError):  # the aborted navigation raises; being recorded is the point
        visit.page.goto("http://example.org/tracker")
    assert "example.org" in visit.hosts
    visit.hosts.discard("example.org")  # leave the fixture's own check green: the catch is the point
