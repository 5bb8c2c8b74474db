"""Event types, and the envelope that turns them into canonical body bytes and back.

A body is ``{"id", "type", "v", "stream", "version", "data"}`` in canonical JSON: everything the
row's columns say is inside the hashed bytes, so the audit can check the columns against it.
Decoding an unknown type or version fails loudly; older versions are upcast on read, never rewritten.
Events are frozen msgspec structs: decoding a body validates every field in compiled code, which is
what lets a replay, a rebuild and an audit go through a million events in seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal, Union, cast

import msgspec

from ledger.codec import ENCODER, MAX_SAFE_INTEGER
from ledger.errors import CorruptEventError, EncodingError

SafeInt = Annotated[int, msgspec.Meta(ge=-MAX_SAFE_INTEGER, le=MAX_SAFE_INTEGER)]
"""An integer inside the canonical subset (magnitude below 2**53)."""


class Event(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Base of every event type. Subclasses set ``TYPE``, ``VERSION`` and name their stream."""

    TYPE: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1

    def stream(self) -> str:
        raise NotImplementedError


class UserRegistered(Event, frozen=True):
    """A user signed up. Email, name and password hash live beside the log, bound by ``commitment``."""

    TYPE: ClassVar[str] = "UserRegistered"
    user_id: str
    commitment: str
    part: str | None = None
    team: str | None = None

    def stream(self) -> str:
        return user_stream(self.user_id)


class PollCreated(Event, frozen=True):
    """A poll exists, with its rules. It takes votes only once opened."""

    TYPE: ClassVar[str] = "PollCreated"
    poll_id: str
    title: str
    policy: str
    results: str
    legacy: bool = False
    same_part: str | None = None
    not_own_team: bool = False
    opens_at: SafeInt | None = None
    closes_at: SafeInt | None = None

    def stream(self) -> str:
        return poll_stream(self.poll_id)


class CandidateAdded(Event, frozen=True):
    """A candidate stands in a poll. Candidate ids are global, positive and never reused."""

    TYPE: ClassVar[str] = "CandidateAdded"
    poll_id: str
    candidate_id: SafeInt
    name: str
    part: str | None = None
    team: str | None = None

    def stream(self) -> str:
        return poll_stream(self.poll_id)


class PollOpened(Event, frozen=True):
    """The poll takes votes from here on."""

    TYPE: ClassVar[str] = "PollOpened"
    poll_id: str

    def stream(self) -> str:
        return poll_stream(self.poll_id)


class PollClosed(Event, frozen=True):
    """The poll takes no more votes."""

    TYPE: ClassVar[str] = "PollClosed"
    poll_id: str

    def stream(self) -> str:
        return poll_stream(self.poll_id)


class VoteCast(Event, frozen=True):
    """A user voted. Under the ``changeable`` policy a later vote supersedes the earlier one.

    ``at`` is the wall-clock time of the append in milliseconds (for ``opens_at``/``closes_at``);
    order always comes from ``seq``. ``key`` is the SHA-256 (hex) of the client's idempotency key,
    if it sent one.
    """

    TYPE: ClassVar[str] = "VoteCast"
    poll_id: str
    candidate_id: SafeInt
    user_id: str
    at: SafeInt
    key: str | None = None

    def stream(self) -> str:
        return ballot_stream(self.poll_id, self.user_id)


class UserErased(Event, frozen=True):
    """A user's personal data was erased: their private data beside the log is destroyed in the
    same transaction, so the commitment in their registration can never be opened again. Their
    votes stand."""

    TYPE: ClassVar[str] = "UserErased"
    user_id: str

    def stream(self) -> str:
        return user_stream(self.user_id)


class LoggedOut(Event, frozen=True):
    """A user logged out: one token (``token_id``, its ``jti``), or every token issued to them
    before this event (``token_id`` None). Every node and every restart honours it."""

    TYPE: ClassVar[str] = "LoggedOut"
    user_id: str
    token_id: str | None = None

    def stream(self) -> str:
        return user_stream(self.user_id)


def user_stream(user_id: str) -> str:
    """The stream of one user's registration, logouts and erasure."""
    return f"user:{user_id}"


POLL_STREAMS = "poll:"
"""What every poll's stream name starts with. Every other stream's name ends with its user's id,
so a fold split by user (``FoldReads.read_shard``) gives each shard every poll's stream."""


def poll_stream(poll_id: str) -> str:
    """The stream of one poll: its creation, candidates, opening and closing."""
    return POLL_STREAMS + poll_id


def ballot_stream(poll_id: str, user_id: str) -> str:
    """The stream of one user's votes in one poll: its version counts their votes there."""
    return f"ballot:{poll_id}:{user_id}"


EVENT_TYPES: dict[str, type[Event]] = {
    cls.TYPE: cls
    for cls in (UserRegistered, PollCreated, CandidateAdded, PollOpened, PollClosed, VoteCast, UserErased,
                LoggedOut)
}

# (type, version) -> function turning that version's data into the next version's data.
UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {}


Version = Annotated[int, msgspec.Meta(ge=1, le=MAX_SAFE_INTEGER)]
"""A stream version: the first event of a stream is version 1."""


class Envelope(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="type"):
    """A decoded body: the event (``data`` in the body) and the identity the log gives it.

    Each event type has its own subclass, tagged with the type's name and pinned to its current
    version, so a current body decodes, fully checked, in one compiled call.
    """

    event: Event = msgspec.field(name="data")
    event_id: str = msgspec.field(name="id")
    stream: str
    v: int
    version: Version


def _envelope_class(cls: type[Event]) -> type[Envelope]:
    subclass = msgspec.defstruct(
        f"{cls.__name__}Envelope",
        [("event", cls, msgspec.field(name="data")), ("v", Literal[cls.VERSION])],
        bases=(Envelope,), tag=cls.TYPE, frozen=True, module=__name__,
    )
    return cast(type[Envelope], subclass)


_ENVELOPES: dict[type[Event], type[Envelope]] = {
    cls: _envelope_class(cls) for cls in EVENT_TYPES.values()
}
_READ_BACK: dict[type[Event], msgspec.json.Decoder[Envelope]] = {
    cls: msgspec.json.Decoder(envelope_class) for cls, envelope_class in _ENVELOPES.items()
}
"""Each type's own decoder, for ``encode``'s check: it skips picking the type by its tag."""
_CURRENT: msgspec.json.Decoder[Envelope] = msgspec.json.Decoder(
    Union[tuple(_ENVELOPES.values())]  # noqa: UP007 (a union of classes made at run time)
)


def envelope(event_id: str, event: Event, version: int) -> Envelope:
    """The envelope of ``event`` as version ``version`` of its stream."""
    cls = _ENVELOPES.get(type(event))
    if cls is None:
        raise EncodingError(f"{type(event).__name__} is not an event type of the log")
    return cls(event, event_id, event.stream(), event.VERSION, version)


class _Body(msgspec.Struct, forbid_unknown_fields=True):
    """A body of any version; ``data`` stays raw until ``type`` and ``v`` say what it holds."""

    id: str
    type: str
    v: int
    stream: str
    version: Version
    data: msgspec.Raw


_BODY = msgspec.json.Decoder(_Body)


def reencode(envelope: Envelope) -> bytes:
    """The canonical bytes of a decoded body (no checks: it came from a body that decoded)."""
    return ENCODER.encode(envelope)


def encode(event_id: str, event: Event, version: int) -> bytes:
    """Canonical body bytes for ``event`` as version ``version`` of its stream.

    The bytes are decoded again, as the envelope of this very type, before they are returned:
    what cannot be read back as this very event (an integer past 2**53, a lone surrogate, a wrong
    type) raises ``EncodingError`` here rather than being written to the log.
    """
    written = envelope(event_id, event, version)
    try:
        body = reencode(written)
        read = _READ_BACK[type(event)].decode(body)
    except (TypeError, UnicodeEncodeError, msgspec.DecodeError) as exc:
        raise EncodingError(f"{event.TYPE} cannot be stored: {exc}") from exc
    if read != written:
        raise EncodingError(f"{event.TYPE} does not read back as itself")
    return body


def decode(body: bytes) -> Envelope:
    """Decode body bytes into an envelope, upcasting old versions; fails loudly on anything else."""
    try:
        found = _CURRENT.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return _decode_slowly(body)  # an older version, or an error to name precisely
    if found.stream != found.event.stream():
        raise CorruptEventError(f"envelope stream {found.stream!r} does not match the event")
    return found


def _decode_slowly(body: bytes) -> Envelope:
    try:
        raw = _BODY.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise CorruptEventError(f"body is not an event envelope: {exc}") from exc
    type_name, v = raw.type, raw.v
    cls = EVENT_TYPES.get(type_name)
    if cls is None:
        raise CorruptEventError(f"unknown event type {type_name!r}")
    if not 1 <= v <= cls.VERSION:
        raise CorruptEventError(f"unknown version {v!r} of {type_name}")
    try:
        if v == cls.VERSION:
            event = msgspec.json.decode(raw.data, type=cls)
        else:
            data = msgspec.json.decode(raw.data)
            if type(data) is not dict:
                raise CorruptEventError(f"{type_name} data is not an object")
            while v < cls.VERSION:
                data = UPCASTERS[(type_name, v)](data)
                v += 1
            event = msgspec.convert(data, cls)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise CorruptEventError(f"{type_name} data: {exc}") from exc
    if raw.stream != event.stream():
        raise CorruptEventError(f"envelope stream {raw.stream!r} does not match the event")
    return envelope(raw.id, event, raw.version)
