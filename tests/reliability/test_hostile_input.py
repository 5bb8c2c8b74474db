"""Hostile input on every route: each answer is a 4xx in the one JSON error shape, never a 5xx; the
service stays up and the ledger audits clean afterwards.

Inputs: malformed and truncated JSON, wrong types, objects where strings belong, megabyte strings and
bodies over the limit, NUL bytes, control characters and invalid UTF-8, Unicode confusables in emails,
SQL-looking strings, ids beyond 64 bits, negative and zero ids, repeated query parameters, and over a
hundred shapes of ``Authorization``, forged and tampered tokens among them.
"""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from api.keys import SETTINGS
from ledger.open import open_store
from projections.audit import audit
from tests.conftest import TEST_SECRET, MakeClient, make_settings, signup_and_login
from tests.reliability.corpus import (
    CONTROL_AUTHORIZATION,
    HIDDEN_CHARACTERS,
    MALFORMED_JSON,
    MEGABYTE,
    NON_UTF8_AUTHORIZATION,
    REPEATED_KEYS,
    SQL,
    Probe,
    authorization_shapes,
    odd_but_signed,
    raw_get,
    raw_post,
    truncations,
    user_bodies,
)
from tests.reliability.helpers import full_width, write_polls

JSON_POSTS = [
    "/api/v1/users",
    "/api/v1/auth/login",
    "/api/v1/polls/marathon/votes",
    "/api/v1/polls/leader/votes",
]
PUBLIC = ["/candidates", "/api/v1/polls", "/api/v1/polls/leader", "/healthz"]
LEGACY_POSTS = ["/auth/signup", "/auth/login"]
AUTHENTICATED = [
    ("GET", "/api/v1/me"),
    ("POST", "/api/v1/polls/marathon/votes"),
    ("GET", "/vote?id=1"),
    ("GET", "/auth/token"),
    ("GET", "/api/v1/polls/leader/results"),
]


@pytest.fixture
async def hostile(make_client: MakeClient, tmp_path: Path) -> TestClient[Any, Any]:
    """The service with a single poll (legacy) and an unlimited one, and one honest vote in each."""
    # throttling off (it has its own tests): the corpus fails many logins, and tries many signups, from
    # one address on purpose
    client = await make_client(
        config=write_polls(tmp_path / "polls.toml"), login_failures=10**6, login_failures_per_client=10**6,
        login_failures_per_account=10**9, signups_per_client=10**6,
    )
    token = await signup_and_login(client, "honest@example.org")
    bearer = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/vote?id=1", headers=bearer)).status == 200
    assert (
        await client.post("/api/v1/polls/marathon/votes", json={"candidateId": 4}, headers=bearer)
    ).status == 201
    return client


async def _still_healthy(client: TestClient[Any, Any]) -> None:
    """The service answers, takes a vote, and its ledger audits clean (opened read-only beside it)."""
    assert (await client.get("/healthz")).status == 200
    token = await signup_and_login(client, "after@example.org")
    vote = await client.post(
        "/api/v1/polls/marathon/votes", json={"candidateId": 5}, headers={"Authorization": f"Bearer {token}"}
    )
    assert vote.status == 201
    store = await open_store(client.app[SETTINGS].db, readonly=True)
    try:
        report = await audit(store)
    finally:
        await store.close()
    assert report.ok, report.failure


def _stream(body: Any) -> io.BytesIO:
    """A JSON body as a stream (aiohttp warns about sending a megabyte of plain bytes)."""
    return io.BytesIO(json.dumps(body, ensure_ascii=False).encode())


async def _bearer(client: TestClient[Any, Any], email: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {await signup_and_login(client, email)}"}


async def test_malformed_and_truncated_json_is_a_400_everywhere(
    hostile: TestClient[Any, Any],
) -> None:
    probe = Probe(hostile)
    auth = await _bearer(hostile, "json@example.org")
    valid = {
        "/api/v1/users": json.dumps({"email": "trunc@example.org", "name": "T", "password": "password-123"}),
        "/api/v1/auth/login": json.dumps({"email": "json@example.org", "password": "password-123"}),
        "/api/v1/polls/marathon/votes": json.dumps({"candidateId": 4}),
        "/api/v1/polls/leader/votes": json.dumps({"candidateId": 2}),
        "/auth/signup": json.dumps({"email": "trunc2@example.org", "name": "T", "password": "pw"}),
        "/auth/login": json.dumps({"email": "json@example.org", "password": "password-123"}),
    }
    for path in JSON_POSTS + LEGACY_POSTS:
        for text in MALFORMED_JSON:
            await probe.send(
                f"malformed {text[:20]!r}",
                "POST",
                path,
                data=text.encode(),
                headers={**auth, "Content-Type": "application/json"},
            )
        for text in truncations(valid[path]):
            # a prefix of a JSON object is never JSON (legacy routes read a prefix without "{" as a form)
            expect = "any" if path in LEGACY_POSTS and not text.startswith("{") else "400"
            await probe.send(
                f"truncated {text!r}",
                "POST",
                path,
                data=text.encode(),
                expect=expect,
                headers={**auth, "Content-Type": "application/json"},
            )
    probe.check()
    await _still_healthy(hostile)


async def test_wrong_types_and_objects_where_strings_belong_are_a_400(
    hostile: TestClient[Any, Any],
) -> None:
    probe = Probe(hostile)
    auth = await _bearer(hostile, "voter-of-types@example.org")
    for label, body, expect in user_bodies("types"):
        await probe.send(f"v1 signup {label}", "POST", "/api/v1/users", json=body, expect=expect)
        legacy = {**body, "email": "legacy-" + body["email"]} if isinstance(body.get("email"), str) else body
        # the 2020 signup ignores unknown fields and takes short passwords
        lenient = expect == "any" or label in ("unknown field", "password short")
        await probe.send(
            f"legacy signup {label}", "POST", "/auth/signup", json=legacy, expect="any" if lenient else "4xx"
        )
        login = {"email": body.get("email"), "password": body.get("password")}
        await probe.send(
            f"v1 login {label}",
            "POST",
            "/api/v1/auth/login",
            json=login,
            expect="any" if expect == "any" else "4xx",
        )
        await probe.send(
            f"legacy login {label}",
            "POST",
            "/auth/login",
            json=login,
            expect="any" if expect == "any" else "4xx",
        )
    for value in [None, True, "1", "4", 1.0, 4.0, 4.5, [4], {"id": 4}, "", [], {}, "four", 2**64, -(2**64)]:
        for path in ("/api/v1/polls/marathon/votes", "/api/v1/polls/leader/votes"):
            await probe.send(
                f"candidateId={value!r}",
                "POST",
                path,
                json={"candidateId": value},
                headers=auth,
                expect="400",
            )
        await probe.send(
            f"extra field {value!r}",
            "POST",
            "/api/v1/polls/marathon/votes",
            json={"candidateId": 4, "pollId": value},
            headers=auth,
            expect="400",
        )
    await probe.send(
        "form to JSON API",
        "POST",
        "/api/v1/users",
        data={"email": "f@example.org", "name": "F", "password": "password-123"},
        expect="415",
    )
    for content_type in (
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "application/jsonx",
        "json",
        "",
    ):
        await probe.send(
            f"content type {content_type!r}",
            "POST",
            "/api/v1/polls/marathon/votes",
            data=b'{"candidateId": 4}',
            headers={**auth, "Content-Type": content_type},
            expect="415",
        )
    for body in (
        b"--x\r\nContent-Disposition: form-data; name=email\r\n\r\na@b.org\r\n--x--",
        b"<xml/>",
        b"%%%",
        b"email=a&email=b&=x&&",
        b"email",
        b"=",
        b"&&&",
        b"a=%zz",
    ):
        await probe.send(
            f"legacy body {body[:20]!r}",
            "POST",
            "/auth/signup",
            data=body,
            expect="4xx",
            headers={"Content-Type": "multipart/form-data; boundary=x"},
        )
    probe.check()
    await _still_healthy(hostile)


async def test_megabyte_strings_are_a_400_and_bodies_over_the_limit_a_413(
    hostile: TestClient[Any, Any],
) -> None:
    probe = Probe(hostile)
    auth = await _bearer(hostile, "big@example.org")
    huge = "é" * (MEGABYTE // 2)  # a megabyte of UTF-8, just under the 1 MiB limit once in JSON
    good = {"email": "big-new@example.org", "name": "Big", "password": "password-123"}
    as_json = {**auth, "Content-Type": "application/json"}
    for name in ("email", "name", "password", "part", "team"):
        for path in ("/api/v1/users", "/auth/signup"):
            await probe.send(
                f"1 MB {name}",
                "POST",
                path,
                data=_stream({**good, name: huge}),
                headers=as_json,
                expect="400",
            )
    await probe.send(
        "1 MB login email",
        "POST",
        "/api/v1/auth/login",
        headers=as_json,
        expect="400",
        data=_stream({"email": huge, "password": "x"}),
    )
    await probe.send(
        "1 MB login password",
        "POST",
        "/auth/login",
        headers=as_json,
        expect="400",
        data=_stream({"email": "big@example.org", "password": huge}),
    )
    await probe.send(
        "1 MB key",
        "POST",
        "/api/v1/polls/marathon/votes",
        data=_stream({"candidateId": 4, huge: 1}),
        headers=as_json,
        expect="400",
    )
    await probe.send("1 MB poll id", "GET", "/api/v1/polls/" + "p" * 4000, expect="404")
    over = (
        b'{"email": "over@example.org", "name": "' + b"o" * (1024 * 1024) + b'", "password": "password-123"}'
    )
    for path in JSON_POSTS + LEGACY_POSTS:
        for label, data in (("over the limit", over), ("way over the limit", over * 4)):
            await probe.send(
                f"{label} {path}",
                "POST",
                path,
                data=io.BytesIO(data),
                expect="413",
                headers={**auth, "Content-Type": "application/json"},
            )
    probe.check()
    users = await (await hostile.get("/api/v1/polls")).json()
    assert users["polls"]  # still answering
    await _still_healthy(hostile)


async def test_nul_bytes_control_characters_and_invalid_utf8_are_a_4xx(
    hostile: TestClient[Any, Any],
) -> None:
    probe = Probe(hostile)
    auth = await _bearer(hostile, "nul@example.org")
    for name in ("email", "name", "part", "team"):
        for bad in ("a\x00b", "\x00", "a\x01b", "a\x1fb", "a\x7fb", "a\rb"):
            body = {"email": "nul-new@example.org", "name": "N", "password": "password-123", name: bad}
            await probe.send(f"{name}={bad!r}", "POST", "/api/v1/users", json=body, expect="400")
            await probe.send(f"legacy {name}={bad!r}", "POST", "/auth/signup", json=body, expect="400")
    for raw in (
        b'{"email": "\xff\xfe@example.org", "name": "x", "password": "password-123"}',
        b'{"email": "a@example.org", "name": "\xc3\x28", "password": "password-123"}',
        b'{"email": "a@example.org", "name": "\xed\xa0\x80", "password": "password-123"}',
        b"\xff\xfe{\x00}\x00",
        b"\xef\xbb\xbf{}",
        b"\x80",
        b"\xf4\x90\x80\x80",
    ):
        for path in JSON_POSTS + LEGACY_POSTS:
            await probe.send(
                f"invalid UTF-8 {raw[:16]!r}",
                "POST",
                path,
                data=raw,
                expect="400",
                headers={**auth, "Content-Type": "application/json"},
            )
    await probe.send(
        "form invalid UTF-8",
        "POST",
        "/auth/signup",
        data=b"email=\xff&name=\xfe&password=x",
        expect="400",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    await probe.send(
        "form NUL",
        "POST",
        "/auth/signup",
        data=b"email=a%00b%40c.org&name=%00&password=x",
        expect="400",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    for path in (
        "/vote?id=%00",
        "/vote?id=1%00",
        "/vote?id=%ff",
        "/vote?id=%c3%28",
        "/api/v1/polls/%00",
        "/api/v1/polls/%ff",
        "/api/v1/polls/leader%00",
        "/api/v1/polls/leader/results?at=%00",
        "/api/v1/polls/leader/results?at=%ff",
        "/api/v1/polls/leader/results?%ff=1",
        "/auth/token?token=%00",
        "/auth/token?token=%ff%fe",
    ):
        await probe.send(f"query {path}", "GET", path, headers=auth, expect="4xx")
    for value in CONTROL_AUTHORIZATION:
        await probe.raw(f"raw Authorization {value!r}", raw_get("/api/v1/me", {"Authorization": value}))
    await probe.raw("raw invalid UTF-8 body", raw_post("/api/v1/users", b'{"email": "\xff"}'))
    await probe.raw(
        "raw NUL in path", b"GET /api/v1/polls/\x00 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    await probe.raw("raw bad request line", b"GET\r\n\r\n")
    await probe.raw(
        "raw bad content length",
        b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\nConnection: close\r\n\r\n",
    )
    await probe.raw(
        "raw header too long", raw_get("/api/v1/me", {"Authorization": b"Bearer " + b"a" * 20_000})
    )
    probe.check()
    await _still_healthy(hostile)


async def test_full_width_and_case_variants_of_an_email_are_one_account(
    hostile: TestClient[Any, Any],
) -> None:
    body = {"name": "Alice", "password": "password-123"}
    first = await hostile.post("/api/v1/users", json={**body, "email": "alice@example.com"})
    assert first.status == 201
    for variant in (
        full_width("alice") + "@example.com",
        "ALICE@example.com",
        "Alice@EXAMPLE.com",
        " alice@example.com ",
        full_width("alice@example.com"),
        "alice@" + full_width("e") + "xample.com",
    ):
        again = await hostile.post("/api/v1/users", json={**body, "email": variant})
        assert again.status == 409, (variant, await again.text())
        assert (await again.json())["error"]["code"] == "email_taken"
        legacy = await hostile.post("/auth/signup", data={**body, "email": variant})
        assert legacy.status == 409, (variant, await legacy.text())
        login = await hostile.post("/api/v1/auth/login", json={"email": variant, "password": "password-123"})
        assert login.status == 200, variant
        assert (await login.json())["user"]["id"] == (await first.json())["id"]
    # the other way round: the full-width spelling first
    full = await hostile.post("/auth/signup", data={**body, "email": full_width("bob") + "@example.com"})
    assert full.status == 201
    assert (await full.json())["email"] == "bob@example.com"
    assert (await hostile.post("/api/v1/users", json={**body, "email": "bob@example.com"})).status == 409


async def test_sql_looking_strings_are_stored_and_returned_verbatim(
    hostile: TestClient[Any, Any],
) -> None:
    probe = Probe(hostile)
    created = await hostile.post(
        "/api/v1/users",
        json={
            "email": "bobby@example.org",
            "name": SQL,
            "password": SQL,
            "part": "' OR '1'='1",
            "team": '"; --',
        },
    )
    assert created.status == 201, await created.text()
    user = await created.json()
    assert (user["name"], user["part"], user["team"]) == (SQL, "' OR '1'='1", '"; --')
    login = await hostile.post("/auth/login", data={"email": "bobby@example.org", "password": SQL})
    assert login.status == 200
    token = await login.text()
    me = await (await hostile.get("/api/v1/me", headers={"Authorization": token})).json()
    assert me["user"]["name"] == SQL
    legacy = await hostile.post(
        "/auth/signup", data={"email": "tables@example.org", "name": SQL, "password": SQL}
    )
    assert legacy.status == 201 and (await legacy.json())["name"] == SQL
    for path in (
        f"/api/v1/polls/{SQL}",
        "/api/v1/polls/leader' OR '1'='1",
        "/vote?id=1;DROP TABLE events",
        "/vote?id=1 OR 1=1",
        "/api/v1/polls/leader/results?at=1 OR 1=1",
        "/auth/token?token=' OR 1=1 --",
    ):
        await probe.send(f"SQL in {path}", "GET", path, headers={"Authorization": token}, expect="4xx")
    await probe.send(
        "SQL login", "POST", "/api/v1/auth/login", json={"email": SQL, "password": SQL}, expect="401"
    )
    await probe.send(
        "SQL email", "POST", "/api/v1/users", json={"email": SQL, "name": "x", "password": SQL}, expect="400"
    )
    probe.check()
    events = await (await hostile.get("/healthz")).json()
    assert events["seq"] > 0
    await _still_healthy(hostile)


async def test_ids_beyond_64_bits_negative_zero_and_odd_spellings_are_a_4xx(
    hostile: TestClient[Any, Any],
) -> None:
    probe = Probe(hostile)
    token = await signup_and_login(hostile, "ids@example.org")
    legacy = {"Authorization": token}
    bearer = {"Authorization": f"Bearer {token}"}
    for raw in (
        "0",
        "-1",
        "-0",
        "00",
        "18446744073709551616",
        "18446744073709551615",
        "9223372036854775808",
        "9007199254740992",
        "99999999999999999999999999",
        "1e3",
        "1.0",
        "0x10",
        "+1",
        full_width("1"),
        "٣",
        "1_0",
        "",
        " ",
        "one",
        "NaN",
        "inf",
        "[1]",
        "%20",
        "1,2",
        "-9223372036854775809",
    ):
        await probe.send(f"/vote?id={raw}", "GET", "/vote", params={"id": raw}, headers=legacy, expect="400")
    await probe.send("/vote unknown id", "GET", "/vote?id=9007199254740991", headers=legacy, expect="404")
    for value in (0, -1, -(2**63), 2**53, 2**63, 2**64, 2**64 + 1, 10**30, -(10**30)):
        await probe.send(
            f"candidateId={value}",
            "POST",
            "/api/v1/polls/marathon/votes",
            json={"candidateId": value},
            headers=bearer,
            expect="400",
        )
    await probe.send(
        "candidateId max",
        "POST",
        "/api/v1/polls/marathon/votes",
        json={"candidateId": 2**53 - 1},
        headers=bearer,
        expect="404",
    )
    await probe.send(
        "candidate of the other poll",
        "POST",
        "/api/v1/polls/marathon/votes",
        json={"candidateId": 1},
        headers=bearer,
        expect="404",
    )
    for raw in ("-1", "18446744073709551616", "9007199254740992", "abc", "", "1.5", "1e3", "999999"):
        await probe.send(
            f"results at={raw}", "GET", "/api/v1/polls/leader/results", params={"at": raw}, expect="400"
        )
    for poll in (
        "0",
        "-1",
        "18446744073709551616",
        "LEADER",
        "leader ",
        " leader",
        "leader/",
        "..",
        "%2e%2e",
    ):
        await probe.send(f"poll {poll!r}", "GET", f"/api/v1/polls/{poll}", expect="4xx")
        await probe.send(
            f"vote in poll {poll!r}",
            "POST",
            f"/api/v1/polls/{poll}/votes",
            json={"candidateId": 4},
            headers=bearer,
            expect="4xx",
        )
    probe.check()
    await _still_healthy(hostile)


async def test_repeated_query_parameters_are_refused(hostile: TestClient[Any, Any]) -> None:
    probe = Probe(hostile)
    token = await signup_and_login(hostile, "dup@example.org")
    await probe.send("two ids", "GET", "/vote?id=1&id=2", headers={"Authorization": token}, expect="400")
    await probe.send(
        "same id twice", "GET", "/vote?id=1&id=1", headers={"Authorization": token}, expect="400"
    )
    await probe.send("two ats", "GET", "/api/v1/polls/leader/results?at=1&at=2", expect="400")
    await probe.send("at and junk", "GET", "/api/v1/polls/leader/results?at=1&junk=1", expect="400")
    await probe.send("two tokens", "GET", "/auth/token?token=a&token=b", expect="401")
    await probe.send(
        "hundred ids",
        "GET",
        "/vote?" + "&".join(f"id={n}" for n in range(100)),
        headers={"Authorization": token},
        expect="400",
    )
    probe.check()
    me = await (await hostile.get("/api/v1/me", headers={"Authorization": token})).json()
    assert all(not ballot["voted"] for ballot in me["polls"])  # none of those counted
    await _still_healthy(hostile)


async def test_a_hundred_authorization_shapes_are_all_a_401(
    hostile: TestClient[Any, Any],
) -> None:
    token = await signup_and_login(hostile, "auth@example.org")
    me = await (await hostile.get("/api/v1/me", headers={"Authorization": token})).json()
    shapes = authorization_shapes(token, TEST_SECRET, me["user"]["id"], "auth@example.org")
    probe = Probe(hostile)
    for label, value in shapes:
        for method, path in AUTHENTICATED:
            kwargs: dict[str, Any] = {"headers": {"Authorization": value}}
            if method == "POST":
                kwargs["json"] = {"candidateId": 4}
            # results are public: a bad token there is a 401 or, for a blank header or what a
            # logged-out JS client sends ("null", "undefined", '""'), simply ignored;
            # /auth/token answers a blank header as a missing token (400)
            ignored = not value.strip() or value.strip() in ("null", "undefined", '""')
            if ignored and path.endswith("/results"):
                expect = "200"  # the leader poll's results are public ("always")
            elif not value.strip() and path == "/auth/token":
                expect = "400"  # a blank header there is a missing token
            else:
                expect = "401"
            await probe.send(f"Authorization {label}", method, path, expect=expect, **kwargs)
        await probe.send(
            f"?token= {label}",
            "GET",
            "/auth/token",
            params={"token": value},
            expect="400" if not value else "401",
        )
        for path in PUBLIC:  # routes that need no token answer as usual, whatever Authorization says
            await probe.send(
                f"public {path} {label}", "GET", path, headers={"Authorization": value}, expect="200"
            )
    assert probe.sent >= 100 * len(AUTHENTICATED)
    probe.check()
    # none of those got a vote in
    after = await (await hostile.get("/api/v1/me", headers={"Authorization": token})).json()
    assert all(not ballot["voted"] for ballot in after["polls"])
    # the shapes real clients send are accepted, and so are odd tokens that carry the service's signature
    for value in (
        token,
        f"Bearer {token}",
        f"bearer {token}",
        json.dumps(token),
        json.dumps(f"Bearer {token}"),
        f"  Bearer   {token}  ",
        *(t for _, t in odd_but_signed(TEST_SECRET, me["user"]["id"], "a@b.org")),
    ):
        assert (await hostile.get("/api/v1/me", headers={"Authorization": value})).status == 200, value
    await _still_healthy(hostile)


async def test_methods_paths_and_headers_nobody_documented_are_a_4xx(
    hostile: TestClient[Any, Any],
) -> None:
    probe = Probe(hostile)
    for method in ("PUT", "DELETE", "PATCH", "TRACE"):
        for path in ("/vote", "/candidates", "/api/v1/me", "/api/v1/polls/leader/votes", "/auth/login"):
            if (method, path) == ("DELETE", "/api/v1/me"):  # documented: erasing oneself, with a token
                await probe.send(f"{method} {path}", method, path, expect="401")
                continue
            await probe.send(f"{method} {path}", method, path, expect="405")
    for path in (
        "/nope",
        "/api/v2/polls",
        "/api/v1/polls/leader/votes/1",
        "/api/v1//polls",
        "/%00",
        "/../etc/passwd",
        "/api/v1/polls/leader/results/",
        "/" + "a" * 3000,
        "/docs/assets/../../../../etc/passwd",
        "/docs/assets/..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/docs/assets/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    ):
        await probe.send(f"GET {path[:30]}", "GET", path, expect="4xx")
    await probe.send(
        "hostile request id",
        "GET",
        "/api/v1/polls/nope",
        expect="404",
        headers={"X-Request-Id": "x\tInjected: yes"},
    )
    response = await hostile.get("/api/v1/polls/nope", headers={"X-Request-Id": "<script>alert(1)</script>"})
    assert "<" not in response.headers["X-Request-Id"]
    for requested in (
        "authorization",
        "x" * 5000,
        "a, b, c",
        "\u00e9",
        "authorization, content-type, idempotency-key",
    ):
        preflight = await hostile.options(
            "/vote",
            headers={
                "Origin": "https://evil.example",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": requested,
            },
        )
        assert preflight.status == 204, requested
    await probe.send("HEAD /api/v1/me", "HEAD", "/api/v1/me", expect="401")
    probe.check()
    await _still_healthy(hostile)


async def test_the_whole_corpus_at_once_leaves_the_service_up(
    hostile: TestClient[Any, Any],
) -> None:
    """The bodies above, concurrently, interleaved with honest votes: every honest vote still lands."""
    probe = Probe(hostile)
    tokens = [await signup_and_login(hostile, f"busy{n}@example.org") for n in range(20)]
    hostile_sends = [
        probe.send(
            "concurrent malformed",
            "POST",
            path,
            data=text.encode(),
            expect="4xx",
            headers={"Content-Type": "application/json", "Authorization": tokens[0]},
        )
        for path in JSON_POSTS
        for text in MALFORMED_JSON[:40]
    ]
    honest = [
        hostile.post(
            "/api/v1/polls/marathon/votes", json={"candidateId": 5}, headers={"Authorization": f"Bearer {t}"}
        )
        for t in tokens
    ]
    _, answers = await asyncio.gather(asyncio.gather(*hostile_sends), asyncio.gather(*honest))
    assert [a.status for a in answers] == [201] * len(tokens)
    probe.check()
    await _still_healthy(hostile)


# Bugs found by the corpus: each test states what must hold and fails until it does.


async def test_a_lone_surrogate_in_a_password_is_a_400(hostile: TestClient[Any, Any]) -> None:
    probe = Probe(hostile)
    for path in ("/api/v1/users", "/auth/signup"):
        await probe.send(
            "surrogate password",
            "POST",
            path,
            expect="400",
            headers={"Content-Type": "application/json"},
            data=b'{"email": "sur@example.org", "name": "S", "password": "password-\\ud800"}',
        )
    for path in ("/api/v1/auth/login", "/auth/login"):
        await probe.send(
            "surrogate login",
            "POST",
            path,
            expect="4xx",
            headers={"Content-Type": "application/json"},
            data=b'{"email": "honest@example.org", "password": "\\udfff"}',
        )
    probe.check()


async def test_a_lone_surrogate_in_a_name_is_a_400(hostile: TestClient[Any, Any]) -> None:
    probe = Probe(hostile)
    for field_name in ("name", "part", "team"):
        body = {"email": f"{field_name}@example.org", "name": "S", "password": "password-123"}
        raw = json.dumps(body)[:-1] + f', "{field_name}": "a\\ud83d"' + "}"
        for path in ("/api/v1/users", "/auth/signup"):
            await probe.send(
                f"surrogate {field_name}",
                "POST",
                path,
                data=raw.encode(),
                expect="400",
                headers={"Content-Type": "application/json"},
            )
    probe.check()


@pytest.mark.ledger_file
async def test_a_poisoned_signup_does_not_fail_the_votes_batched_with_it(
    hostile: TestClient[Any, Any], tmp_path: Path
) -> None:
    tokens = [await signup_and_login(hostile, f"victim{n}@example.org") for n in range(8)]
    poisoned = b'{"email": "poison@example.org", "name": "\\ud800", "password": "password-123"}'

    async def vote(token: str) -> int:
        response = await hostile.post(
            "/api/v1/polls/marathon/votes",
            json={"candidateId": 4},
            headers={"Authorization": f"Bearer {token}"},
        )
        return response.status

    # Another process holds the write lock for a moment, so the writer's queue fills up behind a first
    # vote: the poisoned signup and the other votes are then decided and committed as one batch.
    holder = sqlite3.connect(tmp_path / "ledger.db", isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        first = asyncio.ensure_future(vote(tokens[0]))
        await asyncio.sleep(0.2)
        poison = asyncio.ensure_future(
            hostile.post("/api/v1/users", data=poisoned, headers={"Content-Type": "application/json"})
        )
        await asyncio.sleep(0.2)
        others = [asyncio.ensure_future(vote(t)) for t in tokens[1:]]
        await asyncio.sleep(0.2)
    finally:
        holder.close()
    assert await first == 201
    assert [await o for o in others] == [201] * len(others)  # the honest votes batched with the poison
    assert (await poison).status == 400


async def test_a_quoted_token_with_a_lone_surrogate_is_a_401(hostile: TestClient[Any, Any]) -> None:
    probe = Probe(hostile)
    for value in ('"\\ud800"', '"Bearer \\udc00"', '"eyJ\\ud83d.x.y"'):
        await probe.send(
            f"Authorization {value}", "GET", "/api/v1/me", headers={"Authorization": value}, expect="401"
        )
        await probe.send(f"?token={value}", "GET", "/auth/token", params={"token": value}, expect="401")
    for raw in NON_UTF8_AUTHORIZATION:  # raw bytes that are not UTF-8 reach the handler as lone surrogates
        status, _ = await probe.raw(
            f"raw Authorization {raw!r}", raw_get("/api/v1/me", {"Authorization": raw})
        )
        if status != 401:
            probe.problems.append(f"raw Authorization {raw!r}: {status}, expected 401")
    probe.check()


async def test_a_blank_name_is_a_400(hostile: TestClient[Any, Any]) -> None:
    response = await hostile.post(
        "/api/v1/users", json={"email": "blank@example.org", "name": "   ", "password": "password-123"}
    )
    assert response.status == 400, await response.text()


async def test_a_missing_docs_asset_is_a_404_in_the_error_shape(hostile: TestClient[Any, Any]) -> None:
    probe = Probe(hostile)
    await probe.send("missing asset", "GET", "/docs/assets/nope.js", expect="404")
    probe.check()


async def test_a_key_given_twice_in_a_json_body_is_a_400_on_both_surfaces(
    hostile: TestClient[Any, Any],
) -> None:
    probe = Probe(hostile)
    auth = await _bearer(hostile, "twice@example.org")
    for text in REPEATED_KEYS:
        for path in JSON_POSTS + LEGACY_POSTS:
            status, body = await probe.send(
                f"repeated key {text[:40]!r}", "POST", path, data=text.encode(), expect="400",
                headers={**auth, "Content-Type": "application/json"},
            )
            if status == 400 and json.loads(body)["error"]["code"] != "malformed_body":
                probe.problems.append(f"repeated key {text[:40]!r} on {path}: {body[:200]!r}")
    probe.check()
    me = await (await hostile.get("/api/v1/me", headers=auth)).json()
    assert all(not ballot["voted"] for ballot in me["polls"])  # none of those votes counted
    await _still_healthy(hostile)


async def test_format_characters_in_names_and_emails_are_a_400(hostile: TestClient[Any, Any]) -> None:
    probe = Probe(hostile)
    for n, hidden in enumerate(HIDDEN_CHARACTERS):
        good = {"email": f"hidden{n}@example.org", "name": "Hidden", "password": "password-123"}
        for label, body in (
            ("name", {**good, "name": f"Ad{hidden}min"}),
            ("name alone", {**good, "name": hidden}),
            ("name end", {**good, "name": "Ada" + hidden}),
            ("part", {**good, "part": f"F{hidden}E"}),
            ("team", {**good, "team": hidden + "Team"}),
            ("email local", {**good, "email": f"hid{hidden}den{n}@example.org"}),
            ("email domain", {**good, "email": f"hidden{n}@exam{hidden}ple.org"}),
            ("email end", {**good, "email": f"hidden{n}@example.org{hidden}"}),
        ):
            await probe.send(f"v1 {label} U+{ord(hidden):04X}", "POST", "/api/v1/users", json=body,
                             expect="400")
            await probe.send(f"legacy JSON {label} U+{ord(hidden):04X}", "POST", "/auth/signup",
                             json=body, expect="400")
            await probe.send(f"legacy form {label} U+{ord(hidden):04X}", "POST", "/auth/signup",
                             data=body, expect="400")
    probe.check()
    # nobody got in under any of those spellings, and names in other scripts still pass
    polls = await hostile.post("/api/v1/users", json={
        "email": "hangul@example.org", "name": "정시원", "password": "password-123", "team": "Zoë",
    })
    assert polls.status == 201, await polls.text()
    await _still_healthy(hostile)


def test_tokens_forged_with_the_test_secret_are_signed_with_the_services_own(tmp_path: Path) -> None:
    """The forged-token corpus is meaningful only if its secret is the one the test app signs with."""
    assert make_settings(tmp_path).jwt_secret == TEST_SECRET
