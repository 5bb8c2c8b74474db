"""A small signed log built with the service's side (``ledger.merkle``, ``ledger.notes``), for the
verifier's tests: its tree nodes, its checkpoints and the receipts of its events."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.merkle import Frontier, Node, inclusion_proof, root_at
from ledger.notes import NoteSigner
from ledger.verify import VerifierKey, leaf_hash

ORIGIN = "vote-ledger.test/log"
SEED = bytes(range(100, 132))  # a fixed key, so that every run signs the same notes


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def signer(origin: str = ORIGIN, seed: bytes = SEED) -> NoteSigner:
    return NoteSigner(origin, Ed25519PrivateKey.from_private_bytes(seed))


@dataclass
class SignedLog:
    """Bodies as leaves, the complete nodes over them, and a signer for their checkpoints."""

    signer: NoteSigner = field(default_factory=signer)
    bodies: list[bytes] = field(default_factory=list)
    nodes: dict[Node, bytes] = field(default_factory=dict)
    frontier: Frontier = Frontier.EMPTY

    @property
    def key(self) -> VerifierKey:
        return VerifierKey.parse(self.signer.verifier_key)

    def append(self, *bodies: bytes) -> None:
        self.frontier, rows = self.frontier.extend([leaf_hash(body) for body in bodies])
        self.nodes.update(((level, index), digest) for level, index, digest in rows)
        self.bodies.extend(bodies)

    def checkpoint(self, size: int | None = None) -> str:
        """The signed checkpoint of the first ``size`` leaves (all of them by default)."""
        size = len(self.bodies) if size is None else size
        return self.signer.sign_checkpoint(size, root_at(size, self.nodes))

    def receipt(self, seq: int, size: int | None = None) -> dict[str, Any]:
        """The receipt of the event at ``seq``, against the checkpoint of ``size`` leaves."""
        size = len(self.bodies) if size is None else size
        body = self.bodies[seq - 1]
        return {
            "seq": seq, "leafIndex": seq - 1, "leafHash": b64(leaf_hash(body)), "treeSize": size,
            "inclusionProof": [b64(h) for h in inclusion_proof(seq - 1, size, self.nodes)],
            "checkpoint": self.checkpoint(size), "body": body.decode(),
        }

    def chain(self) -> list[bytes]:
        """The chain hash of each event: SHA-256(previous || body), from 32 zero bytes."""
        hashes, previous = [], bytes(32)
        for body in self.bodies:
            previous = hashlib.sha256(previous + body).digest()
            hashes.append(previous)
        return hashes
