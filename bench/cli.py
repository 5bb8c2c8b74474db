"""The benchmark's command line: ``vote-ledger bench``, ``python -m bench`` and ``scripts/bench.py``.

Without a mode it runs the HTTP scenarios against the ceiling; ``--ledger EVENTS`` measures a
ledger of many events instead, and ``--logins`` the logins a second with few users and with many.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from api.cli import OneLineParser
from bench.ledger_run import ledger_run
from bench.logins import LOGIN_USERS, login_run
from bench.processes import BenchError
from bench.report import login_report, report
from bench.scenarios import run as scenarios_run
from ledger.open import UnknownBackendError, locate

_Number = TypeVar("_Number", int, float)


def _positive(kind: type[_Number]) -> Callable[[str], _Number]:
    """An argument type: a finite number of ``kind`` above zero (argparse names the option on
    error)."""
    what = "a whole number" if kind is int else "a number"

    def parse(text: str) -> _Number:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not 0 < value < math.inf:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what} above zero")
        return value

    return parse


def _sizes(text: str) -> tuple[int, ...]:
    """An argument type: whole numbers above zero, separated by commas."""
    count = _positive(int)
    try:
        return tuple(count(part.strip()) for part in text.split(","))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not whole numbers above zero, separated by commas"
                                         ) from None


def _postgres(text: str) -> str:
    """An argument type: a PostgreSQL URL."""
    try:
        scheme = locate(text).scheme
    except UnknownBackendError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if scheme != "postgresql":
        raise argparse.ArgumentTypeError(f"{text!r} is not a postgresql:// URL (without --db: a SQLite file)")
    return text


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = OneLineParser(prog=prog, description="measure throughput against a bare aiohttp ceiling")
    parser.add_argument("--users", type=_positive(int),
                        help="distinct voters in each round (default: 30,000 per second of --duration)")
    parser.add_argument("--connections", type=_positive(int), default=64)
    parser.add_argument("--duration", type=_positive(float), default=5.0,
                        help="seconds per scenario (with --ledger: of votes after start-up)")
    parser.add_argument("--rounds", type=_positive(int), default=1,
                        help="run the service's scenarios this many times, with a ceiling run "
                             "before the first round and after each, and report each scenario's "
                             "median, lowest and highest ratio (default: 1)")
    parser.add_argument("--workdir", help="keep the ledger and files here")
    parser.add_argument("--db", type=_postgres, metavar="postgresql://…",
                        help="run the service's scenarios on a ledger in a database of its own on this "
                             "PostgreSQL server (created for the run, dropped after it) instead of a "
                             "fresh SQLite file")
    parser.add_argument("--nodes", type=_positive(int), default=1,
                        help="serve the ledger from this many processes, each on its own port, wrk "
                             "spreading its connections across them (one wrk thread each); with more "
                             "than one, also how long a vote takes to show on another node (default: 1)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--ledger", type=_positive(int), metavar="EVENTS",
                      help="instead: append rates, audit and rebuild speed and server memory "
                           "(after start-up and after votes) on a ledger of this many events")
    mode.add_argument("--logins", action="store_true",
                      help="instead: logins a second on ledgers of --login-users users, and the "
                           "ratio of the rate at the most users to the rate at the fewest")
    parser.add_argument("--login-users", type=_sizes, default=LOGIN_USERS, metavar="N,N",
                        help="with --logins: the ledgers' sizes in users "
                             f"(default: {','.join(map(str, LOGIN_USERS))})")
    parser.add_argument("--json", action="store_true")
    return parser


def run(argv: Sequence[str], prog: str) -> int:
    """Run the benchmark ``argv`` asks for and print its figures; 1 if its checks failed.
    BenchError if it could not run."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if (args.ledger or args.logins) and (args.db or args.nodes > 1):
        parser.error("--db and --nodes are for the HTTP scenarios, not --ledger or --logins")
    if args.connections < args.nodes:
        parser.error(f"--connections {args.connections} is fewer than one per node (--nodes {args.nodes})")
    workdir = Path(args.workdir) if args.workdir else None
    if args.ledger:
        figures = ledger_run(args.ledger, workdir, args.duration)
        print(json.dumps(figures, indent=2))
        passed = figures["audit_passed"] and figures["audit_one_process_passed"]
        return 0 if passed and not figures["rebuild_changes"] else 1
    if args.logins:
        figures = login_run(args.login_users, args.connections, args.duration, workdir)
        print(json.dumps(figures, indent=2) if args.json else login_report(figures))
        return 0 if figures["all_logins_succeeded"] else 1
    figures = scenarios_run(args.users, args.connections, args.duration, workdir, args.rounds, args.db,
                            args.nodes)
    print(json.dumps(figures, indent=2) if args.json else report(figures))
    return 0 if figures["tallies_match"] and figures["audit_passed"] else 1


def main(argv: Sequence[str] | None = None, prog: str = "python -m bench") -> int:
    """Run the benchmark; one line on stderr and a non-zero exit if it could not run."""
    try:
        return run(sys.argv[1:] if argv is None else argv, prog)
    except BenchError as exc:
        print(f"{prog}: error: the benchmark stopped: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
