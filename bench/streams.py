"""What open results streams cost the vote path: ``python -m bench.streams``.

One ``vote-ledger serve`` on a fresh SQLite ledger is driven with JSON votes by wrk (each vote by
a voter of its own, as in ``bench.scenarios``), first with no stream open, then with ``--streams``
results streams of the very poll the votes go to held open by ``bench.stream_holder``, so that
every batch of votes changes what they watch; and so on, ``--rounds`` times. Each run with
streams is compared with the mean of the runs without just before and just after it (the host's
speed drifts within a run). The holder reports the events its streams received meanwhile: the
streams were live, not merely open.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from bench.harness import Scenario, drive, tokens
from bench.processes import BenchError, command, environment, free_port, in_workdir, serve, stop
from bench.scenarios import populate

POLL = "bench-streams"
POLLS = f"""
[[polls]]
id = "{POLL}"
title = "streams benchmark"
results = "always"
[[polls.candidates]]
name = "gamma"
[[polls.candidates]]
name = "delta"
"""
VOTE = (f"/api/v1/polls/{POLL}/votes", "POST", '{"candidateId": 1}')
VOTERS_PER_SECOND = 20_000  # voters imported per second of each run: more than one node serves


def _hold(port: int, count: int, env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    """Start the stream holder and wait until all its streams have had their first event."""
    holder = subprocess.Popen(
        [sys.executable, "-m", "bench.stream_holder", str(port), POLL, str(count)],
        env=env, stdout=subprocess.PIPE, stderr=log.open("w"), text=True,
    )
    assert holder.stdout is not None
    line = holder.stdout.readline().strip()
    if line != "READY":
        holder.kill()
        raise BenchError(f"the stream holder did not get its streams going: {line or log.read_text()[-500:]}")
    return holder


def _release(holder: subprocess.Popen[str]) -> dict[str, Any]:
    """Stop the holder; what its streams received while it held them."""
    holder.terminate()
    out, _ = holder.communicate(timeout=60)
    try:
        figures: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise BenchError(f"the stream holder gave no figures: {out[-500:]!r}") from None
    return figures


def _run(
    streams: int, rounds: int, duration: float, connections: int, voters: int, work: Path
) -> dict[str, Any]:
    db = work / "bench.db"
    env = environment(db)
    runs = 2 * rounds + 1
    polls, users, imported = populate(str(db), work, POLLS, voters * runs)
    slices = [tokens(users[r * voters:(r + 1) * voters], work, f"tokens-{r}.txt") for r in range(runs)]
    port = free_port()
    server = serve(command("serve", "--port", str(port), "--config", str(polls), "--log-format", "json"),
                   {**env, "PYTHONUNBUFFERED": "1"}, port, work / "server.log")
    path, method, body = VOTE
    results: list[Scenario] = []
    held: list[dict[str, Any]] = []
    try:
        def votes(n: int, name: str) -> Scenario:
            minted, tokens_file = slices[n]
            return drive([port], tokens_file, minted, name, path, connections, duration, method=method,
                         body=body, pids=[server.pid])

        results.append(replace(votes(0, "votes, no stream open"), round=0))
        for r in range(1, rounds + 1):
            holder = _hold(port, streams, env, work / f"holder-{r}.log")
            try:
                results.append(replace(votes(2 * r - 1, f"votes, {streams:,} streams open"), round=r))
            finally:
                held.append(_release(holder))
            results.append(replace(votes(2 * r, "votes, no stream open"), round=r))
    finally:
        stop(server)
    without = [s for s in results if "no stream" in s.name]
    with_streams = [s for s in results if "no stream" not in s.name]
    for r, scenario in enumerate(with_streams, start=1):
        around = (without[r - 1].rps + without[r].rps) / 2
        scenario.ratio = round(scenario.rps / around, 3) if around else 0.0
    ratios = [s.ratio for s in with_streams]
    return {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "streams": streams, "rounds": rounds, "duration": duration, "connections": connections,
        "voters_per_run": voters, "import_seconds": round(imported, 1),
        "runs": [asdict(s) for s in results], "held": held,
        "rps_without_median": round(statistics.median(s.rps for s in without), 1),
        "rps_with_median": round(statistics.median(s.rps for s in with_streams), 1),
        "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
    }


def report(figures: dict[str, Any]) -> str:
    """The figures as a table for people."""
    lines = [f"{'run':<40}{'votes/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'ratio':>8}{'cpu µs/vote':>13}"]
    for s in figures["runs"]:
        ratio = f"{s['ratio']:.3f}" if "no stream" not in s["name"] else ""
        cpu = f"{s['cpu_us']:,.0f}" if s.get("cpu_us") is not None else "-"
        lines.append(f"{s['round']}: {s['name']:<37}{s['rps']:>10,.0f}{s['p50_ms']:>9.2f}{s['p99_ms']:>9.2f}"
                     f"{ratio:>8}{cpu:>13}")
        if s.get("voters_ran_out"):
            lines.append("   every voter had voted before the time was up: a lower bound (more --voters)")
    for r, h in enumerate(figures["held"], start=1):
        lines.append(f"round {r}: {h['open']:,} of {h['streams']:,} streams open to the end; results events "
                     f"each got during the run: {h['events_min']} to {h['events_max']} "
                     f"(median {h['events_median']})")
    lines.append(f"median votes/s without streams {figures['rps_without_median']:,.0f}, with "
                 f"{figures['streams']:,} streams {figures['rps_with_median']:,.0f}; each run with streams "
                 f"to the mean of the runs without around it: median {figures['ratio_median']:.3f}, "
                 f"lowest {figures['ratio_min']:.3f}, highest {figures['ratio_max']:.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.streams", description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=1000, help="results streams held open (default 1000)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run (whole seconds)")
    parser.add_argument("--connections", type=int, default=64, help="wrk's connections")
    parser.add_argument("--voters", type=int, help="voters per run (default 20,000 per second)")
    parser.add_argument("--workdir", help="keep the ledger and files here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    voters = args.voters or VOTERS_PER_SECOND * max(1, round(args.duration))
    try:
        figures = in_workdir(Path(args.workdir) if args.workdir else None, lambda work: _run(
            args.streams, args.rounds, args.duration, args.connections, voters, work))
    except BenchError as exc:
        print(f"python -m bench.streams: error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(figures, indent=2) if args.json else report(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
