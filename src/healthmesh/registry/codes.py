"""Validation of identifiers from outside standards: GS1 GTINs, ISO 3166-1 codes, IANA time zones.

Pure functions, no database. GTIN check digits follow the GS1 General Specifications
(section 7.9, mod-10 with weights 3 and 1 from the right); there is no maintained Apache-compatible
library for just this, and it is a dozen lines.
"""

from __future__ import annotations

import zoneinfo
from functools import cache

from iso3166 import countries_by_alpha3

GTIN_LENGTHS = (8, 12, 13, 14)


def gtin_check_digit(body: str) -> int:
    """The check digit for a GTIN without its last digit."""
    total = 0
    for position, char in enumerate(reversed(body)):
        total += int(char) * (3 if position % 2 == 0 else 1)
    return (10 - total % 10) % 10


def normalise_gtin(raw: str) -> str:
    """A valid GTIN-8/12/13/14 as a 14-digit string; ValueError naming what is wrong otherwise."""
    digits = raw.strip().replace(" ", "")
    if not digits.isdigit():
        raise ValueError("a GTIN has digits only")
    if len(digits) not in GTIN_LENGTHS:
        raise ValueError(f"a GTIN has 8, 12, 13 or 14 digits, not {len(digits)}")
    expected = gtin_check_digit(digits[:-1])
    if int(digits[-1]) != expected:
        raise ValueError(f"wrong GTIN check digit: {digits[-1]}, expected {expected}")
    return digits.zfill(14)


def make_gtin(company_prefix: str, item_reference: int, length: int = 13) -> str:
    """A GTIN built from a GS1 company prefix and an item reference, with its check digit."""
    body = f"{company_prefix}{item_reference:0{length - 1 - len(company_prefix)}d}"
    return (body + str(gtin_check_digit(body))).zfill(14)


def is_iso3(code: str) -> bool:
    return code in countries_by_alpha3


def validate_iso3(code: str) -> str:
    normalised = code.strip().upper()
    if not is_iso3(normalised):
        raise ValueError(f"unknown ISO 3166-1 alpha-3 code {code!r}")
    return normalised


@cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def validate_time_zone(name: str) -> str:
    cleaned = name.strip()
    if cleaned not in _zones():
        raise ValueError(f"unknown IANA time zone {name!r}")
    return cleaned
