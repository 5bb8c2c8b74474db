"""The polls file: parsing (errors name ``source:LINE:``) and loading it into the ledger idempotently.

Loading is a rule of the ledger, tried on ledgers in memory; loading again after a restart takes a
real ledger file.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

import pytest

from projections.commands import Appended, CastVote, PollSpec, SetPollStatus, SyncPolls
from projections.errors import PollClosedError, PollConfigError
from projections.polls_file import bundled, load_polls_file, parse_polls
from projections.service import VoteLedger
from tests.conftest import audit_in_process, open_vote_ledger
from tests.projections.helpers import audit_file, candidates, execute_all, open_ledger, register

DEFAULT_NAMES = ["정시원", "고은", "유현우", "김*오", "문*빈", "문*진", "서*빈", "이*용", "장*훈", "황*나"]

FIRST_POLL = """\
# a valid first poll, so that errors land further down the file
[[polls]]
id = "first"
title = "First"

[[polls.candidates]]
name = "Alpha"
"""  # 7 lines: the text appended below starts at line 8


def poll_file(rest: str) -> str:
    return FIRST_POLL + rest


# --- parsing ------------------------------------------------------------------------------------


def test_the_bundled_default_file_is_one_single_vote_legacy_poll_of_the_ten_2020_candidates() -> None:
    (poll,) = load_polls_file(bundled("default"))

    assert (poll.poll_id, poll.policy, poll.results, poll.legacy, poll.open) == (
        "frontend-leader", "single", "always", True, True,
    )
    assert [c.name for c in poll.candidates] == DEFAULT_NAMES
    assert (poll.same_part, poll.not_own_team, poll.opens_at, poll.closes_at) == (None, False, None, None)


def test_the_bundled_club_file_has_three_polls_with_their_rules() -> None:
    polls = load_polls_file(bundled("club"))

    assert [(p.poll_id, p.policy, p.results, p.legacy) for p in polls] == [
        ("frontend-leader", "single", "after_vote", True),
        ("backend-leader", "single", "after_vote", False),
        ("demo-day", "changeable", "after_close", False),
    ]
    assert [(p.same_part, p.not_own_team) for p in polls] == [("FE", False), ("BE", False), (None, True)]
    assert [c.name for c in polls[0].candidates] == ["정시원", "고은", "유현우"]
    assert {(c.part, c.team) for c in polls[0].candidates} == {("FE", None)}
    assert [(c.name, c.team) for c in polls[2].candidates] == [
        ("Aetheria", "Aetheria"), ("Pre:folio", "Pre:folio"), ("Hooking", "Hooking"),
    ]


def test_datetimes_with_an_offset_become_milliseconds_since_the_epoch() -> None:
    (_, poll) = parse_polls(poll_file(
        '[[polls]]\nid = "timed"\ntitle = "T"\n'
        "opens_at = 2026-12-01T18:00:00+09:00\ncloses_at = 2026-12-01T09:00:01.5Z\n"
    ))

    assert (poll.opens_at, poll.closes_at) == (1_796_115_600_000, 1_796_115_601_500)


ERRORS = {
    "unknown policy": (
        '[[polls]]\nid = "second"\ntitle = "Second"\npolicy = "ranked"\n', 11, "unknown policy",
    ),
    "unknown results rule": (
        '[[polls]]\nid = "second"\ntitle = "Second"\npolicy = "single"\nresults = "never"\n', 12,
        "unknown results rule",
    ),
    "two legacy polls": (
        '[[polls]]\nid = "second"\ntitle = "S"\nlegacy = true\n\n'
        '[[polls]]\nid = "third"\ntitle = "T"\npolicy = "single"\nlegacy = true\n', 17,
        "second legacy poll",
    ),
    "duplicate poll id": (
        '[[polls]]\nid = "second"\ntitle = "S"\n\n[[polls]]\ntitle = "again"\nid = "second"\n', 14,
        "duplicate poll id",
    ),
    "duplicate candidate": (
        '[[polls]]\nid = "second"\ntitle = "S"\n\n[[polls.candidates]]\nname = "Beta"\n\n'
        '[[polls.candidates]]\nname = "Beta"\n', 15, "duplicate candidate",
    ),
    "bad id slug": ('[[polls]]\ntitle = "S"\nid = "Second Poll"\n', 10, "slug"),
    "closes_at before opens_at": (
        '[[polls]]\nid = "second"\ntitle = "S"\nopens_at = 2026-12-01T18:00:00+09:00\n'
        "closes_at = 2026-12-01T17:00:00+09:00\n", 12, "closes_at must come after opens_at",
    ),
    "closes_at equal to opens_at": (
        '[[polls]]\nid = "second"\ntitle = "S"\nopens_at = 2026-12-01T18:00:00+09:00\n'
        "closes_at = 2026-12-01T09:00:00Z\n", 12, "closes_at must come after opens_at",
    ),
    "naive datetime": (
        '[[polls]]\nid = "second"\ntitle = "S"\n\nopens_at = 2026-12-01T18:00:00\n', 12, "UTC offset",
    ),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_an_error_in_the_polls_file_names_the_source_and_line(case: str) -> None:
    rest, line, words = ERRORS[case]

    with pytest.raises(PollConfigError) as raised:
        parse_polls(poll_file(rest), "polls.toml")

    assert str(raised.value).startswith(f"polls.toml:{line}: "), str(raised.value)
    assert words in str(raised.value)
    assert raised.value.code == "invalid_polls_file"


def test_a_candidate_in_no_poll_names_its_line() -> None:
    text = '# candidates need a poll\n\n[[polls.candidates]]\nname = "Orphan"\n'

    with pytest.raises(PollConfigError, match=r"^polls\.toml:3: a candidate in no poll"):
        parse_polls(text, "polls.toml")


def test_a_toml_syntax_error_names_the_source_and_mentions_the_line() -> None:
    with pytest.raises(PollConfigError) as raised:
        parse_polls(poll_file('[[polls]]\nid = "second"\ntitle = \n'), "polls.toml")

    assert str(raised.value).startswith("polls.toml")
    assert "line 10" in str(raised.value)


def test_a_toml_syntax_error_names_the_line_like_every_other_error() -> None:
    with pytest.raises(PollConfigError, match=r"^polls\.toml:10: "):
        parse_polls(poll_file('[[polls]]\nid = "second"\ntitle = \n'), "polls.toml")


def test_a_polls_entry_that_is_not_a_table_is_a_config_error() -> None:
    with pytest.raises(PollConfigError, match=r"^polls\.toml:1: "):
        parse_polls("polls = [1]\n", "polls.toml")


def test_a_duplicate_among_inline_candidates_names_its_own_line() -> None:
    text = (
        '[[polls]]\nid = "a"\ntitle = "A"\ncandidates = [{ name = "x" }, { name = "x" }]\n\n'
        '[[polls]]\nid = "b"\ntitle = "B"\n\n[[polls.candidates]]\nname = "y"\n\n'
        '[[polls.candidates]]\nname = "z"\n'
    )
    with pytest.raises(PollConfigError, match=r"^polls\.toml:4: duplicate candidate"):
        parse_polls(text, "polls.toml")


# --- loading into the ledger --------------------------------------------------------------------


def names_by_poll(ledger: VoteLedger) -> dict[str, list[str]]:
    return {
        poll_id: [c.name for c in sorted(poll.candidates.values(), key=lambda c: c.candidate_id)]
        for poll_id, poll in ledger.state.polls.items()
    }


def votes_by_candidate(ledger: VoteLedger) -> dict[int, int]:
    return {c.candidate_id: c.votes for c in ledger.state.candidates.values()}


async def test_loading_the_file_again_and_after_a_restart_appends_nothing_and_keeps_votes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.db"
    specs = load_polls_file(bundled("club"))
    ledger = await open_ledger(path)
    try:
        first = await ledger.execute(SyncPolls(specs))
        assert isinstance(first, Appended)
        assert first.types.count("PollCreated") == 3 and first.types.count("CandidateAdded") == 9
        assert first.types.count("PollOpened") == 3
        fe = await register(ledger, 4, "fe", part="FE")
        ballots = [CastVote(u, "frontend-leader", 1 + i % 3) for i, u in enumerate(fe)]
        results = await execute_all(ledger, ballots)
        assert all(not isinstance(r, BaseException) for r in results)
        names, votes, head = names_by_poll(ledger), votes_by_candidate(ledger), ledger.state.head_seq

        again = await ledger.execute(SyncPolls(specs))
        assert again == Appended((), ())
        assert ledger.state.head_seq == head
    finally:
        await ledger.close()

    ledger = await open_ledger(path)  # a restart loads the file again
    try:
        assert await ledger.execute(SyncPolls(load_polls_file(bundled("club")))) == Appended((), ())
        assert ledger.state.head_seq == head
        assert names_by_poll(ledger) == names
        assert votes_by_candidate(ledger) == votes
        assert sum(votes.values()) == 4
    finally:
        await ledger.close()
    assert (await audit_file(path)).ok


async def test_loading_the_same_file_concurrently_creates_each_candidate_once(memory_db: str) -> None:
    specs = load_polls_file(bundled("default"))
    ledger = await open_vote_ledger(memory_db)
    try:
        results = await execute_all(ledger, [SyncPolls(specs)] * 5)
        assert [len(r.seqs) for r in results if isinstance(r, Appended)] == [12, 0, 0, 0, 0]
        assert names_by_poll(ledger) == {"frontend-leader": DEFAULT_NAMES}
        assert sorted(ledger.state.candidates) == list(range(1, 11))
    finally:
        await ledger.close()


async def test_a_file_without_a_candidate_keeps_that_candidates_votes(memory_db: str) -> None:
    (spec,) = load_polls_file(bundled("default"))
    ledger = await open_vote_ledger(memory_db)
    try:
        await ledger.execute(SyncPolls((spec,)))
        users = await register(ledger, 3)
        await execute_all(ledger, [CastVote(u, "frontend-leader", 2) for u in users])
        head = ledger.state.head_seq

        fewer = dataclasses.replace(spec, candidates=tuple(c for c in spec.candidates if c.name != "고은"))
        assert await ledger.execute(SyncPolls((fewer,))) == Appended((), ())

        assert ledger.state.head_seq == head
        assert ledger.state.candidates[2].name == "고은"
        assert ledger.state.candidates[2].votes == 3
        assert names_by_poll(ledger)["frontend-leader"] == DEFAULT_NAMES
    finally:
        await ledger.close()


async def test_a_file_adding_a_candidate_appends_only_that_candidate(memory_db: str) -> None:
    (spec,) = load_polls_file(bundled("default"))
    ledger = await open_vote_ledger(memory_db)
    try:
        await ledger.execute(SyncPolls((spec,)))
        users = await register(ledger, 2)
        await execute_all(ledger, [CastVote(u, "frontend-leader", 5) for u in users])
        head = ledger.state.head_seq
        more = dataclasses.replace(spec, candidates=(*spec.candidates[:3], *candidates("새 후보"),
                                                     *spec.candidates[3:]))

        added = await ledger.execute(SyncPolls((more,)))

        assert added == Appended((head + 1,), ("CandidateAdded",))
        assert ledger.state.candidates[11].name == "새 후보"
        assert names_by_poll(ledger)["frontend-leader"] == [*DEFAULT_NAMES, "새 후보"]
        assert ledger.state.candidates[5].votes == 2
    finally:
        await ledger.close()


async def test_reloading_the_file_never_reopens_a_closed_poll_nor_changes_its_settings(
    memory_db: str,
) -> None:
    (spec,) = load_polls_file(bundled("default"))
    ledger = await open_vote_ledger(memory_db)
    try:
        await ledger.execute(SyncPolls((spec,)))
        await ledger.execute(SetPollStatus("frontend-leader", open=False))
        head = ledger.state.head_seq
        changed = dataclasses.replace(spec, title="Another title", policy="unlimited")

        result = await ledger.execute(SyncPolls((changed,)))

        assert isinstance(result, Appended) and result.seqs == ()
        assert "already in the ledger with other title, policy" in result.notes[0]
        assert ledger.state.head_seq == head
        poll = ledger.state.polls["frontend-leader"]
        assert (poll.status, poll.title, poll.policy) == ("closed", spec.title, "single")
        (user,) = await register(ledger, 1)
        with pytest.raises(PollClosedError):
            await ledger.execute(CastVote(user, "frontend-leader", 1))
    finally:
        await ledger.close()


async def test_a_file_naming_another_legacy_poll_is_refused_and_appends_nothing(memory_db: str) -> None:
    (spec,) = load_polls_file(bundled("default"))
    ledger = await open_vote_ledger(memory_db)
    try:
        await ledger.execute(SyncPolls((spec,)))
        head = ledger.state.head_seq
        other = PollSpec("other", "Other", legacy=True, candidates=candidates("X"))
        with pytest.raises(PollConfigError, match="already the legacy poll"):
            await ledger.execute(SyncPolls((dataclasses.replace(spec, legacy=False), other)))
        assert ledger.state.head_seq == head
    finally:
        await ledger.close()


async def test_syncing_a_poll_that_names_a_candidate_twice_adds_it_once(memory_db: str) -> None:
    ledger = await open_vote_ledger(memory_db)
    try:
        spec = PollSpec("p", "P", candidates=candidates("Twin", "Twin", "Other"))
        with contextlib.suppress(PollConfigError):  # refusing the spec outright would be fine too
            await ledger.execute(SyncPolls((spec,)))
        assert all(len(names) == len(set(names)) for names in names_by_poll(ledger).values())
    finally:
        await ledger.close()
    report = await audit_in_process(memory_db)
    assert report.ok, report.failure
