"""The offline verifier accepts what RFC 9162, C2SP and Go's sumdb/note publish, and nothing else.

The vectors in ``data/`` are transcribed from their sources (each file says which); the receipts
are made by the service's own side (``tests/ledger/signed_log.py``).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from ledger.merkle import consistency_proof
from ledger.verify import (
    EMPTY_ROOT,
    Checkpoint,
    VerificationError,
    VerifierKey,
    key_id_of,
    leaf_hash,
    node_hash,
    open_note,
    root_of,
    verifier_key_string,
    verify_checkpoint,
    verify_checkpoint_consistency,
    verify_consistency,
    verify_inclusion,
    verify_receipt,
)
from tests.ledger.signed_log import SignedLog, b64, signer

DATA = Path(__file__).parent / "data"
PROBES = json.loads((DATA / "rfc6962_probes.json").read_text())
TREE = json.loads((DATA / "rfc6962_tree.json").read_text())
NOTES = json.loads((DATA / "signed_notes.json").read_text(encoding="utf-8"))
GO = NOTES["go"]


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def test_the_empty_root_and_the_hashes_of_rfc6962_are_sha256_with_their_prefixes() -> None:
    assert EMPTY_ROOT.hex() == TREE["roots"][0]
    assert leaf_hash(b"").hex() == TREE["nodes"][0][0]
    assert node_hash(leaf_hash(b""), leaf_hash(b"\x00")).hex() == TREE["nodes"][1][0]


@pytest.mark.parametrize("size", range(9))
def test_root_of_gives_the_reference_root_of_each_size(size: int) -> None:
    leaves = [leaf_hash(bytes.fromhex(data)) for data in TREE["leaves"][:size]]
    assert root_of(leaves).hex() == TREE["roots"][size]


@pytest.mark.parametrize("probe", PROBES["inclusion"], ids=lambda p: p["file"])
def test_inclusion_probes_of_transparency_dev_pass_or_fail_as_published(probe: dict[str, Any]) -> None:
    def verify() -> None:
        verify_inclusion(
            unb64(probe["leafHash"]), probe["leafIdx"], probe["treeSize"],
            [unb64(h) for h in probe["proof"] or []], unb64(probe["root"]),
        )

    if probe["wantErr"]:
        with pytest.raises(VerificationError):
            verify()
    else:
        verify()


@pytest.mark.parametrize("probe", PROBES["consistency"], ids=lambda p: p["file"])
def test_consistency_probes_of_transparency_dev_pass_or_fail_as_published(probe: dict[str, Any]) -> None:
    def verify() -> None:
        verify_consistency(
            probe["size1"], probe["size2"], [unb64(h) for h in probe["proof"] or []],
            unb64(probe["root1"]), unb64(probe["root2"]),
        )

    if probe["wantErr"]:
        with pytest.raises(VerificationError):
            verify()
    else:
        verify()


def test_the_probes_hold_both_passing_and_failing_cases() -> None:
    wanted = [p["wantErr"] for kind in ("inclusion", "consistency") for p in PROBES[kind]]
    assert len(wanted) == 196 and wanted.count(False) == 12


# --- verifier keys and signed notes ------------------------------------------------------------------


@pytest.mark.parametrize("vkey", [NOTES["c2sp_example"]["vkey"], GO["peter_vkey"], GO["enoch_vkey"]])
def test_published_verifier_keys_parse_and_their_key_ids_match(vkey: str) -> None:
    key = VerifierKey.parse(vkey)
    assert key.key_id.hex() == vkey.split("+")[1] == key_id_of(key.name, key.public_key).hex()
    assert verifier_key_string(key.name, key.public_key) == vkey


def test_every_part_or_one_changed_byte_of_a_verifier_key_is_refused() -> None:
    vkey = GO["peter_vkey"]
    mangled = [vkey[i:j] for i in range(len(vkey) + 1) for j in range(i + 1, len(vkey) + 1)]
    mangled.remove(vkey)
    mangled += [vkey[:i] + chr(ord(vkey[i]) + 1) + vkey[i + 1 :] for i in range(len(vkey))]
    mangled += GO["bad_vkeys"]
    for text in mangled:
        with pytest.raises(VerificationError):
            VerifierKey.parse(text)


def test_the_c2sp_example_note_opens_under_its_verifier_key() -> None:
    key = VerifierKey.parse(NOTES["c2sp_example"]["vkey"])
    assert open_note(NOTES["c2sp_example"]["note"], key) == "This is an example message.\n"


def test_a_note_signed_by_two_keys_opens_under_either() -> None:
    note = GO["text"] + "\n" + GO["peter_sig"] + GO["enoch_sig"]
    for vkey in (GO["peter_vkey"], GO["enoch_vkey"]):
        assert open_note(note, VerifierKey.parse(vkey)) == GO["text"]


def test_a_note_without_a_signature_by_the_key_is_refused() -> None:
    with pytest.raises(VerificationError, match="no signature by PeterNeumann"):
        open_note(GO["text"] + "\n" + GO["enoch_sig"], VerifierKey.parse(GO["peter_vkey"]))


def test_a_signature_of_the_same_name_but_another_key_id_is_ignored() -> None:
    other_id = GO["peter_sig"].replace("x08g", "xxxx")
    with pytest.raises(VerificationError, match="no signature"):
        open_note(GO["text"] + "\n" + other_id, VerifierKey.parse(GO["peter_vkey"]))
    assert open_note(GO["text"] + "\n" + other_id + GO["peter_sig"], VerifierKey.parse(GO["peter_vkey"]))


def test_a_bad_signature_by_the_key_rejects_the_note_even_beside_a_good_one() -> None:
    bad = GO["peter_sig"][:60] + "ABCD" + GO["peter_sig"][60:]
    for signatures in (bad, GO["peter_sig"] + bad, bad + GO["peter_sig"]):
        with pytest.raises(VerificationError, match="does not verify"):
            open_note(GO["text"] + "\n" + signatures, VerifierKey.parse(GO["peter_vkey"]))


@pytest.mark.parametrize("note", GO["bad_notes"])
def test_the_malformed_notes_of_go_are_refused(note: str) -> None:
    with pytest.raises(VerificationError, match="malformed"):
        open_note(note, VerifierKey.parse(GO["peter_vkey"]))


def test_a_note_may_hold_a_hundred_signatures_but_not_more() -> None:
    key = VerifierKey.parse(GO["peter_vkey"])
    assert open_note(GO["text"] + "\n" + GO["enoch_sig"] * 99 + GO["peter_sig"], key) == GO["text"]
    with pytest.raises(VerificationError, match="more than 100"):
        open_note(GO["text"] + "\n" + GO["enoch_sig"] * 100 + GO["peter_sig"], key)


def test_a_note_text_with_empty_lines_ends_at_the_last_empty_line() -> None:
    quasimodo = NOTES["c2sp_note_with_empty_lines"]
    mine = signer("quasimodo.example/salvatore")
    note = mine.sign(quasimodo["text"])
    assert open_note(note, VerifierKey.parse(mine.verifier_key)) == quasimodo["text"]
    with pytest.raises(VerificationError, match="no signature"):  # well formed, signed by another key
        open_note(quasimodo["note"], VerifierKey.parse(mine.verifier_key))


@pytest.mark.parametrize("damage", [
    lambda n: n.replace("\n", "\r\n"),
    lambda n: n.replace("\u2014", "-"),
    lambda n: n.replace("\u2014 ", "\u2014  "),
    lambda n: n[:-1],
    lambda n: n + "\n",
    lambda n: n.replace("=\n", "!\n"),
    lambda n: n.replace("\n\n", "\n"),
    lambda n: "\ud800" + n,
])
def test_a_note_damaged_in_its_form_is_refused(damage: Any) -> None:
    log = SignedLog()
    log.append(b"a")
    with pytest.raises(VerificationError):
        open_note(damage(log.checkpoint()), log.key)


def test_flipping_any_byte_of_a_signature_fails() -> None:
    log = SignedLog()
    log.append(b"a", b"b")
    text, line = log.checkpoint().rsplit(" ", 1)
    raw = unb64(line)
    for i in range(len(raw)):
        flipped = raw[:i] + bytes([raw[i] ^ 0x01]) + raw[i + 1 :]
        with pytest.raises(VerificationError):
            open_note(f"{text} {b64(flipped)}\n", log.key)


# --- checkpoints -------------------------------------------------------------------------------------


def test_the_c2sp_checkpoint_example_parses() -> None:
    example = NOTES["c2sp_checkpoint"]
    text = example["note"][: example["note"].rindex("\n\n") + 1]
    checkpoint = Checkpoint.parse(text)
    assert (checkpoint.origin, checkpoint.size, checkpoint.root, checkpoint.text) == (
        example["origin"], example["size"], unb64(example["root"]), text
    )


def test_a_checkpoint_may_have_extension_lines_and_size_zero() -> None:
    root = b64(EMPTY_ROOT)
    assert Checkpoint.parse(f"o\n0\n{root}\nextension\n").size == 0


@pytest.mark.parametrize("text", [
    "o\n1\n{root}",  # no final newline
    "o\n1\n",
    "\n1\n{root}\n",
    "o\n01\n{root}\n",
    "o\n+1\n{root}\n",
    "o\n 1\n{root}\n",
    "o\n\u0661\n{root}\n",  # an Arabic-Indic digit one
    "o\n123456789012345678901\n{root}\n",  # past 64 bits
    "o\n1\n{root}=\n",
    "o\n1\nAAAA\n",
    "o\n1\n{root}\n\nextension\n",
])
def test_a_malformed_checkpoint_text_is_refused(text: str) -> None:
    with pytest.raises(VerificationError):
        Checkpoint.parse(text.format(root=b64(EMPTY_ROOT)))


def test_a_checkpoint_is_for_the_log_the_key_names() -> None:
    mine = signer()
    other_origin = mine.sign(f"another.example/log\n0\n{b64(EMPTY_ROOT)}\n")
    with pytest.raises(VerificationError, match="origin"):
        verify_checkpoint(other_origin, VerifierKey.parse(mine.verifier_key))


# --- receipts and consistency between checkpoints ----------------------------------------------------


@pytest.fixture
def log() -> SignedLog:
    log = SignedLog()
    log.append(*[json.dumps({"data": {"n": n}, "type": "Test"}).encode() for n in range(11)])
    return log


def test_a_receipt_of_each_event_verifies_against_each_later_checkpoint(log: SignedLog) -> None:
    for size in range(1, 12):
        for seq in range(1, size + 1):
            assert verify_receipt(log.receipt(seq, size), log.key).size == size


@pytest.mark.parametrize(("change", "named"), [
    ({"seq": 5}, "leafIndex"),
    ({"leafIndex": 5}, "leafIndex"),
    ({"seq": True}, "seq"),
    ({"seq": None}, "seq"),
    ({"treeSize": 10}, "treeSize"),
    ({"treeSize": "11"}, "treeSize"),
    ({"leafHash": b64(bytes(32))}, "leafHash"),
    ({"leafHash": "not base64"}, "leafHash"),
    ({"body": '{"data":{"n":4}}'}, "leafHash"),
    ({"body": 4}, "body"),
    ({"inclusionProof": "AAAA"}, "inclusionProof"),
    ({"inclusionProof": [b64(bytes(32))] * 4}, "inclusionProof"),
    ({"inclusionProof": [b64(bytes(31))] * 4}, r"inclusionProof\[0\]"),
    ({"checkpoint": "vote-ledger.test/log\n11\n"}, "checkpoint"),
    ({"checkpoint": None}, "checkpoint"),
])
def test_a_receipt_with_a_bad_field_fails_naming_it(
    log: SignedLog, change: dict[str, Any], named: str
) -> None:
    receipt = log.receipt(4) | change
    with pytest.raises(VerificationError, match=f"receipt {named}"):
        verify_receipt(receipt, log.key)


def test_a_receipt_whose_proof_is_one_hash_short_or_long_fails(log: SignedLog) -> None:
    receipt = log.receipt(4)
    for proof in (receipt["inclusionProof"][:-1], [*receipt["inclusionProof"], b64(EMPTY_ROOT)]):
        with pytest.raises(VerificationError, match="inclusionProof"):
            verify_receipt(receipt | {"inclusionProof": proof}, log.key)


def test_a_receipt_signed_by_another_key_fails(log: SignedLog) -> None:
    other = SignedLog(signer(seed=bytes(32)))
    other.append(*log.bodies)
    with pytest.raises(VerificationError, match="receipt checkpoint: the note has no signature"):
        verify_receipt(other.receipt(4), log.key)


def test_a_receipt_is_a_json_object() -> None:
    with pytest.raises(VerificationError, match="not a JSON object"):
        verify_receipt([], SignedLog().key)  # type: ignore[arg-type]


def test_consistent_checkpoints_and_their_proof_verify(log: SignedLog) -> None:
    for old in range(1, 12):
        proof = {"from": old, "to": 11, "hashes": [b64(h) for h in consistency_proof(old, 11, log.nodes)]}
        older, newer = verify_checkpoint_consistency(log.checkpoint(old), log.checkpoint(), proof, log.key)
        assert (older.size, newer.size) == (old, 11)


def test_a_fork_is_caught_by_the_consistency_proof(log: SignedLog) -> None:
    fork = SignedLog()
    fork.append(*log.bodies[:3], b"rewritten", *log.bodies[4:])
    proof = {"from": 5, "to": 11, "hashes": [b64(h) for h in consistency_proof(5, 11, fork.nodes)]}
    with pytest.raises(VerificationError, match="proof: the consistency proof does not lead"):
        verify_checkpoint_consistency(log.checkpoint(5), fork.checkpoint(), proof, log.key)


def test_a_consistency_proof_between_other_sizes_is_refused(log: SignedLog) -> None:
    proof = {"from": 4, "to": 11, "hashes": []}
    with pytest.raises(VerificationError, match="from size 5 to size 11"):
        verify_checkpoint_consistency(log.checkpoint(5), log.checkpoint(), proof, log.key)

