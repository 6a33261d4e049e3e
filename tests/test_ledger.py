"""The transparency log on the database: every decision type becomes an entry in the same
transaction, the public API serves checkpoints and proofs that verify with the published keys,
and members' witnesses cosign consistent checkpoints and refuse a split view."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from healthmesh.accounts import service as accounts
from healthmesh.accounts.access import Role
from healthmesh.accounts.schemas import UserUpdate
from healthmesh.allocation import service as allocation
from healthmesh.config import Settings
from healthmesh.errors import Conflict
from healthmesh.ledger import collect, merkle, notes, service, witness_app
from healthmesh.ledger.models import LogEntry, LogNode
from healthmesh.logistics import service as logistics
from healthmesh.logistics.schemas import MoveIn, ReceiptIn
from healthmesh.registry import service as registry
from healthmesh.registry.enums import AuthorisationStatus
from healthmesh.registry.schemas import AuthorisationCreate, RecognitionCreate
from tests.conftest import Actor, Region
from tests.test_allocation_rounds import DAY, _world


def kinds(db: Session) -> list[str]:
    return list(db.scalars(select(LogEntry.kind).order_by(LogEntry.index)))


def last(db: Session, kind: str) -> dict[str, Any]:
    body = db.scalar(select(LogEntry.body).where(LogEntry.kind == kind).order_by(LogEntry.index.desc()))
    assert body is not None, f"no {kind} entry"
    document: dict[str, Any] = json.loads(body)
    return document


def test_an_approved_plan_and_its_shipments_are_logged(
    db: Session, region: Region, actors: dict[str, Actor]
) -> None:
    _world(db, region)
    coordinator = actors["coordinator"].principal
    plan = allocation.create_plan(db, coordinator, "equity", DAY)
    before = len(kinds(db))
    allocation.approve(db, coordinator, plan.id)
    approved = last(db, "allocation.plan_approved")
    assert (approved["plan"], approved["policy"], approved["units"]) == (plan.id, "equity", 600)
    assert approved["snapshot_digest"] == plan.snapshot_digest
    assert sorted(line["quantity"] for line in approved["lines"]) == [300, 300]
    assert len(kinds(db)) == before + 1

    shipment = next(
        s for s in logistics.plan_shipments(db, coordinator, plan.id) if s.destination.code == "THA-HO-0001"
    )
    for status in ("picked", "dispatched"):
        logistics.move(db, coordinator, shipment.id, MoveIn.model_validate({"status": status}))
    dispatched = last(db, "shipment.dispatched")
    assert (dispatched["shipment"], dispatched["from"], dispatched["to"]) == (
        shipment.code,
        "RRD-THA-CHAINAT",
        "THA-HO-0001",
    )
    assert dispatched["lines"] == [{"product": "DX-AGRDT-25", "lot": "RRMS-AG-01", "quantity": 300}]
    receipt = ReceiptIn.model_validate(
        {
            "lines": [
                {
                    "line_id": shipment.lines[0].id,
                    "accepted": 295,
                    "rejected": [{"reason": "damaged", "quantity": 5}],
                }
            ],
            "receiver": "Khun Pranee Sukjai, chief pharmacist",
        }
    )
    logistics.receive(db, actors["manager_tha"].principal, shipment.id, receipt)
    received = last(db, "shipment.received")
    assert received["lines"][0] == {
        "product": "DX-AGRDT-25",
        "lot": "RRMS-AG-01",
        "shipped": 300,
        "accepted": 295,
        "rejected": {"damaged": 5},
    }
    raw = db.scalar(select(LogEntry.body).where(LogEntry.kind == "shipment.received"))
    assert raw is not None
    assert "Pranee" not in raw  # the log is public: no receiver's name


def test_a_refused_approval_writes_no_entry(db: Session, region: Region, actors: dict[str, Actor]) -> None:
    _world(db, region)
    coordinator = actors["coordinator"].principal
    first = allocation.create_plan(db, coordinator, "equity", DAY)
    second = allocation.create_plan(db, coordinator, "efficiency", DAY)
    allocation.approve(db, coordinator, first.id)
    logged = kinds(db)
    savepoint = db.begin_nested()
    with pytest.raises(Conflict):
        allocation.approve(db, coordinator, second.id)
    savepoint.rollback()
    assert kinds(db) == logged


def test_regulatory_decisions_are_logged(db: Session, region: Region, actors: dict[str, Actor]) -> None:
    fp_tha = actors["fp_tha"].principal
    registry.upsert_authorisation(
        db,
        fp_tha,
        AuthorisationCreate.model_validate(
            {
                "product": "VAC-COMIRNATY",
                "jurisdiction": "THA",
                "status": AuthorisationStatus.NOT_AUTHORISED.value,
                "valid_from": "2026-12-01",
                "pathway": "Thai FDA safety review: licence withdrawn",
            }
        ),
    )
    changed = last(db, "registry.authorisation_changed")
    assert (changed["product"], changed["member"], changed["status"], changed["created"]) == (
        "VAC-COMIRNATY",
        "THA",
        "not_authorised",
        True,
    )
    registry.upsert_recognition(
        db,
        actors["fp_lao"].principal,
        RecognitionCreate.model_validate(
            {"jurisdiction": "LAO", "recognised_authority": "THA", "valid_from": "2026-12-01"}
        ),
    )
    recognised = last(db, "registry.recognition_changed")
    assert (recognised["member"], recognised["recognised_authority"]) == ("LAO", "THA")


def test_a_role_change_is_logged_without_personal_data(
    db: Session, region: Region, actors: dict[str, Actor]
) -> None:
    target = actors["clinician_tha"].principal
    accounts.update_user(
        db,
        actors["admin"].principal,
        target.username,
        UserUpdate.model_validate({"role": Role.FACILITY_MANAGER.value}),
    )
    changed = last(db, "account.role_changed")
    assert changed["account"] == target.user_id
    assert changed["from"] == {"role": "clinician", "scope": "THA-HO-0001"}
    assert changed["to"] == {"role": "facility_manager", "scope": "THA-HO-0001"}
    raw = db.scalar(select(LogEntry.body).where(LogEntry.kind == "account.role_changed"))
    assert raw is not None
    assert target.username not in raw


def _fill(db: Session, count: int) -> None:
    service.append_many(
        db,
        [
            ("shipment.dispatched", {"shipment": f"SHP-{n:06d}", "lines": [{"lot": f"L{n}", "quantity": n}]})
            for n in range(count)
        ],
    )


def test_the_public_api_serves_checkpoints_and_proofs_that_verify(
    client: TestClient, db: Session, settings: Settings
) -> None:
    _fill(db, 13)
    first = client.get("/api/v1/ledger/checkpoint")  # no credentials: the log is public
    assert first.status_code == 200, first.text
    _fill(db, 28)
    second = client.get("/api/v1/ledger/checkpoint").text
    keys = client.get("/api/v1/ledger/keys").json()
    log_key = notes.parse_verifier_key(keys["log"])
    body_1, signers = notes.open_note(first.text, [log_key])
    body_2, _ = notes.open_note(second, [log_key])
    assert signers == [log_key.name]
    old, new = notes.parse_checkpoint(body_1), notes.parse_checkpoint(body_2)
    assert (old.size, new.size, old.origin) == (13, 41, service.origin(settings))

    consistency = client.get("/api/v1/ledger/proofs/consistency", params={"old": 13, "new": 41}).json()
    merkle.verify_consistency(
        13, 41, old.root_hash, new.root_hash, [base64.b64decode(p) for p in consistency["proof"]]
    )
    entry = client.get("/api/v1/ledger/entries", params={"start": 17, "end": 18}).json()[0]
    assert bytes.fromhex(entry["leaf_hash"]) == merkle.leaf_hash(entry["body"].encode())
    inclusion = client.get("/api/v1/ledger/proofs/inclusion", params={"index": 17, "size": 41}).json()
    proof = [base64.b64decode(p) for p in inclusion["proof"]]
    merkle.verify_inclusion(merkle.leaf_hash(entry["body"].encode()), 17, 41, proof, new.root_hash)
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(merkle.leaf_hash(entry["body"].encode()), 18, 41, proof, new.root_hash)
    beyond = client.get("/api/v1/ledger/proofs/inclusion", params={"index": 3, "size": 99})
    assert beyond.status_code == 422
    assert beyond.json()["errors"][0]["field"] == "size"


def test_the_log_refuses_to_sign_a_tree_inconsistent_with_its_last_checkpoint(
    db: Session, settings: Settings
) -> None:
    signer = service.load_signer(settings)
    _fill(db, 10)
    service.publish_checkpoint(db, signer)
    _fill(db, 5)
    node = db.get(LogNode, (3, 0))  # the first eight leaves, already covered by checkpoint 10
    assert node is not None
    node.hash = bytes(32)
    db.flush()
    with pytest.raises(Conflict, match="not consistent with checkpoint 10"):
        service.publish_checkpoint(db, signer)


@pytest.fixture
def witness(tmp_path: Any, settings: Settings) -> tuple[TestClient, str]:
    """A member's witness (Lao PDR's) trusting this log, as an in-process HTTP service."""
    skey, vkey = witness_app.generate_witness_key("witness.moh.gov.la")
    log_key = service.load_signer(settings).verifier().vkey
    app = witness_app.create_app(
        notes.parse_signer_key(skey), witness_app.WitnessState(tmp_path / "w.json", [log_key])
    )
    return TestClient(app), vkey


def test_witnesses_cosign_consistent_checkpoints_and_refuse_a_split_view(
    client: TestClient, db: Session, settings: Settings, witness: tuple[TestClient, str]
) -> None:
    witness_client, vkey = witness
    service.register_witness(db, vkey, "http://witness.moh.gov.la")

    def post(url: str, body: str) -> tuple[int, str, str]:
        response = witness_client.post(url.removeprefix("http://witness.moh.gov.la"), content=body)
        return response.status_code, response.headers.get("content-type", ""), response.text

    for count in (7, 12):
        _fill(db, count)
        results = collect.collect(db, settings, post)
        assert [(r.ok, r.detail) for r in results] == [(True, f"cosigned size {service.size(db)}")]
    note = client.get("/api/v1/ledger/checkpoint", params={"cosigned": "true"}).text
    keys = client.get("/api/v1/ledger/keys").json()
    assert keys["witnesses"] == [vkey]
    body, signers = notes.open_note(note, [notes.parse_verifier_key(keys["log"])])
    assert signers == [service.origin(settings)]
    assert notes.parse_checkpoint(body).size == 19
    cosignature = [line for line in note.splitlines() if "witness.moh.gov.la" in line]
    notes.verify_cosignature(body, cosignature[0], notes.parse_verifier_key(vkey))

    signer = service.load_signer(settings)
    origin = signer.name
    forged_root = merkle.leaf_hash(b"a different history")
    forged = notes.sign_note(notes.checkpoint_body(origin, 19, forged_root), signer.name, signer.private_key)
    split = witness_client.post(witness_app.ADD_CHECKPOINT, content=f"old 19\n\n{forged}")
    assert split.status_code == 409  # same size, another root: the witness will not cosign both
    bigger = notes.sign_note(notes.checkpoint_body(origin, 25, forged_root), signer.name, signer.private_key)
    proof = service.proof_lines(service.consistency_proof(db, 12, 19))  # a proof for other sizes
    inconsistent = witness_client.post(
        witness_app.ADD_CHECKPOINT, content="old 19\n" + "\n".join(proof) + f"\n\n{bigger}"
    )
    assert inconsistent.status_code == 422
    stale = witness_client.post(witness_app.ADD_CHECKPOINT, content=f"old 7\n\n{forged}")
    assert (stale.status_code, stale.text) == (409, "19\n")


def test_a_policy_change_is_logged_and_used_by_the_next_round(
    client: TestClient, db: Session, region: Region, actors: dict[str, Actor]
) -> None:
    url = "/api/v1/allocation/policies/covax"
    body = {"cap_share": 0.3, "urgency_weights": {"emergency": 6}, "note": "Regional council, 28 Nov 2026"}
    refused = client.put(url, json=body, headers=actors["fp_tha"].headers)
    assert refused.status_code == 403
    assert "allocation.policy_changed" not in kinds(db)
    changed = client.put(url, json=body, headers=actors["coordinator"].headers)
    assert changed.status_code == 200, changed.text
    assert (changed.json()["cap_share"], changed.json()["version"]) == (0.3, 1)
    assert changed.json()["urgency_weights"] == {"routine": 1.0, "urgent": 2.0, "emergency": 6.0}
    entry = last(db, "allocation.policy_changed")
    assert entry["policy"] == "covax"
    assert entry["changes"]["cap_share"] == {"from": "0.35", "to": "0.3"}
    assert entry["changes"]["urgency_weights"]["to"]["emergency"] == "6.0"
    again = client.put(url, json=body, headers=actors["coordinator"].headers)
    assert again.status_code == 422  # nothing to change: no second entry
    assert kinds(db).count("allocation.policy_changed") == 1
    listed = client.get("/api/v1/allocation/policies", headers=actors["auditor"].headers).json()
    assert (listed["policies"]["covax"]["version"], listed["policies"]["equity"]["version"]) == (1, 0)
    _world(db, region)
    plan = allocation.create_plan(db, actors["coordinator"].principal, "covax", DAY)
    assert plan.policy["cap_share"] == 0.3
    unknown = client.put(
        "/api/v1/allocation/policies/pro_rata", json=body, headers=actors["coordinator"].headers
    )
    assert unknown.status_code == 404
