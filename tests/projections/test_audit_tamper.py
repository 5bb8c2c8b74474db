"""The audit against a ledger file tampered with directly (triggers dropped), one tamper per copy."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sqlite3
from functools import partial
from pathlib import Path

import pytest

import ledger.sqlite.store
from ledger.codec import canonical
from ledger.errors import LedgerError, NotALedgerError
from ledger.open import open_store
from ledger.store import EventStore
from projections.audit import audit
from projections.commands import EraseUser
from projections.rebuild import rebuild
from projections.state import collector_paused
from tests.projections.helpers import (
    Built,
    audit_file,
    body_of,
    digest,
    first_seq,
    forge,
    forged_vote,
    live_tables,
    open_ledger,
    rechain,
    replay_file,
    replay_in_two,
    tamper,
)
from tests.reliability.helpers import run_cli


def middle_vote(conn: sqlite3.Connection, built: Built) -> int:
    return first_seq(conn, "VoteCast", after=built.head // 2)


# --- the untouched file -------------------------------------------------------------------------


async def test_audit_passes_on_an_untouched_ledger(built: Built) -> None:
    report = await audit_file(built.path)

    assert report.ok, report.failure
    assert report.events == report.head_seq == built.head
    polls = report.state.polls
    assert polls["president"].total_votes == len(built.users)
    assert polls["mascot"].total_votes == len(built.users)  # changeable: one vote per user
    assert sum(c.votes for c in polls["mascot"].candidates.values()) == len(built.users)
    assert polls["snack"].total_votes == sum(i % 3 for i in range(len(built.users)))
    fe_voters = sum(1 for i in range(len(built.users)) if i % 3)
    assert polls["fe-lead"].total_votes == fe_voters


async def test_audit_never_modifies_the_ledger_file(built: Built, copy: Path) -> None:
    before = digest(built.path)
    assert (await audit_file(built.path)).ok
    assert digest(built.path) == before

    with tamper(copy) as conn:
        conn.execute("UPDATE candidates SET votes = votes + 1")
    tampered = digest(copy)
    assert not (await audit_file(copy)).ok
    assert digest(copy) == tampered


@pytest.mark.parametrize("name", ["missing.db", "no-such-dir/ledger.db"])
async def test_opening_a_missing_path_read_only_raises_and_creates_nothing(
    tmp_path: Path, name: str
) -> None:
    path = tmp_path / name
    with pytest.raises(NotALedgerError):
        await open_store(path, readonly=True)
    assert list(tmp_path.iterdir()) == []


# --- the log tampered with ----------------------------------------------------------------------


async def test_an_edited_byte_in_a_body_fails_the_chain_at_that_seq(built: Built, copy: Path) -> None:
    with tamper(copy) as conn:
        seq = middle_vote(conn, built)
        body = bytearray(body_of(conn, seq))
        at = body.index(b'"user_id":"') + len(b'"user_id":"')
        body[at] = ord("0") if body[at] != ord("0") else ord("1")  # same length, still valid JSON
        conn.execute("UPDATE events SET body = ? WHERE seq = ?", (bytes(body), seq))

    failure = (await audit_file(copy)).failure
    assert failure is not None
    assert (failure.seq, failure.check) == (seq, "chain")


async def test_a_deleted_middle_row_names_the_missing_seq(built: Built, copy: Path) -> None:
    seq = built.head // 2
    with tamper(copy) as conn:
        conn.execute("DELETE FROM events WHERE seq = ?", (seq,))

    failure = (await audit_file(copy)).failure
    assert failure is not None
    assert (failure.seq, failure.check) == (seq, "chain")
    assert f"seq {seq} is missing" in failure.message


@pytest.mark.parametrize("gap", [1, 37])
async def test_two_swapped_rows_name_the_first_of_them(built: Built, copy: Path, gap: int) -> None:
    first = built.head // 3
    second = first + gap
    columns = "id, type, stream, version, body, prev_hash, hash"
    with tamper(copy) as conn:
        rows = {
            seq: conn.execute(f"SELECT {columns} FROM events WHERE seq = ?", (seq,)).fetchone()
            for seq in (first, second)
        }
        conn.execute("DELETE FROM events WHERE seq IN (?, ?)", (first, second))
        for seq, other in ((first, second), (second, first)):
            conn.execute(f"INSERT INTO events (seq, {columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (seq, *rows[other]))

    failure = (await audit_file(copy)).failure
    assert failure is not None
    assert (failure.seq, failure.check) == (first, "chain")


async def test_a_forged_second_vote_in_a_single_vote_poll_fails_the_rules(built: Built, copy: Path) -> None:
    voter = built.users[0]  # voted for the first candidate of "president"
    seq = forge(copy, forged_vote("president", built.candidates["president"][1], voter))

    failure = (await audit_file(copy)).failure
    assert failure is not None
    assert (failure.seq, failure.check) == (built.head + 1, "rules") == (seq, "rules")
    assert "already_voted" in failure.message


async def test_a_forged_vote_for_a_nonexistent_candidate_fails_the_rules(built: Built, copy: Path) -> None:
    seq = forge(copy, forged_vote("mascot", 999, built.users[3]))

    failure = (await audit_file(copy)).failure
    assert failure is not None
    assert (failure.seq, failure.check) == (seq, "rules")
    assert "unknown_candidate" in failure.message


async def test_a_forged_vote_by_an_unregistered_user_fails_the_rules(built: Built, copy: Path) -> None:
    seq = forge(copy, forged_vote("snack", built.candidates["snack"][0], "f" * 32))

    failure = (await audit_file(copy)).failure
    assert failure is not None
    assert (failure.seq, failure.check) == (seq, "rules")
    assert "unknown_user" in failure.message


async def test_a_valid_vote_forged_behind_the_services_back_is_caught(built: Built, copy: Path) -> None:
    forge(copy, forged_vote("snack", built.candidates["snack"][0], built.users[0]))

    failure = (await audit_file(copy)).failure
    assert failure is not None
    assert failure.check == "projections"


async def test_a_valid_vote_forged_behind_the_services_back_is_named_by_its_seq(
    built: Built, copy: Path
) -> None:
    seq = forge(copy, forged_vote("snack", built.candidates["snack"][0], built.users[0]))

    failure = (await audit_file(copy)).failure
    assert failure is not None
    assert (failure.seq, failure.check) == (seq, "projections")


@pytest.mark.parametrize("dropped", [1, 3])
async def test_a_truncated_tail_makes_the_projections_disagree_at_the_new_head_plus_one(
    built: Built, copy: Path, dropped: int
) -> None:
    with tamper(copy) as conn:
        conn.execute("DELETE FROM events WHERE seq > ?", (built.head - dropped,))

    report = await audit_file(copy)
    assert report.failure is not None
    assert report.head_seq == built.head - dropped
    assert (report.failure.seq, report.failure.check) == (built.head - dropped + 1, "projections")


async def test_a_body_edited_and_rechained_without_changing_a_tally_is_caught_by_the_head_hash(
    built: Built, copy: Path
) -> None:
    with tamper(copy) as conn:
        seq = middle_vote(conn, built)
        data = json.loads(body_of(conn, seq))
        data["data"]["at"] += 1  # a different time, same everything else
        conn.execute("UPDATE events SET body = ? WHERE seq = ?", (canonical(data), seq))
        rechain(conn, seq)

    failure = (await audit_file(copy)).failure
    assert failure is not None
    assert (failure.seq, failure.check) == (built.head, "projections")
    assert "projection_position" in failure.message


# --- the projections and private data tampered with ---------------------------------------------


async def test_an_edited_candidate_tally_is_named_by_the_candidates_seq(built: Built, copy: Path) -> None:
    state = await replay_file(built.path)
    candidate = built.candidates["president"][1]
    with tamper(copy) as conn:
        conn.execute("UPDATE candidates SET votes = votes + 1 WHERE candidate_id = ?", (candidate,))

    failure = (await audit_file(copy)).failure
    assert failure is not None
    assert (failure.seq, failure.check) == (state.candidates[candidate].seq, "projections")
    assert "candidates" in failure.message


@pytest.mark.parametrize("edit", ["update", "delete", "insert"])
async def test_an_edited_ballot_row_is_named_by_the_ballots_seq(built: Built, copy: Path, edit: str) -> None:
    state = await replay_file(built.path)
    user = built.users[9]  # changed its mascot vote; never voted in "snack"
    ballot = state.ballots[("mascot", user)]
    with tamper(copy) as conn:
        if edit == "update":
            other = next(c for c in built.candidates["mascot"] if c != ballot.candidate_id)
            conn.execute("UPDATE ballots SET candidate_id = ? WHERE poll_id = 'mascot' AND user_id = ?",
                         (other, user))
        elif edit == "delete":
            conn.execute("DELETE FROM ballots WHERE poll_id = 'mascot' AND user_id = ?", (user,))
        else:  # a ballot for a user who never voted in the poll, dated at an existing vote
            ballot = state.ballots[("president", user)]
            conn.execute("INSERT INTO ballots VALUES ('snack', ?, ?, 1, ?)",
                         (user, built.candidates["snack"][0], ballot.seq))
            assert ("snack", user) not in state.ballots

    failure = (await audit_file(copy)).failure
    assert failure is not None
    assert (failure.seq, failure.check) == (ballot.seq, "projections")


async def test_an_edited_user_row_is_named_by_the_registrations_seq(built: Built, copy: Path) -> None:
    state = await replay_file(built.path)
    user = built.users[11]
    with tamper(copy) as conn:
        conn.execute("UPDATE users SET name = 'Mallory' WHERE user_id = ?", (user,))

    failure = (await audit_file(copy)).failure
    assert failure is not None
    assert (failure.seq, failure.check) == (state.users[user].seq, "projections")


@pytest.mark.parametrize("column", ["body", "salt"])
async def test_an_edited_private_data_row_fails_its_commitment(built: Built, copy: Path, column: str) -> None:
    state = await replay_file(built.path)
    user = state.users[built.users[5]]
    with tamper(copy) as conn:
        event_id = conn.execute("SELECT id FROM events WHERE seq = ?", (user.seq,)).fetchone()[0]
        if column == "body":
            forged = {"email": "mallory@example.com", "name": user.name, "password_hash": "$argon2id$forged"}
            conn.execute("UPDATE private_data SET body = ? WHERE event_id = ?", (canonical(forged), event_id))
        else:
            conn.execute("UPDATE private_data SET salt = zeroblob(16) WHERE event_id = ?", (event_id,))

    failure = (await audit_file(copy)).failure
    assert failure is not None
    assert (failure.seq, failure.check) == (user.seq, "commitment")


async def test_private_data_attached_to_a_vote_fails_the_commitment_check(built: Built, copy: Path) -> None:
    with tamper(copy) as conn:
        seq = middle_vote(conn, built)
        event_id = conn.execute("SELECT id FROM events WHERE seq = ?", (seq,)).fetchone()[0]
        conn.execute("INSERT INTO private_data VALUES (?, zeroblob(16), '{}')", (event_id,))

    failure = (await audit_file(copy)).failure
    assert failure is not None
    assert (failure.seq, failure.check) == (seq, "commitment")


async def test_an_erasure_keeps_the_audit_passing_and_a_bare_deletion_fails_it(
    built: Built, copy: Path
) -> None:
    state = await replay_file(built.path)
    erased, deleted = state.users[built.users[9]], state.users[built.users[10]]
    ledger = await open_ledger(copy)
    try:
        await ledger.execute(EraseUser(erased.user_id))
    finally:
        await ledger.close()

    report = await audit_file(copy)
    assert report.ok, report.failure
    assert report.state.users[erased.user_id].email is None

    with tamper(copy) as conn:  # the same row gone without the event that says why
        event_id = conn.execute("SELECT id FROM events WHERE seq = ?", (deleted.seq,)).fetchone()[0]
        conn.execute("DELETE FROM private_data WHERE event_id = ?", (event_id,))
        conn.execute("UPDATE users SET email = NULL, name = NULL WHERE user_id = ?", (deleted.user_id,))

    failure = (await audit_file(copy)).failure
    assert failure is not None and (failure.seq, failure.check) == (deleted.seq, "commitment")


async def test_a_broken_chain_is_named_before_a_projection_row_that_differs(
    built: Built, copy: Path
) -> None:
    state = await replay_file(built.path)
    first = min(state.users.values(), key=lambda u: u.seq)
    with tamper(copy) as conn:
        conn.execute("UPDATE events SET hash = zeroblob(32) WHERE seq = ?", (built.head,))
        conn.execute("UPDATE users SET name = 'Mallory' WHERE user_id = ?", (first.user_id,))

    failure = (await audit_file(copy)).failure
    assert failure is not None
    assert (failure.seq, failure.check) == (built.head, "chain")  # the projections come last


@pytest.mark.parametrize("processes", [1, 2])
async def test_private_data_erased_while_the_audit_runs_is_seen_as_of_the_audits_snapshot(
    built: Built, copy: Path, processes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ledger.sqlite.store, "READ_CHUNK", 4)  # the erasure lands between two chunks
    state = await replay_file(built.path)
    last = max(state.users.values(), key=lambda u: u.seq)
    erased: list[int] = []

    def erase_once(done: int, total: int) -> None:
        if erased:
            return
        erased.append(done)
        assert last.email is not None
        # another process; its wipe of the WAL waits for this audit's snapshot, so not for long
        env = {"VOTE_LEDGER_BUSY_TIMEOUT": "100"}
        done_ = run_cli("users", "erase", last.email, "--db", str(copy), env=env)
        assert done_.returncode == 0, done_.stderr

    reopen = partial(open_store, copy, readonly=True) if processes == 2 else None
    store = await open_store(copy, readonly=True)
    try:
        report = await audit(store, erase_once, reopen)
    finally:
        await store.close()
    assert erased and erased[0] < last.seq
    assert report.ok, report.failure
    assert report.state.users[last.user_id].email == last.email  # as it was when the audit began
    assert (await audit_file(copy)).state.users[last.user_id].email is None


async def test_the_audit_gives_the_collector_back_whether_it_passes_or_fails(
    built: Built, copy: Path
) -> None:
    # the folds pause the cyclic collector; whoever runs the audit must get it back either way
    assert gc.isenabled()
    assert (await audit_file(built.path)).ok
    assert gc.isenabled()
    with tamper(copy) as conn:
        conn.execute("UPDATE events SET hash = zeroblob(32) WHERE seq = ?", (built.head,))
    assert not (await audit_file(copy)).ok
    assert gc.isenabled()


def test_a_pause_of_the_collector_ends_with_its_block_and_keeps_it_off_if_it_was() -> None:
    with pytest.raises(RuntimeError), collector_paused():
        assert not gc.isenabled()
        raise RuntimeError("a failed fold")
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


# --- non-canonical bodies -----------------------------------------------------------------------


REENCODINGS = {
    "spaces": lambda v: json.dumps(v, sort_keys=True, separators=(", ", ": "), ensure_ascii=False),
    "unsorted keys": lambda v: json.dumps(
        dict(reversed(list(v.items()))), separators=(",", ":"), ensure_ascii=False
    ),
    "escaped non-ascii": lambda v: json.dumps(v, sort_keys=True, separators=(",", ":")),
}


@pytest.mark.parametrize("how", list(REENCODINGS))
async def test_a_body_re_encoded_non_canonically_and_rechained_fails_decode(
    built: Built, copy: Path, how: str
) -> None:
    with tamper(copy) as conn:
        seq = first_seq(conn, "CandidateAdded")  # "정시원": non-ASCII, so escaping changes the bytes
        body = REENCODINGS[how](json.loads(body_of(conn, seq))).encode()
        assert body != body_of(conn, seq)
        conn.execute("UPDATE events SET body = ? WHERE seq = ?", (body, seq))
        rechain(conn, seq)

    failure = (await audit_file(copy)).failure
    assert failure is not None
    assert (failure.seq, failure.check) == (seq, "decode")
    assert "canonical" in failure.message


async def test_a_row_whose_columns_disagree_with_its_body_fails_decode(built: Built, copy: Path) -> None:
    with tamper(copy) as conn:
        seq = middle_vote(conn, built)
        conn.execute("UPDATE events SET type = 'PollClosed' WHERE seq = ?", (seq,))

    failure = (await audit_file(copy)).failure
    assert failure is not None
    assert (failure.seq, failure.check) == (seq, "decode")



async def test_a_dropped_projection_table_is_reported_as_a_projections_failure(
    built: Built, copy: Path
) -> None:
    with tamper(copy) as conn:
        conn.execute("DROP TABLE ballots")

    failure = (await audit_file(copy)).failure
    assert failure is not None
    assert failure.check == "projections"


async def _die() -> EventStore:
    """A store opener whose process ends at once, as one killed by the OOM killer would."""
    os._exit(1)


async def test_a_second_process_that_dies_is_one_ledger_error_for_the_audit_and_the_fold(
    built: Built,
) -> None:
    store = await open_store(built.path, readonly=True)
    try:
        with pytest.raises(LedgerError, match="the second process of the audit stopped"):
            await audit(store, reopen=_die)
        with pytest.raises(LedgerError, match="the second process of the fold stopped"):
            await replay_in_two(store, _die)
    finally:
        await store.close()


async def test_a_rebuild_whose_second_process_dies_writes_nothing(built: Built) -> None:
    with tamper(built.path) as conn:
        conn.execute("UPDATE candidates SET votes = votes + 1")
    before = await live_tables(built.path)
    store = await open_store(built.path)
    try:
        with pytest.raises(LedgerError, match="the second process of the fold stopped"):
            await rebuild(store, reopen=_die)
        assert await live_tables(built.path) == before
        assert (await asyncio.wait_for(rebuild(store), 60)).rebuilt == ["candidates"]
    finally:
        await store.close()
