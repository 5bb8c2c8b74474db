"""The service's side of the RFC 9162 Merkle tree: which hashes to keep, and proofs made from them.

The tree is kept as its complete subtrees: node ``(level, index)`` is the hash of the ``2**level``
leaves from ``index * 2**level`` on. Every such node is final once its last leaf is in, so the
writer stores each one once, as ``Frontier.extend`` completes it, and never rewrites it. A proof or
a root for any past size then needs O(log n) of them: ``*_keys`` says which (one read of the store),
``*_proof`` and ``root_at`` compose them. A range that is not a complete subtree (the right edge of
an older, smaller tree) is hashed from the complete subtrees it splits into.

Pure: no I/O. Verification lives in ``ledger.verify``, which stands alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from ledger.verify import EMPTY_ROOT, node_hash

Node = tuple[int, int]
"""(level, index): the complete subtree of ``2**level`` leaves starting at leaf ``index * 2**level``."""

Row = tuple[int, int, bytes]
"""(level, index, hash): a stored node."""


def frontier_keys(size: int) -> list[Node]:
    """The largest complete subtrees that cover leaves ``[0, size)``, left to right."""
    return _range_keys(0, size)


def _range_keys(start: int, end: int) -> list[Node]:
    """The complete subtrees that ``[start, end)`` splits into, left to right, largest first.

    ``start`` is a multiple of the largest power of two in ``end - start``, as every range of an
    RFC 9162 tree is: so each piece starts where a complete subtree of its size can.
    """
    keys = []
    while start < end:
        level = (end - start).bit_length() - 1
        keys.append((level, start >> level))
        start += 1 << level
    return keys


def _range_hash(start: int, end: int, nodes: Mapping[Node, bytes]) -> bytes:
    """MTH of leaves ``[start, end)``, a range of an RFC 9162 tree, from its complete subtrees."""
    width = end - start
    if not width & (width - 1):  # a complete subtree itself, as most ranges of a proof are
        level = width.bit_length() - 1
        return nodes[(level, start >> level)]
    return _fold([nodes[key] for key in _range_keys(start, end)])


def _fold(hashes: Sequence[bytes]) -> bytes:
    """The hash of adjacent complete subtrees (largest first, at least one), hashed right to left."""
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = node_hash(left, result)
    return result


@dataclass(frozen=True)
class Frontier:
    """A tree of ``size`` leaves as the hashes of ``frontier_keys(size)``: enough to add leaves."""

    size: int
    hashes: tuple[bytes, ...]

    EMPTY: ClassVar[Frontier]

    def __post_init__(self) -> None:
        if self.size < 0 or len(self.hashes) != self.size.bit_count():
            raise ValueError(f"a tree of {self.size} leaves has {self.size.bit_count()} frontier hashes")

    @classmethod
    def load(cls, size: int, nodes: Mapping[Node, bytes]) -> Frontier:
        """The frontier of a stored tree of ``size`` leaves."""
        return cls(size, tuple(nodes[key] for key in frontier_keys(size)))

    def nodes(self) -> dict[Node, bytes]:
        """Its hashes by the keys of the subtrees they are the hashes of."""
        return dict(zip(frontier_keys(self.size), self.hashes, strict=True))

    def root(self) -> bytes:
        """The root hash of the tree (RFC 9162 MTH)."""
        return _fold(self.hashes) if self.hashes else EMPTY_ROOT

    def extend(self, leaf_hashes: Sequence[bytes]) -> tuple[Frontier, list[Row]]:
        """The tree with these leaves added, and every node they complete, leaves included."""
        sha256 = hashlib.sha256
        stack, size, rows = list(self.hashes), self.size, []
        for leaf in leaf_hashes:
            rows.append((0, size, leaf))
            node, index, level = leaf, size, 0
            while index & 1:
                node = sha256(b"\x01" + stack.pop() + node).digest()
                index >>= 1
                level += 1
                rows.append((level, index, node))
            stack.append(node)
            size += 1
        return Frontier(size, tuple(stack)), rows


Frontier.EMPTY = Frontier(0, ())


def build_nodes(leaf_hashes: Sequence[bytes]) -> list[Row]:
    """Every complete node of the tree of these leaves, leaves included, in the order they complete."""
    return Frontier.EMPTY.extend(leaf_hashes)[1]


def root_at(size: int, nodes: Mapping[Node, bytes]) -> bytes:
    """The root hash of the tree of the first ``size`` leaves."""
    return _range_hash(0, size, nodes) if size else EMPTY_ROOT


def _inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose hashes make RFC 9162 PATH(index, D[0:size]), leaf end first."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of size {size}")
    ranges = []
    start, end = 0, size
    while end - start > 1:
        split = start + (1 << ((end - start - 1).bit_length() - 1))  # k: the largest power of 2 < n
        if index < split:
            ranges.append((split, end))
            end = split
        else:
            ranges.append((start, split))
            start = split
    ranges.reverse()
    return ranges


def _consistency_ranges(old: int, new: int) -> list[tuple[int, int]]:
    """The leaf ranges whose hashes make RFC 9162 PROOF(old, D[0:new]), in proof order."""
    if not 0 < old <= new:
        raise ValueError(f"no consistency proof goes from size {old} to size {new}")
    ranges = []
    start, end, whole = 0, new, True  # whole: the old tree is the left edge of [start, end)
    while old != end:
        split = start + (1 << ((end - start - 1).bit_length() - 1))
        if old <= split:
            ranges.append((split, end))
            end = split
        else:
            ranges.append((start, split))
            start, whole = split, False
    if not whole:
        ranges.append((start, end))
    ranges.reverse()
    return ranges


def _keys(ranges: list[tuple[int, int]]) -> set[Node]:
    return {key for start, end in ranges for key in _range_keys(start, end)}


def inclusion_keys(index: int, size: int) -> set[Node]:
    """The stored nodes that the inclusion proof of leaf ``index`` in the tree of ``size`` needs."""
    return _keys(_inclusion_ranges(index, size))


def inclusion_proof(index: int, size: int, nodes: Mapping[Node, bytes]) -> list[bytes]:
    """RFC 9162 §2.1.3.1 inclusion proof of leaf ``index`` in the tree of ``size`` leaves."""
    return [_range_hash(start, end, nodes) for start, end in _inclusion_ranges(index, size)]


def head_inclusion_proof(
    index: int, head: Frontier, nodes: Mapping[Node, bytes], around: dict[int, list[bytes]]
) -> list[bytes]:
    """The same proof in the tree ``head``, for a leaf whose siblings inside the largest complete
    subtree holding it are in ``nodes`` (as a batch's are, in the nodes it completed and the
    frontier it started from).

    The proof is the leaf's path up that subtree, then the hashes around the subtree: the fold of
    the smaller subtrees to its right, and the larger ones to its left, nearest first. Those are
    the same for every leaf of the subtree, so they are worked out once, in ``around``.
    """
    if not 0 <= index < head.size:
        raise ValueError(f"leaf {index} is not in a tree of size {head.size}")
    level = (index ^ head.size).bit_length() - 1  # the subtree's: the highest bit where they differ
    position = (head.size >> level + 1).bit_count()  # larger subtrees to its left
    tail = around.get(position)
    if tail is None:
        hashes = head.hashes
        right = [_fold(hashes[position + 1:])] if position + 1 < len(hashes) else []
        tail = around[position] = right + list(reversed(hashes[:position]))
    return [nodes[(h, (index >> h) ^ 1)] for h in range(level)] + tail


def consistency_keys(old: int, new: int) -> set[Node]:
    """The stored nodes that the consistency proof from size ``old`` to size ``new`` needs."""
    return _keys(_consistency_ranges(old, new))


def consistency_proof(old: int, new: int, nodes: Mapping[Node, bytes]) -> list[bytes]:
    """RFC 9162 §2.1.4.1 consistency proof from the tree of ``old`` leaves to the one of ``new``."""
    return [_range_hash(start, end, nodes) for start, end in _consistency_ranges(old, new)]
