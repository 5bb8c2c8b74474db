"""Event types, and the envelope that turns them into canonical body bytes and back.

A body is ``{"id", "type", "v", "stream", "version", "data"}`` in canonical JSON: everything the
row's columns say is inside the hashed bytes, so the audit can check the columns against it.
Decoding an unknown type or version fails loudly; older versions are upcast on read, never rewritten.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from ledger.codec import MAX_SAFE_INTEGER, canonical, parse
from ledger.errors import CorruptEventError


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every event type. Subclasses set ``TYPE``, ``VERSION`` and name their stream."""

    TYPE: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1

    def stream(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class UserRegistered(Event):
    """A user signed up. Email, name and password hash live beside the log, bound by ``commitment``."""

    TYPE: ClassVar[str] = "UserRegistered"
    user_id: str
    commitment: str
    part: str | None = None
    team: str | None = None

    def stream(self) -> str:
        return f"user:{self.user_id}"


@dataclass(frozen=True, slots=True)
class PollCreated(Event):
    """A poll exists, with its rules. It takes votes only once opened."""

    TYPE: ClassVar[str] = "PollCreated"
    poll_id: str
    title: str
    policy: str
    results: str
    legacy: bool = False
    same_part: str | None = None
    not_own_team: bool = False
    opens_at: int | None = None
    closes_at: int | None = None

    def stream(self) -> str:
        return f"poll:{self.poll_id}"


@dataclass(frozen=True, slots=True)
class CandidateAdded(Event):
    """A candidate stands in a poll. Candidate ids are global, positive and never reused."""

    TYPE: ClassVar[str] = "CandidateAdded"
    poll_id: str
    candidate_id: int
    name: str
    part: str | None = None
    team: str | None = None

    def stream(self) -> str:
        return f"poll:{self.poll_id}"


@dataclass(frozen=True, slots=True)
class PollOpened(Event):
    """The poll takes votes from here on."""

    TYPE: ClassVar[str] = "PollOpened"
    poll_id: str

    def stream(self) -> str:
        return f"poll:{self.poll_id}"


@dataclass(frozen=True, slots=True)
class PollClosed(Event):
    """The poll takes no more votes."""

    TYPE: ClassVar[str] = "PollClosed"
    poll_id: str

    def stream(self) -> str:
        return f"poll:{self.poll_id}"


@dataclass(frozen=True, slots=True)
class VoteCast(Event):
    """A user voted. Under the ``changeable`` policy a later vote supersedes the earlier one.

    ``at`` is the wall-clock time of the append in milliseconds (for ``opens_at``/``closes_at``);
    order always comes from ``seq``. ``key`` is the SHA-256 (hex) of the client's idempotency key,
    if it sent one.
    """

    TYPE: ClassVar[str] = "VoteCast"
    poll_id: str
    candidate_id: int
    user_id: str
    at: int
    key: str | None = None

    def stream(self) -> str:
        return ballot_stream(self.poll_id, self.user_id)


def ballot_stream(poll_id: str, user_id: str) -> str:
    """The stream of one user's votes in one poll: its version counts their votes there."""
    return f"ballot:{poll_id}:{user_id}"


EVENT_TYPES: dict[str, type[Event]] = {
    cls.TYPE: cls
    for cls in (UserRegistered, PollCreated, CandidateAdded, PollOpened, PollClosed, VoteCast)
}

# (type, version) -> function turning that version's data into the next version's data.
UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {}


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded body: the event and the identity the log gives it."""

    event_id: str
    stream: str
    version: int
    event: Event


def _checker(hint: Any) -> Callable[[Any], bool]:
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    allowed = tuple(o for o in options if o is not type(None))
    nullable = type(None) in options

    def check(value: Any) -> bool:
        if value is None:
            return nullable
        if isinstance(value, bool):
            return bool in allowed
        if isinstance(value, int):
            return int in allowed and -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER
        if isinstance(value, str):
            return str in allowed and (value.isascii() or _is_unicode(value))
        return False

    return check


def _is_unicode(text: str) -> bool:
    """False for strings holding lone surrogates (JSON can spell them; UTF-8 cannot)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_FIELDS: dict[type[Event], list[tuple[str, Callable[[Any], bool], bool]]] = {}
for _cls in EVENT_TYPES.values():
    _hints = typing.get_type_hints(_cls)
    _FIELDS[_cls] = [
        (f.name, _checker(_hints[f.name]), f.default is dataclasses.MISSING)
        for f in dataclasses.fields(_cls)
    ]


_NAMES = {cls: frozenset(name for name, _, _ in fields) for cls, fields in _FIELDS.items()}
_ENVELOPE = frozenset({"id", "type", "v", "stream", "version", "data"})


def event_data(event: Event) -> dict[str, Any]:
    """The event's fields as a plain dict (the ``data`` member of its body)."""
    return {name: getattr(event, name) for name, _, _ in _FIELDS[type(event)]}


def encode(event_id: str, event: Event, version: int) -> bytes:
    """Canonical body bytes for ``event`` as version ``version`` of its stream."""
    return canonical(
        {
            "id": event_id,
            "type": event.TYPE,
            "v": event.VERSION,
            "stream": event.stream(),
            "version": version,
            "data": event_data(event),
        }
    )


def decode(body: bytes) -> Envelope:
    """Decode body bytes into an envelope, upcasting old versions; fails loudly on anything else."""
    try:
        raw = parse(body)
    except ValueError as exc:
        raise CorruptEventError(f"body is not UTF-8 JSON: {exc}") from exc
    if type(raw) is not dict or raw.keys() != _ENVELOPE:
        raise CorruptEventError("body is not an event envelope")
    type_name, v, data = raw["type"], raw["v"], raw["data"]
    cls = EVENT_TYPES.get(type_name) if isinstance(type_name, str) else None
    if cls is None:
        raise CorruptEventError(f"unknown event type {type_name!r}")
    if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= cls.VERSION:
        raise CorruptEventError(f"unknown version {v!r} of {type_name}")
    if not isinstance(data, dict):
        raise CorruptEventError(f"{type_name} data is not an object")
    while v < cls.VERSION:
        data = UPCASTERS[(type_name, v)](data)
        v += 1
    fields = _FIELDS[cls]
    if data.keys() != _NAMES[cls]:  # canonical bodies carry every field; older ones may lack some
        unknown = data.keys() - _NAMES[cls]
        if unknown:
            raise CorruptEventError(f"{type_name} has unknown fields {sorted(unknown)}")
        for name, _, required in fields:
            if required and name not in data:
                raise CorruptEventError(f"{type_name} lacks field {name!r}")
    for name, check, _ in fields:
        if name in data and not check(data[name]):
            raise CorruptEventError(f"{type_name}.{name} has the wrong type")
    event = cls(**data)
    event_id, stream, version = raw["id"], raw["stream"], raw["version"]
    if (
        not isinstance(event_id, str) or not _is_unicode(event_id)
        or not isinstance(version, int) or isinstance(version, bool)
        or not 1 <= version <= MAX_SAFE_INTEGER
    ):
        raise CorruptEventError("envelope id or version has the wrong type")
    if stream != event.stream():
        raise CorruptEventError(f"envelope stream {stream!r} does not match the event")
    return Envelope(event_id, stream, version, event)
