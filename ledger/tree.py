"""The Merkle tree over the log (RFC 9162), kept beside it, and the checkpoints signed as it grows.

Leaf ``i`` is the stored body of the event at ``seq = i + 1``. The store keeps the hash of every
complete subtree of two leaves or more (``TREE``), written in the same transaction as the events
that complete it, so any proof costs one read of O(log n) rows and of the one or two events whose
leaf hashes it needs (a leaf's hash is its event's, so the log itself is the tree's lowest level);
and every signed checkpoint (``CHECKPOINTS``), one per committed batch, so any of them can be shown
again. The writer seals each batch (``LogTree.seal``)
before it appends it; a receipt is built from the batch's seal while it is recent, and from the
store afterwards, and both give the same bytes (Ed25519 signatures are deterministic).
"""

from __future__ import annotations

import asyncio
import binascii
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.errors import ConcurrencyError, LedgerError
from ledger.merkle import (
    Frontier,
    Node,
    consistency_keys,
    consistency_proof,
    frontier_keys,
    head_inclusion_proof,
    inclusion_keys,
    inclusion_proof,
    root_at,
)
from ledger.notes import NoteSigner
from ledger.sealing import SealWorker
from ledger.store import EventStore, Head, StoredEvent, fold_reads
from ledger.tables import Column, Row, TableSpec, TableWrites
from ledger.verify import Checkpoint, VerificationError, VerifierKey, leaf_hash, node_hash, verify_checkpoint

TREE = TableSpec(
    "merkle_tree", (Column("seq", int), Column("level", int), Column("hash", bytes)), key=2, replace=False,
)
"""Every complete subtree of two leaves or more: the ``2**level`` leaves that end with the event at
``seq``. Keyed by where it ends, so the nodes a batch completes are written side by side, at the end
of the table (keyed by level first, a batch would touch a page of every level)."""
CHECKPOINTS = TableSpec(
    "checkpoints", (Column("size", int), Column("note", str)), replace=False, seq_column="size",
)
"""Every signed checkpoint, by tree size: the C2SP signed note, as served."""
LEDGER_TABLES = (TREE, CHECKPOINTS)
RECENT_SEALS = 16  # batches whose receipts are built from memory (later, from the store)
_LAST = (1 << 62,)  # past every size


class TreeError(LedgerError):
    """The tree or the checkpoints disagree with the log, or with the configured key."""


def b64(data: bytes) -> str:
    """Standard base64, as hashes are written in JSON."""
    return binascii.b2a_base64(data, newline=False).decode("ascii")


_JSON = msgspec.json.Encoder().encode


class Receipt(msgspec.Struct, frozen=True, rename="camel"):
    """What proves one event is in the log: its leaf, an inclusion proof, and the signed
    checkpoint of a tree that holds it. msgspec encodes it as the API answers it and
    ``ledger.verify`` reads it (the hashes in standard base64)."""

    seq: int
    leaf_index: int
    leaf_hash: bytes
    tree_size: int
    inclusion_proof: list[bytes]
    checkpoint: str
    body: str

    @classmethod
    def of(
        cls, seq: int, leaf: bytes, size: int, proof: list[bytes], checkpoint: str, body: bytes
    ) -> Receipt:
        """The receipt of the event at ``seq`` whose stored body is ``body``."""
        return cls(seq, seq - 1, leaf, size, proof, checkpoint, body.decode("utf-8"))

    def as_json(self) -> dict[str, Any]:
        """The receipt as JSON values."""
        result: dict[str, Any] = msgspec.to_builtins(self)
        return result


@dataclass(frozen=True)
class Seal:
    """A batch's part of the tree: the nodes it completes and the checkpoint signed over it."""

    before: Frontier
    after: Frontier
    events: Sequence[StoredEvent]
    rows: list[Row]  # every node the batch completes, its leaves included
    note: str
    around: dict[int, list[bytes]] = field(default_factory=dict, compare=False)  # proofs share
    written: asyncio.Future[list[bytes]] | None = field(default=None, compare=False)
    """The receipts in JSON as the seal worker writes them, if it sealed the batch."""

    @cached_property
    def nodes(self) -> dict[Node, bytes]:
        """Every node a proof inside the batch's tree needs."""
        return _with_rows(self.before, self.rows)

    @cached_property
    def receipts_json(self) -> list[bytes]:
        """Every receipt of the batch as msgspec writes it, written one after another while the
        batch's nodes are at hand (asked for as its first vote is answered)."""
        first = self.events[0].seq
        return [_JSON(self.receipt(seq)) for seq in range(first, first + len(self.events))]

    @property
    def writes(self) -> TableWrites:
        """The rows to write with the batch."""
        return {TREE: _tree_rows(self.rows), CHECKPOINTS: [(self.after.size, self.note)]}

    def receipt(self, seq: int) -> Receipt:
        """The receipt of one event of this batch, from memory."""
        index, size = seq - 1, self.after.size
        body = self.events[seq - self.events[0].seq].body
        proof = head_inclusion_proof(index, self.after, self.nodes, self.around)
        return Receipt.of(seq, self.nodes[(0, index)], size, proof, self.note, body)

    def receipt_json(self, seq: int) -> bytes:
        """``receipt(seq)`` as msgspec writes it (the first ask writes the whole batch's)."""
        return self.receipts_json[seq - self.events[0].seq]


@dataclass(frozen=True)
class Signing:
    """How checkpoints are signed: the ledger's Ed25519 key, and the origin they name (the
    configured one; else the one the ledger's checkpoints already name; else ``default_origin``)."""

    key: Ed25519PrivateKey = field(repr=False)
    origin: str | None = None
    default_origin: str = "vote-ledger"


def seal_batch(signer: NoteSigner, before: Frontier, events: Sequence[StoredEvent]) -> Seal:
    """The seal of ``events`` appended to the tree ``before``: its nodes and signed checkpoint."""
    after, rows = before.extend([leaf_hash(event.body) for event in events])
    note = signer.sign_checkpoint(after.size, after.root())
    return Seal(before, after, events, rows, note)


class LogTree:
    """The tree as one writer extends it: its frontier, its signer, its recent seals, and the
    worker that seals its large batches (``ledger.sealing``), if it has one."""

    def __init__(
        self, store: EventStore, signer: NoteSigner, frontier: Frontier, worker: SealWorker | None = None
    ) -> None:
        self._store = store
        self.signer = signer
        self._frontier = frontier
        self._recent: deque[Seal] = deque(maxlen=RECENT_SEALS)
        self.worker = worker

    @classmethod
    async def open(cls, store: EventStore, signing: Signing) -> LogTree:
        """The tree at the log's head: built from the log first where the ledger has none yet (a
        ledger older than the tree), with a signer checked against the latest checkpoint's origin
        and key. A checkpoint of the head is signed if there is none (an empty log has none)."""
        await store.create_tables(LEDGER_TABLES)
        latest = await store.seek(CHECKPOINTS, _LAST, before=True)
        signer = _signer(signing, latest)
        tree = cls(store, signer, Frontier.EMPTY, SealWorker(signer, signing.key))
        head = await store.head()
        try:
            loaded = await tree._load(head.seq)
        except LedgerError:  # a tree table of another layout: the rebuild lays it out anew
            loaded = False
        if not loaded:
            await tree._build()
            head = await store.head()
        if head.seq and (latest is None or latest[0] < head.seq):  # a ledger older than the tree
            await tree._sign_head()
        return tree

    async def _load(self, size: int) -> bool:
        """Take the frontier of ``size`` from the store; False if the store lacks it."""
        keys = frontier_keys(size)
        nodes = await _nodes(self._store, set(keys))
        if len(nodes) != len(keys):
            return False
        self._frontier = Frontier(size, tuple(nodes[key] for key in keys))
        return True

    async def _build(self) -> None:
        """Write the whole tree from the log, in one exclusive transaction."""
        async with self._store.rewrite_tables() as tx:
            tiers = list(levels(await _leaves(self._store, tx.head.seq)))
            await tx.replace(TREE, stored_rows(tiers))
        self._frontier = Frontier.load(tx.head.seq, _Levels(tiers))

    async def _sign_head(self) -> None:
        while True:
            head = await self._store.head()
            await self._catch_up(head)
            note = self.signer.sign_checkpoint(self._frontier.size, self._frontier.root())
            try:
                if not await self._store.append(head, [], {CHECKPOINTS: [(head.seq, note)]}):
                    return
            except ConcurrencyError:
                if await self.checkpoint(head.seq) == note:  # another process, opening it too
                    return
                raise

    async def _catch_up(self, head: Head) -> None:
        if self._frontier.size != head.seq and not await self._load(head.seq):
            raise TreeError(f"the Merkle tree stops short of seq {head.seq}: run the rebuild")

    async def seal(self, head: Head, events: Sequence[StoredEvent]) -> Seal:
        """The tree rows and the signed checkpoint of a batch to append after ``head``."""
        await self._catch_up(head)
        before = self._frontier
        sealed = None if self.worker is None else await self.worker.seal(before, events)
        if sealed is None:
            return seal_batch(self.signer, before, events)
        (size, hashes, rows, note), written = sealed
        return Seal(before, Frontier(size, hashes), events, rows, note, written=written)

    async def start_worker(self) -> None:
        """Start the seal worker (without waiting for it to be ready: until it is, batches are
        sealed here). A tree whose worker was never started seals every batch itself."""
        if self.worker is not None:
            await self.worker.start(ready=False)

    async def close(self) -> None:
        """End the seal worker, if one runs."""
        if self.worker is not None:
            await self.worker.close()

    def sealed(self, seal: Seal) -> None:
        """The batch is durable: the tree now ends with it."""
        self._frontier = seal.after
        self._recent.append(seal)

    async def receipt(self, seq: int) -> Receipt:
        """The receipt of the event at ``seq``, against the checkpoint of the batch it came in."""
        seal = self._recent_seal(seq)
        if seal is not None:
            return seal.receipt(seq)
        found = await self._store.seek(CHECKPOINTS, (seq,))
        if found is None or seq < 1:
            raise TreeError(f"no checkpoint covers seq {seq}")
        size, note = found
        body = await _body(self._store, seq)
        proof = await self.inclusion(seq, size)
        return Receipt.of(seq, proof.leaf, size, proof.hashes, note, body)

    async def receipt_json(self, seq: int) -> bytes:
        """``receipt(seq)`` as JSON (written faster while its batch is recent)."""
        seal = self._recent_seal(seq)
        if seal is None:
            return _JSON(await self.receipt(seq))
        if seal.written is not None:
            try:
                return (await asyncio.shield(seal.written))[seq - seal.events[0].seq]
            except Exception:  # the worker failed before it wrote them: written here instead
                pass
        return seal.receipt_json(seq)

    def _recent_seal(self, seq: int) -> Seal | None:
        for seal in reversed(self._recent):
            if seal.before.size < seq <= seal.after.size:
                return seal
        return None

    async def inclusion(self, seq: int, size: int) -> Inclusion:
        """The inclusion proof of the leaf of ``seq`` in the tree of ``size`` leaves."""
        keys = inclusion_keys(seq - 1, size) | {(0, seq - 1)}
        nodes = await self._nodes(keys)
        return Inclusion(nodes[(0, seq - 1)], inclusion_proof(seq - 1, size, nodes))

    async def consistency(self, old: int, new: int) -> list[bytes]:
        """The consistency proof from the tree of ``old`` leaves to the tree of ``new``."""
        return consistency_proof(old, new, await self._nodes(consistency_keys(old, new)))

    async def _nodes(self, keys: set[Node]) -> dict[Node, bytes]:
        nodes = await _nodes(self._store, keys)
        if len(nodes) != len(keys):
            raise TreeError("the Merkle tree lacks nodes a proof needs: run the audit")
        return nodes

    async def checkpoint(self, size: int | None = None) -> str | None:
        """The signed checkpoint of ``size`` leaves (the latest when None), if one was signed."""
        if size is None:
            found = await self._store.seek(CHECKPOINTS, _LAST, before=True)
        else:
            rows = await self._store.lookup(CHECKPOINTS, [(size,)])
            found = rows[0] if rows else None
        return None if found is None else str(found[1])


@dataclass(frozen=True)
class Inclusion:
    """A leaf's hash and the hashes that prove it is in a tree."""

    leaf: bytes
    hashes: list[bytes]


async def signer_for(store: EventStore, signing: Signing) -> NoteSigner:
    """The signer of the ledger's checkpoints, checked against the latest of them: the same origin
    and the same key, or a TreeError."""
    return _signer(signing, await store.seek(CHECKPOINTS, _LAST, before=True))


def _signer(signing: Signing, latest: Row | None) -> NoteSigner:
    note = None if latest is None else str(latest[1])
    origin = signing.origin or (note and _origin_of(note)) or signing.default_origin
    signer = NoteSigner(origin, signing.key)
    if note is not None:
        _check_signer(note, signer)
    return signer


def _check_signer(note: str, signer: NoteSigner) -> None:
    """The signer must be the one that signed the ledger's checkpoints so far."""
    key = VerifierKey.parse(signer.verifier_key)
    try:
        verify_checkpoint(note, key)
    except VerificationError as exc:
        origin = _origin_of(note)
        if origin is not None and origin != signer.origin:
            raise TreeError(
                f"the ledger's checkpoints name the origin {origin!r}, not {signer.origin!r}"
            ) from exc
        raise TreeError(f"the ledger's latest checkpoint was not signed with this key: {exc}") from exc


def _origin_of(note: str) -> str | None:
    return note.split("\n", 1)[0] if "\n" in note else None


async def _nodes(store: EventStore, keys: set[Node]) -> dict[Node, bytes]:
    """The nodes with these keys that exist: leaves from their events, the others from ``TREE``."""
    leaves = sorted(idx for level, idx in keys if level == 0)
    nodes = {(0, idx): leaf_hash(await _body(store, idx + 1)) for idx in leaves}
    inner = sorted(((idx + 1) << level, level) for level, idx in keys if level)
    rows = await store.lookup(TREE, inner)
    nodes.update(((level, (seq >> level) - 1), digest) for seq, level, digest in rows)
    return nodes


async def _body(store: EventStore, seq: int) -> bytes:
    """The stored body of the event at ``seq``."""
    async for chunk in store.read(seq - 1, seq):
        for event in chunk:
            return event.body
    raise TreeError(f"the log has no event at seq {seq}")


async def _leaves(store: EventStore, upto: int) -> list[bytes]:
    return [
        leaf_hash(body) async for rows in fold_reads(store).read_bodies(upto=upto) for _, body, _, _ in rows
    ]


def levels(leaves: list[bytes]) -> Iterator[list[bytes]]:
    """The complete subtrees' hashes, level by level from the leaves up."""
    level = leaves
    while level:
        yield level
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]


def stored_rows(tiers: list[list[bytes]]) -> list[Row]:
    """The rows ``TREE`` holds for these levels, in key order: every node above the leaves, by the
    seq it ends with (a node of ``level`` ends with every ``2**level``-th event)."""
    rows: list[Row] = []
    for seq in range(2, len(tiers[0]) + 1 if tiers else 0, 2):
        level = 1
        while level < len(tiers) and not seq & ((1 << level) - 1):
            rows.append((seq, level, tiers[level][(seq >> level) - 1]))
            level += 1
    return rows


class _Levels(Mapping[Node, bytes]):
    """Nodes by key, answered from the levels."""

    def __init__(self, tiers: list[list[bytes]]) -> None:
        self._tiers = tiers

    def __getitem__(self, key: Node) -> bytes:
        level, idx = key
        return self._tiers[level][idx]

    def __iter__(self) -> Iterator[Node]:
        return ((level, idx) for level, tier in enumerate(self._tiers) for idx in range(len(tier)))

    def __len__(self) -> int:
        return sum(map(len, self._tiers))


@dataclass
class TreeCheck:
    """What the tree's check found: the expected rows when they differ, and the first fault."""

    fault: str | None = None
    fault_seq: int | None = None
    rows: list[Row] | None = None  # the rows the tree must hold, when the stored ones differ
    frontier: Frontier | None = None  # of the tree checked, when it was found right


async def check_tree(store: EventStore, upto: int, appending: bool = False) -> TreeCheck:
    """Recompute the tree over events 1 to ``upto`` and compare it with the stored one, node by
    node from the lowest level up, then the root of every checkpoint of a size up to ``upto``.
    Names the first wrong node or checkpoint. With ``appending`` (a check made while appends go
    on), the nodes of events after ``upto`` are not part of it; else they are a fault."""
    tiers = list(levels(await _leaves(store, upto)))
    nodes = _Levels(tiers)
    check = TreeCheck()
    stored = await store.rows(TREE)
    if appending:
        stored = [row for row in stored if row[0] <= upto]
    expected = stored_rows(tiers)
    for have, want in zip(stored, expected, strict=False):
        if tuple(have) != want:
            end, level = min(tuple(have[:2]), want[:2])
            check.fault = f"Merkle tree {_describe(end, level)} differs from the log's"
            check.fault_seq = end - (1 << level) + 1
            break
    if check.fault is None and not stored and expected:
        check.fault = "the ledger has no Merkle tree yet: a rebuild, or serving it, builds it"
    elif check.fault is None and len(stored) != len(expected):
        many = "more" if len(stored) > len(expected) else "fewer"
        check.fault = f"the Merkle tree holds {len(stored)} nodes, {many} than the log's {len(expected)}"
    if check.fault is not None:
        check.rows = expected
        return check
    for size, note in await store.rows(CHECKPOINTS):
        if size > upto:
            break
        problem = _checkpoint_problem(str(note), size, root_at(size, nodes))
        if problem is not None:
            check.fault, check.fault_seq = f"the checkpoint of tree size {size} {problem}", size or None
            return check
    check.frontier = Frontier.load(upto, nodes)
    return check


async def extend_check(store: EventStore, check: TreeCheck, upto: int) -> TreeCheck:
    """``check_tree(store, upto)`` for a log that has grown since ``check`` found its tree right:
    only the nodes and checkpoints of the events appended since are read and compared (so that
    a rebuild checks the whole tree before it takes the write lock, and the appends of meanwhile
    under it). A tree that was not right is checked whole again."""
    start = check.frontier
    # otherwise the whole check, which names what is wrong and gives every row
    if start is None or start.size > upto or await store.seek(TREE, (upto + 1, 0)) is not None:
        return await check_tree(store, upto)  # (the last: nodes past the log)
    if start.size == upto:
        return check
    leaves = [
        leaf_hash(body)
        async for rows in fold_reads(store).read_bodies(after=start.size, upto=upto) for _, body, _, _ in rows
    ]
    after, rows = start.extend(leaves)
    expected = _tree_rows(rows)
    stored = await store.lookup(TREE, [(seq, level) for seq, level, _ in expected])
    if [tuple(row) for row in stored] != expected:
        return await check_tree(store, upto)
    nodes = _with_rows(start, rows)
    size = start.size
    while (found := await store.seek(CHECKPOINTS, (size + 1,))) is not None and found[0] <= upto:
        size, note = found  # the checkpoints of the appended events only, one read by key each
        if _checkpoint_problem(str(note), size, root_at(size, nodes)):
            return await check_tree(store, upto)
    return TreeCheck(frontier=after)


def _tree_rows(rows: list[Row]) -> list[Row]:
    """``TREE``'s rows, in key order, of nodes as ``Frontier.extend`` gives them (leaves left out)."""
    return [((idx + 1) << level, level, digest) for level, idx, digest in rows if level]


def _with_rows(start: Frontier, rows: list[Row]) -> dict[Node, bytes]:
    """The nodes of a tree that grew from ``start`` by ``rows``: all a proof inside it needs."""
    nodes = start.nodes()
    nodes.update(((level, idx), digest) for level, idx, digest in rows)
    return nodes


def _describe(end: int, level: int) -> str:
    return f"node {(end >> level) - 1} of level {level} (seqs {end - (1 << level) + 1} to {end})"


def _checkpoint_problem(note: str, size: int, root: bytes) -> str | None:
    """What is wrong with a stored checkpoint of ``size`` whose tree's root is ``root``. (Its
    signature is checked where the key is known: when the ledger is opened, and by ``verify``.)"""
    try:
        checkpoint = Checkpoint.parse(note.split("\n\n", 1)[0] + "\n")
    except VerificationError as exc:
        return f"does not verify: {exc}"
    if checkpoint.size != size:
        return f"says tree size {checkpoint.size}"
    if checkpoint.root != root:
        return "has a root the log does not give"
    return None

