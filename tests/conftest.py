"""Shared fixtures: settings for a test ledger, and a client over real HTTP to the real app.

The app's ledger is in memory unless the test is marked ``ledger_file``: rules and HTTP shapes need
no disk, while restarts, the file itself and other processes on it need a real SQLite file. Every
test whose app ledger is not a file runs twice, on memory and on PostgreSQL (a schema of the test's
own in a database of the run's, on the machine's server; skipped, saying why, where none answers).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from api.app import create_app
from api.settings import Settings
from ledger.memory import MemoryEventStore
from ledger.open import open_store
from projections.audit import AuditReport, audit
from projections.service import VoteLedger, wall_clock_ms
from tests.ledger.helpers import TEST_SIGNING, TEST_SIGNING_KEY
from tests.postgres import fresh_schema, require_postgres

TEST_SECRET = "test-secret-" + "x" * 32  # the JWT secret every test app signs with
FAST_HASHING = {"argon2_time_cost": 1, "argon2_memory_cost": 64, "argon2_parallelism": 1}
LEDGER_FILE = "ledger_file"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{LEDGER_FILE}: the app's ledger is a SQLite file in tmp_path (restarts, the file itself, "
        "other processes on it), not the in-memory ledger",
    )


# --- which tests pytest-xdist keeps together (``make test`` runs ``-n 2 --dist loadgroup``) ---------
# The tests that load the machine or measure time run one after another on one worker, never two of
# them at once, and those that assert a rate or a latency run with nothing else beside them; a module
# whose module-scoped fixture each worker would otherwise build again runs whole on one worker; every
# other test goes to whichever worker is free.
#
# The groups are named here by node id rather than by xdist_group marks, which xdist 3.8 no longer
# sees under pytest 9.2 (pytest-dev/pytest-xdist#1386). And schemathesis's items all share one node id
# under pytest 9.2, which xdist's grouping schedulers take for one test: the scheduler numbers repeats.

HEAVY = (
    "tests/reliability/test_bench.py",  # the benchmarks: servers, load generators, ratios
    "tests/reliability/test_kill9.py",  # SIGKILL under load
    "tests/reliability/test_faults.py",  # faults injected under load
    "tests/reliability/test_shutdown.py",  # SIGTERM under load
    "tests/reliability/test_nodes.py",  # nodes on one PostgreSQL database: p99 latency, SIGKILL under load
    "tests/reliability/test_postgres_faults.py",  # PostgreSQL stopped under the nodes
    "tests/web/test_page.py",  # Chromium driving the page against a real server
    "tests/web/test_receipt.py",  # the same, verifying receipts
    "tests/web/test_verifier_vectors.py",  # the same, on published test vectors
    "tests/web/test_bench_streams.py",  # wrk and a thousand streams' worth of benchmark, briefly
    "tests/api/test_auth.py::test_candidates_stay_fast_while_twenty_signups_are_hashed",
    "tests/api/test_auth.py::test_unknown_email_and_wrong_password_take_about_as_long",
)
ALONE = (  # of HEAVY: a rate or a latency is asserted, so the other worker waits meanwhile
    "tests/reliability/test_bench.py::test_the_http_benchmark_runs_every_scenario_and_its_tallies_match",
    "tests/reliability/test_bench.py::test_rounds_repeat_every_scenario_with_voters_of_their_own_and_ratios",
    "tests/reliability/test_nodes.py::test_a_vote_acknowledged_by_one_node_shows_on_the_other_within_100_ms",
    "tests/api/test_auth.py::test_candidates_stay_fast_while_twenty_signups_are_hashed",
    "tests/api/test_auth.py::test_unknown_email_and_wrong_password_take_about_as_long",
)
ONE_WORKER = (
    "tests/projections/test_rebuild.py",  # a history of 100k events
    "tests/reliability/test_openapi_fuzz.py",  # one live server, whose log is checked at the end
)


def named(nodeid: str, names: Sequence[str]) -> bool:
    """Whether the test is one of ``names``: a module, a test, or a prefix of a test's name."""
    return any(nodeid.startswith(name) for name in names)


def xdist_group_of(nodeid: str) -> str:
    """The unit of work a test belongs to: "heavy", its module, or the test alone."""
    if named(nodeid, HEAVY):
        return "heavy"
    module = nodeid.split("::")[0]
    return module if module in ONE_WORKER else nodeid


def numbered_repeats(nodeids: Sequence[str]) -> list[str]:
    """The node ids, a repeated one numbered from its second occurrence on (``id#2``, ``id#3``...)."""
    seen: Counter[str] = Counter()
    numbered = []
    for nodeid in nodeids:
        seen[nodeid] += 1
        numbered.append(nodeid if seen[nodeid] == 1 else f"{nodeid}#{seen[nodeid]}")
    return numbered


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup`` with the groups above (and any xdist_group marks xdist does see)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling  # type: ignore[import-untyped]

    class Grouped(LoadGroupScheduling):  # type: ignore[misc]
        def add_node_collection(self, node: Any, collection: Sequence[str]) -> None:
            super().add_node_collection(node, numbered_repeats(collection))

        def _split_scope(self, nodeid: str) -> str:
            scope: str = super()._split_scope(nodeid)
            return xdist_group_of(nodeid) if scope == nodeid else scope

    return Grouped(config, log)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    """Under xdist, a test of ``ALONE`` (setup to teardown) runs while no other test does."""
    basetemp = item.config.option.basetemp
    if os.environ.get("PYTEST_XDIST_WORKER") is None or basetemp is None:
        return (yield)
    with machine_to_itself(Path(basetemp).parent, exclusive=named(item.nodeid, ALONE)):
        return (yield)


@contextlib.contextmanager
def machine_to_itself(run_dir: Path, exclusive: bool) -> Iterator[None]:
    """A readers-writer lock shared by the workers of one run (its files in the run's basetemp):
    shared for most tests, exclusive for the others. A test waiting for it exclusively goes first:
    tests arriving after it wait at the turnstile."""
    with (run_dir / "turnstile.lock").open("a") as turnstile, (run_dir / "room.lock").open("a") as room:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(room, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        finally:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(room, fcntl.LOCK_UN)


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for a test: a ledger file in ``tmp_path``, cheap password hashing, a fixed secret."""
    values: dict[str, Any] = {
        "db": tmp_path / "ledger.db",
        "jwt_secret": TEST_SECRET,
        "signing_key": TEST_SIGNING_KEY,
        **FAST_HASHING,
        **overrides,
    }
    return Settings.load(values, environ={})


@pytest.fixture
def memory_db() -> Iterator[str]:
    """The URL of an in-memory ledger of this test's own, forgotten after it."""
    name = uuid.uuid4().hex
    yield f"memory:{name}"
    MemoryEventStore.forget(name)


APP_BACKENDS = ("memory", "postgresql")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test with an app ledger that is not a file runs on each of ``APP_BACKENDS``."""
    if "app_backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker(LEDGER_FILE) is None:
        metafunc.parametrize("app_backend", APP_BACKENDS)


@pytest.fixture
def app_backend() -> str:
    """The backend of a test's app ledger (a test marked ``ledger_file`` has SQLite's)."""
    return "sqlite"


@pytest.fixture
async def app_db(tmp_path: Path, memory_db: str, app_backend: str) -> AsyncIterator[str]:
    """The ledger a test's app opens: ``tmp_path/ledger.db`` if marked ``ledger_file``, else in
    memory or in a fresh PostgreSQL database.

    Named, so that the test reads the same ledger the app wrote, and a second app in the same test
    opens it again.
    """
    if app_backend == "sqlite":
        yield str(tmp_path / "ledger.db")
    elif app_backend == "postgresql":
        require_postgres()
        async with fresh_schema() as url:
            yield url
    else:
        yield memory_db


@pytest.fixture
def settings(tmp_path: Path, app_db: str) -> Settings:
    return make_settings(tmp_path, db=app_db)


MakeClient = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
def make_client(aiohttp_client: Any, tmp_path: Path, app_db: str) -> MakeClient:
    """Start the real app (``create_app``) on a real socket with the given setting overrides."""

    async def start(**overrides: Any) -> TestClient[Any, Any]:
        settings = make_settings(tmp_path, **{"db": app_db, **overrides})
        client: TestClient[Any, Any] = await aiohttp_client(create_app(settings))
        return client

    return start


@pytest.fixture
async def client(make_client: MakeClient) -> TestClient[Any, Any]:
    """The service on the bundled demo poll."""
    return await make_client()


async def open_vote_ledger(db: str, clock: Callable[[], int] = wall_clock_ms) -> VoteLedger:
    """A VoteLedger on the ledger at ``db`` (a path or a URL), created if missing."""
    return await VoteLedger.open(await open_store(db, create=True), TEST_SIGNING, clock=clock)


async def audit_in_process(db: str) -> AuditReport:
    """The audit of a closed ledger in this process alone (the only one that sees a memory: ledger)."""
    store = await open_store(db, readonly=True)
    try:
        return await audit(store)
    finally:
        await store.close()


async def signup_and_login(
    client: TestClient[Any, Any], email: str, password: str = "password-123", **extra: str
) -> str:
    """Register through the JSON API and return a bearer token."""
    response = await client.post(
        "/api/v1/users", json={"email": email, "name": email.split("@")[0], "password": password, **extra}
    )
    assert response.status == 201, await response.text()
    response = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status == 200, await response.text()
    token: str = (await response.json())["accessToken"]
    return token
