"""Several processes appending to one ledger file at once: nothing lost, nothing duplicated."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from ledger.sqlite.store import SqliteEventStore
from projections.service import VoteLedger
from projections.state import PrivateFields
from projections.tables import POSITION
from tests.ledger.helpers import TEST_SIGNING, assert_chain, read_all

PROCESSES = 3
REGISTRATIONS = 150  # per process

CHILD = """
import asyncio, sys
from ledger.sqlite.store import SqliteEventStore
from projections.commands import RegisterUser
from projections.service import VoteLedger
from tests.ledger.helpers import TEST_SIGNING

async def main(path: str, name: str, count: int) -> None:
    ledger = await VoteLedger.open(await SqliteEventStore.open(path), TEST_SIGNING)
    print("ready", flush=True)
    sys.stdin.readline()  # the go signal: every process appends at the same time
    seqs = []
    for start in range(0, count, 10):
        results = await asyncio.gather(*(
            ledger.execute(RegisterUser(f"{name}-{i}@example.org", name, "hash"))
            for i in range(start, min(count, start + 10))
        ))
        seqs += [r.seq for r in results]
        await asyncio.sleep(0.002)  # let the other processes take the write lock in between
    await ledger.close()
    print(" ".join(map(str, seqs)), flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def test_processes_appending_at_once_leave_one_gapless_chain_holding_everything(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    ledger = await VoteLedger.open(await SqliteEventStore.open(path, create=True), TEST_SIGNING)
    await ledger.close()
    names = [f"proc{n}" for n in range(PROCESSES)]

    children = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHILD, str(path), name, str(REGISTRATIONS),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        for name in names
    ]
    try:
        for child in children:
            assert child.stdout is not None
            assert await asyncio.wait_for(child.stdout.readline(), timeout=20) == b"ready\n"
        outputs = await asyncio.wait_for(
            asyncio.gather(*(child.communicate(b"go\n") for child in children)), timeout=60
        )
    finally:
        for child in children:
            if child.returncode is None:
                child.kill()
                await child.wait()

    for child, (_, stderr) in zip(children, outputs, strict=True):
        assert child.returncode == 0, stderr.decode()
    reported = [int(seq) for stdout, _ in outputs for seq in stdout.split()]
    total = PROCESSES * REGISTRATIONS
    assert sorted(reported) == list(range(1, total + 1))

    ledger = await VoteLedger.open(await SqliteEventStore.open(path), TEST_SIGNING)
    try:
        events = await read_all(ledger.store)
        assert_chain(events)
        assert len(events) == total
        emails = {PrivateFields.from_body(e.private_body).email for e in events if e.private_body}
        assert emails == {f"{name}-{i}@example.org" for name in names for i in range(REGISTRATIONS)}
        assert len(ledger.state.users) == total
        positions = {(seq, digest) for _, seq, digest in await ledger.store.rows(POSITION)}
        assert positions == {(total, events[-1].hash)}
    finally:
        await ledger.close()


CREATOR = """
import asyncio, sys
from ledger.sqlite.store import SqliteEventStore

async def main(path: str) -> None:
    print("ready", flush=True)
    sys.stdin.readline()
    try:
        store = await SqliteEventStore.open(path, create=True)
    except Exception as exc:
        print(f"{type(exc).__name__}: {exc}", flush=True)
        return
    await store.close()
    print("ok", flush=True)

asyncio.run(main(sys.argv[1]))
"""


async def test_processes_creating_one_new_ledger_at_once_all_open_it(tmp_path: Path) -> None:
    # the race is narrow: several fresh files, each created by five processes at once
    for attempt in range(3):
        path = tmp_path / f"fresh{attempt}.db"
        children = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-c", CREATOR, str(path),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            )
            for _ in range(5)
        ]
        try:
            for child in children:
                assert child.stdout is not None
                if await asyncio.wait_for(child.stdout.readline(), timeout=20) != b"ready\n":
                    raise RuntimeError("a creator process did not start")
            outputs = await asyncio.wait_for(
                asyncio.gather(*(child.communicate(b"go\n") for child in children)), timeout=30
            )
        finally:
            for child in children:
                if child.returncode is None:
                    child.kill()
                    await child.wait()
        answers = [stdout.decode().strip() for stdout, _ in outputs]
        assert answers == ["ok"] * len(children), answers
