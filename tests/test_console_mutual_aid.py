"""The mutual-aid console page: who may open it, what the form offers, and the example files it
serves (valid CSV that the API plans, with sharing cutting the shortfall)."""

from __future__ import annotations

import csv
import io

from fastapi.testclient import TestClient

from tests.conftest import TEST_PASSWORD, Actor

FILES = ("demand", "supply", "distances")


def sign_in(client: TestClient, username: str) -> None:
    response = client.post("/api/v1/auth/login", json={"username": username, "password": TEST_PASSWORD})
    assert response.status_code == 200, response.text


def test_the_coordinator_gets_the_form_with_files_policy_and_examples(
    client: TestClient, actors: dict[str, Actor]
) -> None:
    sign_in(client, "coordinator")
    page = client.get("/console/mutual-aid")
    assert page.status_code == 200
    text = page.text
    assert 'id="mutual-aid-plan"' in text
    for name in FILES:
        assert f'<input type="file" id="file-{name}" name="{name}"' in text
        assert f'<label for="file-{name}">' in text
        assert f'href="/console/mutual-aid/example/{name}.csv"' in text
        assert f'data-error-for="{name}"' in text
    for field in (
        "delay_periods",
        "min_stock_fraction",
        "max_send_per_period",
        "no_send_while_short",
        "no_resend_periods",
        "no_worse_off",
        "whole_units",
        "objective",
    ):
        assert f'name="{field}"' in text, field
    assert 'value="equity"' in text
    assert "member,date,units" in text
    assert "/static/vendor/chartjs/chart.umd.min.js" in text
    assert "/static/js/mutual_aid.js" in text
    assert 'href="/console/mutual-aid" aria-current="page"' in text  # in the navigation
    assert "The plan over time (a chart per member)" in text


def test_roles_without_allocation_run_are_refused(client: TestClient, actors: dict[str, Actor]) -> None:
    anonymous = client.get("/console/mutual-aid", follow_redirects=False)
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == "/console/login?next=/console/mutual-aid"
    for username in ("researcher", "clinician.tha"):
        sign_in(client, username)
        for path in ("/console/mutual-aid", "/console/mutual-aid/example/demand.csv"):
            refused = client.get(path)
            assert refused.status_code == 403, (username, path)
            assert "Not for your role" in refused.text
        assert 'href="/console/mutual-aid"' not in client.get("/console/ledger").text


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_the_example_files_are_valid_and_sharing_cuts_the_shortfall(
    client: TestClient, actors: dict[str, Actor]
) -> None:
    sign_in(client, "coordinator")
    files = {}
    for name in FILES:
        response = client.get(f"/console/mutual-aid/example/{name}.csv")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        assert f'filename="mutual-aid-{name}.csv"' in response.headers["content-disposition"]
        files[name] = response.text
    assert client.get("/console/mutual-aid/example/other.csv").status_code == 404

    demand = _rows(files["demand"])
    members = {row["member"] for row in demand}
    days = sorted({row["date"] for row in demand})
    assert len(members) == 3
    assert len(days) == 10
    assert len(demand) == 30
    peaks = {
        m: max((r for r in demand if r["member"] == m), key=lambda r: float(r["units"]))["date"]
        for m in members
    }
    assert len(set(peaks.values())) == 3  # staggered
    assert "reserve" in {row["member"] for row in _rows(files["supply"])}
    assert {(r["from"], r["to"]) for r in _rows(files["distances"])}

    planned = client.post(
        "/api/v1/mutual-aid/plans",
        files={name: (f"{name}.csv", files[name].encode(), "text/csv") for name in FILES},
        data={"policy": '{"delay_periods": 1}'},
        headers=actors["coordinator"].headers,
    )
    assert planned.status_code == 200, planned.text
    plan = planned.json()
    assert sorted(plan["members"]) == sorted(members)
    assert plan["periods"] == days
    totals = plan["totals"]
    assert totals["shortfall_without_sharing"] > 0
    assert totals["shortfall"] < totals["shortfall_without_sharing"]
    assert totals["transfers"] > 0
    assert len(plan["rows"]) == 30


def test_a_bad_example_line_is_reported_with_its_line(client: TestClient, actors: dict[str, Actor]) -> None:
    sign_in(client, "coordinator")
    files = {name: client.get(f"/console/mutual-aid/example/{name}.csv").text for name in FILES}
    lines = files["demand"].splitlines()
    lines[3] = "North,2026-13-40,5"
    files["demand"] = "\n".join(lines) + "\n"
    refused = client.post(
        "/api/v1/mutual-aid/plans",
        files={name: (f"{name}.csv", files[name].encode(), "text/csv") for name in FILES},
        headers=actors["coordinator"].headers,
    )
    assert refused.status_code == 422
    errors = refused.json()["errors"]
    assert any(e["field"] == "demand.date" and e.get("line") == 4 for e in errors), errors
