"""The ``vote-ledger`` command: serve, audit, rebuild, copy, export, verify, users, candidates and
polls.

Every error is one line on stderr and a non-zero exit; commands that only read never create or
modify the ledger file. The HTTP stack is imported only by the commands that use it: the others,
and the second processes of the audit and the rebuild (which import this module again as their
main), start a fifth of a second sooner without it.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, NoReturn

from api.settings import Settings, SettingsError
from ledger.errors import LedgerError
from ledger.open import open_store
from projections.audit import AuditReport, audit
from projections.commands import Appended, EraseUser, SetPollStatus
from projections.errors import DomainError, EmailTakenError
from projections.rebuild import rebuild
from projections.service import replay

PROG = "vote-ledger"


class CommandError(Exception):
    """A failure to report as one line."""


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line: the message, and where to look."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _progress(label: str) -> Callable[[int, int], None] | None:
    """A progress bar on stderr when it is a terminal."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        width = 30
        filled = width * done // total if total else width
        end = "\n" if done >= total else ""
        print(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,}", end=end,
              file=sys.stderr, flush=True)

    return show


def _settings(args: argparse.Namespace) -> Settings:
    keys = ("db", "config", "host", "port", "log_format", "allow_readable_ledger")
    return Settings.load({k: getattr(args, k) for k in keys if getattr(args, k, None) is not None})


def _summary(report: AuditReport) -> dict[str, Any]:
    state = report.state
    return {
        "ok": report.ok,
        "failure": None if report.failure is None else {
            "seq": report.failure.seq, "check": report.failure.check, "message": report.failure.message,
        },
        "events": report.events,
        "headSeq": report.head_seq,
        "headHash": report.head_hash.hex(),
        "eventsByType": dict(sorted(state.events_by_type.items())),
        "users": len(state.users),
        "polls": [
            {
                "id": poll.poll_id, "status": poll.status, "totalVotes": poll.total_votes,
                "candidates": [{"id": c.candidate_id, "name": c.name, "votes": c.votes}
                               for c in poll.candidates.values()],
            }
            for poll in state.polls.values()
        ],
    }


async def cmd_audit(args: argparse.Namespace) -> int:
    settings = _settings(args)
    store = await open_store(settings.db, readonly=True)
    try:
        reopen = partial(open_store, settings.db, readonly=True) if args.processes == 2 else None
        report = await audit(store, None if args.json else _progress("audit"), reopen)
    finally:
        await store.close()
    summary = _summary(report)
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
    else:
        for name, count in summary["eventsByType"].items():
            print(f"{name:>16}  {count:,}")
        print(f"{'users':>16}  {summary['users']:,}")
        for poll in summary["polls"]:
            print(f"poll {poll['id']} ({poll['status']}): {poll['totalVotes']:,} votes")
            for c in poll["candidates"]:
                print(f"  {c['id']:>4}  {c['votes']:>8,}  {c['name']}")
        print(f"checked {report.events:,} events; head seq {report.head_seq}, hash {summary['headHash']}")
        if report.failure is not None:
            f = report.failure
            print(f"AUDIT FAILED at seq {f.seq} ({f.check}): {f.message}", file=sys.stderr)
        else:
            print("audit passed: the log, its hash chain, the rules and the projections all agree")
    return 0 if report.ok else 1


async def cmd_rebuild(args: argparse.Namespace) -> int:
    settings = _settings(args)
    store = await open_store(settings.db, busy_timeout_ms=settings.busy_timeout)
    try:
        reopen = partial(open_store, settings.db, readonly=True) if args.processes == 2 else None
        report = await rebuild(store, _progress("rebuild"), reopen)
    finally:
        await store.close()
    for change in report.changes:
        print(f"changed: {change.describe()}")
    print(f"rebuilt from {report.events:,} events up to seq {report.head_seq}; "
          f"{len(report.changes)} row(s) changed; "
          f"tables built afresh: {', '.join(report.rebuilt) or 'none (every table already agreed)'}; "
          f"appends waited {report.locked_s:.2f} s at most")
    if report.tree_fault is not None:
        print(f"{PROG}: error: {report.tree_fault}; a rebuild cannot mend a signed checkpoint: "
              "run the audit", file=sys.stderr)
        return 1
    return 0


async def cmd_candidates(args: argparse.Namespace) -> int:
    settings = _settings(args)
    store = await open_store(settings.db, readonly=True)
    try:
        state = await replay(store)
        polls = [p for p in state.polls.values() if args.poll in (None, p.poll_id)]
        if args.poll and not polls:
            raise CommandError(f"no poll {args.poll!r} in {settings.db}")
        for poll in polls:
            legacy = " (served on /candidates)" if poll.legacy else ""
            print(f"poll {poll.poll_id}: {poll.title} [{poll.status}, {poll.policy}]{legacy}")
            for c in poll.candidates.values():
                extra = ", ".join(x for x in (c.part, c.team) if x)
                print(f"  {c.candidate_id:>4}  {c.votes:>8,}  {c.name}" + (f"  ({extra})" if extra else ""))
    finally:
        await store.close()
    return 0


async def cmd_copy(args: argparse.Namespace) -> int:
    from ledger.copy import copy_log

    source = await open_store(args.source, readonly=True)
    try:
        destination = await open_store(args.destination, create=True)
        try:
            head = await copy_log(source, destination, _progress("copy"))
            report = await rebuild(destination)
        finally:
            await destination.close()
    finally:
        await source.close()
    print(f"copied {head.seq:,} events; projections built: {', '.join(report.rebuilt) or 'none'}")
    print(f"head seq {head.seq}, hash {head.hash.hex()}")
    return 0


async def cmd_export(args: argparse.Namespace) -> int:
    from api.signing import load_signing
    from ledger.tree import signer_for
    from projections.export import export_log

    settings = _settings(args)
    signing = load_signing(settings)
    store = await open_store(settings.db, readonly=True)
    try:
        signer = await signer_for(store, signing)
        done = await export_log(store, Path(args.directory), signer.origin, signer.verifier_key)
    finally:
        await store.close()
    print(f"exported {done.events:,} events and {done.checkpoints:,} checkpoints to {args.directory}")
    print(f"verify it with: {PROG} verify export {args.directory} --key '{signer.verifier_key}'")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """The offline verifier, ``ledger.verify``, which reads its own flags."""
    from ledger.verify import main as verify_main

    return verify_main(args.verify_args)


def _print_appended(result: Appended, what: str) -> None:
    for note in result.notes:
        print(f"note: {note}")
    if result.seqs:
        print(f"{what}: appended {len(result.seqs)} event(s), seq {result.seqs[0]}..{result.seqs[-1]}")
    else:
        print(f"{what}: nothing to append; the ledger already has it")


async def cmd_polls_load(args: argparse.Namespace) -> int:
    from api.app import open_ledger

    ledger, result = await open_ledger(_settings(args))
    await ledger.close()
    _print_appended(result, "polls load")
    return 0


async def cmd_polls_status(args: argparse.Namespace) -> int:
    from api.app import open_store_ledger

    settings = _settings(args)
    ledger = await open_store_ledger(settings, create=False)
    try:
        result = await ledger.execute(SetPollStatus(args.poll_id, args.action == "open"))
    finally:
        await ledger.close()
    assert isinstance(result, Appended)
    _print_appended(result, f"polls {args.action} {args.poll_id}")
    return 0


def _read_users(path: Path) -> list[dict[str, Any]]:
    """Every line checked before anything is appended; an error names the line."""
    from marshmallow import ValidationError

    from api.schemas import LegacySignupSchema

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"{path}: cannot read ({exc})") from exc
    users, schema = [], LegacySignupSchema()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            if not isinstance(raw, dict):
                raise ValueError("not a JSON object")
            users.append(schema.load(raw))
        except (ValueError, ValidationError) as exc:
            detail = exc.messages if isinstance(exc, ValidationError) else exc
            raise CommandError(f"{path}:{number}: {detail}") from None
    return users


IMPORT_CHUNK = 1000  # users whose passwords are hashed together, then registered together


async def cmd_users_import(args: argparse.Namespace) -> int:
    from api.actions import register_command
    from api.app import open_store_ledger
    from api.auth import Passwords

    settings = _settings(args)
    users = _read_users(Path(args.file))
    # hashing is most of an import's work, and the event loop has little else to do meanwhile
    auth = Passwords(settings, workers=os.cpu_count() or 1)
    ledger = await open_store_ledger(settings, create=True)
    added = skipped = 0
    try:
        for start in range(0, len(users), IMPORT_CHUNK):
            chunk = users[start : start + IMPORT_CHUNK]
            hashes = await asyncio.gather(*(auth.hash_password(u["password"]) for u in chunk))
            results = await asyncio.gather(
                *(ledger.execute(register_command(u, h)) for u, h in zip(chunk, hashes, strict=True)),
                return_exceptions=True,
            )
            for result in results:
                if isinstance(result, EmailTakenError):
                    skipped += 1
                elif isinstance(result, BaseException):
                    raise result
                else:
                    added += 1
    finally:
        await ledger.close()
        auth.close()
    print(f"users import: {added:,} added, {skipped:,} skipped (email already registered)")
    return 0


async def cmd_users_erase(args: argparse.Namespace) -> int:
    from api.app import open_store_ledger
    from api.auth import normalize_email

    settings = _settings(args)
    ledger = await open_store_ledger(settings, create=False)
    try:
        user = ledger.state.user_by_email(normalize_email(args.email))
        if user is None:
            raise CommandError(f"no user with the email {args.email!r} (never registered, or erased)")
        result = await ledger.execute(EraseUser(user.user_id))
    finally:
        await ledger.close()
    assert isinstance(result, Appended)
    print(f"users erase: user {user.user_id} erased at seq {result.seqs[0]}; their votes stay")
    return 0


YOUNG_COLLECTION_THRESHOLD = 10_000  # net new container objects between two young collections


async def _settle_heap(app: object) -> None:
    """The replayed state lives as long as the process: take it out of the collector's rounds,
    and give the memory the replay freed back to the system.

    Otherwise every full collection walks millions of long-lived objects while requests wait.
    Young collections come after 10,000 new objects rather than 700: under votes each took about
    0.5 ms at 700, 7 µs a vote in all, and 2 ms at 10,000, 0.4 µs a vote.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *gc.get_threshold()[1:])
    _trim_heap()


def _trim_heap() -> None:
    """Hand the heap's free pages back to the system (glibc's allocator keeps them otherwise: a
    million-event replay left 4 MiB of them behind its rows and bodies)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except AttributeError:  # another C library: nothing to do
        return
    trim(0)


def cmd_serve(args: argparse.Namespace) -> int:
    from api.app import create_app
    from api.middlewares import setup_logging
    from api.server import serve

    settings = _settings(args)
    logger = setup_logging(settings.log_format == "json")
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    app = create_app(settings)
    app.on_startup.append(_settle_heap)
    serve(app, settings, access_log_class=logger)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """The benchmarks, a tool of their own (``bench``) that reads its own flags."""
    from bench.cli import run
    from bench.processes import BenchError

    try:
        return run(args.bench_args, f"{PROG} bench")
    except BenchError as exc:
        raise CommandError(f"the benchmark stopped: {exc}") from exc


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, description="A vote service whose result anyone can check.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    def command(name: str, help_text: str, run: Callable[[argparse.Namespace], Any],
                parent: Any = commands) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = parent.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--db", help="ledger file (default: $VOTE_LEDGER_DB or data/vote-ledger.db)")
        sub.set_defaults(run=run)
        return sub

    serve = command("serve", "run the HTTP service", cmd_serve)
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--config", help="polls file (TOML); default: the bundled demo poll")
    serve.add_argument("--log-format", choices=["text", "json"])
    serve.add_argument("--allow-readable-ledger", action="store_true", default=None,
                       help="serve a ledger file that other users of this machine can read")
    audit_cmd = command("audit", "check the whole ledger; exit 1 naming the first bad seq", cmd_audit)
    audit_cmd.add_argument("--json", action="store_true", help="print the report as JSON")
    processes = 2 if (os.cpu_count() or 1) > 1 else 1
    audit_cmd.add_argument(
        "--processes", type=int, choices=[1, 2], default=processes,
        help="2: a second process checks the hash chain and the bodies while this one replays "
        "the rules (the default where there is more than one CPU)",
    )
    rebuild_cmd = command("rebuild", "rebuild every projection from the log", cmd_rebuild)
    rebuild_cmd.add_argument(
        "--processes", type=int, choices=[1, 2], default=processes,
        help="2: a second process folds half of the users' events while this one folds the other "
        "half (the default where there is more than one CPU)",
    )

    copy_cmd = commands.add_parser(
        "copy", help="copy a whole ledger into an empty one, checking every hash on the way",
        description="copy a whole ledger into an empty one (any backend to any other), checking "
        "every hash on the way, then build the copy's projections")
    copy_cmd.add_argument("--from", dest="source", required=True, metavar="DB",
                          help="the ledger to copy: a path, sqlite:///PATH or postgresql://…")
    copy_cmd.add_argument("--to", dest="destination", required=True, metavar="DB",
                          help="where to copy it: a new or empty ledger")
    copy_cmd.set_defaults(run=cmd_copy)

    export = command("export", "write the public log (no personal data) into a new directory", cmd_export)
    export.add_argument("directory", metavar="DIR")
    # its flags are the verifier's own (see ``vote-ledger verify --help``): main passes them on
    verify_cmd = commands.add_parser(
        "verify", help="check a receipt, a consistency proof or an export offline", add_help=False
    )
    verify_cmd.set_defaults(run=cmd_verify)

    # its flags are the benchmark's own (see ``vote-ledger bench --help``): main passes them on
    bench_cmd = commands.add_parser("bench", help="measure throughput against a bare aiohttp ceiling",
                                    add_help=False)
    bench_cmd.set_defaults(run=cmd_bench)

    users = commands.add_parser("users", help="user commands").add_subparsers(
        dest="users_command", required=True, parser_class=OneLineParser)
    imp = command("import", "register users from JSON lines of {email, name, password}",
                  cmd_users_import, users)
    imp.add_argument("file")
    erase = command("erase", "erase a user's personal data (their votes stay)", cmd_users_erase, users)
    erase.add_argument("email")
    candidates = commands.add_parser("candidates", help="candidate commands").add_subparsers(
        dest="candidates_command", required=True, parser_class=OneLineParser)
    listing = command("list", "list candidates and their votes", cmd_candidates, candidates)
    listing.add_argument("--poll", help="only this poll")
    polls = commands.add_parser("polls", help="poll commands").add_subparsers(
        dest="polls_command", required=True, parser_class=OneLineParser)
    load = command("load", "append what the polls file adds (idempotent)", cmd_polls_load, polls)
    load.add_argument("--config", help="polls file (TOML); default: the bundled demo poll")
    for action in ("open", "close"):
        sub = command(action, f"{action} a poll", cmd_polls_status, polls)
        sub.add_argument("poll_id", metavar="ID")
        sub.set_defaults(action=action)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; one line on stderr and a non-zero exit on any error."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "bench":
        args.bench_args = rest
    elif args.command == "verify":
        args.verify_args = rest
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        outcome = args.run(args)
        if isinstance(outcome, Awaitable):
            outcome = asyncio.run(_await(outcome))
        return int(outcome)
    except (LedgerError, DomainError, SettingsError, CommandError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{PROG}: error: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""),
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


async def _await(awaitable: Awaitable[int]) -> int:
    return await awaitable


if __name__ == "__main__":
    sys.exit(main())
