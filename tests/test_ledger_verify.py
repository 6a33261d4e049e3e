"""Offline verification of the whole log (`ledger export` / `ledger verify`): an untampered
export verifies clean, and tampering with an entry, a stored hash, a checkpoint's root, size or
signature, or a cosignature, in the bundle file or in the database before export, is caught and
named (which check, which entry or checkpoint). On both backends."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from healthmesh.cli import app, export_bundle, fetch_bundle
from healthmesh.config import Settings, load_settings
from healthmesh.db import make_engine, make_sessionmaker, unit_of_work
from healthmesh.ledger import bundle, notes, service, witness_app
from healthmesh.ledger.bundle import Bundle, Failure
from healthmesh.ledger.models import LogCheckpoint, LogCosignature, LogEntry, LogNode

runner = CliRunner()
WITNESS = "witness.moh.gov.la"
WITNESS_URL = "http://witness.moh.gov.la"
SIZES = (13, 27, 40)
TAMPERED = 17  # a shipment.received entry, between checkpoints 13 and 27
Where = tuple[str, str]


# --- a realistic log ----------------------------------------------------------------------------

FACILITIES = ("THA-HO-0001", "LAO-HO-0001", "SGP-HO-0001", "RRD-THA-CHAINAT", "KHM-HO-0003")
LOTS = (("VAC-COMIRNATY", "FK2291"), ("DX-AGRDT-25", "RRMS-AG-01"), ("BME-VENT-ICU", "SN-88120"))


def _payload(i: int) -> tuple[str, dict[str, Any]]:
    """Entry `i` of a week of regional decisions, in the shapes the services log."""
    product, lot = LOTS[i % len(LOTS)]
    source, destination = FACILITIES[i % 5], FACILITIES[(i + 2) % 5]
    route = {"shipment": f"SHP-2026-{i:05d}", "plan": 100 + i // 5, "from": source, "to": destination}
    lines = [{"product": product, "lot": lot, "quantity": 40 * (i % 7 + 1)}]
    match i % 5:
        case 0:
            return "allocation.plan_approved", {
                "plan": 100 + i // 5,
                "policy": "equity",
                "day": f"2026-03-{i // 5 + 2:02d}",
                "snapshot_digest": hashlib.sha256(f"snapshot {i}".encode()).hexdigest(),
                "emergency_waiver": False,
                "units": 40 * (i % 7 + 1),
                "lines": [{"source": source, "lot": lot, "need": 900 + i, "quantity": 40 * (i % 7 + 1)}],
            }
        case 1:
            dispatched = f"2026-03-{i // 5 + 3:02d}T06:30:00+00:00"
            return "shipment.dispatched", {
                **route,
                "mode": "road",
                "dispatched_at": dispatched,
                "lines": lines,
            }
        case 2:
            return "shipment.received", {
                **route,
                "mode": "air",
                "received_at": f"2026-03-{i // 5 + 4:02d}T14:05:00+00:00",
                "excursion_decision": "accept",
                "signature_sha256": hashlib.sha256(f"pod {i}".encode()).hexdigest(),
                "lines": [{**lines[0], "accepted": lines[0]["quantity"], "rejected": []}],
            }
        case 3:
            return "registry.authorisation_changed", {
                "product": product,
                "member": ("THA", "LAO", "SGP")[i % 3],
                "status": "emergency_use",
                "pathway": "EUA",
                "relied_on_authority": "WHO-EUL",
                "valid_from": "2026-03-01",
                "valid_to": None,
            }
        case _:
            return "account.role_changed", {
                "account": 10 + i,
                "from": {"role": "clinician", "scope": "THA-HO-0001"},
                "to": {"role": "facility_manager", "scope": "THA-HO-0001"},
                "by_role": "admin",
            }


@dataclass(frozen=True)
class Log:
    log_key: str
    witness_key: str


def build_log(db: Session, settings: Settings) -> Log:
    """40 entries, checkpoints at 13, 27 and 40, and a witness's cosignature on the last."""
    signer = service.load_signer(settings)
    for i in range(SIZES[-1]):
        service.append(db, *_payload(i))
        if i + 1 in SIZES:
            service.publish_checkpoint(db, signer)
    skey, witness_key = witness_app.generate_witness_key(WITNESS)
    witness = notes.parse_signer_key(skey)
    registered = service.register_witness(db, witness_key, WITNESS_URL)
    latest = service.checkpoint_at(db, SIZES[-1])
    line = notes.cosign(notes.parse_note(latest.note).body, WITNESS, witness.private_key, 1_772_000_000)
    service.record_cosignature(db, registered, latest, line)
    return Log(signer.verifier().vkey, witness_key)


@pytest.fixture
def log(db: Session, settings: Settings) -> Log:
    return build_log(db, settings)


def _where(failures: list[Failure]) -> list[Where]:
    return sorted((f.check, f.where) for f in failures)


# --- tampering, as text edits of the exported data -----------------------------------------------


def _forged(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def _tampered_body(body: str) -> str:
    """The same receipt with ten times the quantity accepted, still canonical JSON."""
    document = json.loads(body)
    document["lines"][0]["accepted"] *= 10
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _note_line(note: str, line: int, value: str) -> str:
    lines = note.split("\n")
    lines[line] = value
    return "\n".join(lines)


def _flip_signature(note: str, name: str) -> str:
    """Flip the last bit of `name`'s signature line, keeping its key id."""
    lines = note.split("\n")
    for n, line in enumerate(lines):
        if line.startswith(f"\u2014 {name} "):
            prefix, encoded = line.rsplit(" ", 1)
            raw = bytearray(base64.b64decode(encoded))
            raw[-1] ^= 1
            lines[n] = f"{prefix} {base64.b64encode(bytes(raw)).decode()}"
            return "\n".join(lines)
    raise AssertionError(f"no signature by {name}")


def _checkpoint(data: dict[str, Any], size: int) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in data["checkpoints"] if c["size"] == size)
    return found


def _edit_body(data: dict[str, Any]) -> None:
    item = data["entries"][TAMPERED]
    item["body"] = _tampered_body(item["body"])


def _edit_leaf_hash(data: dict[str, Any]) -> None:
    data["entries"][TAMPERED]["leaf_hash"] = _forged("leaf").hex()


def _edit_signed_root(data: dict[str, Any]) -> None:
    cp = _checkpoint(data, 27)
    cp["note"] = _note_line(cp["note"], 2, base64.b64encode(_forged("root")).decode())


def _edit_stored_root(data: dict[str, Any]) -> None:
    _checkpoint(data, 27)["root_hash"] = _forged("root").hex()


def _edit_signed_size_down(data: dict[str, Any]) -> None:
    cp = _checkpoint(data, 27)
    cp["note"] = _note_line(cp["note"], 1, "26")


def _edit_signed_size_beyond(data: dict[str, Any]) -> None:
    cp = _checkpoint(data, 27)
    cp["note"] = _note_line(cp["note"], 1, "41")


def _edit_stored_size(data: dict[str, Any]) -> None:
    _checkpoint(data, 27)["size"] = 28


def _edit_log_signature(data: dict[str, Any]) -> None:
    cp = _checkpoint(data, 27)
    cp["note"] = _flip_signature(cp["note"], data["origin"])


def _edit_cosignature(data: dict[str, Any]) -> None:
    cp = _checkpoint(data, 40)
    cp["note"] = _flip_signature(cp["note"], WITNESS)


def _edit_origin(data: dict[str, Any]) -> None:
    data["origin"] = "other.healthmesh.local/log"


def _edit_kind(data: dict[str, Any]) -> None:
    data["entries"][5]["kind"] = "shipment.cancelled"  # it records an approval


ENTRY_EDITED = [
    ("checkpoint root", "checkpoint 27"),
    ("checkpoint root", "checkpoint 40"),
    ("entry hash", f"entry {TAMPERED}"),
    ("inclusion", f"entry {TAMPERED} in checkpoint 40"),
]
SIGNED_ROOT_EDITED = [
    ("checkpoint root", "checkpoint 27"),  # the log stored another root than the note signs
    ("checkpoint root", "checkpoint 27"),  # and the entries hash to another
    ("checkpoint signature", "checkpoint 27"),
    ("consistency", "checkpoints 13 -> 27"),
    ("consistency", "checkpoints 27 -> 40"),
]

BUNDLE_TAMPERING: list[tuple[str, Callable[[dict[str, Any]], None], list[Where]]] = [
    ("stored entry", _edit_body, ENTRY_EDITED),
    ("stored hash", _edit_leaf_hash, [("entry hash", f"entry {TAMPERED}")]),
    ("checkpoint root in the note", _edit_signed_root, SIGNED_ROOT_EDITED),
    ("checkpoint root stored", _edit_stored_root, [("checkpoint root", "checkpoint 27")]),
    (
        "checkpoint size in the note",
        _edit_signed_size_down,
        [
            ("checkpoint signature", "checkpoint 26"),
            ("checkpoint size", "checkpoint 26"),  # listed as 27
            ("checkpoint size", "checkpoint 26"),  # its root is the root of 27 entries
            ("consistency", "checkpoints 13 -> 26"),
            ("consistency", "checkpoints 26 -> 40"),
        ],
    ),
    (
        "checkpoint size beyond the entries",
        _edit_signed_size_beyond,
        [
            ("checkpoint signature", "checkpoint 41"),
            ("checkpoint size", "checkpoint 41"),  # listed as 27
            ("checkpoint size", "checkpoint 41"),  # the bundle has 40 entries
        ],
    ),
    ("checkpoint size stored", _edit_stored_size, [("checkpoint size", "checkpoint 27")]),
    ("checkpoint signature", _edit_log_signature, [("checkpoint signature", "checkpoint 27")]),
    ("cosignature", _edit_cosignature, [("cosignature", f"checkpoint 40, witness {WITNESS}")]),
    ("origin", _edit_origin, [("origin", f"checkpoint {size}") for size in SIZES]),
    ("entry kind", _edit_kind, [("entry kind", "entry 5")]),
]


def _tamper(clean: Bundle, edit: Callable[[dict[str, Any]], None]) -> Bundle:
    data = json.loads(bundle.dumps(clean))
    edit(data)
    return bundle.from_json(data)


# --- the bundle, from a session ------------------------------------------------------------------


def test_an_untampered_export_verifies_clean(db: Session, settings: Settings, log: Log) -> None:
    exported = export_bundle(db, settings)
    assert bundle.verify(exported) == []
    assert bundle.loads(bundle.dumps(exported)) == exported
    assert (exported.log_key, exported.witness_keys) == (log.log_key, (log.witness_key,))
    assert [c.size for c in exported.checkpoints] == list(SIZES)
    assert [e.index for e in exported.entries] == list(range(40))
    assert bundle.summarize(exported) == bundle.Summary(40, 3, 40, 1, 1)
    raw = json.loads(bundle.dumps(exported))
    assert raw["schema"] == "healthmesh.ledger.bundle/1"
    stored = db.get(LogEntry, TAMPERED)
    assert stored is not None
    assert raw["entries"][TAMPERED]["body"] == stored.body  # the canonical text, byte for byte
    assert raw["checkpoints"][-1]["note"].count("\n\u2014 ") == 2  # the log's signature and the witness's


@pytest.mark.parametrize(
    ("edit", "expected"),
    [pytest.param(edit, expected, id=name) for name, edit, expected in BUNDLE_TAMPERING],
)
def test_tampering_with_the_bundle_is_caught_and_named(
    db: Session,
    settings: Settings,
    log: Log,
    edit: Callable[[dict[str, Any]], None],
    expected: list[Where],
) -> None:
    assert _where(bundle.verify(_tamper(export_bundle(db, settings), edit))) == sorted(expected)


def test_failure_details_say_what_was_found(db: Session, settings: Settings, log: Log) -> None:
    clean = export_bundle(db, settings)
    failures = bundle.verify(_tamper(clean, _edit_signed_size_down))
    assert (
        Failure("checkpoint size", "checkpoint 26", "listed as size 27, the signed note says 26") in failures
    )
    assert (
        Failure(
            "checkpoint size",
            "checkpoint 26",
            "the signed root is the root of the first 27 entries, not of 26",
        )
        in failures
    )
    beyond = bundle.verify(_tamper(clean, _edit_signed_size_beyond))
    assert Failure("checkpoint size", "checkpoint 41", "signs 41 entries, the bundle has 40") in beyond
    leaf = next(f for f in bundle.verify(_tamper(clean, _edit_leaf_hash)) if f.check == "entry hash")
    assert f"the log stored {_forged('leaf').hex()[:16]}" in leaf.detail


def test_every_failure_is_reported_not_just_the_first(db: Session, settings: Settings, log: Log) -> None:
    def everything(data: dict[str, Any]) -> None:
        for edit in (_edit_body, _edit_stored_root, _edit_log_signature, _edit_cosignature, _edit_kind):
            edit(data)

    found = _where(bundle.verify(_tamper(export_bundle(db, settings), everything)))
    for expected in (
        ("entry hash", f"entry {TAMPERED}"),
        ("inclusion", f"entry {TAMPERED} in checkpoint 40"),
        ("checkpoint root", "checkpoint 27"),
        ("checkpoint signature", "checkpoint 27"),
        ("cosignature", f"checkpoint 40, witness {WITNESS}"),
        ("entry kind", "entry 5"),
    ):
        assert expected in found


def test_a_deleted_or_appended_entry_is_caught(db: Session, settings: Settings, log: Log) -> None:
    clean = export_bundle(db, settings)

    def delete(data: dict[str, Any]) -> None:
        del data["entries"][30]

    found = _where(bundle.verify(_tamper(clean, delete)))
    assert ("entry index", "entry 31") in found
    assert ("checkpoint size", "checkpoint 40") in found  # signs 40 entries, 39 are left
    assert ("inclusion", "entries 27..38") in found  # beyond the last checkpoint still checkable

    def append(data: dict[str, Any]) -> None:
        body = data["entries"][1]["body"]
        leaf = hashlib.sha256(b"\x00" + body.encode()).hexdigest()
        data["entries"].append({"index": 40, "kind": "shipment.dispatched", "body": body, "leaf_hash": leaf})

    assert _where(bundle.verify(_tamper(clean, append))) == [("inclusion", "entries 40..40")]


def test_unreadable_input_is_an_error_not_a_failure() -> None:
    for text, message in (
        ("{", "not JSON"),
        ('{"schema": "other/1"}', "not a healthmesh.ledger.bundle/1 bundle"),
        (
            '{"schema": "healthmesh.ledger.bundle/1", "origin": "o", "log_key": "k", "witness_keys": [], '
            '"entries": [{"index": "0", "kind": "k", "body": "{}", "leaf_hash": ""}], "checkpoints": []}',
            r"entries\[0\].index is not a int",
        ),
    ):
        with pytest.raises(bundle.BundleError, match=message):
            bundle.loads(text)


# --- tampering with the database before export ---------------------------------------------------


def _db_edit_body(db: Session) -> None:
    stored = db.get(LogEntry, TAMPERED)
    assert stored is not None
    db.execute(update(LogEntry).where(LogEntry.index == TAMPERED).values(body=_tampered_body(stored.body)))


def _db_edit_leaf(db: Session) -> None:
    db.execute(
        update(LogNode).where(LogNode.level == 0, LogNode.index == TAMPERED).values(hash=_forged("leaf"))
    )


def _db_edit_stored_root(db: Session) -> None:
    db.execute(update(LogCheckpoint).where(LogCheckpoint.size == 27).values(root_hash=_forged("root")))


def _db_edit_signed_root(db: Session) -> None:
    stored = db.get(LogCheckpoint, 27)
    assert stored is not None
    note = _note_line(stored.note, 2, base64.b64encode(_forged("root")).decode())
    db.execute(update(LogCheckpoint).where(LogCheckpoint.size == 27).values(note=note))


def _db_edit_cosignature(db: Session) -> None:
    row = db.get(LogCosignature, (40, WITNESS))
    assert row is not None
    line = _flip_signature(row.line, WITNESS)
    db.execute(update(LogCosignature).values(line=line))


DB_TAMPERING: list[tuple[str, Callable[[Session], None], list[Where]]] = [
    ("log_entries.body", _db_edit_body, ENTRY_EDITED),
    ("log_nodes.hash of a leaf", _db_edit_leaf, [("entry hash", f"entry {TAMPERED}")]),
    ("log_checkpoints.root_hash", _db_edit_stored_root, [("checkpoint root", "checkpoint 27")]),
    ("log_checkpoints.note", _db_edit_signed_root, SIGNED_ROOT_EDITED),
    ("log_cosignatures.line", _db_edit_cosignature, [("cosignature", f"checkpoint 40, witness {WITNESS}")]),
]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [pytest.param(edit, expected, id=name) for name, edit, expected in DB_TAMPERING],
)
def test_tampering_with_the_database_is_caught_in_its_export(
    db: Session, settings: Settings, log: Log, edit: Callable[[Session], None], expected: list[Where]
) -> None:
    edit(db)
    db.expire_all()
    assert _where(bundle.verify(export_bundle(db, settings))) == sorted(expected)


# --- from a server's public API ------------------------------------------------------------------


def test_a_bundle_fetched_from_the_api_is_the_export(
    client: TestClient, db: Session, settings: Settings, log: Log
) -> None:
    fetched = fetch_bundle(client, sizes=[13, 27])
    exported = export_bundle(db, settings)
    assert fetched.entries == exported.entries
    assert [c.note for c in fetched.checkpoints] == [c.note for c in exported.checkpoints]
    assert (fetched.origin, fetched.log_key, fetched.witness_keys) == (
        exported.origin,
        exported.log_key,
        exported.witness_keys,
    )
    assert bundle.verify(fetched) == []


def test_verify_a_url(
    client: TestClient,
    db: Session,
    settings: Settings,
    log: Log,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setattr("healthmesh.cli._http_client", lambda url: nullcontext(client))
    saved = tmp_path / "fetched.json"
    result = runner.invoke(
        app, ["ledger", "verify", "http://testserver", "--checkpoint", "13", "--save", str(saved)]
    )
    assert result.exit_code == 0, result.output
    assert "OK" in result.output
    assert "40 entries" in result.output
    assert "1 cosignature(s)" in result.output
    assert [c.size for c in bundle.loads(saved.read_text()).checkpoints] == [13, 40]

    _db_edit_body(db)
    db.expire_all()
    tampered = runner.invoke(app, ["ledger", "verify", "http://testserver"])
    assert tampered.exit_code == 1, tampered.output
    assert f"entry {TAMPERED}" in tampered.output


def test_an_unreachable_server_is_unreadable() -> None:
    result = runner.invoke(app, ["ledger", "verify", "http://127.0.0.1:9/"])
    assert result.exit_code == 2, result.output
    assert "unreadable" in result.output


# --- the command line on a committed database ----------------------------------------------------


@pytest.fixture
def cli_env(fresh_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("HEALTHMESH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HEALTHMESH_DATABASE_URL", fresh_database_url)
    invoked = runner.invoke(app, ["db", "upgrade"])
    assert invoked.exit_code == 0, invoked.output
    return fresh_database_url


def _invoke(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


@contextmanager
def _committed(url: str) -> Iterator[Session]:
    """One committed transaction on the CLI's database, as another process would make it."""
    engine = make_engine(url)
    try:
        with unit_of_work(make_sessionmaker(engine)) as db:
            yield db
    finally:
        engine.dispose()


def test_export_and_verify_commands(cli_env: str, tmp_path: Path) -> None:
    log_key = _invoke("ledger", "keygen").strip().splitlines()[-1]
    with _committed(cli_env) as db:
        log = build_log(db, load_settings())
    assert log.log_key == log_key  # the command made the key the log signs with
    out = tmp_path / "ledger.json"
    assert "40 entries, 3 checkpoints (latest size 40), 1 cosignature(s)" in _invoke(
        "ledger", "export", "--out", str(out)
    )
    clean = _invoke("ledger", "verify", str(out))
    assert "OK asean.healthmesh.local/log: 40 entries, 3 checkpoints (latest size 40) consistent" in clean

    data = json.loads(out.read_text())
    _edit_body(data)
    _edit_log_signature(data)
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(data))
    output = _invoke("ledger", "verify", str(tampered), code=1)
    for words in ("entry hash", f"entry {TAMPERED}", "inclusion", f"entry {TAMPERED} in checkpoint 40"):
        assert words in output
    assert "checkpoint signature" in output
    assert "checkpoint 27" in output

    not_json = tmp_path / "garbage.json"
    not_json.write_text("not a bundle")
    assert "unreadable" in _invoke("ledger", "verify", str(not_json), code=2)
    _invoke("ledger", "verify", str(tmp_path / "missing.json"), code=2)


def test_database_tampering_shows_in_the_next_export(cli_env: str, tmp_path: Path) -> None:
    with _committed(cli_env) as db:
        build_log(db, load_settings())
    with _committed(cli_env) as db:
        _db_edit_body(db)
    out = tmp_path / "ledger.json"
    _invoke("ledger", "export", "--out", str(out))
    output = _invoke("ledger", "verify", str(out), code=1)
    assert f"entry {TAMPERED}" in output
    assert "checkpoint 27" in output


def test_witness_commands_end_to_end(cli_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A member makes a witness key, the log registers it, `ledger cosign` gathers its
    cosignature over HTTP (in process here), and the export verifies with it."""
    key_file = tmp_path / "witness.skey"
    vkey = _invoke("witness", "keygen", "--name", WITNESS, "--out", str(key_file)).strip().splitlines()[-1]
    assert key_file.stat().st_mode & 0o777 == 0o600
    _invoke("witness", "keygen", "--name", WITNESS, "--out", str(key_file), code=1)  # never overwritten
    log_key = _invoke("ledger", "keygen").strip().splitlines()[-1]
    _invoke("ledger", "add-witness", log_key, WITNESS_URL, code=1)  # a note key cannot cosign
    assert WITNESS in _invoke("ledger", "add-witness", vkey, WITNESS_URL)

    state = witness_app.WitnessState(tmp_path / "witness-state.json", [log_key])
    witness = TestClient(witness_app.create_app(notes.parse_signer_key(key_file.read_text().strip()), state))

    def post(url: str, body: str) -> tuple[int, str, str]:
        response = witness.post(url.removeprefix(WITNESS_URL), content=body)
        return response.status_code, response.headers.get("content-type", ""), response.text

    monkeypatch.setattr("healthmesh.ledger.collect._http_post", post)
    with _committed(cli_env) as db:
        for i in range(5):
            service.append(db, *_payload(i))
    assert "cosigned size 5" in _invoke("ledger", "cosign")
    out = tmp_path / "ledger.json"
    _invoke("ledger", "export", "--out", str(out))
    assert "1 cosignature(s) from 1 witness(es)" in _invoke("ledger", "verify", str(out))
