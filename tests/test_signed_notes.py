"""C2SP signed notes, checkpoints, verifier/signer keys and cosignature/v1.

External vectors:
* golang.org/x/mod/sumdb/note (note.go package doc and note_test.go): the PeterNeumann signer and
  verifier keys, the note Go signs with them (Ed25519 is deterministic, so ours must be
  byte-identical), the EnochRoot key and its signature, the key manglings Go rejects.
  https://github.com/golang/mod/blob/master/sumdb/note/note_test.go
* FiloSottile/torchwood cmd/litewitness/testdata/multi-cosigs-ed25519.txt: a checkpoint of a
  Sigsum log signed by Go tooling, with the log's raw Ed25519 public key.
* c2sp.org/tlog-cosignature example line and transparency-dev/formats note_cosigv1_test.go
  (TestCoSigV1Timestamp): cosignature/v1 encodings with known timestamps.
* c2sp.org/tlog-checkpoint example checkpoint body.
"""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from healthmesh.ledger.merkle import EMPTY_ROOT
from healthmesh.ledger.notes import (
    ALG_COSIGNATURE_V1,
    ALG_ED25519,
    Checkpoint,
    InvalidSignatureError,
    MalformedNoteError,
    NoteError,
    NoteSignature,
    UnverifiedNoteError,
    Verifier,
    add_signature,
    checkpoint_body,
    cosign,
    cosignature_message,
    cosignature_timestamp,
    generate_key,
    key_id,
    open_note,
    parse_checkpoint,
    parse_note,
    parse_signer_key,
    parse_verifier_key,
    sign_note,
    signer,
    signer_key,
    verifier_key,
    verify_cosignature,
)

PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_SIG = (
    "\u2014 PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "\u2014 EnochRoot "
    "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
)
GO_NOTE = TEXT + "\n" + PETER_SIG

SIGSUM_ORIGIN = "sigsum.org/v1/tree/985ea163f5af026723561354f51f2ebcdcf2af809ce254ccfb64aa9aadd80f90"
SIGSUM_KEY = bytes.fromhex("52c05edad1bf5feffa81354faae59a655d9a9a1a793ed2f62c39c26c0be2aecd")
SIGSUM_NOTE = (
    f"{SIGSUM_ORIGIN}\n1\nKgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n\u2014 {SIGSUM_ORIGIN} "
    "7BKT0gOfNZ1J0So9unY3BZtm2YkPIoNYM/dce0Z2avJDs8dxN6ts9bOSwwrVrbjm6P9K3ZxpK6jJngOG6YvGGzV/lwo=\n"
)

SPEC_CHECKPOINT = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"

ROOT = bytes(range(32))


@pytest.fixture(scope="module")
def peter() -> Verifier:
    return parse_verifier_key(PETER_VKEY)


@pytest.fixture(scope="module")
def enoch() -> Verifier:
    return parse_verifier_key(ENOCH_VKEY)


def log_note(body: str, name: str = "example.com/log", seed: bytes = b"\x01" * 32) -> str:
    return sign_note(body, name, seed)


# --- Go's vectors ---------------------------------------------------------------------------


def test_go_signer_key_gives_go_verifier_key_and_byte_identical_note() -> None:
    key = parse_signer_key(PETER_SKEY)
    assert key.verifier().vkey == PETER_VKEY
    assert signer_key(key) == PETER_SKEY
    assert sign_note(TEXT, key.name, key.private_key) == GO_NOTE


def test_key_id_formula_matches_go() -> None:
    peter = parse_verifier_key(PETER_VKEY)
    assert key_id("PeterNeumann", ALG_ED25519, peter.public_key).hex() == "c74f20a3"
    assert peter.alg == ALG_ED25519


def test_open_go_note(peter: Verifier, enoch: Verifier) -> None:
    note = TEXT + "\n" + PETER_SIG + ENOCH_SIG
    assert open_note(note, [peter]) == (TEXT, ["PeterNeumann"])  # EnochRoot unknown: ignored
    assert open_note(note, [peter, enoch]) == (TEXT, ["PeterNeumann", "EnochRoot"])
    assert open_note(note.encode(), [enoch]) == (TEXT, ["EnochRoot"])
    assert open_note(note, [PETER_VKEY, ENOCH_VKEY]) == (TEXT, ["PeterNeumann", "EnochRoot"])  # key strings
    with pytest.raises(UnverifiedNoteError, match="no signature from a known key"):
        open_note(note, [])


def test_sigsum_checkpoint_signed_by_go_tooling_verifies() -> None:
    verifier = Verifier(SIGSUM_ORIGIN, ALG_ED25519, SIGSUM_KEY)
    body, names = open_note(SIGSUM_NOTE, [verifier])
    assert names == [SIGSUM_ORIGIN]
    checkpoint = parse_checkpoint(body)
    assert (checkpoint.origin, checkpoint.size) == (SIGSUM_ORIGIN, 1)
    assert checkpoint.root_hash == b"\x2a" + bytes(31)
    assert parse_verifier_key(verifier_key(SIGSUM_ORIGIN, SIGSUM_KEY)) == verifier


def test_go_rejected_verifier_keys_are_rejected() -> None:
    def bad(vkey: str) -> None:
        with pytest.raises(NoteError):
            parse_verifier_key(vkey)

    raw = PETER_VKEY
    for i in range(len(raw) + 1):
        for j in range(i + 1, len(raw) + 1):
            if (i, j) != (0, len(raw)):
                bad(raw[i:j])
    for i in range(len(raw)):
        bad(raw[:i] + chr(ord(raw[i]) + 1) + raw[i + 1 :])
    bad("PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==")  # key length
    bad("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")  # unknown algorithm


def test_go_rejected_signer_keys_are_rejected() -> None:
    raw = PETER_SKEY
    for i in range(len(raw) + 1):
        for j in range(i + 1, len(raw) + 1):
            if (i, j) != (0, len(raw)):
                with pytest.raises(NoteError):
                    parse_signer_key(raw[i:j])
    for i in range(len(raw)):
        with pytest.raises(NoteError):
            parse_signer_key(raw[:i] + chr(ord(raw[i]) + 1) + raw[i + 1 :])


def test_invalid_signature_from_known_key_rejects_the_note(peter: Verifier) -> None:
    tampered = TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    with pytest.raises(InvalidSignatureError, match=r"invalid signature for key PeterNeumann\+c74f20a3"):
        open_note(tampered, [peter])


@pytest.mark.parametrize(
    "note",
    [
        TEXT,  # no signature block
        TEXT + "\n",  # blank line but no signatures
        TEXT + "\n" + PETER_SIG[:-1],  # missing trailing newline
        "\x01" + TEXT + "\n" + PETER_SIG,  # control character
        TEXT + "\n" + PETER_SIG.replace("PeterNeumann", "Bad Name"),  # space in key name
        TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
        TEXT + "\n" + PETER_SIG.replace("\u2014", "-"),  # hyphen, not em dash
        TEXT + "\n" + "\u2014 PeterNeumann\n",  # no signature
        TEXT + "\n" + "\u2014 PeterNeumann AAAA\n",  # shorter than key id + 1 byte
        TEXT + "\n" + PETER_SIG.replace("AM=", "AN="),  # non-canonical base64
        TEXT + "\n" + PETER_SIG.replace("x08go", "x08g!"),  # not base64
        TEXT + "\n" + PETER_SIG * 101,  # too many signatures
    ],
)
def test_malformed_notes(peter: Verifier, note: str) -> None:
    with pytest.raises(MalformedNoteError):
        open_note(note, [peter])


def test_invalid_utf8_is_malformed(peter: Verifier) -> None:
    with pytest.raises(MalformedNoteError, match="UTF-8"):
        open_note(b"\xff" + GO_NOTE.encode(), [peter])


def test_duplicate_verifiers_and_same_name_keys(peter: Verifier) -> None:
    assert open_note(GO_NOTE, [peter, parse_verifier_key(PETER_VKEY)]) == (TEXT, ["PeterNeumann"])
    rotated = Verifier(
        "PeterNeumann", ALG_ED25519, Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    )
    assert open_note(GO_NOTE, [rotated, peter])[1] == ["PeterNeumann"]  # same name, other key id
    with pytest.raises(UnverifiedNoteError):
        open_note(GO_NOTE, [rotated])


def test_wrong_key_id_or_name_is_an_unknown_key(peter: Verifier) -> None:
    sig = parse_note(GO_NOTE).signatures[0]
    wrong_id = NoteSignature(sig.name, bytes(4), sig.signature)
    with pytest.raises(UnverifiedNoteError, match=r"PeterNeumann\+00000000"):
        open_note(TEXT + "\n" + wrong_id.line(), [peter])
    with pytest.raises(UnverifiedNoteError, match="CarmenSandiego"):
        open_note(TEXT + "\n" + PETER_SIG.replace("PeterNeumann", "CarmenSandiego"), [peter])


# --- signing round trips --------------------------------------------------------------------


def test_generate_key_round_trip() -> None:
    skey, vkey = generate_key("healthmesh.example/log")
    key, verifier = parse_signer_key(skey), parse_verifier_key(vkey)
    assert key.verifier() == verifier
    note = sign_note("hello\n", key.name, key.private_key)
    assert open_note(note, [verifier]) == ("hello\n", ["healthmesh.example/log"])


def test_tampered_body_fails() -> None:
    key = parse_signer_key(PETER_SKEY)
    with pytest.raises(InvalidSignatureError):
        open_note(GO_NOTE.replace("answer", "Answer"), [key.verifier()])


def test_add_signature_keeps_others_and_replaces_own(peter: Verifier) -> None:
    key = parse_signer_key(PETER_SKEY)
    other = signer("other.example/w", b"\x07" * 32)
    both = add_signature(GO_NOTE, other.name, other.private_key)
    assert both.startswith(GO_NOTE)
    assert open_note(both, [peter, other.verifier()]) == (TEXT, ["PeterNeumann", "other.example/w"])
    assert add_signature(TEXT + "\n\u2014 PeterNeumann x08gowAA\n", key.name, key.private_key) == GO_NOTE


def test_signing_refuses_bad_input() -> None:
    key = parse_signer_key(PETER_SKEY)
    with pytest.raises(MalformedNoteError, match="newline"):
        sign_note("abc", key.name, key.private_key)
    with pytest.raises(MalformedNoteError, match="'\\+'"):
        sign_note(TEXT, "a+b", key.private_key)
    with pytest.raises(NoteError, match="seed"):
        sign_note(TEXT, "a", b"short")


def test_body_with_blank_lines_and_em_dashes_round_trips() -> None:
    body = "line\n\n\u2014 looks like a signature\n\n"
    key = signer("k", b"\x02" * 32)
    assert open_note(sign_note(body, key.name, key.private_key), [key.verifier()])[0] == body


# --- checkpoints ----------------------------------------------------------------------------


def test_checkpoint_round_trip_with_extensions() -> None:
    body = checkpoint_body("example.com/log", 42, ROOT, ["ext one", "ext two"])
    assert body == f"example.com/log\n42\n{base64.b64encode(ROOT).decode()}\next one\next two\n"
    assert parse_checkpoint(body) == Checkpoint("example.com/log", 42, ROOT, ("ext one", "ext two"))
    assert parse_checkpoint(body).body() == body
    assert parse_checkpoint(checkpoint_body("o", 0, EMPTY_ROOT)).size == 0


def test_spec_example_checkpoint_parses() -> None:
    checkpoint = parse_checkpoint(SPEC_CHECKPOINT)
    assert (checkpoint.origin, checkpoint.size, checkpoint.extensions) == (
        "example.com/behind-the-sofa",
        20852163,
        (),
    )


GOOD_HASH = base64.b64encode(ROOT).decode()


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (f"o\n1\n{GOOD_HASH}", "newline"),
        ("o\n1\n", "line"),
        (f"\n1\n{GOOD_HASH}\n", "origin is empty"),
        (f"o\n01\n{GOOD_HASH}\n", "leading zeroes"),
        (f"o\n+1\n{GOOD_HASH}\n", "leading zeroes"),
        (f"o\n 1\n{GOOD_HASH}\n", "leading zeroes"),
        (f"o\n\uff11\n{GOOD_HASH}\n", "leading zeroes"),  # fullwidth digit one
        (f"o\n-1\n{GOOD_HASH}\n", "leading zeroes"),
        (f"o\n{2**64}\n{GOOD_HASH}\n", "larger than"),
        (f"o\n1\n{base64.b64encode(ROOT[:31]).decode()}\n", "31 bytes"),
        (f"o\n1\n{GOOD_HASH[:-2]}B=\n", "canonical"),
        (f"o\n1\n{GOOD_HASH[:-1]}\n", "base64"),
        (f"o\n1\n{GOOD_HASH}\n\n", "empty extension"),
        (f"o\n1\n{GOOD_HASH}\next\n\nmore\n", "empty extension"),
        (f"o\n1\n{GOOD_HASH}\nex\tt\n", "control"),
    ],
)
def test_malformed_checkpoints(body: str, problem: str) -> None:
    with pytest.raises(MalformedNoteError, match=problem):
        parse_checkpoint(body)


def test_checkpoint_body_refuses_bad_fields() -> None:
    with pytest.raises(MalformedNoteError):
        checkpoint_body("has space", 1, ROOT)
    with pytest.raises(MalformedNoteError):
        checkpoint_body("o", -1, ROOT)
    with pytest.raises(MalformedNoteError):
        checkpoint_body("o", 1, ROOT[:16])
    with pytest.raises(MalformedNoteError):
        checkpoint_body("o", 1, ROOT, ["two\nlines"])
    with pytest.raises(MalformedNoteError):
        checkpoint_body("o", 1, ROOT, [""])


# --- cosignatures ---------------------------------------------------------------------------


WITNESS = signer("witness.example/w1", b"\x05" * 32)


def test_cosignature_message_is_the_spec_layout() -> None:
    assert cosignature_message(SPEC_CHECKPOINT, 1679315147) == (
        b"cosignature/v1\ntime 1679315147\n" + SPEC_CHECKPOINT.encode()
    )


def test_cosign_and_verify() -> None:
    line = cosign(SPEC_CHECKPOINT, WITNESS.name, WITNESS.private_key, 1679315147)
    verifier = WITNESS.cosignature_verifier()
    assert verifier.alg == ALG_COSIGNATURE_V1
    assert verifier.vkey == verifier_key(WITNESS.name, WITNESS.public_key, ALG_COSIGNATURE_V1)
    assert verify_cosignature(SPEC_CHECKPOINT, line, verifier) == 1679315147
    raw = base64.b64decode(line.split(" ")[2])
    assert raw[:4] == key_id(WITNESS.name, ALG_COSIGNATURE_V1, WITNESS.public_key)
    assert int.from_bytes(raw[4:12], "big") == 1679315147
    assert len(raw) == 4 + 8 + 64
    # A cosigned checkpoint opens with the witness's alg-0x04 key.
    assert open_note(SPEC_CHECKPOINT + "\n" + line, [verifier])[1] == [WITNESS.name]


def test_cosignature_is_domain_separated_from_note_signatures() -> None:
    line = cosign(SPEC_CHECKPOINT, WITNESS.name, WITNESS.private_key, 1)
    with pytest.raises(UnverifiedNoteError):  # alg 0x01 key id differs: an unknown key
        open_note(SPEC_CHECKPOINT + "\n" + line, [WITNESS.verifier()])
    plain = sign_note(SPEC_CHECKPOINT, WITNESS.name, WITNESS.private_key)
    with pytest.raises(UnverifiedNoteError):
        open_note(plain, [WITNESS.cosignature_verifier()])


def test_tampered_cosignatures_fail() -> None:
    verifier = WITNESS.cosignature_verifier()
    line = cosign(SPEC_CHECKPOINT, WITNESS.name, WITNESS.private_key, 1679315147)
    raw = bytearray(base64.b64decode(line.split(" ")[2]))
    raw[11] ^= 1  # timestamp
    stamped = f"\u2014 {WITNESS.name} {base64.b64encode(raw).decode()}\n"
    with pytest.raises(InvalidSignatureError):
        verify_cosignature(SPEC_CHECKPOINT, stamped, verifier)
    with pytest.raises(InvalidSignatureError):
        verify_cosignature(SPEC_CHECKPOINT.replace("20852163", "20852164"), line, verifier)
    other = signer("witness.example/w2", b"\x06" * 32).cosignature_verifier()
    with pytest.raises(UnverifiedNoteError):
        verify_cosignature(SPEC_CHECKPOINT, line, other)
    with pytest.raises(NoteError, match="not a cosignature/v1 key"):
        verify_cosignature(SPEC_CHECKPOINT, line, WITNESS.verifier())


def test_cosignature_covers_extension_lines() -> None:
    body = checkpoint_body("example.com/log", 5, ROOT, ["Extendo"])
    line = cosign(body, WITNESS.name, WITNESS.private_key, 7)
    with pytest.raises(InvalidSignatureError):
        verify_cosignature(body.replace("Extendo", "Extendx"), line, WITNESS.cosignature_verifier())


def test_cosign_refuses_what_is_not_a_checkpoint() -> None:
    with pytest.raises(MalformedNoteError):
        cosign("not a checkpoint\n", WITNESS.name, WITNESS.private_key, 1)
    with pytest.raises(MalformedNoteError, match="empty-tree"):
        cosign(checkpoint_body("o", 0, ROOT), WITNESS.name, WITNESS.private_key, 1)
    with pytest.raises(NoteError, match="timestamp"):
        cosign(SPEC_CHECKPOINT, WITNESS.name, WITNESS.private_key, 2**63)


@pytest.mark.parametrize(
    ("encoded", "timestamp"),
    [
        # c2sp.org/tlog-cosignature example cosignature (its time line is 1679315147)
        (
            "jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==",
            1679315147,
        ),
        # transparency-dev/formats TestCoSigV1Timestamp
        (
            "ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOworDcFiEBYJXORmnFBOBA==",
            1727964367,
        ),
    ],
)
def test_published_cosignature_timestamps(encoded: str, timestamp: int) -> None:
    sig = parse_note(f"{SPEC_CHECKPOINT}\n\u2014 w {encoded}\n").signatures[0]
    assert cosignature_timestamp(sig) == timestamp


def test_plain_signature_has_no_timestamp() -> None:
    with pytest.raises(MalformedNoteError):
        cosignature_timestamp(parse_note(GO_NOTE).signatures[0])
