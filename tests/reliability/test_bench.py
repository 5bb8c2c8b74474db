"""``vote-ledger bench`` end to end at a tiny size: every scenario runs and its checks hold, on
SQLite and on PostgreSQL with two nodes.

The figures themselves are never asserted (CI machines are shared and noisy); what is asserted is
what makes them worth reading: each scenario answered, the tallies equal the acknowledged votes,
the audits pass, a rebuild of the benchmark's own ledger changes nothing and every login is let in.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import asyncpg
import pytest

from bench.harness import Scenario
from bench.report import login_report
from bench.report import report as bench_report
from bench.scenarios import SERVICE_SCENARIOS, VISIBILITY_VOTES, summary
from tests.postgres import fresh_database, require_postgres
from tests.reliability.helpers import run_cli


def test_the_http_benchmark_runs_every_scenario_and_its_tallies_match(tmp_path: Path) -> None:
    done = run_cli("bench", "--users", "300", "--duration", "1", "--connections", "8", "--json",
                   "--workdir", str(tmp_path), timeout=300)

    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    names = [s["name"] for s in figures["scenarios"]]
    assert names == ["bare aiohttp (ceiling)", "GET /candidates", "GET /vote?id=N (legacy)",
                     "POST /api/v1/polls/{id}/votes", "bare aiohttp (ceiling, again)"]
    for scenario in figures["scenarios"]:
        assert scenario["ok"] > 0 and scenario["rps"] > 0, scenario
    # 300 voters are spent within the second: the report must say those rates are lower bounds
    assert [s["voters_ran_out"] for s in figures["scenarios"]] == [False, False, True, True, False]
    assert figures["tallies_match"] and figures["audit_passed"]
    assert figures["acknowledged"]["bench-legacy"] > 0 and figures["acknowledged"]["bench-json"] > 0
    # one round: every scenario of round 1, and the report as it was before rounds
    assert figures["rounds"] == 1 and {s["round"] for s in figures["scenarios"]} == {1}
    text = bench_report(figures)
    assert "ratios are to the mean of the two ceiling runs" in text and "over the rounds" not in text
    assert "\nGET /candidates " in text


def test_rounds_repeat_every_scenario_with_voters_of_their_own_and_ratios_to_the_ceilings_around_them(
    tmp_path: Path,
) -> None:
    done = run_cli("bench", "--users", "200", "--duration", "1", "--connections", "8", "--rounds", "2",
                   "--json", "--workdir", str(tmp_path), timeout=300)

    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    scenarios = figures["scenarios"]
    service = ["GET /candidates", "GET /vote?id=N (legacy)", "POST /api/v1/polls/{id}/votes"]
    again = "bare aiohttp (ceiling, again)"
    assert [(s["round"], s["name"]) for s in scenarios] == [
        (1, "bare aiohttp (ceiling)"), *[(1, n) for n in service], (1, again),
        *[(2, n) for n in service], (2, again),
    ]
    ceilings = [scenarios[0], scenarios[4], scenarios[8]]
    mean = sum(c["rps"] for c in ceilings) / 3
    assert [c["ratio"] for c in ceilings] == [round(c["rps"] / mean, 3) for c in ceilings]
    for r, ran in ((0, scenarios[1:4]), (1, scenarios[5:8])):
        around = (ceilings[r]["rps"] + ceilings[r + 1]["rps"]) / 2
        assert [s["ratio"] for s in ran] == [round(s["rps"] / around, 3) for s in ran]
    # round 2 votes by 200 voters of its own: a voter of round 1 would be refused (single policy)
    votes = [s for s in scenarios if s["name"] in service[1:]]
    assert all(s["ok"] == s["requests"] > 0 for s in votes), votes
    assert figures["acknowledged"] == {
        "bench-legacy": scenarios[2]["ok"] + scenarios[6]["ok"],
        "bench-json": scenarios[3]["ok"] + scenarios[7]["ok"],
    }
    assert figures["tallies_match"] and figures["audit_passed"]
    assert set(figures["summary"]) == set(service)
    text = bench_report(figures)
    assert "\n2: POST /api/v1/polls/{id}/votes " in text and "over the rounds" in text


def _scenario(name: str, r: int, rps: float, ratio: float, p99: float) -> Scenario:
    return Scenario(name, 10, 10, 1.0, rps, 1.0, p99, ratio=ratio, round=r)


def test_the_summary_takes_the_median_lowest_and_highest_of_each_scenario_over_its_rounds() -> None:
    names = [name for name, *_ in SERVICE_SCENARIOS]
    rounds = [
        [_scenario(names[0], 1, 900, 0.9, 3.0), _scenario(names[1], 1, 100, 0.1, 9.0),
         _scenario(names[2], 1, 400, 0.4, 5.0)],
        [_scenario(names[0], 2, 500, 0.5, 4.0), _scenario(names[1], 2, 500, 0.5, 7.0),
         _scenario(names[2], 2, 300, 0.3, 30.0)],
        [_scenario(names[0], 3, 600, 0.6, 2.0), _scenario(names[1], 3, 200, 0.2, 8.0),
         _scenario(names[2], 3, 350, 0.35, 6.0)],
    ]

    figures = summary(rounds)

    # medians, not means: 0.6 (mean 0.667), 0.2 (mean 0.267), 0.35 (mean 0.35)
    columns = ("ratio_median", "ratio_min", "ratio_max", "rps_median", "p99_ms_max")
    assert figures == {
        names[0]: dict(zip(columns, (0.6, 0.5, 0.9, 600, 4.0), strict=True)),
        names[1]: dict(zip(columns, (0.2, 0.1, 0.5, 200, 9.0), strict=True)),
        names[2]: dict(zip(columns, (0.35, 0.3, 0.4, 350, 30.0), strict=True)),
    }


@pytest.mark.parametrize("option", [
    ("--rounds", "0"), ("--rounds", "two"), ("--users", "-5"), ("--users", "1.5"), ("--duration", "0"),
    ("--duration", "inf"), ("--connections", "0"), ("--ledger", "-1"), ("--login-users", "300,0"),
])
def test_a_count_or_a_duration_that_is_not_above_zero_is_one_line_and_exit_2(
    option: tuple[str, str], tmp_path: Path,
) -> None:
    done = run_cli("bench", *option, "--workdir", str(tmp_path / "work"))

    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and f"argument {option[0]}: {option[1]!r} is not" in done.stderr
    assert done.stdout == "" and not (tmp_path / "work").exists()


def _fake_wrk(tmp_path: Path, script: str) -> dict[str, str]:
    """An environment whose ``wrk`` is the shell ``script`` (a load generator that makes things up)."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "wrk").write_text(f"#!/bin/sh\n{script}\n")
    (fake / "wrk").chmod(0o755)
    return {"PATH": f"{fake}:{os.environ['PATH']}"}


def test_a_load_generator_that_gives_no_figures_stops_the_benchmark_in_one_line(tmp_path: Path) -> None:
    env = _fake_wrk(tmp_path, "echo 'wrk: cannot open the tokens' >&2\nexit 3")

    done = run_cli("bench", "--users", "20", "--duration", "1", "--workdir", str(tmp_path / "work"),
                   env=env, timeout=300)

    assert done.returncode == 1, done.stderr
    assert done.stderr == (
        "vote-ledger: error: the benchmark stopped: wrk exited with 3 and printed no figures: "
        "wrk: cannot open the tokens\n"
    )
    # the bare server it had started is stopped, not left running: nothing holds its log open
    log = tmp_path / "work" / "bare.log"
    assert log.exists() and not _holders(log)


def test_failed_connections_are_no_answers_and_are_reported_and_made_up_votes_fail_the_tally(
    tmp_path: Path,
) -> None:
    # a load generator that claims 100 answers, 5 of them errors, and 7 connections that failed
    figures_line = ('BENCH {"requests": 100, "seconds": 1.0, "non2xx": 5, "socket_errors": 7, '
                    '"p50_ms": 1.0, "p99_ms": 2.0}')
    env = _fake_wrk(tmp_path, f"echo '{figures_line}' >&2")
    args = ("bench", "--users", "1000", "--duration", "1", "--workdir", str(tmp_path / "work"))

    done = run_cli(*args, "--json", env=env, timeout=300)

    # nobody voted, so the 95 votes it acknowledged are not in the tallies
    assert done.returncode == 1, done.stderr
    figures = json.loads(done.stdout)
    assert [(s["ok"], s["socket_errors"]) for s in figures["scenarios"]] == [(95, 7)] * 5
    assert figures["acknowledged"] == {"bench-legacy": 95, "bench-json": 95}
    assert figures["tallies"] == {"bench-legacy": 0, "bench-json": 0} and not figures["tallies_match"]
    text = bench_report(figures)
    assert text.count("7 connections failed or timed out") == 5 and "MISMATCH" in text


def _holders(path: Path) -> list[int]:
    """The processes with ``path`` open."""
    found = []
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(os.readlink(fd) == str(path) for fd in fd_dir.iterdir()):
                found.append(int(fd_dir.parent.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def test_the_ledger_benchmark_audits_both_ways_and_rebuilds_untouched_and_emptied_tables(
    tmp_path: Path,
) -> None:
    done = run_cli("bench", "--ledger", "3000", "--duration", "1", "--workdir", str(tmp_path), timeout=300)

    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert figures["head_seq"] == 3000
    assert figures["audit_passed"] and figures["audit_one_process_passed"]
    assert figures["rebuild_changes"] == 0
    # the projection tables were emptied first (idempotency keys are no part of the bench)
    assert figures["rebuild_all_tables_rebuilt"] == [
        "users", "polls", "candidates", "ballots", "projection_position"
    ]
    assert figures["rebuild_all_tables_changes"] > figures["users"]
    # how long appends waited: the tables' swap, a part of each rebuild, not the passes before it
    for rebuild in ("rebuild", "rebuild_all_tables"):
        whole = figures["head_seq"] / figures[f"{rebuild}_events_per_s"]
        assert 0 <= figures[f"{rebuild}_locked_s"] < whole
    assert figures["users"] > 0 and figures["serve_rss_mib"] > 0 and figures["batch_writer_rss_mib"] > 0
    assert figures["votes_after_start"] > 0  # votes by distinct users, then the memory again
    assert figures["serve_rss_mib_after_votes"] > 0 and figures["batch_writer_rss_mib_after_votes"] > 0
    assert figures["seal_worker_rss_mib"] > 0  # serve starts its worker before it listens
    assert figures["workdir"] == str(tmp_path) and (tmp_path / "ledger.db").exists()


def test_without_a_workdir_the_benchmark_leaves_no_files_behind(tmp_path: Path) -> None:
    done = run_cli("bench", "--ledger", "300", "--duration", "1", env={"TMPDIR": str(tmp_path)},
                   timeout=300)

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["workdir"] is None
    assert list(tmp_path.iterdir()) == []


def test_the_login_benchmark_reports_logins_a_second_at_each_size_and_their_ratio(tmp_path: Path) -> None:
    done = run_cli("bench", "--logins", "--login-users", "3000,300", "--duration", "1", "--connections", "8",
                   "--json", "--workdir", str(tmp_path), timeout=300)

    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    runs = figures["logins"]
    assert [r["users"] for r in runs] == [300, 3000]  # the fewest first: the ratio is to them
    for run in runs:  # every login answered, and answered yes
        assert run["ok"] == run["requests"] > 0 and run["rps"] > 0 and not run["socket_errors"], run
    assert figures["all_logins_succeeded"]
    assert figures["ratio"] == runs[1]["ratio"] == round(runs[1]["rps"] / runs[0]["rps"], 3) > 0
    text = login_report(figures)
    assert "logins/s at 3,000 users over logins/s at 300: " in text and "refused" not in text


async def test_two_nodes_on_postgresql_share_the_load_and_one_shows_the_votes_the_other_took(
    tmp_path: Path,
) -> None:
    require_postgres()
    async with fresh_database() as url:
        done = run_cli("bench", "--users", "300", "--duration", "1", "--connections", "8", "--db", url,
                       "--nodes", "2", "--json", "--workdir", str(tmp_path), timeout=300)
        assert done.returncode == 0, done.stderr
        figures = json.loads(done.stdout)
        # the run's own database is gone, and the one it was given is as empty as it was
        conn = await asyncpg.connect(url)
        try:
            left = await conn.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1",
                                       figures["database"])
            tables = await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        finally:
            await conn.close()
    assert left == 0 and tables == 0

    assert (figures["ledger"], figures["nodes"]) == ("postgresql", 2)
    for scenario in figures["scenarios"]:
        assert scenario["ok"] > 0 and scenario["rps"] > 0 and scenario["p99_ms"] > 0, scenario
    # both nodes took votes: wrk's two threads each went to a node of their own
    for log in ("server.log", "server-2.log"):
        assert "/api/v1/polls/bench-json/votes" in (tmp_path / log).read_text(), log
    seen = figures["visibility"]
    assert seen["votes"] == VISIBILITY_VOTES and 0 < seen["p50_ms"] <= seen["p99_ms"] <= seen["max_ms"]
    json_votes = next(s for s in figures["scenarios"] if s["name"] == "POST /api/v1/polls/{id}/votes")
    assert figures["acknowledged"]["bench-json"] == json_votes["ok"] + VISIBILITY_VOTES
    assert figures["tallies_match"] and figures["audit_passed"]
    text = bench_report(figures)
    assert "served by 2 node(s)" in text and f"({VISIBILITY_VOTES} votes, one at a time)" in text


@pytest.mark.parametrize(("args", "said"), [
    (("--db", "sqlite:///bench.db"), "is not a postgresql:// URL"),
    (("--db", "ftp://example.org/db"), "unknown database scheme 'ftp'"),
    (("--nodes", "2", "--ledger", "300"), "--db and --nodes are for the HTTP scenarios"),
    (("--db", "postgresql://postgres@127.0.0.1/test", "--logins"), "--db and --nodes are for the HTTP"),
    (("--nodes", "3", "--connections", "2"), "fewer than one per node"),
])
def test_a_database_or_nodes_the_scenarios_cannot_use_is_one_line_and_exit_2(
    args: tuple[str, ...], said: str, tmp_path: Path,
) -> None:
    done = run_cli("bench", *args, "--workdir", str(tmp_path / "work"))

    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and said in done.stderr
    assert done.stdout == "" and not (tmp_path / "work").exists()


def test_a_postgresql_server_that_cannot_be_reached_stops_the_benchmark_in_one_line(tmp_path: Path) -> None:
    done = run_cli("bench", "--db", "postgresql://postgres@127.0.0.1:1/test", "--users", "20",
                   "--duration", "1", "--workdir", str(tmp_path / "work"))

    assert done.returncode == 1
    assert done.stderr.startswith("vote-ledger: error: the benchmark stopped: postgresql://postgres@127.0.0.1:1"
                                  "/test: cannot create a scratch database: ")
    assert done.stderr.count("\n") == 1
