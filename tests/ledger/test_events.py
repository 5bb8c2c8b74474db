"""Events encode to canonical bodies and decode back; anything else fails loudly."""

from __future__ import annotations

import json
import types
import typing
from typing import Any, ClassVar

import msgspec
import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from ledger.codec import MAX_SAFE_INTEGER, canonical
from ledger.errors import CorruptEventError, EncodingError
from ledger.events import (
    EVENT_TYPES,
    UPCASTERS,
    Event,
    PollCreated,
    VoteCast,
    ballot_stream,
    decode,
    encode,
    envelope,
)


def strategy_for(hint: Any) -> st.SearchStrategy[Any]:
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    options = typing.get_args(hint) if union else (hint,)
    parts: list[st.SearchStrategy[Any]] = []
    for option in options:
        if option is type(None):
            parts.append(st.none())
        elif option is bool:
            parts.append(st.booleans())
        elif option is int:
            parts.append(st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER))
        elif option is str:
            parts.append(st.text())
        else:
            raise TypeError(f"no strategy for {option!r}: extend the test")
    return st.one_of(parts)


def events_of(cls: type[Event]) -> st.SearchStrategy[Event]:
    hints = typing.get_type_hints(cls)
    return st.builds(cls, **{f.name: strategy_for(hints[f.name]) for f in msgspec.structs.fields(cls)})


def vote_body(**envelope: Any) -> dict[str, Any]:
    """A valid VoteCast body as a dict, with envelope members replaced by ``envelope``."""
    raw = json.loads(encode("event-1", VoteCast("p1", 3, "u1", 1_700_000_000_000, "k"), 1))
    raw.update(envelope)
    return dict(raw)


def with_data(**changes: Any) -> dict[str, Any]:
    """A VoteCast body whose data has ``changes`` (a value of ``...`` deletes the field)."""
    raw = vote_body()
    for name, value in changes.items():
        if value is ...:
            del raw["data"][name]
        else:
            raw["data"][name] = value
    return raw


def test_every_event_type_is_registered_under_its_type_name() -> None:
    defined = {cls.__name__ for cls in Event.__subclasses__() if cls.__module__ != __name__}
    assert defined == set(EVENT_TYPES)
    assert all(name == cls.TYPE == cls.__name__ for name, cls in EVENT_TYPES.items())


@pytest.mark.parametrize("cls", EVENT_TYPES.values(), ids=EVENT_TYPES.keys())
@given(data=st.data())
def test_every_event_type_round_trips_through_its_body(cls: type[Event], data: st.DataObject) -> None:
    event = data.draw(events_of(cls))
    event_id = data.draw(st.text())
    version = data.draw(st.integers(1, MAX_SAFE_INTEGER))

    body = encode(event_id, event, version)

    assert decode(body) == envelope(event_id, event, version)
    assert body == rfc8785.dumps(json.loads(body))
    assert encode(event_id, decode(body).event, version) == body


def test_body_carries_the_row_identity_inside_the_hashed_bytes() -> None:
    body = encode("event-1", VoteCast("p1", 3, "u1", 5), 2)
    assert json.loads(body) == {
        "id": "event-1",
        "type": "VoteCast",
        "v": 1,
        "stream": ballot_stream("p1", "u1"),
        "version": 2,
        "data": {"poll_id": "p1", "candidate_id": 3, "user_id": "u1", "at": 5, "key": None},
    }


def test_an_optional_field_left_out_takes_its_default() -> None:
    envelope = decode(canonical(with_data(key=...)))
    assert envelope.event == VoteCast("p1", 3, "u1", 1_700_000_000_000, None)


BROKEN_BODIES: dict[str, dict[str, Any]] = {
    "unknown type": vote_body(type="VoteRetracted"),
    "non-string type": vote_body(type=7),
    "base event type": vote_body(type=""),
    "too-new version": vote_body(v=VoteCast.VERSION + 1),
    "version zero": vote_body(v=0),
    "string version": vote_body(v="1"),
    "bool version": vote_body(v=True),
    "missing required field": with_data(candidate_id=...),
    "bool where int": with_data(candidate_id=True),
    "string where int": with_data(candidate_id="3"),
    "float where int": with_data(at=1.5),
    "int where str": with_data(user_id=5),
    "null where not nullable": with_data(poll_id=None),
    "int where str or null": with_data(key=5),
    "extra data field": with_data(weight=2),
    "data not an object": vote_body(data=["p1", 3]),
    "extra envelope member": {**vote_body(), "extra": 1},
    "missing envelope member": {k: v for k, v in vote_body().items() if k != "stream"},
    "missing type": {k: v for k, v in vote_body().items() if k != "type"},
    "missing v": {k: v for k, v in vote_body().items() if k != "v"},
    "version beyond 2**53": vote_body(version=MAX_SAFE_INTEGER + 1),
    "stream mismatch": vote_body(stream=ballot_stream("p1", "someone-else")),
    "non-string id": vote_body(id=5),
    "string stream version": vote_body(version="1"),
    "bool stream version": vote_body(version=True),
}


@pytest.mark.parametrize("raw", BROKEN_BODIES.values(), ids=BROKEN_BODIES.keys())
def test_a_body_that_is_not_a_known_event_fails_to_decode(raw: dict[str, Any]) -> None:
    with pytest.raises(CorruptEventError):
        decode(json.dumps(raw).encode())


def test_int_where_bool_fails_to_decode() -> None:
    raw = json.loads(encode("e", PollCreated("p", "T", "single", "always"), 1))
    raw["data"]["legacy"] = 1
    with pytest.raises(CorruptEventError):
        decode(canonical(raw))


@pytest.mark.parametrize(
    "body",
    [b"not json", b"\xff\xfe{}", b"", b'{"id": "e"', b"[]", b'"VoteCast"', b"null", b"NaN"],
    ids=["text", "not-utf8", "empty", "truncated", "array", "string", "null", "nan"],
)
def test_non_json_or_non_object_bodies_fail_to_decode(body: bytes) -> None:
    with pytest.raises(CorruptEventError):
        decode(body)


class Unlisted(Event, frozen=True):
    """An event type the log does not know."""

    TYPE: ClassVar[str] = "Unlisted"

    def stream(self) -> str:
        return "unlisted"


def test_an_event_type_the_log_does_not_know_cannot_be_encoded() -> None:
    with pytest.raises(EncodingError, match="Unlisted"):
        encode("e", Unlisted(), 1)


UNSTORABLE: dict[str, Event] = {
    "candidate id past 2**53": VoteCast("p1", MAX_SAFE_INTEGER + 1, "u1", 5),
    "time below -(2**53 - 1)": VoteCast("p1", 3, "u1", -MAX_SAFE_INTEGER - 1),
    "lone surrogate in a poll id": VoteCast("p\ud800", 3, "u1", 5),
    "lone surrogate in a title": PollCreated("p1", "T\udfff", "single", "always"),
    "a string where an integer goes": VoteCast("p1", "3", "u1", 5),  # type: ignore[arg-type]
    "a float where an integer goes": VoteCast("p1", 3.0, "u1", 5),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("event", UNSTORABLE.values(), ids=list(UNSTORABLE))
def test_an_event_that_would_not_read_back_as_itself_is_not_encoded(event: Event) -> None:
    with pytest.raises(EncodingError, match=event.TYPE):
        encode("e", event, 1)


def test_a_stream_version_past_2_53_is_not_encoded() -> None:
    with pytest.raises(EncodingError):
        encode("e", VoteCast("p1", 3, "u1", 5), MAX_SAFE_INTEGER + 1)


def test_an_older_version_is_upcast_on_read(monkeypatch: pytest.MonkeyPatch) -> None:
    old = with_data(at=...)  # pretend version 1 of VoteCast had no ``at``
    unknown = vote_body(v=3)
    monkeypatch.setattr(VoteCast, "VERSION", 2)
    monkeypatch.setitem(UPCASTERS, ("VoteCast", 1), lambda data: {**data, "at": 0})

    assert decode(canonical(old)).event == VoteCast("p1", 3, "u1", 0, "k")
    with pytest.raises(CorruptEventError):
        decode(canonical(unknown))


BIG = b"9007199254740993"  # 2**53 + 1
OUTSIDE_THE_SUBSET: dict[str, bytes] = {
    "int above 2**53 in data": canonical(vote_body()).replace(b'"candidate_id":3', b'"candidate_id":' + BIG),
    "int above 2**53 as stream version": canonical(vote_body()).replace(b'"version":1', b'"version":' + BIG),
    "lone surrogate in a string": json.dumps(with_data(key="\ud800"), sort_keys=True).encode(),
}


@pytest.mark.parametrize("body", OUTSIDE_THE_SUBSET.values(), ids=OUTSIDE_THE_SUBSET.keys())
def test_a_body_outside_the_canonical_subset_fails_to_decode(body: bytes) -> None:
    with pytest.raises(CorruptEventError):
        decode(body)
