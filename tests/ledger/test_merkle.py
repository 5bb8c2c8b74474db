"""The service's tree gives the published RFC 6962 hashes and proofs, and every proof it makes
verifies with the offline verifier; any changed byte makes it fail."""

from __future__ import annotations

import functools
import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.merkle import (
    Frontier,
    Node,
    build_nodes,
    consistency_keys,
    consistency_proof,
    frontier_keys,
    head_inclusion_proof,
    inclusion_keys,
    inclusion_proof,
    root_at,
)
from ledger.verify import (
    EMPTY_ROOT,
    VerificationError,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)

TREE = json.loads((Path(__file__).parent / "data" / "rfc6962_tree.json").read_text())
REFERENCE = [leaf_hash(bytes.fromhex(data)) for data in TREE["leaves"]]
RANDOM = random.Random(9162)
LEAVES = [leaf_hash(RANDOM.randbytes(RANDOM.randrange(40))) for _ in range(400)]
NODES = {(level, index): digest for level, index, digest in build_nodes(LEAVES)}


def unhex(hashes: Sequence[str]) -> list[bytes]:
    return [bytes.fromhex(h) for h in hashes]


# --- RFC 9162 §2.1, written as the RFC defines it: recursively, over the leaves ----------------------


def _split(n: int) -> int:
    return 1 << ((n - 1).bit_length() - 1)  # the largest power of two smaller than n


@functools.cache
def mth(start: int, end: int) -> bytes:
    if end - start == 0:
        return EMPTY_ROOT
    if end - start == 1:
        return LEAVES[start]
    k = start + _split(end - start)
    return node_hash(mth(start, k), mth(k, end))


def path(m: int, start: int, end: int) -> list[bytes]:
    if end - start == 1:
        return []
    k = _split(end - start)
    if m < k:
        return [*path(m, start, start + k), mth(start + k, end)]
    return [*path(m - k, start + k, end), mth(start, start + k)]


def subproof(m: int, start: int, end: int, whole: bool) -> list[bytes]:
    if m == end - start:
        return [] if whole else [mth(start, end)]
    k = _split(end - start)
    if m <= k:
        return [*subproof(m, start, start + k, whole), mth(start + k, end)]
    return [*subproof(m - k, start + k, end, False), mth(start, start + k)]


# --- the published reference tree --------------------------------------------------------------------


def test_the_frontier_is_the_binary_decomposition_of_the_size() -> None:
    assert frontier_keys(0) == []
    assert frontier_keys(1) == [(0, 0)]
    assert frontier_keys(7) == [(2, 0), (1, 2), (0, 6)]
    assert frontier_keys(8) == [(3, 0)]
    assert frontier_keys(1_000_000) == [(19, 0), (18, 2), (17, 6), (16, 14), (14, 60), (9, 1952), (6, 15624)]


def test_extending_the_reference_tree_completes_exactly_its_published_nodes() -> None:
    frontier, rows = Frontier.EMPTY.extend(REFERENCE)
    published = {
        (level, index, h) for level, hashes in enumerate(TREE["nodes"]) for index, h in enumerate(hashes)
    }
    assert {(level, index, h.hex()) for level, index, h in rows} == published
    assert len(rows) == len(published) == 15
    assert frontier.root().hex() == TREE["roots"][8]


@pytest.mark.parametrize("size", range(9))
def test_each_size_of_the_reference_tree_has_its_published_root(size: int) -> None:
    frontier, rows = Frontier.EMPTY.extend(REFERENCE[:size])
    nodes = {(level, index): h for level, index, h in rows}
    assert frontier.root().hex() == root_at(size, nodes).hex() == TREE["roots"][size]
    assert Frontier.load(size, nodes) == frontier


@pytest.mark.parametrize("case", TREE["inclusion_proofs"], ids=str)
def test_inclusion_proofs_of_the_reference_tree_are_the_published_ones(case: dict[str, Any]) -> None:
    nodes = {(level, index): h for level, index, h in build_nodes(REFERENCE)}
    assert inclusion_proof(case["index"], case["size"], nodes) == unhex(case["proof"])


@pytest.mark.parametrize("case", TREE["consistency_proofs"], ids=str)
def test_consistency_proofs_of_the_reference_tree_are_the_published_ones(case: dict[str, Any]) -> None:
    nodes = {(level, index): h for level, index, h in build_nodes(REFERENCE)}
    assert consistency_proof(case["old"], case["new"], nodes) == unhex(case["proof"])


@pytest.mark.parametrize("case", TREE["inclusion_nodes"], ids=str)
def test_an_inclusion_proof_needs_the_nodes_transparency_dev_names(case: dict[str, Any]) -> None:
    assert inclusion_keys(case["index"], case["size"]) == {tuple(n) for n in case["nodes"]}


@pytest.mark.parametrize("case", TREE["consistency_nodes"], ids=str)
def test_a_consistency_proof_needs_the_nodes_transparency_dev_names(case: dict[str, Any]) -> None:
    assert consistency_keys(case["old"], case["new"]) == {tuple(n) for n in case["nodes"]}


# --- every proof of trees of random leaves -----------------------------------------------------------


def test_leaves_added_in_any_batches_give_the_same_nodes_and_frontier() -> None:
    frontier, rows = Frontier.EMPTY, []
    start = 0
    while start < len(LEAVES):
        end = start + RANDOM.choice([1, 2, 3, 7, 64])
        frontier, new = frontier.extend(LEAVES[start:end])
        rows += new
        start = end
    assert rows == build_nodes(LEAVES) and frontier == Frontier.EMPTY.extend(LEAVES)[0]
    assert len(rows) == 2 * len(LEAVES) - len(frontier.hashes)  # each node once, never twice


def test_every_root_up_to_400_leaves_is_the_rfc_root() -> None:
    frontier = Frontier.EMPTY
    for size in range(1, 401):
        frontier = frontier.extend(LEAVES[size - 1 : size])[0]
        assert root_at(size, NODES) == frontier.root() == mth(0, size)


def test_every_inclusion_proof_up_to_64_leaves_is_the_rfc_path_and_verifies() -> None:
    for size in range(1, 65):
        for index in range(size):
            proof = inclusion_proof(index, size, NODES)
            assert proof == path(index, 0, size)
            verify_inclusion(LEAVES[index], index, size, proof, mth(0, size))


def test_a_batch_proves_its_leaves_from_its_own_nodes_and_the_frontier_it_started_from() -> None:
    for before in range(0, 64):
        for after in range(before + 1, min(before + 40, 200)):
            start = Frontier.load(before, NODES)
            head, rows = start.extend(LEAVES[before:after])
            nodes = dict(zip(frontier_keys(before), start.hashes, strict=True))
            nodes.update(((level, index), digest) for level, index, digest in rows)
            around: dict[int, list[bytes]] = {}  # shared by the batch's proofs, as a seal shares it
            for index in range(before, after):
                assert head_inclusion_proof(index, head, nodes, around) == path(index, 0, after)
    with pytest.raises(ValueError, match="not in a tree of size 5"):
        head_inclusion_proof(5, Frontier.load(5, NODES), NODES, {})


def test_every_consistency_proof_up_to_64_leaves_is_the_rfc_proof_and_verifies() -> None:
    for new in range(1, 65):
        for old in range(1, new + 1):
            proof = consistency_proof(old, new, NODES)
            assert proof == subproof(old, 0, new, True)
            verify_consistency(old, new, proof, mth(0, old), mth(0, new))


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 400).flatmap(lambda size: st.tuples(st.integers(0, size - 1), st.just(size))))
def test_inclusion_proofs_of_larger_trees_verify(case: tuple[int, int]) -> None:
    index, size = case
    proof = inclusion_proof(index, size, {key: NODES[key] for key in inclusion_keys(index, size)})
    assert proof == path(index, 0, size)
    verify_inclusion(LEAVES[index], index, size, proof, mth(0, size))


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 400).flatmap(lambda new: st.tuples(st.integers(1, new), st.just(new))))
def test_consistency_proofs_of_larger_trees_verify(case: tuple[int, int]) -> None:
    old, new = case
    proof = consistency_proof(old, new, {key: NODES[key] for key in consistency_keys(old, new)})
    assert proof == subproof(old, 0, new, True)
    verify_consistency(old, new, proof, mth(0, old), mth(0, new))


def test_the_keys_are_exactly_the_nodes_a_proof_reads() -> None:
    for index, size in [(0, 1), (5, 6), (81, 95), (200, 333), (399, 400)]:
        _assert_reads_exactly(inclusion_keys(index, size), functools.partial(inclusion_proof, index, size))
    for old, new in [(1, 2), (3, 7), (81, 95), (128, 333), (399, 400)]:
        _assert_reads_exactly(consistency_keys(old, new), functools.partial(consistency_proof, old, new))
    assert len(inclusion_keys(123_456, 1_000_000)) <= 2 * 20


def _assert_reads_exactly(keys: set[Node], prove: Callable[[dict[Node, bytes]], list[bytes]]) -> None:
    prove({key: NODES[key] for key in keys})
    for missing in keys:
        with pytest.raises(KeyError):
            prove({key: NODES[key] for key in keys - {missing}})


def flips(value: bytes) -> list[bytes]:
    return [value[:i] + bytes([value[i] ^ 0x80]) + value[i + 1 :] for i in range(len(value))]


@pytest.mark.parametrize(("index", "size"), [(0, 1), (0, 2), (6, 7), (81, 95), (200, 333), (399, 400)])
def test_flipping_any_byte_of_an_inclusion_proof_its_leaf_or_its_root_fails(index: int, size: int) -> None:
    proof, root = inclusion_proof(index, size, NODES), mth(0, size)
    for i, element in enumerate(proof):
        for changed in flips(element):
            with pytest.raises(VerificationError):
                verify_inclusion(LEAVES[index], index, size, [*proof[:i], changed, *proof[i + 1 :]], root)
    for changed in flips(LEAVES[index]):
        with pytest.raises(VerificationError):
            verify_inclusion(changed, index, size, proof, root)
    for changed in flips(root):
        with pytest.raises(VerificationError):
            verify_inclusion(LEAVES[index], index, size, proof, changed)


@pytest.mark.parametrize(("old", "new"), [(1, 2), (3, 7), (4, 8), (81, 95), (128, 333), (399, 400)])
def test_flipping_any_byte_of_a_consistency_proof_or_its_roots_fails(old: int, new: int) -> None:
    proof, root1, root2 = consistency_proof(old, new, NODES), mth(0, old), mth(0, new)
    for i, element in enumerate(proof):
        for changed in flips(element):
            with pytest.raises(VerificationError):
                verify_consistency(old, new, [*proof[:i], changed, *proof[i + 1 :]], root1, root2)
    for changed in flips(root1):
        with pytest.raises(VerificationError):
            verify_consistency(old, new, proof, changed, root2)
    for changed in flips(root2):
        with pytest.raises(VerificationError):
            verify_consistency(old, new, proof, root1, changed)


@pytest.mark.parametrize(("call", "args"), [
    (inclusion_keys, (0, 0)), (inclusion_keys, (5, 5)), (inclusion_keys, (-1, 5)),
    (consistency_keys, (0, 5)), (consistency_keys, (6, 5)),
])
def test_a_proof_outside_the_tree_is_refused(
    call: Callable[[int, int], object], args: tuple[int, int]
) -> None:
    with pytest.raises(ValueError):
        call(*args)


def test_a_consistency_proof_to_the_same_size_is_empty() -> None:
    assert consistency_proof(7, 7, NODES) == [] and consistency_keys(7, 7) == set()


def test_a_frontier_must_match_its_size() -> None:
    with pytest.raises(ValueError):
        Frontier(3, (EMPTY_ROOT,))
