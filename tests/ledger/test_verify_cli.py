"""The offline verifier on files: exports recomputed whole, and its command line, run as a real
process, answering 0 with one line, 1 with one line naming what failed, 2 for bad usage."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from ledger.events import (
    CandidateAdded,
    Event,
    PollCreated,
    PollOpened,
    UserRegistered,
    VoteCast,
    encode,
)
from ledger.merkle import consistency_proof
from ledger.verify import ExportSummary, VerificationError, main, verify_export
from tests.ledger.signed_log import SignedLog, b64, signer

ROOT = Path(__file__).resolve().parents[2]
EVENTS: list[Event] = [
    PollCreated("lunch", "Lunch", "changeable", "always"),
    CandidateAdded("lunch", 1, "Soup"), CandidateAdded("lunch", 2, "Salad"),
    CandidateAdded("lunch", 3, "Stew"),
    PollCreated("chair", "Chair", "single", "always"),
    CandidateAdded("chair", 4, "Ada"), CandidateAdded("chair", 5, "Bob"),
    PollCreated("snacks", "Snacks", "unlimited", "always"), CandidateAdded("snacks", 6, "Nuts"),
    PollOpened("lunch"), PollOpened("chair"), PollOpened("snacks"),
    UserRegistered("u1", "0" * 64), UserRegistered("u2", "0" * 64),
    VoteCast("lunch", 1, "u1", at=1), VoteCast("lunch", 2, "u2", at=2),
    VoteCast("lunch", 3, "u1", at=3),  # u1 moves their vote from Soup to Stew
    VoteCast("lunch", 2, "u2", at=4),  # u2 votes Salad again: still one vote
    VoteCast("chair", 4, "u1", at=5), VoteCast("chair", 4, "u2", at=6),
    VoteCast("snacks", 6, "u1", at=7), VoteCast("snacks", 6, "u1", at=8),
]
TALLIES = {"lunch": {"1": 0, "2": 1, "3": 1}, "chair": {"4": 2, "5": 0}, "snacks": {"6": 2}}
CHECKPOINTS = (1, 9, 15, len(EVENTS))


def canonical_bodies() -> list[bytes]:
    versions: Counter[str] = Counter()
    bodies = []
    for n, event in enumerate(EVENTS, 1):
        versions[event.stream()] += 1
        bodies.append(encode(f"00000000-0000-4000-8000-{n:012d}", event, versions[event.stream()]))
    return bodies


def write_export(
    directory: Path, log: SignedLog, tallies: Any = TALLIES, sizes: Sequence[int] = CHECKPOINTS
) -> None:
    """What ``vote-ledger export`` writes, built here by hand, with checkpoints of these sizes."""
    (directory / "checkpoints").mkdir(parents=True)
    with (directory / "events.jsonl").open("w", encoding="utf-8") as out:
        for seq, (body, digest) in enumerate(zip(log.bodies, log.chain(), strict=True), 1):
            out.write(json.dumps({"seq": seq, "body": body.decode(), "hash": digest.hex()}) + "\n")
    for size in sizes:
        (directory / "checkpoints" / f"{size}.txt").write_text(log.checkpoint(size), encoding="utf-8")
    summary = {
        "origin": log.key.name, "verifierKey": log.signer.verifier_key, "treeSize": len(log.bodies),
        "rootHash": b64(log.frontier.root()), "headHash": log.chain()[-1].hex(), "tallies": tallies,
    }
    (directory / "log.json").write_text(json.dumps(summary), encoding="utf-8")


@pytest.fixture
def log() -> SignedLog:
    log = SignedLog()
    log.append(*canonical_bodies())
    return log


@pytest.fixture
def export(tmp_path: Path, log: SignedLog) -> Path:
    write_export(tmp_path / "export", log)
    return tmp_path / "export"


def edit_line(path: Path, number: int, change: dict[str, Any]) -> None:
    lines = path.read_text().splitlines(keepends=True)
    lines[number - 1] = json.dumps(json.loads(lines[number - 1]) | change) + "\n"
    path.write_text("".join(lines))


def failure(export: Path, log: SignedLog, checkpoints: tuple[str, ...] = ()) -> str:
    with pytest.raises(VerificationError) as raised:
        verify_export(export, log.key, checkpoints)
    return str(raised.value)


# --- exports -----------------------------------------------------------------------------------------


def test_an_export_verifies_chain_tree_checkpoints_and_tallies(export: Path, log: SignedLog) -> None:
    summary = verify_export(export, log.key)
    assert summary == ExportSummary(len(EVENTS), len(EVENTS), log.frontier.root(), len(CHECKPOINTS), 3)


def test_a_tampered_body_breaks_the_chain_at_its_seq(export: Path, log: SignedLog) -> None:
    body = log.bodies[1].decode().replace("Soup", "Soap")
    edit_line(export / "events.jsonl", 2, {"body": body})
    assert failure(export, log) == "events.jsonl line 2: the hash chain breaks at seq 2"


def test_swapped_lines_are_named(export: Path, log: SignedLog) -> None:
    lines = (export / "events.jsonl").read_text().splitlines(keepends=True)
    lines[2], lines[3] = lines[3], lines[2]
    (export / "events.jsonl").write_text("".join(lines))
    assert failure(export, log) == "events.jsonl line 3: its seq is not 3"


def test_a_rewritten_history_with_a_new_chain_is_caught_by_the_signed_checkpoints(
    tmp_path: Path, log: SignedLog
) -> None:
    forged = SignedLog()
    forged.append(*log.bodies[:14], *log.bodies[15:])  # u1's first vote, for Soup, never happened
    write_export(tmp_path / "forged", forged, sizes=())  # the forger cannot sign with the ledger's key
    for size in CHECKPOINTS[:3]:  # but the ledger's earlier checkpoints are out there
        (tmp_path / "forged" / "checkpoints" / f"{size}.txt").write_text(log.checkpoint(size))
    message = failure(tmp_path / "forged", log)
    assert message.endswith("15.txt: its root is not the root of the first 15 events")


def test_a_wrong_tally_is_named(tmp_path: Path, log: SignedLog) -> None:
    write_export(tmp_path / "export", log, TALLIES | {"chair": {"4": 1, "5": 1}})
    assert failure(tmp_path / "export", log) == (
        "log.json tallies give poll 'chair' candidate 4 1 votes, the events 2"
    )


@pytest.mark.parametrize("tallies", [
    TALLIES | {"other": {}}, {"lunch": TALLIES["lunch"], "chair": TALLIES["chair"]},
    TALLIES | {"snacks": {"6": 2, "7": 0}}, TALLIES | {"snacks": {"6": True}}, [],
])
def test_tallies_with_a_poll_or_candidate_too_many_or_too_few_fail(
    tmp_path: Path, log: SignedLog, tallies: Any
) -> None:
    write_export(tmp_path / "export", log, tallies)
    assert failure(tmp_path / "export", log).startswith("log.json tallies")


def test_a_checkpoint_of_another_log_in_the_export_is_named(export: Path, log: SignedLog) -> None:
    other = SignedLog(signer("another.example/log", bytes(32)))
    other.append(*log.bodies)
    (export / "checkpoints" / "5.txt").write_text(other.checkpoint(5))
    message = failure(export, log)
    assert "checkpoints/5.txt: the note has no signature by vote-ledger.test/log+" in message


def test_a_given_checkpoint_of_a_fork_is_named(export: Path, log: SignedLog, tmp_path: Path) -> None:
    fork = SignedLog()  # the same key: the operator signed two different logs
    fork.append(*log.bodies[:9], b'{"forked":true}')
    (tmp_path / "fork.txt").write_text(fork.checkpoint())
    assert verify_export(export, log.key, [str(export / "checkpoints" / "9.txt")]).checkpoints == 5
    message = failure(export, log, (str(tmp_path / "fork.txt"),))
    assert message == f"{tmp_path / 'fork.txt'}: its root is not the root of the first 10 events"


def test_a_checkpoint_beyond_the_log_or_misnamed_is_named(export: Path, log: SignedLog) -> None:
    longer = SignedLog()
    longer.append(*log.bodies, b"{}")
    (export / "checkpoints" / f"{len(EVENTS) + 1}.txt").write_text(longer.checkpoint())
    assert "beyond the 22 events" in failure(export, log)
    (export / "checkpoints" / f"{len(EVENTS) + 1}.txt").rename(export / "checkpoints" / "7.txt")
    assert failure(export, log).endswith("checkpoints/7.txt: it signs size 23, not 7")


def test_a_wrong_tree_size_root_or_head_in_log_json_is_named(export: Path, log: SignedLog) -> None:
    summary = json.loads((export / "log.json").read_text())
    for change, named in [
        ({"treeSize": 21}, "log.json treeSize is not 22"),
        ({"rootHash": b64(bytes(32))}, "log.json rootHash"),
        ({"headHash": log.chain()[-2].hex()}, "log.json headHash"),
    ]:
        (export / "log.json").write_text(json.dumps(summary | change))
        assert failure(export, log).startswith(named)


def test_an_export_of_another_key_is_refused(export: Path) -> None:
    other = SignedLog(signer(seed=bytes(32)))
    assert failure(export, other) == f"log.json names another origin or verifier key than {other.key}"


def test_a_vote_for_a_candidate_of_another_poll_is_named(tmp_path: Path) -> None:
    bodies = canonical_bodies()
    forged = SignedLog()
    forged.append(*bodies[:14], bodies[14].replace(b'"candidate_id":1', b'"candidate_id":4'), *bodies[15:])
    write_export(tmp_path / "export", forged)
    assert failure(tmp_path / "export", forged) == (
        "events.jsonl seq 15: a vote for 4, no candidate of poll 'lunch'"
    )


@pytest.mark.parametrize(("name", "content", "named"), [
    ("log.json", "{", "log.json is not JSON"),
    ("events.jsonl", "not json\n", "events.jsonl line 1 is not JSON"),
    ("events.jsonl", '{"seq": 1, "body": 5, "hash": ""}\n', "events.jsonl line 1 body"),
    ("events.jsonl", b"\xff\n", "is not UTF-8"),
])
def test_unreadable_export_files_are_named(
    export: Path, log: SignedLog, name: str, content: str | bytes, named: str
) -> None:
    path = export / name
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    assert named in failure(export, log)


def test_a_missing_export_is_named(tmp_path: Path, log: SignedLog) -> None:
    assert failure(tmp_path / "nowhere", log).endswith("log.json cannot be read: No such file or directory")


# --- the command line --------------------------------------------------------------------------------


def run(*args: str, script: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, script] if script else [sys.executable, "-m", "ledger.verify"]
    return subprocess.run([*command, *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


def assert_fails_in_one_line(result: subprocess.CompletedProcess[str], named: str) -> None:
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("verification failed: ") and named in result.stderr


def test_a_receipt_verifies_from_the_command_line(tmp_path: Path, log: SignedLog) -> None:
    (tmp_path / "receipt.json").write_text(json.dumps(log.receipt(16, 20)))
    (tmp_path / "key").write_text(log.signer.verifier_key + "\n")
    for key in (log.signer.verifier_key, str(tmp_path / "key")):
        result = run("receipt", str(tmp_path / "receipt.json"), "--key", key)
        assert (result.returncode, result.stderr) == (0, "")
        assert result.stdout == (
            f"verified: the receipt's body is seq 16 of vote-ledger.test/log, in the tree of size 20"
            f" that {log.key} signed\n"
        )


def test_a_tampered_receipt_fails_in_one_line(tmp_path: Path, log: SignedLog) -> None:
    receipt = log.receipt(16) | {"body": log.bodies[16].decode()}
    (tmp_path / "receipt.json").write_text(json.dumps(receipt))
    result = run("receipt", str(tmp_path / "receipt.json"), "--key", log.signer.verifier_key)
    assert_fails_in_one_line(result, "receipt leafHash is not the leaf hash of the receipt's body")


def test_the_script_checks_receipts_as_the_command_does(tmp_path: Path, log: SignedLog) -> None:
    (tmp_path / "good.json").write_text(json.dumps(log.receipt(3)))
    (tmp_path / "bad.json").write_text(json.dumps(log.receipt(3) | {"leafIndex": 3}))
    script = str(ROOT / "scripts" / "verify_receipt.py")
    assert run(str(tmp_path / "good.json"), "--key", log.signer.verifier_key, script=script).returncode == 0
    result = run(str(tmp_path / "bad.json"), "--key", log.signer.verifier_key, script=script)
    assert_fails_in_one_line(result, "receipt leafIndex 3 is not seq - 1 (2)")


def test_a_consistency_proof_between_two_checkpoint_files_verifies(tmp_path: Path, log: SignedLog) -> None:
    (tmp_path / "old.txt").write_text(log.checkpoint(9))
    (tmp_path / "new.txt").write_text(log.checkpoint())
    proof = {"from": 9, "to": 22, "hashes": [b64(h) for h in consistency_proof(9, 22, log.nodes)]}
    (tmp_path / "proof.json").write_text(json.dumps(proof))
    files = [str(tmp_path / name) for name in ("old.txt", "new.txt", "proof.json")]
    result = run("consistency", *files, "--key", log.signer.verifier_key)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == (
        "verified: vote-ledger.test/log at size 22 extends, unchanged, its tree of size 9\n"
    )


def test_an_export_fails_from_the_command_line_naming_the_first_broken_seq(
    export: Path, log: SignedLog
) -> None:
    assert main(["export", str(export), "--key", log.signer.verifier_key]) == 0
    edit_line(export / "events.jsonl", 20, {"hash": "00" * 32})
    result = run("export", str(export), "--key", log.signer.verifier_key)
    assert_fails_in_one_line(result, "events.jsonl line 20: the hash chain breaks at seq 20")


@pytest.mark.parametrize(("args", "named"), [
    (["receipt", "{tmp}/missing.json"], "missing.json cannot be read: No such file or directory"),
    (["receipt", "{tmp}/bad.json"], "bad.json is not JSON"),
    (["receipt", "{tmp}/list.json"], "the receipt is not a JSON object"),
    (["consistency", "{tmp}/list.json", "{tmp}/list.json", "{tmp}/list.json"], "old checkpoint: the note"),
    (["export", "{tmp}"], "log.json cannot be read"),
])
def test_every_failure_is_one_line_on_stderr(
    tmp_path: Path, log: SignedLog, args: list[str], named: str
) -> None:
    (tmp_path / "bad.json").write_text("{")
    (tmp_path / "list.json").write_text("[]")
    argv = [arg.format(tmp=tmp_path) for arg in args]
    assert main([*argv, "--key", log.signer.verifier_key]) == 1
    assert_fails_in_one_line(run(*argv, "--key", log.signer.verifier_key), named)


@pytest.mark.parametrize("key", ["nonsense", "vote-ledger.test/log+00000000+AAAA", "/no/such/key/file"])
def test_a_bad_key_fails_in_one_line(tmp_path: Path, key: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(tmp_path), "--key", key]) == 1
    message = capsys.readouterr().err
    assert message.startswith("verification failed: --key is neither a file nor a verifier key")


@pytest.mark.parametrize("args", [[], ["receipt"], ["receipt", "file"], ["audit", "x", "--key", "k"]])
def test_bad_usage_exits_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 2
    assert "usage: vote-ledger verify" in capsys.readouterr().err


def test_bad_usage_exits_2_from_a_real_process() -> None:
    result = run("receipt")
    assert result.returncode == 2 and "usage:" in result.stderr and "Traceback" not in result.stderr
