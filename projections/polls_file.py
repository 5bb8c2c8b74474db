"""The polls file (TOML): parsed and checked in full before anything is appended.

Every error names the file and the line, so an operator can fix it at once.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from projections.commands import CandidateSpec, PollSpec
from projections.errors import PollConfigError
from projections.model import POLICIES, VISIBILITIES

POLL_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
POLL_KEYS = {
    "id", "title", "policy", "results", "legacy", "eligibility", "opens_at", "closes_at", "open",
    "candidates",
}
CANDIDATE_KEYS = {"name", "part", "team"}


def bundled(name: str) -> Path:
    """A polls file shipped with the package (``default`` or ``club``)."""
    return Path(str(resources.files("projections") / "polls" / f"{name}.toml"))


class _Lines:
    """Finds the line of each ``[[polls]]`` table, each candidate and each key, for messages."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.polls = self._headers(r"\[\[\s*polls\s*\]\]")
        self.candidates = self._headers(r"\[\[\s*polls\s*\.\s*candidates\s*\]\]")

    def _headers(self, pattern: str) -> list[int]:
        regex = re.compile(rf"^\s*{pattern}")
        return [n for n, line in enumerate(self.lines, 1) if regex.match(line)]

    def candidates_of(self, start: int) -> list[int]:
        """The ``[[polls.candidates]]`` lines of the poll whose table starts at ``start``."""
        after = [n for n in self.polls if n > start]
        end = after[0] if after else len(self.lines) + 1
        return [n for n in self.candidates if start < n < end]

    def key(self, start: int, key: str) -> int:
        regex = re.compile(rf"^\s*{re.escape(key)}\s*=|[{{,]\s*{re.escape(key)}\s*=")
        for n in range(start, len(self.lines) + 1):
            if n > start and self.lines[n - 1].lstrip().startswith("["):
                break
            if regex.search(self.lines[n - 1]):
                return n
        return start


def _millis(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise PollConfigError(f"{where}: a date-time needs a UTC offset (e.g. 2026-12-01T18:00:00+09:00)")
        return int(value.timestamp() * 1000)
    raise PollConfigError(f"{where}: expected a date-time such as 2026-12-01T18:00:00+09:00")


def _optional_str(value: Any, where: str) -> str | None:
    if value is None or (isinstance(value, str) and value.strip()):
        return value.strip() if isinstance(value, str) else None
    raise PollConfigError(f"{where}: expected a non-empty string")


def parse_polls(text: str, source: str = "polls file") -> tuple[PollSpec, ...]:
    """Parse and check a polls file; raises PollConfigError naming ``source:line``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        where = f"{source}:{found.group(1)}" if found else source
        raise PollConfigError(f"{where}: {exc}") from exc
    lines = _Lines(text)
    polls = data.get("polls")
    if set(data) - {"polls"}:
        raise PollConfigError(f"{source}: unknown top-level keys {sorted(set(data) - {'polls'})}")
    if isinstance(polls, dict):
        line = lines.candidates[0] if lines.candidates else 1
        raise PollConfigError(f"{source}:{line}: a candidate in no poll (add [[polls]] above it)")
    if not isinstance(polls, list) or not polls:
        raise PollConfigError(f"{source}: no [[polls]] table")
    specs: list[PollSpec] = []
    seen: dict[str, int] = {}
    legacy_at: int | None = None
    for index, poll in enumerate(polls):
        start = lines.polls[index] if index < len(lines.polls) else 1
        if not isinstance(poll, dict):
            raise PollConfigError(f"{source}:{start}: each poll must be a [[polls]] table")
        headers = lines.candidates_of(start)

        def at(key: str, _start: int = start) -> str:
            return f"{source}:{lines.key(_start, key)}"

        unknown = set(poll) - POLL_KEYS
        if unknown:
            raise PollConfigError(f"{source}:{start}: unknown keys {sorted(unknown)}")
        poll_id = poll.get("id")
        if not isinstance(poll_id, str) or not POLL_ID.fullmatch(poll_id):
            raise PollConfigError(f"{at('id')}: id must be a URL-safe slug (a-z, 0-9, -, _)")
        if poll_id in seen:
            raise PollConfigError(
                f"{at('id')}: duplicate poll id {poll_id!r} (first at line {seen[poll_id]})"
            )
        seen[poll_id] = start
        title = poll.get("title")
        if not isinstance(title, str) or not title.strip():
            raise PollConfigError(f"{at('title')}: title must be a non-empty string")
        policy = poll.get("policy", "single")
        if policy not in POLICIES:
            raise PollConfigError(
                f"{at('policy')}: unknown policy {policy!r} (expected {', '.join(POLICIES)})"
            )
        results = poll.get("results", "always")
        if results not in VISIBILITIES:
            raise PollConfigError(
                f"{at('results')}: unknown results rule {results!r} (expected {', '.join(VISIBILITIES)})"
            )
        legacy = poll.get("legacy", False)
        is_open = poll.get("open", True)
        if not isinstance(legacy, bool) or not isinstance(is_open, bool):
            raise PollConfigError(f"{source}:{start}: legacy and open must be true or false")
        if legacy:
            if legacy_at is not None:
                raise PollConfigError(
                    f"{at('legacy')}: a second legacy poll (the first is at line {legacy_at}); at most one"
                )
            legacy_at = start
        eligibility = poll.get("eligibility", {})
        if not isinstance(eligibility, dict) or set(eligibility) - {"same_part", "not_own_team"}:
            raise PollConfigError(f"{at('eligibility')}: eligibility takes same_part and not_own_team")
        not_own_team = eligibility.get("not_own_team", False)
        if not isinstance(not_own_team, bool):
            raise PollConfigError(f"{at('not_own_team')}: not_own_team must be true or false")
        opens_at = _millis(poll.get("opens_at"), at("opens_at"))
        closes_at = _millis(poll.get("closes_at"), at("closes_at"))
        if opens_at is not None and closes_at is not None and closes_at <= opens_at:
            raise PollConfigError(f"{at('closes_at')}: closes_at must come after opens_at")
        raw_candidates = poll.get("candidates", [])
        if not isinstance(raw_candidates, list):
            raise PollConfigError(f"{at('candidates')}: candidates must be [[polls.candidates]] tables")
        candidates: list[CandidateSpec] = []
        names: set[str] = set()
        for number, raw in enumerate(raw_candidates):
            line = headers[number] if number < len(headers) else lines.key(start, "candidates")
            where = f"{source}:{line}"
            if not isinstance(raw, dict) or set(raw) - CANDIDATE_KEYS:
                raise PollConfigError(f"{where}: a candidate takes name, part and team")
            name = _optional_str(raw.get("name"), where)
            if name is None:
                raise PollConfigError(f"{where}: a candidate needs a name")
            if name in names:
                raise PollConfigError(f"{where}: duplicate candidate {name!r} in poll {poll_id!r}")
            names.add(name)
            candidates.append(CandidateSpec(
                name, _optional_str(raw.get("part"), where), _optional_str(raw.get("team"), where)
            ))
        specs.append(PollSpec(
            poll_id, title.strip(), policy, results, legacy,
            _optional_str(eligibility.get("same_part"), at("same_part")), not_own_team,
            opens_at, closes_at, is_open, tuple(candidates),
        ))
    return tuple(specs)


def load_polls_file(path: Path) -> tuple[PollSpec, ...]:
    """Read and parse a polls file; a missing or unreadable file is a PollConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PollConfigError(f"{path}: cannot read the polls file ({exc})") from exc
    return parse_polls(text, str(path))
