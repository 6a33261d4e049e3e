"""C2SP signed notes, checkpoints, verifier keys and cosignatures, with Ed25519.

Specs: https://c2sp.org/signed-note, https://c2sp.org/tlog-checkpoint,
https://c2sp.org/tlog-cosignature (cosignature/v1). Byte-compatible with Go's
golang.org/x/mod/sumdb/note, so the log's checkpoints can be checked by the Go tooling and by
the public witness network.

Key formats (chosen to be the Go / C2SP ones, so keys move freely between implementations):

* verifier key (public): ``<name>+<8 hex key id>+<base64(alg byte || 32-byte public key)>``,
  alg 0x01 for note signatures, 0x04 for cosignature/v1 (a witness's key).
* signer key (private, keep secret): ``PRIVATE+KEY+<name>+<8 hex key id>+<base64(0x01 || 32-byte
  Ed25519 seed)>``, as produced by Go's ``note.GenerateKey`` and read by ``note.NewSigner``. The
  same signer key serves as a witness key: its cosignature verifier key uses alg 0x04.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from healthmesh.ledger.merkle import EMPTY_ROOT, HASH_SIZE

__all__ = [
    "ALG_COSIGNATURE_V1",
    "ALG_ED25519",
    "MAX_SIGNATURES",
    "Checkpoint",
    "InvalidSignatureError",
    "MalformedNoteError",
    "Note",
    "NoteError",
    "NoteSignature",
    "Signer",
    "UnverifiedNoteError",
    "Verifier",
    "add_signature",
    "checkpoint_body",
    "cosign",
    "cosignature_message",
    "cosignature_timestamp",
    "generate_key",
    "key_id",
    "open_note",
    "parse_checkpoint",
    "parse_note",
    "parse_signer_key",
    "parse_verifier_key",
    "sign_note",
    "signer",
    "signer_key",
    "verifier_key",
    "verify_cosignature",
]

ALG_ED25519 = 0x01
"""Signature type of plain Ed25519 note signatures (signed-note)."""
ALG_COSIGNATURE_V1 = 0x04
"""Signature type of timestamped Ed25519 witness cosignatures (tlog-cosignature)."""

MAX_SIGNATURES = 100
"""Signature lines accepted per note: the spec demands at least 16, Go stops at 100."""
MAX_TIMESTAMP = 2**63 - 1
MAX_TREE_SIZE = 2**64 - 1

_KNOWN_ALGS = (ALG_ED25519, ALG_COSIGNATURE_V1)
_ED25519_KEY_SIZE = 32
_ED25519_SIG_SIZE = 64
_SIG_PREFIX = "\u2014 "  # em dash, space
_COSIG_HEADER = "cosignature/v1\n"
_DECIMAL = re.compile(r"(0|[1-9][0-9]*)\Z", re.ASCII)
_HEX_KEY_ID = re.compile(r"[0-9a-f]{8}\Z", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")


class NoteError(ValueError):
    """A note, checkpoint or key cannot be used; the message names what fails."""


class MalformedNoteError(NoteError):
    """The text does not follow the format (syntax, encoding, lengths)."""


class UnverifiedNoteError(NoteError):
    """No signature from a known key: the note MUST be rejected."""


class InvalidSignatureError(NoteError):
    """A signature from a known key does not verify: the whole note is rejected."""


# --- encoding helpers -----------------------------------------------------------------------


def _b64decode(text: str, what: str) -> bytes:
    """Strict standard base64: alphabet, padding, and the canonical encoding only, so one value
    has one spelling."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise MalformedNoteError(f"{what} is not valid base64") from exc
    if base64.b64encode(raw).decode("ascii") != text:
        raise MalformedNoteError(f"{what} is not canonical base64")
    return raw


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _check_text(text: str, what: str) -> None:
    """Notes are UTF-8 without ASCII control characters other than newline."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MalformedNoteError(f"{what} is not valid UTF-8") from exc
    if _CONTROL.search(text):
        raise MalformedNoteError(f"{what} contains a control character")


def _check_name(name: str) -> None:
    """Key names are non-empty, without Unicode spaces or '+' (signed-note)."""
    if not name:
        raise MalformedNoteError("key name is empty")
    if "+" in name or any(char.isspace() for char in name):
        raise MalformedNoteError(f"key name {name!r} contains a space or '+'")
    _check_text(name, f"key name {name!r}")


def _parse_decimal(text: str, what: str, maximum: int) -> int:
    if not _DECIMAL.match(text):
        raise MalformedNoteError(f"{what} {text!r} is not a decimal without leading zeroes")
    value = int(text)
    if value > maximum:
        raise MalformedNoteError(f"{what} {value} is larger than {maximum}")
    return value


def _public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _private_key(key: Ed25519PrivateKey | bytes) -> Ed25519PrivateKey:
    """Accept a key object or its 32-byte seed."""
    if isinstance(key, Ed25519PrivateKey):
        return key
    if len(key) != _ED25519_KEY_SIZE:
        raise NoteError(f"Ed25519 seed is {len(key)} bytes, expected {_ED25519_KEY_SIZE}")
    return Ed25519PrivateKey.from_private_bytes(key)


# --- checkpoints ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """The note text of a tlog-checkpoint: origin, tree size, root hash, extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def body(self) -> str:
        return checkpoint_body(self.origin, self.size, self.root_hash, self.extensions)


def checkpoint_body(origin: str, size: int, root_hash: bytes, extensions: Sequence[str] = ()) -> str:
    """The checkpoint note text. The origin must also be a valid key name, since the log signs
    with its origin as key name (tlog-checkpoint: SHOULD match)."""
    _check_name(origin)
    if not 0 <= size <= MAX_TREE_SIZE:
        raise MalformedNoteError(f"tree size {size} is out of range")
    if len(root_hash) != HASH_SIZE:
        raise MalformedNoteError(f"root hash is {len(root_hash)} bytes, expected {HASH_SIZE}")
    for line in extensions:
        if not line or "\n" in line:
            raise MalformedNoteError(f"extension line {line!r} is empty or spans lines")
        _check_text(line, "extension line")
    return "".join(f"{line}\n" for line in (origin, str(size), _b64(root_hash), *extensions))


def parse_checkpoint(body: str) -> Checkpoint:
    """Parse and strictly validate checkpoint note text (the body, without signatures)."""
    _check_text(body, "checkpoint")
    if not body.endswith("\n"):
        raise MalformedNoteError("checkpoint does not end with a newline")
    lines = body[:-1].split("\n")
    if len(lines) < 3:
        raise MalformedNoteError(f"checkpoint has {len(lines)} line(s), needs origin, size and root hash")
    origin, size_text, hash_text, *extensions = lines
    if not origin:
        raise MalformedNoteError("checkpoint origin is empty")
    size = _parse_decimal(size_text, "checkpoint tree size", MAX_TREE_SIZE)
    root_hash = _b64decode(hash_text, "checkpoint root hash")
    if len(root_hash) != HASH_SIZE:
        raise MalformedNoteError(f"checkpoint root hash is {len(root_hash)} bytes, expected {HASH_SIZE}")
    if any(not line for line in extensions):
        raise MalformedNoteError("checkpoint has an empty extension line")
    return Checkpoint(origin, size, root_hash, tuple(extensions))


# --- keys -----------------------------------------------------------------------------------


def key_id(name: str, alg: int, public_key: bytes) -> bytes:
    """SHA-256(name || 0x0A || alg || public key)[:4]: identifies the key and its algorithm."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([alg]) + public_key).digest()[:4]


@dataclass(frozen=True)
class Verifier:
    """A public key trusted under a name: alg 0x01 checks note signatures, alg 0x04 checks
    cosignature/v1 (timestamped) signatures."""

    name: str
    alg: int
    public_key: bytes

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.alg not in _KNOWN_ALGS:
            raise MalformedNoteError(f"unknown signature type 0x{self.alg:02x}")
        if len(self.public_key) != _ED25519_KEY_SIZE:
            raise MalformedNoteError(f"Ed25519 public key is {len(self.public_key)} bytes")

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.alg, self.public_key)

    @property
    def vkey(self) -> str:
        """The verifier key string ``name+keyid+base64(alg || key)``."""
        return f"{self.name}+{self.key_id.hex()}+{_b64(bytes([self.alg]) + self.public_key)}"

    def verify(self, text: str, signature: bytes) -> bool:
        """Check ``signature`` (without the 4-byte key id) over the note text."""
        message = text.encode("utf-8")
        if self.alg == ALG_COSIGNATURE_V1:
            if len(signature) != 8 + _ED25519_SIG_SIZE:
                return False
            timestamp = int.from_bytes(signature[:8], "big")
            if timestamp > MAX_TIMESTAMP:
                return False
            message = cosignature_message(text, timestamp)
            signature = signature[8:]
        elif len(signature) != _ED25519_SIG_SIZE:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True


def verifier_key(name: str, public_key: Ed25519PublicKey | bytes, alg: int = ALG_ED25519) -> str:
    """Encode a verifier key; ``alg=ALG_COSIGNATURE_V1`` for a witness's cosigning key."""
    raw = _public_bytes(public_key) if isinstance(public_key, Ed25519PublicKey) else public_key
    return Verifier(name, alg, raw).vkey


def parse_verifier_key(vkey: str) -> Verifier:
    """Parse ``name+keyid+base64(alg || key)``, checking the key id against the key."""
    parts = vkey.split("+", 2)
    if len(parts) != 3:
        raise MalformedNoteError("verifier key is not name+keyid+key")
    name, hex_id, key_text = parts
    if not _HEX_KEY_ID.match(hex_id):
        raise MalformedNoteError(f"verifier key id {hex_id!r} is not 8 lowercase hex digits")
    raw = _b64decode(key_text, "verifier key material")
    if len(raw) < 2:
        raise MalformedNoteError("verifier key material is too short")
    verifier = Verifier(name, raw[0], raw[1:])
    if verifier.key_id.hex() != hex_id:
        raise MalformedNoteError(f"verifier key id {hex_id} does not match the key")
    return verifier


@dataclass(frozen=True)
class Signer:
    """A named Ed25519 private key: signs notes (alg 0x01) and cosigns checkpoints (0x04)."""

    name: str
    private_key: Ed25519PrivateKey = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_name(self.name)

    @property
    def public_key(self) -> bytes:
        return _public_bytes(self.private_key.public_key())

    def verifier(self) -> Verifier:
        """The note-signature verifier (alg 0x01), e.g. the log's key."""
        return Verifier(self.name, ALG_ED25519, self.public_key)

    def cosignature_verifier(self) -> Verifier:
        """The cosignature/v1 verifier (alg 0x04), e.g. a witness's key."""
        return Verifier(self.name, ALG_COSIGNATURE_V1, self.public_key)

    def sign(self, text: str) -> NoteSignature:
        """Ed25519 over the note text."""
        _check_note_body(text)
        signature = self.private_key.sign(text.encode("utf-8"))
        return NoteSignature(self.name, self.verifier().key_id, signature)

    def cosign(self, body: str, timestamp: int) -> NoteSignature:
        """cosignature/v1 over a checkpoint body: signature = timestamp (u64 BE) || Ed25519."""
        checkpoint = parse_checkpoint(body)
        if checkpoint.size == 0 and checkpoint.root_hash != EMPTY_ROOT:
            raise MalformedNoteError("a checkpoint of size 0 must carry the empty-tree root hash")
        if not 0 <= timestamp <= MAX_TIMESTAMP:
            raise NoteError(f"cosignature timestamp {timestamp} is out of range")
        signature = self.private_key.sign(cosignature_message(body, timestamp))
        stamp = timestamp.to_bytes(8, "big")
        return NoteSignature(self.name, self.cosignature_verifier().key_id, stamp + signature)


def signer(name: str, private_key: Ed25519PrivateKey | bytes) -> Signer:
    """A Signer from a key object or a 32-byte Ed25519 seed."""
    return Signer(name, _private_key(private_key))


def signer_key(key: Signer) -> str:
    """Encode the private signer key in Go's ``PRIVATE+KEY+name+keyid+base64(0x01 || seed)``."""
    seed = key.private_key.private_bytes_raw()
    return f"PRIVATE+KEY+{key.name}+{key.verifier().key_id.hex()}+{_b64(bytes([ALG_ED25519]) + seed)}"


def parse_signer_key(skey: str) -> Signer:
    """Parse a Go/C2SP signer key, checking the key id against the derived public key."""
    parts = skey.split("+", 4)
    if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
        raise MalformedNoteError("signer key is not PRIVATE+KEY+name+keyid+key")
    _, _, name, hex_id, key_text = parts
    if not _HEX_KEY_ID.match(hex_id):
        raise MalformedNoteError(f"signer key id {hex_id!r} is not 8 lowercase hex digits")
    raw = _b64decode(key_text, "signer key material")
    if len(raw) != 1 + _ED25519_KEY_SIZE or raw[0] != ALG_ED25519:
        raise MalformedNoteError("signer key material is not 0x01 || 32-byte Ed25519 seed")
    result = signer(name, raw[1:])
    if result.verifier().key_id.hex() != hex_id:
        raise MalformedNoteError(f"signer key id {hex_id} does not match the key")
    return result


def generate_key(name: str) -> tuple[str, str]:
    """A fresh Ed25519 key: (private signer key, public verifier key) in the Go/C2SP formats."""
    key = signer(name, Ed25519PrivateKey.generate())
    return signer_key(key), key.verifier().vkey


# --- notes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: ``— <name> base64(key id || signature)``."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        return f"{_SIG_PREFIX}{self.name} {_b64(self.key_id + self.signature)}\n"


@dataclass(frozen=True)
class Note:
    """A parsed, not yet verified, signed note."""

    body: str
    signatures: tuple[NoteSignature, ...]

    def text(self) -> str:
        return self.body + "\n" + "".join(sig.line() for sig in self.signatures)


def _check_note_body(body: str) -> None:
    _check_text(body, "note text")
    if not body.endswith("\n"):
        raise MalformedNoteError("note text does not end with a newline")


def _parse_signature_line(line: str) -> NoteSignature:
    if not line.startswith(_SIG_PREFIX):
        raise MalformedNoteError(f"signature line {line[:40]!r} does not start with an em dash and space")
    name, space, encoded = line[len(_SIG_PREFIX) :].partition(" ")
    if not space:
        raise MalformedNoteError("signature line has no space between key name and signature")
    _check_name(name)
    raw = _b64decode(encoded, f"signature of {name}")
    if len(raw) < 5:
        raise MalformedNoteError(f"signature of {name} is shorter than a key id and one byte")
    return NoteSignature(name, raw[:4], raw[4:])


def parse_note(note: str | bytes) -> Note:
    """Split a signed note into text and signature lines (syntax only, nothing is verified)."""
    if isinstance(note, bytes):
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedNoteError("note is not valid UTF-8") from exc
    _check_text(note, "note")
    split = note.rfind("\n\n")
    if split < 0:
        raise MalformedNoteError("note has no blank line before its signatures")
    body, block = note[: split + 1], note[split + 2 :]
    if not block:
        raise MalformedNoteError("note has no signature lines")
    if not block.endswith("\n"):
        raise MalformedNoteError("note does not end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNoteError(f"note has {len(lines)} signatures, more than {MAX_SIGNATURES}")
    return Note(body, tuple(_parse_signature_line(line) for line in lines))


def _index_verifiers(verifiers: Iterable[Verifier | str]) -> dict[tuple[str, bytes], Verifier]:
    index: dict[tuple[str, bytes], Verifier] = {}
    for item in verifiers:
        verifier = parse_verifier_key(item) if isinstance(item, str) else item
        key = (verifier.name, verifier.key_id)
        if index.get(key, verifier) != verifier:
            raise NoteError(f"ambiguous key {verifier.name}+{verifier.key_id.hex()}")
        index[key] = verifier
    return index


def open_note(note: str | bytes, verifiers: Iterable[Verifier | str]) -> tuple[str, list[str]]:
    """Verify a signed note: (note text, names of the known keys whose signatures verify).
    ``verifiers`` are Verifier objects or verifier key strings.

    Signatures from unknown keys (name and key id not both matching) are ignored, as the spec
    requires; a known key's failing signature rejects the whole note (InvalidSignatureError);
    no verified signature at all raises UnverifiedNoteError."""
    parsed = parse_note(note)
    known = _index_verifiers(verifiers)
    names: list[str] = []
    unknown: list[str] = []
    for sig in parsed.signatures:
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            unknown.append(f"{sig.name}+{sig.key_id.hex()}")
            continue
        if not verifier.verify(parsed.body, sig.signature):
            raise InvalidSignatureError(f"invalid signature for key {sig.name}+{sig.key_id.hex()}")
        if sig.name not in names:
            names.append(sig.name)
    if not names:
        raise UnverifiedNoteError(f"note has no signature from a known key (unknown: {', '.join(unknown)})")
    return parsed.body, names


def sign_note(body: str, name: str, private_key: Ed25519PrivateKey | bytes) -> str:
    """A note with one Ed25519 signature line."""
    return Note(body, (signer(name, private_key).sign(body),)).text()


def add_signature(note: str, name: str, private_key: Ed25519PrivateKey | bytes) -> str:
    """Add (or replace, for the same key) a signature to an already signed note, keeping the
    others after it like Go's note.Sign."""
    parsed = parse_note(note)
    new = signer(name, private_key).sign(parsed.body)
    kept = tuple(s for s in parsed.signatures if (s.name, s.key_id) != (new.name, new.key_id))
    return Note(parsed.body, (*kept, new)).text()


# --- cosignatures ---------------------------------------------------------------------------


def cosignature_message(body: str, timestamp: int) -> bytes:
    """The signed message of cosignature/v1: header line, time line, then the checkpoint body."""
    return f"{_COSIG_HEADER}time {timestamp}\n{body}".encode()


def cosign(body: str, name: str, private_key: Ed25519PrivateKey | bytes, timestamp: int) -> str:
    """A witness's cosignature/v1 signature line over a checkpoint body."""
    return signer(name, private_key).cosign(body, timestamp).line()


def cosignature_timestamp(signature: NoteSignature) -> int:
    """The POSIX time a cosignature/v1 signature was made (not verified here)."""
    if len(signature.signature) != 8 + _ED25519_SIG_SIZE:
        raise MalformedNoteError(f"signature of {signature.name} is not a timestamped Ed25519 signature")
    return int.from_bytes(signature.signature[:8], "big")


def verify_cosignature(body: str, line: str, verifier: Verifier) -> int:
    """Check one cosignature line (with or without its newline) over a checkpoint body and
    return its timestamp."""
    if verifier.alg != ALG_COSIGNATURE_V1:
        raise NoteError(f"verifier {verifier.name} is not a cosignature/v1 key")
    sig = _parse_signature_line(line.removesuffix("\n"))
    if (sig.name, sig.key_id) != (verifier.name, verifier.key_id):
        raise UnverifiedNoteError(f"cosignature is from {sig.name}+{sig.key_id.hex()}, not {verifier.name}")
    if not verifier.verify(body, sig.signature):
        raise InvalidSignatureError(f"invalid cosignature for key {sig.name}+{sig.key_id.hex()}")
    return cosignature_timestamp(sig)
