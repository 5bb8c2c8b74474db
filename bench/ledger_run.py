"""The ledger benchmark (``--ledger EVENTS``): append rates, audit and rebuild speed, and the
server's memory, on a ledger of many events (a fifth signups, the rest votes)."""

from __future__ import annotations

import asyncio
import time
from functools import partial
from pathlib import Path
from typing import Any

from bench.harness import drive, service_pids, tokens
from bench.ledgers import BENCH_POLL, FAKE_HASH, bulk_ledger, execute_all
from bench.processes import command, environment, free_port, in_workdir, serve, stop
from bench.procfs import command_line, rss_kib
from bench.proofs import proof_latency
from ledger.open import open_store
from ledger.store import EventStore
from projections.audit import audit
from projections.commands import CastVote, RegisterUser, SyncPolls
from projections.polls_file import parse_polls
from projections.rebuild import rebuild
from projections.tables import TABLES

VOTERS_AFTER_START = 100_000


async def _build_ledger(db: Path, events: int) -> dict[str, float]:
    """A ledger of ``events`` events (a fifth signups, the rest votes), and the append rates seen."""
    async with bulk_ledger(db) as ledger:
        await ledger.execute(SyncPolls(parse_polls(BENCH_POLL)))
        started = time.perf_counter()
        for i in range(300):  # one at a time: one durable commit each
            await ledger.execute(RegisterUser(f"solo{i}@bench.example", "solo", FAKE_HASH))
        one_at_a_time = 300 / (time.perf_counter() - started)
        users = max(1, events // 5)
        started = time.perf_counter()
        ids = await execute_all(ledger, (
            RegisterUser(f"u{i}@bench.example", f"user {i}", FAKE_HASH) for i in range(users)
        ))
        votes = max(0, events - ledger.state.head_seq)
        await execute_all(ledger, (CastVote(ids[i % len(ids)], "p", 1 + i % 10) for i in range(votes)))
        grouped = (users + votes) / (time.perf_counter() - started)
    return {"appends_per_s_one_at_a_time": round(one_at_a_time), "appends_per_s_group_commit": round(grouped)}


def _resident(pid: int, suffix: str) -> dict[str, float]:
    """The resident sizes of a served process and of its helper processes, in MiB."""
    helpers = service_pids(pid)[1:]

    def of(module: bytes) -> float:
        return round(sum(rss_kib(p) for p in helpers if module in command_line(p)) / 1024, 1)

    return {f"serve_rss_mib{suffix}": round(rss_kib(pid) / 1024, 1),
            f"batch_writer_rss_mib{suffix}": of(b"ledger.sqlite.batch_writer"),
            f"seal_worker_rss_mib{suffix}": of(b"ledger.sealing")}


async def _empty_projections(store: EventStore) -> None:
    async with store.rewrite_tables() as tx:
        for spec in TABLES:
            await tx.replace(spec, [])


def ledger_run(events: int, keep: Path | None = None, votes_seconds: float = 5.0) -> dict[str, Any]:
    """Append rates, audit and rebuild speed on an ``events``-event ledger, and the server's memory
    after start-up and after ``votes_seconds`` of votes by distinct users; the files stay in
    ``keep`` if given."""
    return in_workdir(keep, partial(_ledger_run, events, votes_seconds))


def _ledger_run(events: int, votes_seconds: float, work: Path) -> dict[str, Any]:
    db, polls = work / "ledger.db", work / "polls.toml"
    polls.write_text(BENCH_POLL, encoding="utf-8")
    figures: dict[str, Any] = {"events": events, **asyncio.run(_build_ledger(db, events))}

    async def timed(readonly: bool, run: Any) -> tuple[float, Any]:
        store = await open_store(db, readonly=readonly)
        try:
            started = time.perf_counter()
            result = await run(store)
            return time.perf_counter() - started, result
        finally:
            await store.close()

    reopen = partial(open_store, db, readonly=True)
    seconds, report = asyncio.run(timed(True, partial(audit, reopen=reopen)))  # as `vote-ledger audit`
    total = report.head_seq
    figures.update(head_seq=total, users=len(report.state.users),  # the audit's fold of the whole log
                   audit_passed=report.ok, audit_events_per_s=round(total / seconds))
    seconds, report = asyncio.run(timed(True, audit))
    figures.update(audit_one_process_passed=report.ok,
                   audit_one_process_events_per_s=round(total / seconds))
    voters = list(report.state.users.values())[:VOTERS_AFTER_START]
    del report  # and its fold: what follows starts from a heap as small as the commands' own
    seconds, rebuilt = asyncio.run(timed(False, partial(rebuild, reopen=reopen)))  # as `vote-ledger rebuild`
    figures.update(rebuild_events_per_s=round(total / seconds), rebuild_changes=len(rebuilt.changes),
                   rebuild_locked_s=round(rebuilt.locked_s, 4))
    asyncio.run(timed(False, _empty_projections))  # so that the next rebuild writes every table again
    seconds, rewritten = asyncio.run(timed(False, partial(rebuild, reopen=reopen)))
    figures.update(rebuild_all_tables_events_per_s=round(total / seconds),
                   rebuild_all_tables_rebuilt=rewritten.rebuilt,
                   rebuild_all_tables_changes=len(rewritten.changes),
                   rebuild_all_tables_locked_s=round(rewritten.locked_s, 4))

    port = free_port()
    started = time.perf_counter()
    server = serve(command("serve", "--port", str(port), "--config", str(polls)), environment(db), port,
                   work / "server.log")
    try:
        figures["serve_startup_s"] = round(time.perf_counter() - started, 1)
        figures.update(_resident(server.pid, ""))
        figures.update(proof_latency(port, total))
        # then votes by up to 100k distinct users, as a busy vote would bring: what memory grows
        voter_tokens, tokens_file = tokens(voters, work, "tokens.txt")
        voted = drive([port], tokens_file, voter_tokens, "votes", "/vote?id=1", 64, votes_seconds,
                      method="GET", pids=[server.pid])
        figures["votes_after_start"] = voted.ok
        figures.update(_resident(server.pid, "_after_votes"))
    finally:
        stop(server)
    return figures
