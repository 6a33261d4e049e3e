"""RFC 9162 Merkle tree over the perfect-subtree store: published vectors, negative cases, and
properties against a naive recursive implementation of the RFC's definitions.

Reference vectors (leaf inputs, every perfect-subtree hash, roots for sizes 0..8, inclusion and
consistency proofs) are the ones published by the transparency-dev project, which carries them
over from google/certificate-transparency's merkle_tree_test:
  https://github.com/transparency-dev/merkle/blob/main/testonly/constants.go
  https://github.com/transparency-dev/merkle/blob/main/testonly/reference_test.go
  https://github.com/transparency-dev/merkle/blob/main/proof/verify_test.go
The last block uses the proofs of a real witness request from FiloSottile/torchwood
(internal/witness/witness_test.go, TestRace): synthetic leaf hashes 0x2a00.., 0x2a01.., ...
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthmesh.ledger.merkle import (
    EMPTY_ROOT,
    Key,
    MemoryStore,
    MissingNodeError,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    new_nodes,
    node_hash,
    root,
    root_keys,
    tree_hash,
    verify_consistency,
    verify_inclusion,
)


def h(text: str) -> bytes:
    return bytes.fromhex(text)


LEAVES = [h(x) for x in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657")]
LEAVES.append(h("606162636465666768696a6b6c6d6e6f"))

# testonly.NodeHashes(): [level][index] for every perfect subtree of the 8-leaf tree.
NODES = [
    [
        h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
        h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
        h("0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7"),
        h("07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7"),
        h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        h("4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658"),
        h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
        h("46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1"),
    ],
    [
        h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
        h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
        h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
        h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
    ],
    [
        h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
    ],
    [h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")],
]

# testonly.RootHashes(): index = tree size.
ROOTS = [
    h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    h("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]

# (0-based leaf index, tree size, proof): reference_test.go TestRefInclusionProof, plus the
# verify_test.go inclusionProofs (which count leaves from 1; converted here).
INCLUSION = [
    (0, 1, []),
    (0, 2, [NODES[0][1]]),
    (1, 2, [NODES[0][0]]),
    (2, 3, [NODES[1][0]]),
    (1, 5, [NODES[0][0], NODES[1][1], NODES[0][4]]),
    (0, 8, [NODES[0][1], NODES[1][1], NODES[2][1]]),
    (5, 8, [NODES[0][4], NODES[1][3], NODES[2][0]]),
]

# (old size, new size, proof): reference_test.go TestRefConsistencyProof + verify_test.go.
CONSISTENCY = [
    (1, 1, []),
    (1, 8, [NODES[0][1], NODES[1][1], NODES[2][1]]),
    (2, 5, [NODES[1][1], NODES[0][4]]),
    (6, 8, [NODES[1][2], NODES[1][3], NODES[2][0]]),
    (6, 7, [NODES[1][2], NODES[0][6], NODES[2][0]]),
]

SOME_HASH = h("abacaba000000000000000000000000000000000000000000060061e00123456")


class CountingStore:
    """Wraps a store to count round trips and keys read."""

    def __init__(self, inner: MemoryStore) -> None:
        self.inner = inner
        self.calls: list[int] = []

    def nodes(self, keys: Sequence[Key]) -> Mapping[Key, bytes]:
        self.calls.append(len(keys))
        return self.inner.nodes(keys)


def build(leaf_hashes: Sequence[bytes], batch: int | None = None) -> MemoryStore:
    store = MemoryStore()
    step = batch or max(1, len(leaf_hashes))
    for start in range(0, len(leaf_hashes), step):
        store.append(leaf_hashes[start : start + step])
    return store


@pytest.fixture(scope="module")
def store() -> MemoryStore:
    return build([leaf_hash(leaf) for leaf in LEAVES])


# --- published vectors ----------------------------------------------------------------------


def test_hashing_primitives() -> None:
    assert ROOTS[0] == EMPTY_ROOT
    assert leaf_hash(b"") == NODES[0][0]
    assert node_hash(NODES[0][0], NODES[0][1]) == NODES[1][0]
    assert tree_hash([leaf_hash(leaf) for leaf in LEAVES]) == ROOTS[8]


def test_store_holds_exactly_the_reference_perfect_subtrees(store: MemoryStore) -> None:
    expected = {(level, i): value for level, row in enumerate(NODES) for i, value in enumerate(row)}
    assert store.all_nodes() == expected


@pytest.mark.parametrize("size", range(9))
def test_roots_match_reference(store: MemoryStore, size: int) -> None:
    assert root(size, store) == ROOTS[size]
    assert tree_hash([leaf_hash(leaf) for leaf in LEAVES[:size]]) == ROOTS[size]


def test_root_keys_are_the_right_edge() -> None:
    assert root_keys(0) == []
    assert root_keys(7) == [(2, 0), (1, 2), (0, 6)]
    assert root_keys(8) == [(3, 0)]
    assert root_keys(13) == [(3, 0), (2, 2), (0, 12)]


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_inclusion_vectors(store: MemoryStore, index: int, size: int, proof: list[bytes]) -> None:
    assert inclusion_proof(index, size, store) == proof
    verify_inclusion(leaf_hash(LEAVES[index]), index, size, proof, ROOTS[size])


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY)
def test_consistency_vectors(store: MemoryStore, old: int, new: int, proof: list[bytes]) -> None:
    assert consistency_proof(old, new, store) == proof
    verify_consistency(old, new, ROOTS[old], ROOTS[new], proof)


def test_every_proof_of_the_reference_tree_verifies(store: MemoryStore) -> None:
    for size in range(1, 9):
        for index in range(size):
            proof = inclusion_proof(index, size, store)
            verify_inclusion(leaf_hash(LEAVES[index]), index, size, proof, ROOTS[size])
        for old in range(size + 1):
            verify_consistency(old, size, ROOTS[old], ROOTS[size], consistency_proof(old, size, store))


def test_proofs_of_a_real_witness_request() -> None:
    """torchwood TestRace: a log of leaf hashes 0x2a<i>00.., proofs 1 -> 3, 1 -> 5 and 3 -> 5."""
    leaves = [bytes([0x2A, i]) + bytes(30) for i in range(5)]
    store = build(leaves)

    def b64(text: str) -> bytes:
        return base64.b64decode(text)

    assert root(3, store) == b64("RcCI1Nk56ZcSmIEfIn0SleqtV7uvrlXNccFx595Iwl0=")
    assert root(5, store) == b64("QrtXrQZCCvpIgsSmOsah7HdICzMLLyDfxToMql9WTjY=")
    assert consistency_proof(1, 3, store) == [leaves[1], leaves[2]]
    assert consistency_proof(1, 5, store) == [
        leaves[1],
        b64("+fUDV+k970B4I3uKrqJM4aP1lloPZP8mvr2Z4wRw2LI="),
        leaves[4],
    ]
    assert consistency_proof(3, 5, store)[2] == h(
        "c2088815d65f60dbfa594d4e96504ab169cb6084bf0c132ab7c521fd2e0eba41"
    )


# --- negative cases -------------------------------------------------------------------------


def verifies(check: Callable[..., None], args: tuple[Any, ...]) -> bool:
    """True when the check accepts the arguments (for listing the probes that wrongly pass)."""
    try:
        check(*args)
    except ProofError:
        return False
    return True


def flip(value: bytes, bit: int = 3) -> bytes:
    return bytes([value[0] ^ (1 << bit)]) + value[1:]


def inclusion_probes(index: int, size: int, proof: list[bytes]) -> list[tuple[str, tuple[Any, ...]]]:
    leaf, top = leaf_hash(LEAVES[index]), ROOTS[size]
    probes: list[tuple[str, tuple[Any, ...]]] = [
        ("index - 1", (leaf, index - 1, size, proof, top)),
        ("index + 1", (leaf, index + 1, size, proof, top)),
        ("index ^ 2", (leaf, index ^ 2, size, proof, top)),
        ("size * 2", (leaf, index, size * 2, proof, top)),
        ("size / 2", (leaf, index, size // 2, proof, top)),
        ("flipped leaf", (flip(leaf), index, size, proof, top)),
        ("wrong leaf", (b"WrongLeaf", index, size, proof, top)),
        ("flipped root", (leaf, index, size, proof, flip(top))),
        ("empty root", (leaf, index, size, proof, EMPTY_ROOT)),
        ("random root", (leaf, index, size, proof, SOME_HASH)),
        ("trailing garbage", (leaf, index, size, [*proof, b""], top)),
        ("trailing root", (leaf, index, size, [*proof, top], top)),
        ("preceding garbage", (leaf, index, size, [b"", *proof], top)),
        ("preceding root", (leaf, index, size, [top, *proof], top)),
    ]
    for i in range(len(proof)):
        wrong = list(proof)
        wrong[i] = flip(wrong[i])
        probes.append((f"flipped proof[{i}]", (leaf, index, size, wrong, top)))
    if proof:
        probes.append(("truncated", (leaf, index, size, proof[:-1], top)))
    if len(proof) > 1:
        probes.append(("inserted", (leaf, index, size, [proof[0], SOME_HASH, *proof[1:]], top)))
    return probes


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION[1:])
def test_corrupted_inclusion_proofs_fail(index: int, size: int, proof: list[bytes]) -> None:
    wrongly_verified = [
        name for name, args in inclusion_probes(index, size, proof) if verifies(verify_inclusion, args)
    ]
    assert wrongly_verified == []


def test_inclusion_error_messages_say_what_failed() -> None:
    leaf, proof = leaf_hash(LEAVES[5]), INCLUSION[-1][2]
    with pytest.raises(ProofError, match="has 2 hashes; leaf 5 of a tree of 8 takes 3"):
        verify_inclusion(leaf, 5, 8, proof[:2], ROOTS[8])
    with pytest.raises(ProofError, match="does not lead to the root"):
        verify_inclusion(leaf, 5, 8, proof, flip(ROOTS[8]))
    with pytest.raises(ProofError, match="not in a tree of 8"):
        verify_inclusion(leaf, 8, 8, proof, ROOTS[8])
    with pytest.raises(ProofError, match="proof hash 1 is 0 bytes"):
        verify_inclusion(leaf, 5, 8, [proof[0], b"", proof[2]], ROOTS[8])


@pytest.mark.parametrize(("index", "size"), [(0, 0), (0, 1), (1, 0), (2, 1)])
def test_inclusion_degenerate_sizes_fail(index: int, size: int) -> None:
    for leaf, top in ((SOME_HASH, b""), (b"", EMPTY_ROOT), (SOME_HASH, EMPTY_ROOT)):
        with pytest.raises(ProofError):
            verify_inclusion(leaf, index, size, [], top)


def test_single_leaf_tree_root_is_the_leaf() -> None:
    leaf = leaf_hash(b"data")
    verify_inclusion(leaf, 0, 1, [], leaf)
    with pytest.raises(ProofError):
        verify_inclusion(leaf, 0, 1, [], EMPTY_ROOT)


def consistency_probes(old: int, new: int, proof: list[bytes]) -> list[tuple[str, tuple[Any, ...]]]:
    r1, r2 = ROOTS[old], ROOTS[new]
    probes: list[tuple[str, tuple[Any, ...]]] = [
        ("old - 1", (old - 1, new, r1, r2, proof)),
        ("old + 1", (old + 1, new, r1, r2, proof)),
        ("old ^ 2", (old ^ 2, new, r1, r2, proof)),
        ("new * 2", (old, new * 2, r1, r2, proof)),
        ("new / 2", (old, new // 2, r1, r2, proof)),
        ("flipped old root", (old, new, flip(r1), r2, proof)),
        ("flipped new root", (old, new, r1, flip(r2), proof)),
        ("swapped roots", (old, new, r2, r1, proof)),
        ("empty proof", (old, new, r1, r2, [])),
        ("trailing garbage", (old, new, r1, r2, [*proof, b""])),
        ("trailing old root", (old, new, r1, r2, [*proof, r1])),
        ("trailing new root", (old, new, r1, r2, [*proof, r2])),
        ("preceding old root", (old, new, r1, r2, [r1, *proof])),
        ("preceding proof[0]", (old, new, r1, r2, [proof[0], *proof])),
        ("truncated", (old, new, r1, r2, proof[:-1])),
    ]
    for i in range(len(proof)):
        wrong = list(proof)
        wrong[i] = flip(wrong[i], 4)
        probes.append((f"flipped proof[{i}]", (old, new, r1, r2, wrong)))
    return probes


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY[1:])
def test_corrupted_consistency_proofs_fail(old: int, new: int, proof: list[bytes]) -> None:
    probes = consistency_probes(old, new, proof)
    wrongly_verified = [name for name, args in probes if verifies(verify_consistency, args)]
    assert wrongly_verified == []


def test_consistency_edge_rules() -> None:
    r1, r2 = ROOTS[1], ROOTS[2]
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    verify_consistency(0, 2, EMPTY_ROOT, r2, [])  # every tree extends the empty tree
    verify_consistency(1, 1, r1, r1, [])
    with pytest.raises(ProofError, match="old size 2 is larger than new size 1"):
        verify_consistency(2, 1, r2, r1, [])
    with pytest.raises(ProofError, match="old size 1 is larger than new size 0"):
        verify_consistency(1, 0, r1, EMPTY_ROOT, [])
    with pytest.raises(ProofError, match="same size 1 have different root hashes"):
        verify_consistency(1, 1, r1, r2, [])
    with pytest.raises(ProofError, match="must be empty"):
        verify_consistency(1, 1, r1, r1, [EMPTY_ROOT])
    with pytest.raises(ProofError, match="must be empty"):
        verify_consistency(0, 1, EMPTY_ROOT, r1, [EMPTY_ROOT])
    with pytest.raises(ProofError, match="must be empty"):
        verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT])
    with pytest.raises(ProofError, match="empty-tree hash"):
        verify_consistency(0, 1, r1, r1, [])
    with pytest.raises(ProofError, match="empty-tree hash"):
        verify_consistency(0, 0, r1, r1, [])
    with pytest.raises(ProofError, match="takes 1"):
        verify_consistency(1, 2, r1, r2, [])
    with pytest.raises(ProofError, match="old root hash is 12 bytes"):
        verify_consistency(1, 2, b"don't care 1", r2, [NODES[0][1]])


def test_generation_rejects_bad_arguments(store: MemoryStore) -> None:
    with pytest.raises(ValueError, match="not in a tree"):
        inclusion_proof(8, 8, store)
    with pytest.raises(ValueError, match="larger than new size"):
        consistency_proof(5, 4, store)
    assert consistency_proof(0, 8, store) == []
    assert consistency_proof(8, 8, store) == []
    with pytest.raises(MissingNodeError):
        root(9, store)
    with pytest.raises(MissingNodeError):
        inclusion_proof(0, 16, store)


def test_memory_store_refuses_gaps_and_rewrites() -> None:
    store = build([leaf_hash(leaf) for leaf in LEAVES[:3]])
    with pytest.raises(ValueError, match="gap"):
        store.add({(0, 5): SOME_HASH})
    with pytest.raises(ValueError, match="another hash"):
        store.add({(0, 1): SOME_HASH})
    with pytest.raises(ValueError, match="32"):
        new_nodes(3, [b"short"], store)


# --- efficiency -----------------------------------------------------------------------------


def test_each_operation_is_one_batch_of_logarithmic_keys() -> None:
    size = 100_003
    store = CountingStore(build([leaf_hash(i.to_bytes(4, "big")) for i in range(size)], batch=997))
    bound = 2 * size.bit_length()
    for run in (
        lambda: root(size, store),
        lambda: inclusion_proof(size - 2, size, store),
        lambda: inclusion_proof(12_345, size, store),
        lambda: consistency_proof(54_321, size, store),
        lambda: consistency_proof(65_536, size, store),
        lambda: new_nodes(size, [SOME_HASH] * 1000, store),
    ):
        store.calls.clear()
        run()
        assert len(store.calls) == 1
        assert store.calls[0] <= bound


# --- properties against the RFC's recursive definitions --------------------------------------


def ref_path(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) exactly as RFC 9162 2.1.3.1 writes it."""
    n = len(leaves)
    if n == 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if index < k:
        return [*ref_path(index, leaves[:k]), tree_hash(leaves[k:])]
    return [*ref_path(index - k, leaves[k:]), tree_hash(leaves[:k])]


def ref_subproof(m: int, leaves: Sequence[bytes], whole: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) exactly as RFC 9162 2.1.4.1 writes it."""
    n = len(leaves)
    if m == n:
        return [] if whole else [tree_hash(leaves)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return [*ref_subproof(m, leaves[:k], whole), tree_hash(leaves[k:])]
    return [*ref_subproof(m - k, leaves[k:], False), tree_hash(leaves[:k])]


@st.composite
def trees(draw: st.DrawFn) -> tuple[list[bytes], list[int]]:
    size = draw(st.integers(min_value=1, max_value=300))
    leaves = [leaf_hash(draw(st.binary(max_size=4)) + i.to_bytes(2, "big")) for i in range(size)]
    cuts = sorted(draw(st.lists(st.integers(min_value=0, max_value=size), max_size=8)))
    return leaves, cuts


@settings(max_examples=60, deadline=None)
@given(tree=trees(), data=st.data())
def test_store_proofs_equal_the_rfc_definitions(
    tree: tuple[list[bytes], list[int]], data: st.DataObject
) -> None:
    leaves, _ = tree
    n = len(leaves)
    store = build(leaves)
    size = data.draw(st.integers(min_value=1, max_value=n), label="size")
    index = data.draw(st.integers(min_value=0, max_value=size - 1), label="index")
    old = data.draw(st.integers(min_value=0, max_value=size), label="old")
    top = tree_hash(leaves[:size])
    assert root(size, store) == top

    path = inclusion_proof(index, size, store)
    assert path == ref_path(index, leaves[:size])
    verify_inclusion(leaves[index], index, size, path, top)

    proof = consistency_proof(old, size, store)
    expected = ref_subproof(old, leaves[:size], True) if 0 < old < size else []
    assert proof == expected
    verify_consistency(old, size, tree_hash(leaves[:old]), top, proof)


@settings(max_examples=60, deadline=None)
@given(tree=trees())
def test_batch_splits_give_the_same_nodes(tree: tuple[list[bytes], list[int]]) -> None:
    leaves, cuts = tree
    whole = build(leaves)
    split = MemoryStore()
    for start, end in zip([0, *cuts], [*cuts, len(leaves)], strict=True):
        split.append(leaves[start:end])
    assert split.all_nodes() == whole.all_nodes()
    for size in {1, len(leaves), *[c for c in cuts if c > 0]}:
        assert root(size, split) == tree_hash(leaves[:size])
