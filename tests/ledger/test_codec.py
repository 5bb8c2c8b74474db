"""The canonical encoder is RFC 8785 on its subset and refuses everything outside it."""

from __future__ import annotations

import json
from typing import Any

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from ledger.codec import MAX_SAFE_INTEGER, canonical
from ledger.errors import EncodingError

SPECIAL_STRINGS = [
    "",
    "\x00\x01\x08\t\n\x0b\x0c\r\x1f",
    "\x7f",
    '"\\/',
    "\u2028\u2029",
    "é",
    "e\u0301",
    "\ufeff",
    "😀👩‍👩‍👧",
    "\U0010ffff",
]

ascii_keys = st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=8)
strings = st.text() | st.sampled_from(SPECIAL_STRINGS)
scalars = st.none() | st.booleans() | st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER) | strings
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(ascii_keys, children, max_size=5),
    max_leaves=25,
)
lone_surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
out_of_range_ints = st.integers(min_value=MAX_SAFE_INTEGER + 1) | st.integers(
    max_value=-MAX_SAFE_INTEGER - 1
)
non_ascii_keys = st.text(min_size=1).filter(lambda key: not key.isascii())


def nest(value: Any) -> list[Any]:
    """``value`` placed deep inside an otherwise valid body."""
    return [{"ok": 1, "deep": [None, {"here": value}]}]


@given(values)
def test_canonical_equals_the_rfc8785_reference(value: Any) -> None:
    assert canonical(value) == rfc8785.dumps(value)


@given(values)
def test_canonical_bytes_parse_back_to_the_value(value: Any) -> None:
    assert json.loads(canonical(value)) == value


@pytest.mark.parametrize("text", SPECIAL_STRINGS)
def test_awkward_strings_encode_as_the_reference_does(text: str) -> None:
    assert canonical({"s": text, "l": [text]}) == rfc8785.dumps({"s": text, "l": [text]})


def test_keys_are_sorted_and_there_is_no_whitespace() -> None:
    assert canonical({"b": 1, "a": {"z": True, "_": None}, "A": [1, "é"]}) == (
        '{"A":[1,"é"],"a":{"_":null,"z":true},"b":1}'.encode()
    )


def test_integers_at_the_edge_of_the_safe_range_are_accepted() -> None:
    assert canonical([MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER, 0]) == b"[9007199254740991,-9007199254740991,0]"


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_floats_are_refused(number: float) -> None:
    with pytest.raises(EncodingError):
        canonical(number)
    with pytest.raises(EncodingError):
        canonical(nest(number))


@pytest.mark.parametrize("number", [1.0, 0.0, -0.0, float("nan"), float("inf"), 2.0**53])
def test_whole_floats_are_refused_too(number: float) -> None:
    with pytest.raises(EncodingError):
        canonical({"n": number})


@given(out_of_range_ints)
def test_integers_outside_the_safe_range_are_refused(number: int) -> None:
    with pytest.raises(EncodingError):
        canonical(number)
    with pytest.raises(EncodingError):
        canonical(nest(number))


@given(non_ascii_keys)
def test_non_ascii_keys_are_refused(key: str) -> None:
    with pytest.raises(EncodingError):
        canonical({key: 1})
    with pytest.raises(EncodingError):
        canonical(nest({key: 1}))


@given(lone_surrogates, st.text(max_size=3), st.text(max_size=3))
def test_lone_surrogates_are_refused(surrogate: str, before: str, after: str) -> None:
    text = before + surrogate + after
    with pytest.raises(EncodingError):
        canonical(text)
    with pytest.raises(EncodingError):
        canonical(nest(text))
    with pytest.raises(EncodingError):
        canonical({text: 1})


@pytest.mark.parametrize(
    "value",
    [(1, 2), b"bytes", {1, 2}, object(), {1: "int key"}, {None: "null key"}, {True: "bool key"}],
    ids=["tuple", "bytes", "set", "object", "int-key", "null-key", "bool-key"],
)
def test_values_outside_the_subset_are_refused(value: Any) -> None:
    with pytest.raises(EncodingError):
        canonical(value)
    with pytest.raises(EncodingError):
        canonical(nest(value))
