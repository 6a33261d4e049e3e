"""The tlog-witness add-checkpoint decision (c2sp.org/tlog-witness).

The first tests replay real requests from FiloSottile/torchwood's witness tests
(internal/witness/witness_test.go, TestRace and TestTooManyProofs): a Sigsum log's checkpoints
of sizes 1, 3 and 5, signed by Go tooling, with their consistency proofs, and the witness key
seed used there. The zero-size table follows torchwood's TestZeroSize.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

import pytest

from healthmesh.ledger.merkle import EMPTY_ROOT, MemoryStore, consistency_proof, leaf_hash, root
from healthmesh.ledger.notes import (
    ALG_ED25519,
    Verifier,
    checkpoint_body,
    open_note,
    sign_note,
    signer,
    verifier_key,
    verify_cosignature,
)
from healthmesh.ledger.witnessing import (
    SIZE_CONTENT_TYPE,
    Cosigned,
    LogState,
    Refused,
    RequestError,
    add_checkpoint,
    handle_add_checkpoint,
    parse_add_checkpoint,
)

ORIGIN = "sigsum.org/v1/tree/4d6d8825a6bb689d459628312889dfbb0bcd41b5211d9e1ce768b0ff0309e562"
LOG_KEY = bytes.fromhex("ffdc2d4d98e4124d3feaf788c0c2f9abfd796083d1f0495437f302ec79cf100f")
WITNESS_SEED = bytes.fromhex("31ffc2116ecbe003acaa800ab70757bd7d53206e3febef6a6d0796d95530b34f")
WITNESS_PUBLIC = bytes.fromhex("64848ad8abed6e85981b3b3875b252b8767ebb4b02f703aca3b1e71bbd6a8e50")
DASH = "\u2014"

REQUEST_1 = f"""old 0

{ORIGIN}
1
KgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=

{DASH} {ORIGIN} UgIom7fPZTqpxWWhyjWduBvTvGVqsokMbqTArsQilegKoFBJQjUFAmQ0+YeSPM3wfUQMFSzVnnNuWRTYrajXpNUbIQY=
"""
REQUEST_1_TO_3 = f"""old 1
KgEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=
KgIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=

{ORIGIN}
3
RcCI1Nk56ZcSmIEfIn0SleqtV7uvrlXNccFx595Iwl0=

{DASH} {ORIGIN} UgIom2VbtIcdFbwFAy1n7s6IkAxIY6J/GQOTuZF2ORV39d75cbAj2aQYwyJre36kezNobZs4SUUdrcawfAB8WVrx6go=
"""
REQUEST_1_TO_5 = f"""old 1
KgEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=
+fUDV+k970B4I3uKrqJM4aP1lloPZP8mvr2Z4wRw2LI=
KgQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=

{ORIGIN}
5
QrtXrQZCCvpIgsSmOsah7HdICzMLLyDfxToMql9WTjY=

{DASH} {ORIGIN} UgIomw/EOJmWi0i1FQsOj+etB7F8IccFam/jgd6wzRns4QPVmyEZtdvl1U2KEmLOZ/ASRcWJi0tW90dJWAShei7sDww=
"""

WITNESS = signer("example.com", WITNESS_SEED)
NOW = 1_700_000_000


def sigsum_log() -> LogState:
    return LogState(ORIGIN, (Verifier(ORIGIN, ALG_ED25519, LOG_KEY),))


def cosigned(result: Cosigned | Refused) -> Cosigned:
    assert isinstance(result, Cosigned), result
    return result


def refused(result: Cosigned | Refused, status: int) -> Refused:
    assert isinstance(result, Refused), result
    assert result.status == status, result.reason
    assert DASH not in result.body  # never a cosignature in a refusal
    return result


def assert_cosignature_verifies(request_body: str, result: Cosigned, now: int = NOW) -> None:
    note = parse_add_checkpoint(request_body).note
    verifier = WITNESS.cosignature_verifier()
    body, names = open_note(note + result.body, [verifier])  # as the spec suggests clients do
    assert names == [WITNESS.name]
    assert verify_cosignature(body, result.body, verifier) == now


def test_witness_key_is_torchwoods() -> None:
    assert WITNESS.public_key == WITNESS_PUBLIC


def test_state_from_stored_vkeys() -> None:
    state = LogState.from_vkeys(ORIGIN, [verifier_key(ORIGIN, LOG_KEY)], 1, b"\x2a" + bytes(31))
    assert state.verifiers == sigsum_log().verifiers
    cosigned(handle_add_checkpoint(REQUEST_1_TO_3, {ORIGIN: state}, WITNESS, NOW))


def test_parse_real_request() -> None:
    request = parse_add_checkpoint(REQUEST_1_TO_5)
    assert request.old_size == 1
    assert len(request.proof) == 3
    assert request.checkpoint.origin == ORIGIN
    assert request.checkpoint.size == 5
    assert request.note.startswith(ORIGIN + "\n5\n")


def test_real_requests_cosign_then_refuse_a_rollback() -> None:
    """TestRace's sequence: 0 -> 1, 1 -> 5, then 1 -> 3 is a conflict at size 5."""
    logs = {ORIGIN: sigsum_log()}
    first = cosigned(handle_add_checkpoint(REQUEST_1, logs, WITNESS, NOW))
    assert_cosignature_verifies(REQUEST_1, first)
    assert (first.state.size, first.state.root_hash) == (1, b"\x2a" + bytes(31))

    logs[ORIGIN] = first.state
    second = cosigned(handle_add_checkpoint(REQUEST_1_TO_5.encode(), logs, WITNESS, NOW + 1))
    assert_cosignature_verifies(REQUEST_1_TO_5, second, NOW + 1)
    assert second.state.size == 5

    logs[ORIGIN] = second.state
    late = refused(handle_add_checkpoint(REQUEST_1_TO_3, logs, WITNESS, NOW + 2), 409)
    assert (late.body, late.content_type) == ("5\n", SIZE_CONTENT_TYPE)


def test_real_request_from_size_one_to_three() -> None:
    state = cosigned(handle_add_checkpoint(REQUEST_1, {ORIGIN: sigsum_log()}, WITNESS, NOW)).state
    result = cosigned(handle_add_checkpoint(REQUEST_1_TO_3, {ORIGIN: state}, WITNESS, NOW))
    assert result.state.size == 3


def test_tampered_proof_is_422_and_evidence() -> None:
    state = cosigned(handle_add_checkpoint(REQUEST_1, {ORIGIN: sigsum_log()}, WITNESS, NOW)).state
    body = REQUEST_1_TO_5.replace("+fUDV+k970B4", "+fUDV+k970B5")
    result = refused(handle_add_checkpoint(body, {ORIGIN: state}, WITNESS, NOW), 422)
    assert result.evidence
    assert "consistency proof does not verify" in result.reason


def test_unknown_origin_is_404() -> None:
    refused(handle_add_checkpoint(REQUEST_1, {}, WITNESS, NOW), 404)
    other = LogState("example.com/other", sigsum_log().verifiers)
    refused(add_checkpoint(parse_add_checkpoint(REQUEST_1), other, WITNESS, NOW), 404)


def test_untrusted_or_bad_signature_is_403() -> None:
    stranger = Verifier(ORIGIN, ALG_ED25519, WITNESS_PUBLIC)
    refused(handle_add_checkpoint(REQUEST_1, {ORIGIN: LogState(ORIGIN, (stranger,))}, WITNESS, NOW), 403)
    tampered = REQUEST_1.replace("KgAAAAAA", "KgAAAAAB")
    refused(handle_add_checkpoint(tampered, {ORIGIN: sigsum_log()}, WITNESS, NOW), 403)


def test_too_many_proof_lines_is_400() -> None:
    """torchwood TestTooManyProofs: 64 proof lines."""
    proofs = "KgEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n" * 64
    body = "old 0\n" + proofs + REQUEST_1.removeprefix("old 0\n")
    result = refused(handle_add_checkpoint(body, {ORIGIN: sigsum_log()}, WITNESS, NOW), 400)
    assert "64 proof lines" in result.reason


@pytest.mark.parametrize(
    "body",
    [
        "",
        "old 0\n",
        REQUEST_1.replace("old 0", "old 00"),
        REQUEST_1.replace("old 0", "old -1"),
        REQUEST_1.replace("old 0", "old"),
        REQUEST_1.replace("old 0", "new 0"),
        REQUEST_1.replace("old 0\n", "old 0\nnot-base64!\n"),
        REQUEST_1.replace("old 0\n", "old 0\nKgE=\n"),  # not 32 bytes
        REQUEST_1.replace("\n1\n", "\n01\n"),  # malformed checkpoint
        REQUEST_1.removesuffix("\n"),  # note without its final newline
        REQUEST_1.split(DASH)[0],  # no signature lines
        b"old 0\n\n\xff",
    ],
)
def test_malformed_requests_are_400(body: str | bytes) -> None:
    with pytest.raises(RequestError):
        parse_add_checkpoint(body)
    refused(handle_add_checkpoint(body, {ORIGIN: sigsum_log()}, WITNESS, NOW), 400)


# --- our own log: split views and the zero-size rules --------------------------------------


LOG = signer("healthmesh.example/log", b"\x11" * 32)


def leaves(count: int, salt: bytes = b"") -> list[bytes]:
    return [leaf_hash(salt + i.to_bytes(4, "big")) for i in range(count)]


def checkpoint_note(size: int, root_hash: bytes) -> str:
    return sign_note(checkpoint_body(LOG.name, size, root_hash), LOG.name, LOG.private_key)


def request(old: int, proof: Sequence[bytes], note: str) -> str:
    lines = "".join(base64.b64encode(p).decode() + "\n" for p in proof)
    return f"old {old}\n{lines}\n{note}"


def our_log(size: int = 0, root_hash: bytes = EMPTY_ROOT) -> LogState:
    return LogState(LOG.name, (LOG.verifier(),), size, root_hash)


def test_consistent_growth_is_cosigned_by_every_witness_key() -> None:
    store = MemoryStore()
    store.append(leaves(13))
    state = our_log(5, root(5, store))
    body = request(5, consistency_proof(5, 13, store), checkpoint_note(13, root(13, store)))
    second = signer("example.com/w2", b"\x22" * 32)
    result = cosigned(handle_add_checkpoint(body, {LOG.name: state}, [WITNESS, second], NOW))
    assert result.body.count(DASH) == 2
    verifiers = [WITNESS.cosignature_verifier(), second.cosignature_verifier()]
    _, names = open_note(parse_add_checkpoint(body).note + result.body, verifiers)
    assert names == [WITNESS.name, second.name]
    assert result.state == our_log(13, root(13, store))


def test_split_view_same_size_other_root_is_409() -> None:
    honest, forked = MemoryStore(), MemoryStore()
    honest.append(leaves(8))
    forked.append(leaves(8, b"fork"))
    state = our_log(8, root(8, honest))
    assert isinstance(
        handle_add_checkpoint(
            request(8, [], checkpoint_note(8, root(8, honest))), {LOG.name: state}, WITNESS, NOW
        ),
        Cosigned,
    )
    result = refused(
        handle_add_checkpoint(
            request(8, [], checkpoint_note(8, root(8, forked))), {LOG.name: state}, WITNESS, NOW
        ),
        409,
    )
    assert result.evidence
    assert "another root hash" in result.reason


def test_split_view_inconsistent_growth_is_422() -> None:
    honest, forked = MemoryStore(), MemoryStore()
    honest.append(leaves(8))
    forked.append(leaves(3) + leaves(9, b"fork")[3:])  # shares 3 leaves, then diverges
    state = our_log(5, root(5, honest))
    body = request(5, consistency_proof(5, 9, forked), checkpoint_note(9, root(9, forked)))
    result = refused(handle_add_checkpoint(body, {LOG.name: state}, WITNESS, NOW), 422)
    assert result.evidence


def test_stale_old_size_is_409_with_the_latest_size() -> None:
    store = MemoryStore()
    store.append(leaves(10))
    state = our_log(7, root(7, store))
    body = request(5, consistency_proof(5, 10, store), checkpoint_note(10, root(10, store)))
    result = refused(handle_add_checkpoint(body, {LOG.name: state}, WITNESS, NOW), 409)
    assert (result.body, result.content_type) == ("7\n", "text/x.tlog.size")


def test_old_size_above_checkpoint_size_is_400() -> None:
    store = MemoryStore()
    store.append(leaves(4))
    body = request(4, [], checkpoint_note(3, root(3, store)))
    refused(handle_add_checkpoint(body, {LOG.name: our_log(4, root(4, store))}, WITNESS, NOW), 400)


LEAF = leaf_hash(b"leaf")


@pytest.mark.parametrize(
    ("known", "old", "size", "root_hash", "proof", "status"),
    [
        (0, 0, 0, EMPTY_ROOT, [], 200),  # empty tree
        (0, 0, 0, LEAF, [], 422),  # invalid empty root
        (0, 0, 0, bytes(32), [], 422),  # zero empty root
        (0, 0, 0, EMPTY_ROOT, [LEAF], 422),  # empty tree with proof
        (0, 0, 1, LEAF, [], 200),  # first nonempty tree
        (0, 0, 1, LEAF, [LEAF], 422),  # first nonempty tree with proof
        (1, 0, 1, LEAF, [LEAF], 409),  # old size mismatch
        (1, 1, 0, EMPTY_ROOT, [], 400),  # old size greater than new
    ],
)
def test_zero_size_rules(
    known: int, old: int, size: int, root_hash: bytes, proof: list[bytes], status: int
) -> None:
    """torchwood TestZeroSize, submitted twice (the second time from the new size)."""
    state = our_log(known, LEAF if known else EMPTY_ROOT)
    note = checkpoint_note(size, root_hash)
    result = handle_add_checkpoint(request(old, proof, note), {LOG.name: state}, WITNESS, NOW)
    assert result.status == status, getattr(result, "reason", "")
    if isinstance(result, Cosigned):
        assert result.state == our_log(size, root_hash)
        again = handle_add_checkpoint(request(size, [], note), {LOG.name: result.state}, WITNESS, NOW + 1)
        assert cosigned(again).state == result.state
