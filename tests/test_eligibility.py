"""May product P be used in member J on date D, and on what basis?"""

from __future__ import annotations

from datetime import date

import pytest
from fastapi.testclient import TestClient

from healthmesh.registry.eligibility import AuthorisationRecord, Basis, RecognitionRecord, decide
from healthmesh.registry.enums import AuthorisationStatus, WhoListing
from tests.conftest import Actor

AUTHORISED_IN_THA = AuthorisationRecord("THA", AuthorisationStatus.AUTHORISED, date(2021, 1, 1), None, "full")
REFUSED_IN_LAO = AuthorisationRecord("LAO", AuthorisationStatus.NOT_AUTHORISED, date(2022, 1, 1), None)
EUA_IN_SGP = AuthorisationRecord(
    "SGP", AuthorisationStatus.EMERGENCY_USE, date(2021, 1, 1), date(2023, 12, 31), "EUA"
)
LAO_RECOGNISES_THA_DEVICES = RecognitionRecord(
    "LAO", "THA", ("biomedical_equipment",), date(2020, 3, 1), None
)
LAO_RECOGNISES_WHO_EUL = RecognitionRecord("LAO", "WHO-EUL", (), date(2020, 3, 1), date(2024, 12, 31))


def _decide(
    jurisdiction: str,
    day: date,
    *,
    category: str = "biomedical_equipment",
    who: WhoListing | None = None,
    authorisations: tuple[AuthorisationRecord, ...] = (AUTHORISED_IN_THA, EUA_IN_SGP),
    recognitions: tuple[RecognitionRecord, ...] = (LAO_RECOGNISES_THA_DEVICES, LAO_RECOGNISES_WHO_EUL),
) -> tuple[bool, Basis, str | None]:
    result = decide(
        product_code="P",
        category=category,
        who_listing=who,
        jurisdiction=jurisdiction,
        day=day,
        authorisations=authorisations,
        recognitions=recognitions,
    )
    return result.allowed, result.basis, result.authority


@pytest.mark.parametrize(
    ("case", "kwargs", "expected"),
    [
        (
            "own authorisation",
            {"jurisdiction": "THA", "day": date(2024, 1, 1)},
            (True, Basis.AUTHORISED, "THA"),
        ),
        (
            "before it starts",
            {"jurisdiction": "THA", "day": date(2020, 12, 31)},
            (False, Basis.NO_BASIS, None),
        ),
        (
            "emergency use in force",
            {"jurisdiction": "SGP", "day": date(2023, 12, 31)},
            (True, Basis.EMERGENCY_USE, "SGP"),
        ),
        (
            "emergency use lapsed",
            {"jurisdiction": "SGP", "day": date(2024, 1, 1)},
            (False, Basis.NO_BASIS, None),
        ),
        (
            "recognised member's decision",
            {"jurisdiction": "LAO", "day": date(2024, 1, 1)},
            (True, Basis.RECOGNITION, "THA"),
        ),
        (
            "recognition outside its categories",
            {"jurisdiction": "LAO", "day": date(2024, 1, 1), "category": "medicine"},
            (False, Basis.NO_BASIS, None),
        ),
        (
            "WHO EUL recognised",
            {
                "jurisdiction": "LAO",
                "day": date(2024, 6, 1),
                "category": "vaccine",
                "who": WhoListing.EMERGENCY_USE_LISTING,
            },
            (True, Basis.RECOGNITION, "WHO-EUL"),
        ),
        (
            "WHO recognition expired",
            {
                "jurisdiction": "LAO",
                "day": date(2025, 1, 1),
                "category": "vaccine",
                "who": WhoListing.EMERGENCY_USE_LISTING,
            },
            (False, Basis.NO_BASIS, None),
        ),
        (
            "explicit refusal beats recognition",
            {
                "jurisdiction": "LAO",
                "day": date(2024, 1, 1),
                "authorisations": (AUTHORISED_IN_THA, REFUSED_IN_LAO),
            },
            (False, Basis.REFUSED, "LAO"),
        ),
    ],
)
def test_decide(case: str, kwargs: dict[str, object], expected: tuple[bool, Basis, str | None]) -> None:
    assert _decide(**kwargs) == expected, case  # type: ignore[arg-type]


def test_reliance_names_the_authority_relied_on() -> None:
    reliance = AuthorisationRecord(
        "BRN", AuthorisationStatus.RELIANCE, date(2021, 1, 1), None, "abridged", relied_on_authority="SGP"
    )
    result = decide(
        product_code="MED-DEXA",
        category="medicine",
        who_listing=None,
        jurisdiction="BRN",
        day=date(2024, 1, 1),
        authorisations=[reliance],
        recognitions=[],
    )
    assert (result.allowed, result.basis, result.authority) == (True, Basis.RELIANCE, "SGP")
    assert "reliance" in result.explanation


def test_eligibility_endpoint_on_the_region(client: TestClient, actors: dict[str, Actor]) -> None:
    headers = actors["clinician_tha"].headers

    def ask(product: str, iso3: str, day: str) -> dict[str, object]:
        response = client.get(
            "/api/v1/eligibility",
            params={"product": product, "jurisdiction": iso3, "date": day},
            headers=headers,
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    vent_lao = ask("BME-VENT-ICU", "LAO", "2024-03-01")
    assert (vent_lao["allowed"], vent_lao["basis"]) == (False, "no_basis")  # THA never authorised it
    comirnaty_lao = ask("VAC-COMIRNATY", "LAO", "2024-03-01")
    assert (comirnaty_lao["allowed"], comirnaty_lao["basis"], comirnaty_lao["authority"]) == (
        True,
        "recognition",
        "WHO-EUL",
    )
    vent_sgp = ask("BME-VENT-ICU", "SGP", "2024-03-01")
    assert (vent_sgp["allowed"], vent_sgp["basis"]) == (False, "not_authorised")
    comirnaty_tha = ask("VAC-COMIRNATY", "THA", "2023-06-01")
    assert comirnaty_tha["basis"] == "emergency_use"
    assert ask("VAC-COMIRNATY", "THA", "2024-06-01")["allowed"] is False
    unknown = client.get(
        "/api/v1/eligibility", params={"product": "NOPE", "jurisdiction": "THA"}, headers=headers
    )
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"] == "product"
