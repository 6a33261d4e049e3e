"""An allocation round's input as JSON: the documented, versioned snapshot format.

`healthmesh allocate snapshot` writes it, `healthmesh allocate run` reads it, and an approved
plan keeps it with its SHA-256 digest, so anyone can re-run the engine on exactly what it saw.
The digest is over the canonical JSON (sorted keys, no whitespace).
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from healthmesh.allocation.model import (
    Eligibility,
    MemberInfo,
    NeedLine,
    ProductInfo,
    Round,
    SupplyLot,
)

SCHEMA = "healthmesh.allocation.snapshot/1"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LotJSON(_Frozen):
    id: str = Field(description="'lot:<id>' of the lot at its facility")
    product: str
    source: str = Field(description="facility code")
    source_member: str
    quantity: int = Field(ge=0, description="units available to share")
    expiry: date | None
    lat: float
    lon: float
    origin: Literal["reserve", "pledge"]


class NeedJSON(_Frozen):
    id: str = Field(description="'need:<id>'")
    product: str
    member: str
    facility: str | None
    lat: float
    lon: float
    quantity: int = Field(ge=0, description="units still to allocate")
    urgency: str
    coverage: float | None
    population_served: int
    order: int
    storage: list[str]


class ProductJSON(_Frozen):
    code: str
    storage_condition: str
    pack_size: int
    discrete: bool


class MemberJSON(_Frozen):
    iso3: str
    population: int
    income_group: str


class WindowJSON(_Frozen):
    start: date
    end: date | None


class EligibilityJSON(_Frozen):
    product: str
    member: str
    windows: list[WindowJSON]
    basis: str


class Snapshot(_Frozen):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: Literal["healthmesh.allocation.snapshot/1"] = Field(
        default="healthmesh.allocation.snapshot/1", alias="schema"
    )
    day: date
    lots: list[LotJSON]
    needs: list[NeedJSON]
    products: list[ProductJSON]
    members: list[MemberJSON]
    eligibility: list[EligibilityJSON]

    def canonical(self) -> str:
        return json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":"))

    def digest(self) -> str:
        return hashlib.sha256(self.canonical().encode()).hexdigest()

    def to_round(self) -> Round:
        return Round(
            day=self.day,
            lots=tuple(SupplyLot(**lot.model_dump()) for lot in self.lots),
            needs=tuple(
                NeedLine(**{**need.model_dump(), "storage": frozenset(need.storage)}) for need in self.needs
            ),
            products={p.code: ProductInfo(**p.model_dump()) for p in self.products},
            members={m.iso3: MemberInfo(**m.model_dump()) for m in self.members},
            eligibility={
                (e.product, e.member): Eligibility(tuple((w.start, w.end) for w in e.windows), e.basis)
                for e in self.eligibility
            },
        )


def parse(text: str) -> Snapshot:
    return Snapshot.model_validate_json(text)
