"""The Merkle tree and the checkpoints against a ledger file tampered with directly: the audit names
the first wrong node, leaf or checkpoint, the rebuild mends the tree (never a checkpoint), and a
history rewritten with a recomputed chain, which the chain alone cannot reveal, is caught by a
consistency proof against a checkpoint kept from before, and by a voter's receipt."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from ledger.notes import NoteSigner
from ledger.open import open_store
from ledger.tree import TreeCheck, check_tree, extend_check
from ledger.verify import (
    VerificationError,
    VerifierKey,
    leaf_hash,
    verify_checkpoint,
    verify_inclusion,
    verify_receipt,
)
from projections.commands import RegisterUser
from tests.api.helpers import Client
from tests.conftest import MakeClient, signup_and_login
from tests.ledger.helpers import TEST_SIGNING
from tests.projections.helpers import (
    Built,
    audit_file,
    body_of,
    open_ledger,
    rechain,
    tamper,
)
from tests.reliability.helpers import run_cli

TEST_VERIFIER = NoteSigner(TEST_SIGNING.default_origin, TEST_SIGNING.key).verifier_key



async def test_a_node_of_the_tree_edited_is_named_and_the_rebuild_mends_it(copy: Path) -> None:
    with tamper(copy) as conn:
        conn.execute("UPDATE merkle_tree SET hash = zeroblob(32) WHERE level = 2 AND seq = 16")

    failure = (await audit_file(copy)).failure
    assert failure is not None
    assert (failure.seq, failure.check) == (13, "tree")
    assert "node 3 of level 2 (seqs 13 to 16)" in failure.message

    rebuilt = run_cli("rebuild", "--db", str(copy))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "merkle_tree" in rebuilt.stdout and "appends waited " in rebuilt.stdout
    assert (await audit_file(copy)).ok


async def _check(path: Path, upto: int, since: TreeCheck | None = None, appending: bool = False) -> TreeCheck:
    store = await open_store(path, readonly=True)
    try:
        if since is None:
            return await check_tree(store, upto, appending)
        return await extend_check(store, since, upto)
    finally:
        await store.close()


async def test_a_check_extended_over_later_appends_reads_only_them_and_finds_what_is_wrong_there(
    built: Built, copy: Path
) -> None:
    # the rebuild checks the tree before its write lock and extends the check under it
    before = await _check(copy, built.head)
    assert before.fault is None and before.frontier is not None and before.frontier.size == built.head
    ledger = await open_ledger(copy)
    try:
        for i in range(9):  # a batch and a checkpoint each
            await ledger.execute(RegisterUser(f"late{i}@example.com", f"Late {i}", f"argon2-late-{i}"))
        head = ledger.state.head_seq
    finally:
        await ledger.close()
    assert head == built.head + 9

    assert await _check(copy, head, before) == await _check(copy, head)
    # a check made short of the head, as a rebuild's is while appends go on, extends the same way
    short = await _check(copy, built.head, appending=True)
    assert short.frontier == before.frontier
    assert "more than the log's" in str((await _check(copy, built.head)).fault)  # as the audit sees it
    assert await _check(copy, head, short) == await _check(copy, head)

    with tamper(copy) as conn:  # a node the check before covered: not read again
        (early,) = conn.execute("SELECT hash FROM merkle_tree WHERE level = 1 AND seq = 2").fetchone()
        conn.execute("UPDATE merkle_tree SET hash = zeroblob(32) WHERE level = 1 AND seq = 2")
    assert (await _check(copy, head, short)).fault is None
    assert (await _check(copy, head)).fault is not None
    with tamper(copy) as conn:
        conn.execute("UPDATE merkle_tree SET hash = ? WHERE level = 1 AND seq = 2", (early,))

    end = head - head % 2  # a node of level 1 that only the later appends wrote
    with tamper(copy) as conn:
        (good,) = conn.execute("SELECT hash FROM merkle_tree WHERE level = 1 AND seq = ?", (end,)).fetchone()
        conn.execute("UPDATE merkle_tree SET hash = zeroblob(32) WHERE level = 1 AND seq = ?", (end,))
    extended = await _check(copy, head, before)
    assert extended.rows is not None and extended.frontier is None
    assert extended.fault == (
        f"Merkle tree node {end // 2 - 1} of level 1 (seqs {end - 1} to {end}) differs from the log's"
    )

    with tamper(copy) as conn:  # the node mended; a node past the log's head
        conn.execute("UPDATE merkle_tree SET hash = ? WHERE level = 1 AND seq = ?", (good, end))
        conn.execute("INSERT INTO merkle_tree VALUES (?, 1, zeroblob(32))", (head + 2,))
    assert "more than the log's" in str((await _check(copy, head, before)).fault)

    with tamper(copy) as conn:  # that node gone; a later checkpoint swapped for an earlier one
        conn.execute("DELETE FROM merkle_tree WHERE seq > ?", (head,))
        conn.execute(
            "UPDATE checkpoints SET note = (SELECT note FROM checkpoints WHERE size = ?) WHERE size = ?",
            (built.head, head - 1),
        )
    extended = await _check(copy, head, before)
    assert extended.fault == f"the checkpoint of tree size {head - 1} says tree size {built.head}"


async def test_a_node_missing_from_the_tree_is_named(built: Built, copy: Path) -> None:
    idx = built.head // 4
    with tamper(copy) as conn:
        conn.execute("DELETE FROM merkle_tree WHERE level = 1 AND seq = ?", (2 * idx + 2,))

    failure = (await audit_file(copy)).failure
    assert failure is not None
    assert (failure.seq, failure.check) == (2 * idx + 1, "tree")
    assert f"node {idx} of level 1 (seqs {2 * idx + 1} to {2 * idx + 2})" in failure.message


async def test_a_checkpoint_with_another_root_is_named_and_no_rebuild_hides_it(copy: Path) -> None:
    with tamper(copy) as conn:
        size, note = conn.execute(
            "SELECT size, note FROM checkpoints ORDER BY size LIMIT 1 OFFSET 1"
        ).fetchone()
        lines = note.split("\n")
        lines[2] = base64.b64encode(bytes(32)).decode()
        conn.execute("UPDATE checkpoints SET note = ? WHERE size = ?", ("\n".join(lines), size))

    failure = (await audit_file(copy)).failure
    assert failure is not None
    assert (failure.seq, failure.check) == (size, "tree")
    assert f"checkpoint of tree size {size}" in failure.message

    rebuilt = run_cli("rebuild", "--db", str(copy))
    assert rebuilt.returncode == 1
    assert rebuilt.stderr.count("\n") == 1 and f"checkpoint of tree size {size}" in rebuilt.stderr


# --- a history rewritten by whoever holds the file (and the key) ---------------------------------


async def vote(client: Client, token: str, candidate: int) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/polls/frontend-leader/votes", json={"candidateId": candidate},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status == 201, await response.text()
    receipt: dict[str, Any] = (await response.json())["receipt"]
    return receipt


@pytest.mark.ledger_file
async def test_a_rewritten_history_is_caught_by_an_old_checkpoint_and_by_a_receipt(
    make_client: MakeClient, tmp_path: Path
) -> None:
    client = await make_client()
    key = (await (await client.get("/api/v1/log/key")).json())["verifierKey"]
    receipt = await vote(client, await signup_and_login(client, "victim@example.org"), 2)
    for n in range(3):
        await vote(client, await signup_and_login(client, f"v{n}@example.org"), 1)
    kept = await (await client.get("/api/v1/log/checkpoint")).text()  # someone keeps a checkpoint
    await client.close()

    # the operator rewrites the victim's vote, recomputes the chain, rebuilds the tree and
    # projections, and drops the checkpoints that no longer fit: the audit sees nothing wrong
    ledger = tmp_path / "ledger.db"
    with tamper(ledger) as conn:
        seq = receipt["seq"]
        body = body_of(conn, seq).replace(b'"candidate_id":2', b'"candidate_id":5')
        conn.execute("UPDATE events SET body = ? WHERE seq = ?", (body, seq))
        rechain(conn, seq)
        conn.execute("DELETE FROM checkpoints")
    assert run_cli("rebuild", "--db", str(ledger)).returncode == 0
    assert (await audit_file(ledger)).ok

    client = await make_client()  # the service goes on, signing the rewritten log
    await vote(client, await signup_and_login(client, "later@example.org"), 3)
    latest = await (await client.get("/api/v1/log/checkpoint")).text()
    verifier = VerifierKey.parse(key)
    old, new = verify_checkpoint(kept, verifier), verify_checkpoint(latest, verifier)
    proof = await (await client.get(f"/api/v1/log/proof/consistency?from={old.size}&to={new.size}")).json()
    inclusion = await (await client.get(
        f"/api/v1/log/proof/inclusion?seq={receipt['seq']}&size={new.size}"
    )).json()

    files = {"old.txt": kept, "new.txt": latest, "proof.json": json.dumps(proof)}
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    checked = run_cli(
        "verify", "consistency", str(tmp_path / "old.txt"), str(tmp_path / "new.txt"),
        str(tmp_path / "proof.json"), "--key", key,
    )
    assert checked.returncode == 1, checked.stdout
    assert checked.stderr.count("\n") == 1 and "Traceback" not in checked.stderr

    # the victim's receipt still verifies on its own; against the log as served now, it does not
    (tmp_path / "receipt.json").write_text(json.dumps(receipt), encoding="utf-8")
    assert run_cli("verify", "receipt", str(tmp_path / "receipt.json"), "--key", key).returncode == 0
    assert base64.b64decode(inclusion["leafHash"]) != leaf_hash(receipt["body"].encode())
    with pytest.raises(VerificationError):
        verify_inclusion(
            leaf_hash(receipt["body"].encode()), receipt["leafIndex"], new.size,
            [base64.b64decode(h) for h in inclusion["hashes"]], new.root,
        )



async def test_a_ledger_older_than_the_tree_gets_one_when_it_is_next_opened(built: Built, copy: Path) -> None:
    with tamper(copy) as conn:  # as a ledger written before the tree existed
        conn.execute("DROP TABLE merkle_tree")
        conn.execute("DROP TABLE checkpoints")
    failure = (await audit_file(copy)).failure
    assert failure is not None and failure.check == "tree" and "no Merkle tree yet" in failure.message

    ledger = await open_ledger(copy)
    try:
        receipt = await ledger.receipt(built.head // 2)
        note = await ledger.checkpoint()
    finally:
        await ledger.close()

    assert (await audit_file(copy)).ok
    assert note is not None and receipt.checkpoint == note and receipt.tree_size == built.head
    verify_receipt(receipt.as_json(), VerifierKey.parse(TEST_VERIFIER))
