"""Check a vote ledger's receipts, checkpoints and exports offline, with its verifier key alone.

This file stands alone: it imports only the standard library and ``cryptography``, so anyone can
read it in one sitting, copy it, and trust it instead of the service. It implements published
formats, nothing of its own:

- the Merkle tree of RFC 9162 §2.1 (SHA-256): inclusion proofs (§2.1.3.2) and consistency proofs
  (§2.1.4.2); leaf ``i`` is the stored body of the event at ``seq = i + 1``;
- C2SP ``signed-note`` with Ed25519 keys, and C2SP ``tlog-checkpoint`` as the signed text. The key's
  name is the ledger's origin.

An export directory, as ``vote-ledger export`` writes it, holds ``events.jsonl`` (one object a line,
in seq order: ``{"seq", "body", "hash"}``, ``hash`` the hex chain hash SHA-256(previous hash || body),
the first previous hash 32 zero bytes), ``checkpoints/<size>.txt`` (signed checkpoints) and
``log.json`` (``origin``, ``verifierKey``, ``treeSize``, ``rootHash`` in base64, ``headHash`` the last
chain hash in hex, 64 zeros for an empty log, and ``tallies``).

Tallies are recounted from the bodies. Every poll a ``PollCreated`` makes is in the tallies, with
every candidate a ``CandidateAdded`` gives it, each with its count of votes (zero included), keyed
by the candidate id written as a decimal string. Each ``VoteCast`` adds one vote to its candidate;
in a poll whose policy is ``changeable`` a later vote by the same user in the same poll moves their
vote: it is taken from the candidate of their previous vote. Under every other policy (``single``,
``unlimited``) each vote counts. Whether a vote was allowed (a second vote under ``single``, a
closed poll) is the audit's question, not this file's.

    python -m ledger.verify receipt FILE --key KEY
    python -m ledger.verify consistency OLD_CHECKPOINT NEW_CHECKPOINT PROOF --key KEY
    python -m ledger.verify export DIR --key KEY [--checkpoint FILE ...]

``KEY`` is the verifier key (``name+keyid+base64``) or a file holding it. Exit 0 on success, 1 with
one line naming the first thing that failed, 2 for a bad command line.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


class VerificationError(Exception):
    """A check failed. The message is one line naming what failed."""


# --- The Merkle tree (RFC 9162 §2.1) ------------------------------------------------------------------

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""The root of the tree of no leaves."""


def leaf_hash(data: bytes) -> bytes:
    """The hash of a leaf: SHA-256(0x00 || data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an inner node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """The root of the tree of these leaf hashes."""
    frontier: list[bytes] = []
    for size, leaf in enumerate(leaf_hashes):
        _push(frontier, size, leaf)
    return _fold(frontier)


def _push(frontier: list[bytes], size: int, leaf: bytes) -> None:
    """Add a leaf to the frontier (the complete subtrees, largest first) of a tree of ``size`` leaves."""
    node = leaf
    while size & 1:
        node = node_hash(frontier.pop(), node)
        size >>= 1
    frontier.append(node)


def _fold(frontier: Sequence[bytes]) -> bytes:
    """The root of a tree from its frontier, hashed together right to left."""
    if not frontier:
        return EMPTY_ROOT
    root = frontier[-1]
    for node in reversed(frontier[:-1]):
        root = node_hash(node, root)
    return root


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Check that the leaf hash ``leaf`` is leaf ``index`` of the tree of ``size`` leaves and this root."""
    if not 0 <= index < size:
        raise VerificationError(f"leaf index {index} is outside a tree of size {size}")
    _check_hashes([leaf, *proof])
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise VerificationError("the inclusion proof has too many hashes")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise VerificationError("the inclusion proof has too few hashes")
    if r != root:
        raise VerificationError("the inclusion proof does not lead to the root")


def verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes) -> None:
    """Check that the tree of ``size2`` leaves and ``root2`` extends the one of ``size1`` and ``root1``."""
    if not 0 < size1 <= size2:
        raise VerificationError(f"no consistency proof goes from size {size1} to size {size2}")
    if size1 == size2:
        if proof or root1 != root2:
            raise VerificationError(f"two trees of size {size1} differ, or the proof between is not empty")
        return
    if not proof:
        raise VerificationError("the consistency proof is empty")
    _check_hashes(proof)
    path = [root1, *proof] if size1 & (size1 - 1) == 0 else list(proof)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise VerificationError("the consistency proof has too many hashes")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise VerificationError("the consistency proof has too few hashes")
    if fr != root1:
        raise VerificationError(f"the consistency proof does not lead to the root of size {size1}")
    if sr != root2:
        raise VerificationError(f"the consistency proof does not lead to the root of size {size2}")


def _check_hashes(hashes: Sequence[bytes]) -> None:
    if any(len(h) != 32 for h in hashes):
        raise VerificationError("a hash is not 32 bytes long")


# --- Keys, signed notes and checkpoints (C2SP signed-note, tlog-checkpoint) ---------------------------

ED25519 = b"\x01"
"""The signed-note signature type of Ed25519."""
MAX_SIGNATURES = 100
"""More signature lines than this make a note malformed (as golang.org/x/mod/sumdb/note has it)."""


def valid_key_name(name: str) -> bool:
    """Whether ``name`` may name a key: not empty, no spaces, no ``+``, no control characters."""
    return bool(name) and not any(c.isspace() or c == "+" or c < " " or c == "\x7f" for c in name)


def key_id_of(name: str, public_key: bytes) -> bytes:
    """The 4-byte id of an Ed25519 key: SHA-256(name || 0x0A || 0x01 || public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + ED25519 + public_key).digest()[:4]


def verifier_key_string(name: str, public_key: bytes) -> str:
    """The note verifier key: ``<name>+<key id, hex>+<base64(0x01 || public key)>``."""
    if not valid_key_name(name) or len(public_key) != 32:
        raise ValueError("a verifier key needs a valid name and a 32-byte Ed25519 public key")
    return f"{name}+{key_id_of(name, public_key).hex()}+{_b64(ED25519 + public_key)}"


@dataclass(frozen=True)
class VerifierKey:
    """An Ed25519 note verifier key: its name (the ledger's origin), key id and public key."""

    name: str
    key_id: bytes
    public_key: bytes

    @classmethod
    def parse(cls, text: str) -> VerifierKey:
        """Read a verifier key string, checking that its key id matches its name and key."""
        name, _, rest = text.partition("+")
        key_id, _, material = rest.partition("+")
        if not valid_key_name(name):
            raise VerificationError(f"the verifier key's name {name!r} is not a key name")
        if not re.fullmatch(r"[0-9a-f]{8}", key_id):
            raise VerificationError("the verifier key's id is not 8 lowercase hex digits")
        raw = _unb64(material, "the verifier key's public key")
        if len(raw) != 33 or raw[:1] != ED25519:
            raise VerificationError("the verifier key is not an Ed25519 key (0x01 and 32 bytes)")
        if bytes.fromhex(key_id) != key_id_of(name, raw[1:]):
            raise VerificationError("the verifier key's id does not match its name and public key")
        return cls(name, bytes.fromhex(key_id), raw[1:])

    def __str__(self) -> str:
        return f"{self.name}+{self.key_id.hex()}"


def open_note(note: str, key: VerifierKey) -> str:
    """The text of a signed note that ``key`` signed. Other signers are ignored; a bad signature
    by ``key`` rejects the note."""
    if any(c < " " and c != "\n" for c in note) or "\x7f" in note:
        raise VerificationError("the note is malformed: it holds a control character")
    _utf8(note, "the note")
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n") or split + 2 == len(note):
        raise VerificationError("the note is malformed: no signature lines after an empty line")
    text, lines = note[: split + 1], note[split + 2 : -1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise VerificationError(f"the note is malformed: more than {MAX_SIGNATURES} signatures")
    try:
        public_key = Ed25519PublicKey.from_public_bytes(key.public_key)
    except ValueError:
        raise VerificationError(f"the key {key} is not an Ed25519 public key") from None
    signed = False
    for number, line in enumerate(lines, 1):
        name, _, encoded = line[2:].partition(" ")
        if not line.startswith("\u2014 ") or not valid_key_name(name) or not encoded:
            raise VerificationError(f"the note is malformed: signature line {number} is not '— name base64'")
        signature = _unb64(encoded, f"the note's signature line {number}")
        if len(signature) < 5:
            raise VerificationError(f"the note is malformed: signature line {number} is too short")
        if name != key.name or signature[:4] != key.key_id:
            continue  # another signer's (a witness, a rotated key): not ours to check
        try:
            public_key.verify(signature[4:], text.encode())
        except InvalidSignature:
            raise VerificationError(f"the signature by {key} does not verify") from None
        signed = True
    if not signed:
        raise VerificationError(f"the note has no signature by {key}")
    return text


@dataclass(frozen=True)
class Checkpoint:
    """A tlog-checkpoint: the origin, the tree size and the root hash; ``text`` is the signed text."""

    origin: str
    size: int
    root: bytes
    text: str

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Read a checkpoint text: origin, size, base64 root hash, optional extension lines."""
        if not text.endswith("\n"):
            raise VerificationError("the checkpoint does not end in a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3 or not lines[0] or not all(lines[3:]):
            raise VerificationError("the checkpoint is not origin, size and root hash lines")
        origin, size, root = lines[:3]
        if not re.fullmatch(r"0|[1-9][0-9]{0,19}", size):
            raise VerificationError(f"the checkpoint's tree size {size!r} is not a decimal number")
        root_hash = _unb64(root, "the checkpoint's root hash")
        if len(root_hash) != 32:
            raise VerificationError("the checkpoint's root hash is not 32 bytes")
        return cls(origin, int(size), root_hash, text)


def verify_checkpoint(note: str, key: VerifierKey) -> Checkpoint:
    """The checkpoint of a signed note that ``key`` signed, for the log that ``key`` names."""
    checkpoint = Checkpoint.parse(open_note(note, key))
    if checkpoint.origin != key.name:
        raise VerificationError(f"the checkpoint's origin {checkpoint.origin!r} is not {key.name!r}")
    return checkpoint


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise VerificationError(f"{what} is not standard base64") from None


# --- Receipts ----------------------------------------------------------------------------------------


def verify_receipt(receipt: Mapping[str, Any], key: VerifierKey) -> Checkpoint:
    """Check a receipt: its body is leaf ``seq - 1`` of a tree that ``key`` signed. The checkpoint."""
    if not isinstance(receipt, Mapping):
        raise VerificationError("the receipt is not a JSON object")
    seq = _int(receipt, "seq", "receipt")
    index = _int(receipt, "leafIndex", "receipt")
    size = _int(receipt, "treeSize", "receipt")
    claimed = _hash(receipt.get("leafHash"), "receipt leafHash")
    proof = receipt.get("inclusionProof")
    if not isinstance(proof, list):
        raise VerificationError("receipt inclusionProof is missing or not a list")
    hashes = [_hash(item, f"receipt inclusionProof[{i}]") for i, item in enumerate(proof)]
    note, body = _str(receipt, "checkpoint", "receipt"), _str(receipt, "body", "receipt")
    try:
        checkpoint = verify_checkpoint(note, key)
    except VerificationError as exc:
        raise VerificationError(f"receipt checkpoint: {exc}") from None
    if index != seq - 1:
        raise VerificationError(f"receipt leafIndex {index} is not seq - 1 ({seq - 1})")
    if leaf_hash(_utf8(body, "receipt body")) != claimed:
        raise VerificationError("receipt leafHash is not the leaf hash of the receipt's body")
    if size != checkpoint.size:
        raise VerificationError(f"receipt treeSize {size} is not its checkpoint's size {checkpoint.size}")
    try:
        verify_inclusion(claimed, index, size, hashes, checkpoint.root)
    except VerificationError as exc:
        raise VerificationError(f"receipt inclusionProof: {exc}") from None
    return checkpoint


def verify_checkpoint_consistency(
    old_note: str, new_note: str, proof: Mapping[str, Any], key: VerifierKey
) -> tuple[Checkpoint, Checkpoint]:
    """Check two signed checkpoints and a consistency proof (``{"from", "to", "hashes"}``) between them."""
    checkpoints = []
    for which, note in (("old", old_note), ("new", new_note)):
        try:
            checkpoints.append(verify_checkpoint(note, key))
        except VerificationError as exc:
            raise VerificationError(f"{which} checkpoint: {exc}") from None
    old, new = checkpoints
    if not isinstance(proof, Mapping):
        raise VerificationError("the proof is not a JSON object")
    if _int(proof, "from", "proof") != old.size or _int(proof, "to", "proof") != new.size:
        raise VerificationError(f"the proof does not go from size {old.size} to size {new.size}")
    hashes = proof.get("hashes")
    if not isinstance(hashes, list):
        raise VerificationError("proof hashes is missing or not a list")
    try:
        verify_consistency(old.size, new.size, [_hash(h, "proof hash") for h in hashes], old.root, new.root)
    except VerificationError as exc:
        raise VerificationError(f"proof: {exc}") from None
    return old, new


def _int(obj: Mapping[str, Any], name: str, where: str) -> int:
    value = obj.get(name)
    if type(value) is not int or value < 0:
        raise VerificationError(f"{where} {name} is missing or not a non-negative integer")
    return value


def _str(obj: Mapping[str, Any], name: str, where: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str):
        raise VerificationError(f"{where} {name} is missing or not a string")
    return value


def _hash(value: Any, what: str) -> bytes:
    raw = _unb64(value, what) if isinstance(value, str) else b""
    if len(raw) != 32:
        raise VerificationError(f"{what} is not a base64 hash of 32 bytes")
    return raw


def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError:
        raise VerificationError(f"{what} is not valid Unicode") from None


# --- Exports -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportSummary:
    """What ``verify_export`` recomputed and found equal to what the export claims."""

    events: int
    tree_size: int
    root: bytes
    checkpoints: int
    polls: int


def verify_export(directory: Path, key: VerifierKey, checkpoints: Sequence[str] = ()) -> ExportSummary:
    """Recompute an export's hash chain, tree, tallies and every checkpoint's root (those in its
    ``checkpoints/`` folder and the files ``checkpoints`` names), in one pass over its events."""
    log = _json(_text_file(directory / "log.json"), "log.json")
    if not isinstance(log, dict):
        raise VerificationError("log.json is not a JSON object")
    named = (log.get("origin"), log.get("verifierKey"))
    if named != (key.name, verifier_key_string(key.name, key.public_key)):
        raise VerificationError(f"log.json names another origin or verifier key than {key}")
    signed = _signed_checkpoints(directory / "checkpoints", [Path(c) for c in checkpoints], key)
    wanted = {checkpoint.size for _, checkpoint in signed}
    roots, frontier, tally = {0: EMPTY_ROOT}, list[bytes](), _Tally()
    size, head = 0, bytes(32)
    for seq, body, digest in _events(directory / "events.jsonl"):
        tally.count(seq, body)
        _push(frontier, size, leaf_hash(body))
        size, head = seq, digest
        if size in wanted:
            roots[size] = _fold(frontier)
    root = _fold(frontier)
    if _int(log, "treeSize", "log.json") != size:
        raise VerificationError(f"log.json treeSize is not {size}, the number of events")
    if _hash(log.get("rootHash"), "log.json rootHash") != root:
        raise VerificationError("log.json rootHash is not the root of the tree of the events")
    if log.get("headHash") != head.hex():
        raise VerificationError("log.json headHash is not the chain hash of the last event")
    for path, checkpoint in signed:
        if checkpoint.size > size:
            raise VerificationError(f"{path}: it signs size {checkpoint.size}, beyond the {size} events")
        if checkpoint.root != roots[checkpoint.size]:
            raise VerificationError(f"{path}: its root is not the root of the first {checkpoint.size} events")
    _compare_tallies(tally.polls, log.get("tallies"))
    return ExportSummary(size, size, root, len(signed), len(tally.polls))


def _signed_checkpoints(folder: Path, extra: list[Path], key: VerifierKey) -> list[tuple[Path, Checkpoint]]:
    """Every checkpoint file of the folder (each named ``<size>.txt``) and the extra ones, verified."""
    files = sorted(folder.glob("*.txt"), key=lambda p: (len(p.stem), p.stem)) if folder.is_dir() else []
    found = []
    for path in [*files, *extra]:
        note = _text_file(path)
        try:
            checkpoint = verify_checkpoint(note, key)
        except VerificationError as exc:
            raise VerificationError(f"{path}: {exc}") from None
        if path.parent == folder and path.stem != str(checkpoint.size):
            raise VerificationError(f"{path}: it signs size {checkpoint.size}, not {path.stem}")
        found.append((path, checkpoint))
    return found


def _events(path: Path) -> Iterator[tuple[int, bytes, bytes]]:
    """Each line of events.jsonl as (seq, body, chain hash), checking that seq counts up from 1 and
    that each hash is SHA-256(previous hash || body)."""
    previous = bytes(32)
    try:
        with path.open(encoding="utf-8", newline="\n") as lines:
            for seq, line in enumerate(lines, 1):
                where = f"events.jsonl line {seq}"
                event = _json(line, where)
                if not isinstance(event, dict) or _int(event, "seq", where) != seq:
                    raise VerificationError(f"{where}: its seq is not {seq}")
                body = _utf8(_str(event, "body", where), f"{where} body")
                digest = hashlib.sha256(previous + body).digest()
                if event.get("hash") != digest.hex():
                    raise VerificationError(f"{where}: the hash chain breaks at seq {seq}")
                yield seq, body, digest
                previous = digest
    except OSError as exc:
        raise VerificationError(f"{path} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise VerificationError(f"{path} is not UTF-8 text") from None


class _Tally:
    """Each poll's votes per candidate, recounted from the bodies by the rule in the module docstring."""

    def __init__(self) -> None:
        self.polls: dict[str, dict[str, int]] = {}
        self._changeable: set[str] = set()
        self._ballots: dict[tuple[str, str], str] = {}  # (poll, user) -> candidate, changeable polls

    def count(self, seq: int, body: bytes) -> None:
        where = f"events.jsonl seq {seq}"
        event = _json(body, f"{where} body")
        data = event.get("data") if isinstance(event, dict) else None
        if not isinstance(data, dict):
            raise VerificationError(f"{where}: the body is not an event")
        kind = event.get("type")
        if kind == "PollCreated":
            poll_id = _str(data, "poll_id", where)
            if poll_id in self.polls:
                raise VerificationError(f"{where}: poll {poll_id!r} is created a second time")
            self.polls[poll_id] = {}
            if _str(data, "policy", where) == "changeable":
                self._changeable.add(poll_id)
        elif kind == "CandidateAdded":
            poll_id, candidate = self._names(data, where)
            if candidate in self.polls[poll_id]:
                raise VerificationError(f"{where}: candidate {candidate} is added a second time")
            self.polls[poll_id][candidate] = 0
        elif kind == "VoteCast":
            poll_id, candidate = self._names(data, where)
            votes = self.polls[poll_id]
            if candidate not in votes:
                raise VerificationError(f"{where}: a vote for {candidate}, no candidate of poll {poll_id!r}")
            votes[candidate] += 1
            if poll_id in self._changeable:
                ballot = (poll_id, _str(data, "user_id", where))
                previous = self._ballots.get(ballot)
                if previous is not None:
                    votes[previous] -= 1
                self._ballots[ballot] = candidate

    def _names(self, data: dict[str, Any], where: str) -> tuple[str, str]:
        poll_id = _str(data, "poll_id", where)
        if poll_id not in self.polls:
            raise VerificationError(f"{where}: poll {poll_id!r} was not created before it")
        return poll_id, str(_int(data, "candidate_id", where))


def _compare_tallies(found: dict[str, dict[str, int]], claimed: Any) -> None:
    if not isinstance(claimed, dict) or not all(isinstance(v, dict) for v in claimed.values()):
        raise VerificationError("log.json tallies is not an object of objects")
    for poll_id in sorted(found.keys() | claimed.keys()):
        if poll_id not in found or poll_id not in claimed:
            raise VerificationError(f"log.json tallies and the events disagree on poll {poll_id!r} existing")
        mine, theirs = found[poll_id], claimed[poll_id]
        for candidate in sorted(mine.keys() | theirs.keys(), key=lambda c: (len(c), c)):
            said = theirs.get(candidate)
            if type(said) is not int or said != mine.get(candidate):
                raise VerificationError(
                    f"log.json tallies give poll {poll_id!r} candidate {candidate} {said!r} votes,"
                    f" the events {mine.get(candidate)!r}"
                )


def _text_file(path: Path) -> str:
    try:
        return path.read_bytes().decode()
    except OSError as exc:
        raise VerificationError(f"{path} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise VerificationError(f"{path} is not UTF-8 text") from None


def _json(text: str | bytes, what: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise VerificationError(f"{what} is not JSON") from None


# --- The command line --------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    """Run ``receipt``, ``consistency`` or ``export``: 0 verified, 1 failed (one line), 2 bad usage."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage and why
        return exc.code if isinstance(exc.code, int) else 2
    try:
        print(args.run(args, _load_key(args.key)))
    except VerificationError as exc:
        print(f"verification failed: {exc}".replace("\n", " "), file=sys.stderr)
        return 1
    except Exception as exc:  # a bug here still ends in one line, never a traceback
        print(f"verification failed: internal error: {type(exc).__name__}: {exc}".replace("\n", " "),
              file=sys.stderr)
        return 1
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vote-ledger verify", description="Check a vote ledger's receipts, checkpoints, exports offline."
    )
    commands = parser.add_subparsers(required=True, metavar="{receipt,consistency,export}")
    key_help = "the ledger's verifier key (name+keyid+base64), or a file holding it"
    receipt = commands.add_parser("receipt", help="a vote's receipt: signature, leaf hash, inclusion proof")
    receipt.add_argument("file", type=Path, help="the receipt, a JSON file")
    receipt.set_defaults(run=_run_receipt)
    consistency = commands.add_parser("consistency", help="a newer checkpoint extends an older one")
    consistency.add_argument("old", type=Path, help="the older signed checkpoint")
    consistency.add_argument("new", type=Path, help="the newer signed checkpoint")
    consistency.add_argument("proof", type=Path, help='the proof, JSON {"from", "to", "hashes"}')
    consistency.set_defaults(run=_run_consistency)
    export = commands.add_parser("export", help="an export: chain, tree, tallies and checkpoints")
    export.add_argument("directory", type=Path, help="the folder vote-ledger export wrote")
    export.add_argument("--checkpoint", action="append", default=[], help="a signed checkpoint to check too")
    export.set_defaults(run=_run_export)
    for command in (receipt, consistency, export):
        command.add_argument("--key", required=True, help=key_help)
    return parser


def _load_key(value: str) -> VerifierKey:
    try:
        text = _text_file(Path(value)).strip() if Path(value).is_file() else value
    except (OSError, ValueError):  # a key string too long or too odd to be a file name
        text = value
    try:
        return VerifierKey.parse(text)
    except VerificationError as exc:
        raise VerificationError(f"--key is neither a file nor a verifier key: {exc}") from None


def _run_receipt(args: argparse.Namespace, key: VerifierKey) -> str:
    receipt = _json(_text_file(args.file), str(args.file))
    checkpoint = verify_receipt(receipt, key)
    return (f"verified: the receipt's body is seq {receipt['seq']} of {checkpoint.origin},"
            f" in the tree of size {checkpoint.size} that {key} signed")


def _run_consistency(args: argparse.Namespace, key: VerifierKey) -> str:
    old_note, new_note = _text_file(args.old), _text_file(args.new)
    proof = _json(_text_file(args.proof), str(args.proof))
    old, new = verify_checkpoint_consistency(old_note, new_note, proof, key)
    return f"verified: {key.name} at size {new.size} extends, unchanged, its tree of size {old.size}"


def _run_export(args: argparse.Namespace, key: VerifierKey) -> str:
    summary = verify_export(args.directory, key, args.checkpoint)
    return (f"verified: {summary.events} events of {key.name}: hash chain, tree root, tallies of"
            f" {summary.polls} polls and {summary.checkpoints} signed checkpoints")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
