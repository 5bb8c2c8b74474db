"""The throughput benchmark: the real service in its own process, driven by a real load generator.

It builds a fresh ledger, imports users with a cheap hashing cost, mints their tokens, starts
``vote-ledger serve`` and drives it with wrk (one token per request, so every vote is by a distinct
user), then measures a bare aiohttp handler the same way, in the same run, as the ceiling. Afterwards
it checks that the tallies equal the acknowledged votes and that the audit passes.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import jwt

from api.settings import child_environment
from bench.procfs import children, rss_kib, stat_fields
from ledger.sqlite import SqliteEventStore
from projections.audit import audit
from projections.model import User
from projections.service import replay
from projections.state import LedgerState
from projections.tables import TABLES

SECRET = "bench-secret-" + "b" * 40
POLLS = """
[[polls]]
id = "bench-legacy"
title = "legacy route votes"
legacy = true
[[polls.candidates]]
name = "alpha"
[[polls.candidates]]
name = "beta"

[[polls]]
id = "bench-json"
title = "JSON API votes"
[[polls.candidates]]
name = "gamma"
[[polls.candidates]]
name = "delta"
"""

BARE_SERVER = """
import sys
from aiohttp import web
async def hello(request):
    return web.json_response({"ok": True})
app = web.Application()
app.router.add_get("/", hello)
try:
    import uvloop; uvloop.install()
except ImportError:
    pass
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""

# Each wrk connection takes the next token of its thread's slice; a thread stops when its slice is
# spent, so no user ever votes twice in a scenario.
WRK_SCRIPT = """
local tokens = {}
for line in io.lines(os.getenv("BENCH_TOKENS")) do tokens[#tokens + 1] = line end
local method = os.getenv("BENCH_METHOD")
local path = os.getenv("BENCH_PATH")
local body = os.getenv("BENCH_BODY")
local threads = tonumber(os.getenv("BENCH_THREADS"))
local counter = 0
function setup(thread)
  thread:set("index", counter)
  counter = counter + 1
end
function init(args)
  local per = math.floor(#tokens / threads)
  first = index * per + 1
  last = first + per - 1
  nexti = first
end
function request()
  if method ~= "" and nexti > last then
    wrk.thread:stop()
    nexti = first
  end
  local token = tokens[nexti]
  nexti = nexti + 1
  if nexti > last and method == "" then nexti = first end
  local headers = {}
  if token ~= nil and method ~= "" then headers["Authorization"] = "Bearer " .. token end
  if body ~= "" then headers["Content-Type"] = "application/json" end
  local b = nil
  if body ~= "" then b = body end
  return wrk.format(method ~= "" and method or "GET", path, headers, b)
end
function done(summary, latency, requests)
  local non2xx = summary.errors.status
  io.stderr:write(string.format(
    'BENCH {"requests": %d, "seconds": %.6f, "non2xx": %d, "socket_errors": %d, ' ..
    '"p50_ms": %.3f, "p99_ms": %.3f}\\n',
    summary.requests, summary.duration / 1e6, non2xx,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


@dataclass
class Scenario:
    """One measured scenario."""

    name: str
    requests: int
    ok: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    ratio: float = 0.0
    generator: str = "wrk"
    cpu_us: float | None = None  # the server's CPU time (all threads, and its batch writer) per request
    voters_ran_out: bool = False  # every voter had voted before the time was up: rps is a lower bound
    socket_errors: int = 0  # connections that failed or timed out: the figures are not to be trusted
    round: int = 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class BenchError(Exception):
    """The benchmark could not run: a set-up step failed, a server did not start, wrk gave no
    figures."""


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(it said nothing)"


def _wait_for(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            said = _last_line(log.read_text(errors="replace"))
            raise BenchError(f"the server exited with {process.returncode} before listening: {said}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"the server did not start listening within {timeout:g} s (its log: {log})")


def _env(db: Path) -> dict[str, str]:
    return child_environment({
        "VOTE_LEDGER_DB": str(db),
        "VOTE_LEDGER_JWT_SECRET": SECRET,
        "VOTE_LEDGER_ARGON2_TIME_COST": "1",
        "VOTE_LEDGER_ARGON2_MEMORY_COST": "8",
        "VOTE_LEDGER_ARGON2_PARALLELISM": "1",
    })


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "api.cli", *args]


def _wrk(port: int, tokens: Path, path: str, connections: int, duration: float,
         method: str = "", body: str = "") -> dict[str, Any]:
    work = tokens.parent
    script = work / "bench.lua"
    script.write_text(WRK_SCRIPT)
    env = child_environment({"BENCH_TOKENS": str(tokens), "BENCH_PATH": path, "BENCH_METHOD": method,
                             "BENCH_BODY": body, "BENCH_THREADS": "1"})
    try:
        result = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "10s",
             "-s", str(script), f"http://127.0.0.1:{port}"],
            env=env, capture_output=True, text=True, timeout=duration + 120,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk did not finish within {duration + 120:g} s") from None
    for line in result.stderr.splitlines():
        if line.startswith("BENCH "):
            stats: dict[str, Any] = json.loads(line[6:])
            return stats
    raise BenchError(f"wrk exited with {result.returncode} and printed no figures: "
                     f"{_last_line(result.stderr + result.stdout)}")


async def _aiohttp_load(port: int, tokens: list[str], path: str, connections: int, duration: float,
                        method: str, body: str) -> dict[str, Any]:
    """The fallback load generator when wrk is absent (slower; it shares the Python runtime's cost)."""
    latencies: list[float] = []
    ok = non2xx = 0
    queue = iter(tokens)
    deadline = time.monotonic() + duration
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as session:
        async def worker() -> None:
            nonlocal ok, non2xx
            while time.monotonic() < deadline:
                token = next(queue, None)
                if token is None and method:
                    return
                headers = {"Authorization": f"Bearer {token}"} if method and token else {}
                if body:  # as the wrk script sends it
                    headers["Content-Type"] = "application/json"
                start = time.perf_counter()
                async with session.request(method or "GET", f"http://127.0.0.1:{port}{path}",
                                           headers=headers, data=body or None,
                                           ) as response:
                    await response.read()
                latencies.append(time.perf_counter() - start)
                if 200 <= response.status < 300:
                    ok += 1
                else:
                    non2xx += 1

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(connections)))
        seconds = time.monotonic() - started
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else 0.0

    return {"requests": ok + non2xx, "seconds": seconds, "non2xx": non2xx, "socket_errors": 0,
            "p50_ms": pct(0.50), "p99_ms": pct(0.99)}


def _service(pid: int) -> list[int]:
    """A served process and the processes it started (its batch writer)."""
    return [pid, *children(pid)]


def _cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of a served process and its children so far (None where ``/proc``
    does not tell)."""
    total = 0
    for process in _service(pid):
        fields = stat_fields(process)
        if fields is None:
            if process == pid:
                return None
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _drive(port: int, tokens_file: Path, tokens: list[str], name: str, path: str, connections: int,
           duration: float, method: str = "", body: str = "", pid: int = 0) -> Scenario:
    cpu_before = _cpu_seconds(pid)
    if shutil.which("wrk"):
        stats, generator = _wrk(port, tokens_file, path, connections, duration, method, body), "wrk"
    else:
        stats = asyncio.run(_aiohttp_load(port, tokens, path, connections, duration, method, body))
        generator = "aiohttp (wrk not found)"
    # wrk counts a request once its answer is in; a connection that failed (to connect, read or
    # write) brought no answer, and its error is no request of the count
    ok = stats["requests"] - stats["non2xx"]
    cpu_after = _cpu_seconds(pid)
    cpu_us = None
    if cpu_before is not None and cpu_after is not None and stats["requests"]:
        cpu_us = round((cpu_after - cpu_before) / stats["requests"] * 1e6, 1)
    # wrk counts the whole duration even when every voter has voted and its thread has stopped
    ran_out = bool(method) and stats["requests"] >= len(tokens) - connections
    return Scenario(name, stats["requests"], ok, stats["seconds"], ok / stats["seconds"],
                    stats["p50_ms"], stats["p99_ms"], generator=generator, cpu_us=cpu_us,
                    voters_ran_out=ran_out, socket_errors=stats["socket_errors"])


def _serve(argv: list[str], env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    """Start a server, its standard error (and access log) going to ``log``, and wait until it
    listens."""
    with log.open("wb") as handle:
        process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=handle)
    try:
        _wait_for(port, process, log)
    except BaseException:  # not left running on its files
        _stop(process)
        raise
    return process


def _step(what: str, argv: list[str], env: dict[str, str]) -> None:
    """Run a set-up command; BenchError with its last line if it fails."""
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchError(f"{what} failed: {_last_line(done.stderr + done.stdout)}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def _replayed(db: Path) -> LedgerState:
    store = await SqliteEventStore.open(db, readonly=True)
    try:
        return await replay(store)
    finally:
        await store.close()


def _tokens(
    users: Iterable[User], work: Path, name: str, lifetime: float = 3600
) -> tuple[list[str], Path]:
    """One token per user, as the service would issue it (valid for ``lifetime`` seconds), and the
    file wrk reads them from."""
    now = int(time.time())
    exp = now + int(lifetime)
    tokens = [
        jwt.encode({"sub": u.user_id, "email": u.email, "iat": now, "exp": exp}, SECRET, "HS256")
        for u in users
    ]
    tokens_file = work / name
    tokens_file.write_text("\n".join(tokens) + "\n")
    return tokens, tokens_file


def _tallies(state: LedgerState) -> dict[str, int]:
    return {p.poll_id: p.total_votes for p in state.polls.values()}


async def _audit(db: Path) -> bool:
    store = await SqliteEventStore.open(db, readonly=True)
    try:
        return (await audit(store)).ok
    finally:
        await store.close()


VOTERS_PER_SECOND = 30_000
"""Distinct voters imported per second of each scenario, unless told otherwise: more than a vote
route serves on a machine whose bare ceiling is 45,000 requests a second, so none runs out."""


def _in_workdir(keep: Path | None, job: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """``job``'s figures, run in ``keep`` or in a temporary directory that goes once the figures
    are in (a run leaves hundreds of megabytes of ledger behind it)."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        return {**job(keep), "workdir": str(keep)}
    work = Path(tempfile.mkdtemp(prefix="vote-ledger-bench-"))
    try:
        return {**job(work), "workdir": None}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(
    users: int | None, connections: int, duration: float, keep: Path | None = None, rounds: int = 1
) -> dict[str, Any]:
    """Run the service's scenarios ``rounds`` times, with a ceiling run before the first round and
    after each, and return the figures; the files stay in ``keep`` if given. ``users`` voters vote
    in each round, so ``users * rounds`` are imported."""
    if rounds < 1:
        raise ValueError(f"rounds must be 1 or more, not {rounds}")
    # wrk runs for whole seconds, one at least
    voters = users if users is not None else VOTERS_PER_SECOND * max(1, round(duration))
    return _in_workdir(keep, partial(_run, voters, connections, duration, rounds))


SERVICE_SCENARIOS = (
    ("GET /candidates", "/candidates", "", "", None),
    ("GET /vote?id=N (legacy)", "/vote?id=1", "GET", "", "bench-legacy"),
    ("POST /api/v1/polls/{id}/votes", "/api/v1/polls/bench-json/votes", "POST", '{"candidateId": 3}',
     "bench-json"),
)
"""Each scenario the service is driven through: its name, path, method (empty: no token, a plain
GET), body, and the poll its requests vote in (None: no votes)."""


def _run(users: int, connections: int, duration: float, rounds: int, work: Path) -> dict[str, Any]:
    db, polls = work / "bench.db", work / "polls.toml"
    polls.write_text(POLLS, encoding="utf-8")
    env = _env(db)
    people = work / "users.jsonl"
    with people.open("w") as handle:
        for i in range(users * rounds):
            handle.write(json.dumps({"email": f"user{i}@bench.example", "name": f"user {i}",
                                     "password": f"pw-{i}"}) + "\n")
    started = time.perf_counter()
    _step("loading the polls", _command("polls", "load", "--config", str(polls)), env)
    _step("importing the users", _command("users", "import", str(people)), env)
    import_seconds = time.perf_counter() - started
    voters = list(asyncio.run(_replayed(db)).users.values())
    # tokens minted now must outlive every round: an hour past the run's longest likely length
    lifetime = 3600 + rounds * (len(SERVICE_SCENARIOS) + 1) * (duration + 120)
    # each round's votes are by voters of its own, who have voted in neither poll yet
    slices = [
        _tokens(voters[r * users:(r + 1) * users], work, f"tokens-{r + 1}.txt", lifetime)
        for r in range(rounds)
    ]

    # The ceiling is measured before the first round and after each, and each round's ratios are
    # to the mean of the two around it: the host's speed drifts within a run, and one measurement
    # at a slow moment would flatter or sink every ratio.
    bare_port, port = _free_port(), _free_port()
    bare = _serve([sys.executable, "-c", BARE_SERVER, str(bare_port)], env, bare_port, work / "bare.log")
    try:
        def ceiling(name: str, r: int) -> Scenario:
            tokens, tokens_file = slices[r - 1]
            return replace(_drive(bare_port, tokens_file, tokens, name, "/", connections, duration,
                                  pid=bare.pid), round=r)

        ceilings = [ceiling("bare aiohttp (ceiling)", 1)]
        served: list[list[Scenario]] = []
        server = _serve(_command("serve", "--port", str(port), "--config", str(polls), "--log-format",
                                 "json"), {**env, "PYTHONUNBUFFERED": "1"}, port, work / "server.log")
        try:
            for r, (tokens, tokens_file) in enumerate(slices, start=1):
                served.append([
                    replace(_drive(port, tokens_file, tokens, name, path, connections, duration,
                                   method=method, body=body, pid=server.pid), round=r)
                    for name, path, method, body, _ in SERVICE_SCENARIOS
                ])
                ceilings.append(ceiling("bare aiohttp (ceiling, again)", r))
        finally:
            _stop(server)
    finally:
        _stop(bare)
    mean = statistics.fmean(c.rps for c in ceilings)
    for c in ceilings:  # how far each ceiling run strays from their mean
        c.ratio = round(c.rps / mean, 3) if mean else 0.0
    for r, scenarios in enumerate(served):
        around = (ceilings[r].rps + ceilings[r + 1].rps) / 2
        for scenario in scenarios:
            scenario.ratio = round(scenario.rps / around, 3) if around else 0.0

    tallies = _tallies(asyncio.run(_replayed(db)))
    acknowledged = {
        poll: sum(s.ok for s in _runs(served, name))
        for name, *_, poll in SERVICE_SCENARIOS if poll is not None
    }
    # wrk stops with up to one request per connection in flight: those votes may have committed
    # without wrk counting the answer, so a tally may exceed the acknowledged votes by that much.
    tallies_match = all(
        acknowledged[k] <= tallies.get(k, 0) <= acknowledged[k] + connections * rounds for k in acknowledged
    )
    audit_ok = asyncio.run(_audit(db))
    ordered = [ceilings[0]]
    for scenarios, after in zip(served, ceilings[1:], strict=True):
        ordered += [*scenarios, after]
    return {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": sys.platform},
        "users": users, "rounds": rounds, "connections": connections, "duration": duration,
        "import_seconds": round(import_seconds, 2),
        "scenarios": [asdict(s) for s in ordered],
        "summary": _summary(served),
        "tallies": tallies, "acknowledged": acknowledged,
        "tallies_match": tallies_match,
        "audit_passed": audit_ok,
    }


def _runs(served: list[list[Scenario]], name: str) -> list[Scenario]:
    """The scenario named ``name`` in every round."""
    return [s for scenarios in served for s in scenarios if s.name == name]


def _summary(served: list[list[Scenario]]) -> dict[str, dict[str, float]]:
    """Each service scenario over the rounds: the median, lowest and highest ratio, the median
    rate and the highest p99."""
    summary: dict[str, dict[str, float]] = {}
    for name, *_ in SERVICE_SCENARIOS:
        runs = _runs(served, name)
        ratios = [s.ratio for s in runs]
        summary[name] = {
            "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
            "rps_median": round(statistics.median(s.rps for s in runs), 1),
            "p99_ms_max": max(s.p99_ms for s in runs),
        }
    return summary


def report(figures: dict[str, Any]) -> str:
    """A human-readable table of the figures (and, over several rounds, of each scenario's median)."""
    rounds = figures["rounds"]
    lines = [f"{'scenario':<34}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'ratio':>8}{'cpu µs/req':>12}"
             "  generator"]
    for s in figures["scenarios"]:
        cpu = f"{s['cpu_us']:,.0f}" if s.get("cpu_us") is not None else "-"
        lines.append(f"{_label(s, rounds):<34}{s['rps']:>10,.0f}{s['p50_ms']:>9.2f}{s['p99_ms']:>9.2f}"
                     f"{s['ratio']:>8.3f}{cpu:>12}  {s['generator']}")
    if rounds == 1:
        lines.append(f"users {figures['users']:,} (imported in {figures['import_seconds']} s), "
                     f"{figures['connections']} connections, {figures['duration']} s per scenario; "
                     "ratios are to the mean of the two ceiling runs")
    else:
        lines.append(f"users {figures['users']:,} per round (imported in {figures['import_seconds']} s), "
                     f"{figures['connections']} connections, {figures['duration']} s per scenario, "
                     f"{rounds} rounds; each round's ratios are to the mean of the ceiling runs "
                     "before and after it (a ceiling's ratio: to the mean of them all)")
        lines.append(f"{'over the rounds':<34}{'median req/s':>14}{'p99 max':>9}{'median':>8}"
                     f"{'lowest':>8}{'highest':>8}")
        for name, m in figures["summary"].items():
            lines.append(f"{name:<34}{m['rps_median']:>14,.0f}{m['p99_ms_max']:>9.2f}"
                         f"{m['ratio_median']:>8.3f}{m['ratio_min']:>8.3f}{m['ratio_max']:>8.3f}")
    for s in figures["scenarios"]:
        if s.get("voters_ran_out"):
            lines.append(f"{_label(s, rounds)}: all {figures['users']:,} voters had voted before the "
                         "time was up, so its req/s is a lower bound; give --users more")
        if s.get("socket_errors"):
            lines.append(f"{_label(s, rounds)}: {s['socket_errors']:,} connections failed or timed out "
                         "(fewer --connections?), so its figures are not to be trusted")
    lines.append(f"tallies {figures['tallies']} vs acknowledged {figures['acknowledged']}: "
                 f"{'match (within in-flight requests)' if figures['tallies_match'] else 'MISMATCH'}; audit "
                 f"{'passed' if figures['audit_passed'] else 'FAILED'}")
    return "\n".join(lines)


def _label(scenario: dict[str, Any], rounds: int) -> str:
    """A scenario's name in the report, after its round's number when there are several."""
    return scenario["name"] if rounds == 1 else f"{scenario['round']}: {scenario['name']}"


BENCH_POLL = """
[[polls]]
id = "p"
title = "ledger benchmark"
policy = "unlimited"
legacy = true
""" + "".join(f'[[polls.candidates]]\nname = "c{i}"\n' for i in range(10))

FAKE_HASH = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo"


async def _build_ledger(db: Path, events: int) -> dict[str, float]:
    """A ledger of ``events`` events (a fifth signups, the rest votes), and the append rates seen."""
    from projections.commands import CastVote, Registered, RegisterUser, SyncPolls
    from projections.polls_file import parse_polls
    from projections.service import VoteLedger

    store = await SqliteEventStore.open(db, create=True)
    ledger = await VoteLedger.open(store, max_batch=4096)
    try:
        await ledger.execute(SyncPolls(parse_polls(BENCH_POLL)))
        started = time.perf_counter()
        for i in range(300):  # one at a time: one durable commit each
            await ledger.execute(RegisterUser(f"solo{i}@bench.example", "solo", FAKE_HASH))
        one_at_a_time = 300 / (time.perf_counter() - started)
        users = max(1, events // 5)
        ids: list[str] = []
        started = time.perf_counter()
        for start in range(0, users, 4096):
            results = await asyncio.gather(*(
                ledger.execute(RegisterUser(f"u{i}@bench.example", f"user {i}", FAKE_HASH))
                for i in range(start, min(users, start + 4096))
            ))
            ids += [r.user_id for r in results if isinstance(r, Registered)]
        votes = max(0, events - ledger.state.head_seq)
        for start in range(0, votes, 4096):
            await asyncio.gather(*(
                ledger.execute(CastVote(ids[i % len(ids)], "p", 1 + i % 10))
                for i in range(start, min(votes, start + 4096))
            ))
        grouped = (users + votes) / (time.perf_counter() - started)
    finally:
        await ledger.close()
    return {"appends_per_s_one_at_a_time": round(one_at_a_time), "appends_per_s_group_commit": round(grouped)}


def _resident(pid: int, suffix: str) -> dict[str, float]:
    """The resident sizes of a served process and of its batch writer, in MiB."""
    helpers = _service(pid)[1:]
    return {f"serve_rss_mib{suffix}": round(rss_kib(pid) / 1024, 1),
            f"batch_writer_rss_mib{suffix}": round(sum(rss_kib(p) for p in helpers) / 1024, 1)}


async def _empty_projections(store: SqliteEventStore) -> None:
    async with store.write() as tx:
        await tx.execute_script("\n".join(f"DELETE FROM {name};" for name in TABLES))


VOTERS_AFTER_START = 100_000


def ledger_run(events: int, keep: Path | None = None, votes_seconds: float = 5.0) -> dict[str, Any]:
    """Append rates, audit and rebuild speed on an ``events``-event ledger, and the server's memory
    after start-up and after ``votes_seconds`` of votes by distinct users; the files stay in
    ``keep`` if given."""
    return _in_workdir(keep, partial(_ledger_run, events, votes_seconds))


def _ledger_run(events: int, votes_seconds: float, work: Path) -> dict[str, Any]:
    from projections.rebuild import rebuild

    db, polls = work / "ledger.db", work / "polls.toml"
    polls.write_text(BENCH_POLL, encoding="utf-8")
    figures: dict[str, Any] = {"events": events, **asyncio.run(_build_ledger(db, events))}

    async def timed(readonly: bool, run: Any) -> tuple[float, Any]:
        store = await SqliteEventStore.open(db, readonly=readonly)
        try:
            started = time.perf_counter()
            result = await run(store)
            return time.perf_counter() - started, result
        finally:
            await store.close()

    reopen = partial(SqliteEventStore.open, db, readonly=True)
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
    figures.update(rebuild_events_per_s=round(total / seconds), rebuild_changes=len(rebuilt.changes))
    asyncio.run(timed(False, _empty_projections))  # so that the next rebuild writes every table again
    seconds, rewritten = asyncio.run(timed(False, partial(rebuild, reopen=reopen)))
    figures.update(rebuild_all_tables_events_per_s=round(total / seconds),
                   rebuild_all_tables_rebuilt=rewritten.rebuilt,
                   rebuild_all_tables_changes=len(rewritten.changes))

    port = _free_port()
    started = time.perf_counter()
    server = _serve(_command("serve", "--port", str(port), "--config", str(polls)), _env(db), port,
                    work / "server.log")
    try:
        figures["serve_startup_s"] = round(time.perf_counter() - started, 1)
        figures.update(_resident(server.pid, ""))
        # then votes by up to 100k distinct users, as a busy vote would bring: what memory grows
        tokens, tokens_file = _tokens(voters, work, "tokens.txt")
        voted = _drive(port, tokens_file, tokens, "votes", "/vote?id=1", 64, votes_seconds, method="GET",
                       pid=server.pid)
        figures["votes_after_start"] = voted.ok
        figures.update(_resident(server.pid, "_after_votes"))
    finally:
        _stop(server)
    return figures
