"""``vote-ledger export``: the public log as files anyone can check with ``ledger.verify``.

The export holds what the log commits to and nothing personal: every event's body (bodies carry
salted commitments, never an email, a name or a password hash), its chain hash, every signed
checkpoint, the tree's size and root, and the tallies the service derives from the log.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ledger.errors import LedgerError
from ledger.store import EventStore
from ledger.tree import CHECKPOINTS, b64
from ledger.verify import leaf_hash, root_of
from projections.service import replay


class ExportError(LedgerError):
    """The export cannot be written where it was asked to go."""


@dataclass(frozen=True)
class Exported:
    """What an export wrote."""

    events: int
    checkpoints: int
    root: bytes


async def export_log(store: EventStore, directory: Path, origin: str, verifier_key: str) -> Exported:
    """Write the public log, as of one moment, into ``directory`` (new, or empty)."""
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ExportError(f"{directory} is not an empty directory: nothing was written")
    async with store.snapshot() as head:
        state = await replay(store, upto=head.seq)
        leaves: list[bytes] = []
        checkpoints = [(size, str(note)) for size, note in await store.rows(CHECKPOINTS) if size <= head.seq]
        (directory / "checkpoints").mkdir(parents=True, exist_ok=True)
        with (directory / "events.jsonl").open("w", encoding="utf-8") as out:
            async for chunk in store.read(upto=head.seq):
                for event in chunk:
                    leaves.append(leaf_hash(event.body))
                    line = {"seq": event.seq, "body": event.body.decode("utf-8"), "hash": event.hash.hex()}
                    out.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")
    root = root_of(leaves)
    for size, note in checkpoints:
        (directory / "checkpoints" / f"{size}.txt").write_bytes(note.encode("utf-8"))
    tallies = {
        poll.poll_id: {str(c.candidate_id): c.votes for c in poll.candidates.values()}
        for poll in state.polls.values()
    }
    summary = {
        "origin": origin, "verifierKey": verifier_key, "treeSize": head.seq, "rootHash": b64(root),
        "headHash": head.hash.hex(), "tallies": tallies,
    }
    text = json.dumps(summary, ensure_ascii=False, indent=2) + "\n"
    (directory / "log.json").write_text(text, encoding="utf-8")
    return Exported(head.seq, len(checkpoints), root)
