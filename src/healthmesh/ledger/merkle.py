"""RFC 9162 section 2.1 Merkle tree over a store of perfect subtrees.

The log keeps only the hashes of *complete* (perfect) subtrees, addressed ``(level, index)``:
level 0 holds the leaf hashes and node ``(L, i)`` covers leaves ``[i * 2**L, (i + 1) * 2**L)``.
Such a node never changes once written, so the store is append-only. Every other hash the RFC
needs (tree heads, the non-perfect right-edge subtrees inside proofs) is a fold of at most
log2(n) perfect nodes, so each operation here first computes the keys it needs, reads them in
ONE batch from the store (one database round trip), then assembles the result in memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "Key",
    "MemoryStore",
    "MissingNodeError",
    "NodeStore",
    "ProofError",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "new_nodes",
    "node_hash",
    "root",
    "root_keys",
    "tree_hash",
    "verify_consistency",
    "verify_inclusion",
]

Key = tuple[int, int]
"""``(level, index)`` of a perfect subtree: it covers leaves ``[index << level, (index + 1) << level)``."""

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
"""MTH({}) = SHA-256 of the empty string (RFC 9162 2.1.1)."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


class ProofError(ValueError):
    """A proof does not verify; the message says which check failed."""


class MissingNodeError(LookupError):
    """The store lacks a node the tree of the requested size must have (a storage bug or a size
    larger than the log)."""


class NodeStore(Protocol):
    """Batch read of perfect-subtree hashes. Absent keys are simply missing from the result."""

    def nodes(self, keys: Sequence[Key]) -> Mapping[Key, bytes]: ...


def leaf_hash(entry: bytes) -> bytes:
    """MTH({d0}) = SHA-256(0x00 || d0): the 0x00 prefix separates leaves from interior nodes."""
    return hashlib.sha256(_LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right), the interior node hash (RFC 9162 2.1.1)."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n >= 2): the RFC's ``k``."""
    return 1 << ((n - 1).bit_length() - 1)


def tree_hash(leaf_hashes: Sequence[bytes]) -> bytes:
    """Reference MTH by the recursive definition over *leaf hashes* (for tests and cross-checks)."""
    n = len(leaf_hashes)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaf_hashes[0]
    k = _split(n)
    return node_hash(tree_hash(leaf_hashes[:k]), tree_hash(leaf_hashes[k:]))


# --- key arithmetic -------------------------------------------------------------------------


def _range_keys(start: int, end: int) -> list[Key]:
    """Perfect subtrees, left to right, making up ``[start, end)``, a subtree of the RFC recursion
    (``start`` is a multiple of a power of two at least ``end - start``)."""
    keys: list[Key] = []
    cursor = start
    for level in range((end - start).bit_length() - 1, -1, -1):
        if (end - start) >> level & 1:
            keys.append((level, cursor >> level))
            cursor += 1 << level
    return keys


def root_keys(size: int) -> list[Key]:
    """The perfect subtrees along the right edge of a tree of ``size`` leaves, largest first;
    their fold is the tree head. Empty for the empty tree."""
    _check_size(size)
    return _range_keys(0, size)


def _check_size(size: int) -> None:
    if size < 0:
        raise ValueError(f"tree size must be >= 0, got {size}")


def _read(store: NodeStore, keys: Iterable[Key]) -> dict[Key, bytes]:
    """One batch read of the distinct keys; every key must be present."""
    wanted = list(dict.fromkeys(keys))
    if not wanted:
        return {}
    found = store.nodes(wanted)
    missing = [key for key in wanted if key not in found]
    if missing:
        raise MissingNodeError(f"store is missing node(s) {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    return {key: found[key] for key in wanted}


def _fold(keys: Sequence[Key], hashes: Mapping[Key, bytes]) -> bytes:
    """Hash of a range from its perfect parts: right to left, as MTH splits at the largest
    power of two."""
    acc = hashes[keys[-1]]
    for key in reversed(keys[:-1]):
        acc = node_hash(hashes[key], acc)
    return acc


# --- append ---------------------------------------------------------------------------------


def _sibling_keys(size_before: int, size_after: int) -> list[Key]:
    """Existing left children of the nodes an append completes: at level L, needed only when the
    first new node of level L + 1 starts on an old node, i.e. bit L of ``size_before`` is set."""
    keys: list[Key] = []
    for level in range(size_after.bit_length()):
        if size_before >> level & 1 and size_after >> (level + 1) > size_before >> (level + 1):
            keys.append((level, (size_before >> level) - 1))
    return keys


def new_nodes(size_before: int, new_leaf_hashes: Sequence[bytes], store: NodeStore) -> dict[Key, bytes]:
    """The perfect-subtree nodes completed by appending ``new_leaf_hashes`` to a tree of
    ``size_before`` leaves, level-0 leaves included. Reads only the O(log n) existing left
    siblings, in one batch; the work is linear in the batch, so thousands of leaves are cheap."""
    _check_size(size_before)
    for position, value in enumerate(new_leaf_hashes):
        if len(value) != HASH_SIZE:
            raise ValueError(f"leaf hash {position} is {len(value)} bytes, expected {HASH_SIZE}")
    if not new_leaf_hashes:
        return {}
    size_after = size_before + len(new_leaf_hashes)
    old = _read(store, _sibling_keys(size_before, size_after))
    out: dict[Key, bytes] = {}
    level, start, row = 0, size_before, list(new_leaf_hashes)
    while True:
        for offset, value in enumerate(row):
            out[(level, start + offset)] = value
        if start & 1:  # the first new node's left sibling is already stored
            row = [old[(level, start - 1)], *row]
            start -= 1
        pairs = len(row) // 2
        if pairs == 0:
            return out
        row = [node_hash(row[2 * j], row[2 * j + 1]) for j in range(pairs)]
        level, start = level + 1, start >> 1


# --- tree heads and proofs ------------------------------------------------------------------


def root(size: int, store: NodeStore) -> bytes:
    """MTH of the first ``size`` leaves, from the right-edge perfect subtrees (one batch read)."""
    keys = root_keys(size)
    if not keys:
        return EMPTY_ROOT
    return _fold(keys, _read(store, keys))


def _inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """Leaf ranges whose hashes form PATH(index, D[0:size]) (RFC 9162 2.1.3.1), in proof order
    (deepest sibling first)."""
    ranges: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        mid = start + _split(end - start)
        if index < mid:
            ranges.append((mid, end))
            end = mid
        else:
            ranges.append((start, mid))
            start = mid
    ranges.reverse()
    return ranges


def _consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """Leaf ranges whose hashes form PROOF(old, D[0:new]) = SUBPROOF(old, D[0:new], true)
    (RFC 9162 2.1.4.1), in proof order."""
    ranges: list[tuple[int, int]] = []
    start, end, whole = 0, new_size, True
    while old_size != end:
        mid = start + _split(end - start)
        if old_size <= mid:
            ranges.append((mid, end))
            end = mid
        else:
            ranges.append((start, mid))
            start, whole = mid, False
    if not whole:  # the old tree's own hash is not known to the verifier here
        ranges.append((start, end))
    ranges.reverse()
    return ranges


def _assemble(ranges: Sequence[tuple[int, int]], store: NodeStore) -> list[bytes]:
    parts = [_range_keys(start, end) for start, end in ranges]
    hashes = _read(store, (key for keys in parts for key in keys))
    return [_fold(keys, hashes) for keys in parts]


def inclusion_proof(index: int, size: int, store: NodeStore) -> list[bytes]:
    """The RFC 9162 audit path for leaf ``index`` in the tree of ``size`` leaves; its keys are
    read in one batch (O(log n): the non-perfect parts share the right-edge nodes)."""
    _check_size(size)
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is not in a tree of {size} leaves")
    return _assemble(_inclusion_ranges(index, size), store)


def consistency_proof(old_size: int, new_size: int, store: NodeStore) -> list[bytes]:
    """The RFC 9162 consistency proof from ``old_size`` to ``new_size``; empty when the sizes are
    equal or the old tree is empty (every tree extends the empty one)."""
    _check_size(old_size)
    if old_size > new_size:
        raise ValueError(f"old size {old_size} is larger than new size {new_size}")
    if old_size in (0, new_size):
        return []
    return _assemble(_consistency_ranges(old_size, new_size), store)


# --- verification ---------------------------------------------------------------------------


def _check_hash(what: str, value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} is {len(value)} bytes, expected {HASH_SIZE}")


def _check_proof_shape(kind: str, proof: Sequence[bytes], expected: int, context: str) -> None:
    if len(proof) != expected:
        raise ProofError(f"{kind} proof has {len(proof)} hashes; {context} takes {expected}")
    for position, value in enumerate(proof):
        _check_hash(f"{kind} proof hash {position}", value)


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """RFC 9162 2.1.3.2: raise ProofError unless ``proof`` shows ``leaf_hash`` at ``index`` in
    the tree of ``size`` leaves whose head is ``root``."""
    if size < 0 or not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of {size} leaves")
    _check_hash("leaf hash", leaf_hash)
    _check_hash("root hash", root)
    expected = len(_inclusion_ranges(index, size))
    _check_proof_shape("inclusion", proof, expected, f"leaf {index} of a tree of {size}")
    fn, sn, acc = index, size - 1, leaf_hash
    for value in proof:
        if sn == 0:
            raise ProofError("inclusion proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            acc = node_hash(value, acc)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            acc = node_hash(acc, value)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the path to the root")
    if acc != root:
        raise ProofError(f"inclusion proof for leaf {index} does not lead to the root of tree size {size}")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 2.1.4.2: raise ProofError unless ``proof`` shows the tree of ``old_size`` with
    head ``old_root`` is a prefix of the tree of ``new_size`` with head ``new_root``.

    Edge rules (the RFC defines proofs only for 0 < old < new): equal sizes need an empty proof
    and equal roots; an old size of 0 needs an empty proof and the empty-tree root as ``old_root``
    (the only MTH of size 0), and any ``new_root`` then extends it.
    """
    if old_size < 0 or new_size < 0:
        raise ProofError(f"tree sizes must be >= 0, got {old_size} and {new_size}")
    if old_size > new_size:
        raise ProofError(f"old size {old_size} is larger than new size {new_size}")
    _check_hash("old root hash", old_root)
    _check_hash("new root hash", new_root)
    if old_size == 0 or old_size == new_size:
        _check_trivial_consistency(old_size, new_size, old_root, new_root, proof)
        return
    expected = len(_consistency_ranges(old_size, new_size))
    _check_proof_shape("consistency", proof, expected, f"sizes {old_size} -> {new_size}")
    _run_consistency(old_size, new_size, old_root, new_root, proof)


def _check_trivial_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    if proof:
        raise ProofError(f"consistency proof from size {old_size} to {new_size} must be empty")
    if old_size == 0 and old_root != EMPTY_ROOT:
        raise ProofError("old root hash is not the empty-tree hash, the only root of size 0")
    if old_size == new_size and old_root != new_root:
        raise ProofError(f"trees of the same size {old_size} have different root hashes")


def _run_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # old tree is a perfect subtree: its hash starts the path
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for value in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is longer than the path to the new root")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(value, fr), node_hash(value, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, value)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("consistency proof is shorter than the path to the new root")
    if fr != old_root:
        raise ProofError(f"consistency proof does not reproduce the old root hash of size {old_size}")
    if sr != new_root:
        raise ProofError(f"consistency proof does not reproduce the new root hash of size {new_size}")


# --- in-memory store ------------------------------------------------------------------------


class MemoryStore:
    """Append-only in-memory NodeStore for tests and benchmarks: one list per level, since the
    nodes of a level are completed strictly left to right."""

    def __init__(self) -> None:
        self._levels: list[list[bytes]] = []

    def nodes(self, keys: Sequence[Key]) -> Mapping[Key, bytes]:
        out: dict[Key, bytes] = {}
        for level, index in keys:
            if 0 <= level < len(self._levels) and 0 <= index < len(self._levels[level]):
                out[(level, index)] = self._levels[level][index]
        return out

    def add(self, nodes: Mapping[Key, bytes]) -> None:
        """Store new nodes; they must extend each level contiguously (rewriting a node with the
        same value is allowed, a different value is a bug and raises)."""
        for level, index in sorted(nodes):
            while len(self._levels) <= level:
                self._levels.append([])
            row, value = self._levels[level], nodes[(level, index)]
            if index < len(row):
                if row[index] != value:
                    raise ValueError(f"node {(level, index)} already stored with another hash")
            elif index == len(row):
                row.append(value)
            else:
                raise ValueError(f"node {(level, index)} leaves a gap after index {len(row) - 1}")

    def append(self, leaf_hashes: Sequence[bytes]) -> None:
        """Append leaves: compute the completed nodes and store them."""
        self.add(new_nodes(self.size, leaf_hashes, self))

    @property
    def size(self) -> int:
        """Number of leaves stored."""
        return len(self._levels[0]) if self._levels else 0

    def all_nodes(self) -> dict[Key, bytes]:
        """Every stored node (for comparing stores in tests)."""
        return {(level, i): h for level, row in enumerate(self._levels) for i, h in enumerate(row)}
