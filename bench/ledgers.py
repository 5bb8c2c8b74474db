"""Ledgers built fast for a benchmark: commands go straight to the service's writer, thousands at a
time, so that they share group commits (no HTTP, and no hashing unless the caller hashes)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

from api.settings import Settings
from api.signing import load_signing
from bench.processes import SIGNING_KEY
from ledger.open import open_store
from projections.commands import Command, Registered
from projections.service import VoteLedger

BENCH_POLL = """
[[polls]]
id = "p"
title = "ledger benchmark"
policy = "unlimited"
legacy = true
""" + "".join(f'[[polls.candidates]]\nname = "c{i}"\n' for i in range(10))

FAKE_HASH = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo"
"""A password hash nobody's password matches: for users who are never to log in."""

AT_ONCE = 4096
"""Commands in flight together, and the most the writer commits in one go."""


@asynccontextmanager
async def bulk_ledger(db: Path) -> AsyncIterator[VoteLedger]:
    """The ledger at ``db`` (created if it is not there), its writer taking ``AT_ONCE`` commands
    per commit."""
    signing = load_signing(Settings(db=str(db), signing_key=SIGNING_KEY))  # as the service signs
    store = await open_store(db, create=True)
    ledger = await VoteLedger.open(store, signing, max_batch=AT_ONCE)
    try:
        yield ledger
    finally:
        await ledger.close()


async def execute_all(ledger: VoteLedger, commands: Iterable[Command]) -> list[str]:
    """Execute ``commands``, ``AT_ONCE`` at a time; the ids of the users they registered."""
    ids: list[str] = []
    pending = iter(commands)
    while chunk := list(itertools.islice(pending, AT_ONCE)):
        results = await asyncio.gather(*(ledger.execute(command) for command in chunk))
        ids += [r.user_id for r in results if isinstance(r, Registered)]
    return ids
