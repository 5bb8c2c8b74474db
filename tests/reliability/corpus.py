"""The hostile-input corpus and a probe that sends it and collects every answer that breaks the rules.

The rules: a hostile request never gets a 5xx; every error is the one JSON error shape
(``{"error": {"code", "message", "fields"}}``); the service stays up.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp.test_utils import TestClient
from jwt.warnings import InsecureKeyLengthWarning

from tests.reliability.helpers import assert_error_shape, full_width

SQL = "'; DROP TABLE events; --"
MEGABYTE = 1_000_000


@dataclass
class Probe:
    """Sends requests through a test client; remembers each rule broken (and how many were sent)."""

    client: TestClient[Any, Any]
    problems: list[str] = field(default_factory=list)
    sent: int = 0

    async def send(
        self, label: str, method: str, path: str, *, expect: str = "4xx", **kwargs: Any
    ) -> tuple[int, bytes]:
        """``expect``: ``4xx`` (any client error), an exact status such as ``401``, or ``any`` (not a 5xx)."""
        self.sent += 1
        response = await self.client.request(method, path, **kwargs)
        body = await response.read()
        status = response.status
        if status >= 500:
            self.problems.append(f"{label}: {method} {path[:80]} -> {status} {body[:200]!r}")
        elif expect == "4xx" and not 400 <= status < 500:
            self.problems.append(f"{label}: {method} {path[:80]} -> {status}, expected a 4xx")
        elif expect.isdigit() and status != int(expect):
            self.problems.append(
                f"{label}: {method} {path[:80]} -> {status}, expected {expect}: {body[:200]!r}"
            )
        if status >= 400 and method != "HEAD":
            try:
                assert_error_shape(status, body, allow_5xx=True)
            except AssertionError as exc:
                self.problems.append(f"{label}: {method} {path[:80]} -> {status}, not the error shape: {exc}")
        return status, body

    async def raw(self, label: str, request: bytes) -> tuple[int, bytes]:
        """Bytes on the socket, for what an HTTP client refuses to send (control characters, bad UTF-8)."""
        self.sent += 1
        assert self.client.server.host is not None and self.client.server.port is not None
        reader, writer = await asyncio.open_connection(self.client.server.host, self.client.server.port)
        try:
            writer.write(request)
            await writer.drain()
            data = await asyncio.wait_for(reader.read(), timeout=10)
        finally:
            writer.close()
            await writer.wait_closed()
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1]) if head.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")) else 0
        if not 400 <= status < 500:
            self.problems.append(f"{label}: raw request -> {status} {data[:200]!r}")
        if b"Traceback" in data or b'File "/' in data:
            self.problems.append(f"{label}: raw request -> a stack trace reached the client")
        return status, body

    def check(self) -> None:
        assert not self.problems, (
            f"{len(self.problems)} of {self.sent} answers broke the rules:\n" + "\n".join(self.problems[:60])
        )


def raw_get(path: str, headers: dict[str, bytes]) -> bytes:
    lines = [f"GET {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close"]
    lines += [name.encode() + b": " + value for name, value in headers.items()]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def raw_post(path: str, body: bytes, content_type: bytes = b"application/json") -> bytes:
    lines = [
        f"POST {path} HTTP/1.1".encode(),
        b"Host: 127.0.0.1",
        b"Connection: close",
        b"Content-Type: " + content_type,
        f"Content-Length: {len(body)}".encode(),
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def truncations(text: str) -> list[str]:
    """Every proper prefix of ``text`` (the empty one included)."""
    return [text[:n] for n in range(len(text))]


MALFORMED_JSON = [
    "{",
    "}",
    "[",
    "]",
    "{]",
    "[}",
    '{"email":',
    '{"email": "a@b.org",}',
    '{"a":1,,"b":2}',
    "{'email': 'a@b.org'}",
    '{"email" "a@b.org"}',
    '{email: "a@b.org"}',
    "nul",
    "tru",
    '"',
    '"unterminated',
    "NaN",
    "Infinity",
    "-Infinity",
    '{"candidateId": NaN}',
    '{"candidateId": Infinity}',
    '{"candidateId": 1e999}',
    '{"candidateId": -1e999}',
    '{"candidateId": 0x10}',
    '{"candidateId": 01}',
    '{"candidateId": +1}',
    '{"candidateId": .5}',
    '{"a": "\\x41"}',
    '{"a": "\\u12"}',
    '{"a": "\\"}',
    '{"a": "tab\there"}',
    "/* comment */ {}",
    "{} {}",
    "{}x",
    "\ufeff{}",
    "\x00",
    "\x00{}",
    "{\x00}",
    " " * 1000,
    "\n\r\t",
    "[" * 100_000,
    '{"a":' * 100_000,
    "1" * 10_000,
    '{"candidateId": ' + "9" * 5000 + "}",
    "[]",
    "null",
    "true",
    "false",
    "0",
    "-1",
    '"string"',
    "[1, 2, 3]",
    '[{"email": "a@b.org"}]',
]

WRONG_TYPES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1.5,
    2**64,
    -(2**63),
    1e308,
    "",
    " ",
    [],
    [1],
    ["a@b.org"],
    {},
    {"$gt": ""},
    {"email": "a@b.org"},
    [[[]]],
    {"a": {"b": {"c": {}}}},
    "null",
    "[object Object]",
    "undefined",
]


def user_bodies(tag: str) -> list[tuple[str, Any, str]]:
    """Sign-up bodies, each wrong in one field (or everywhere): (label, body, what to expect).

    A wrong type is a 400; a string of the wrong kind may still be a valid value (a name "null"),
    so those may pass; each body has its own email, so one that passes never makes another a 409.
    """
    bodies: list[tuple[str, Any, str]] = []
    for name in ("email", "name", "password", "part", "team"):
        for n, value in enumerate(WRONG_TYPES):
            if name in ("part", "team") and value is None:
                continue  # null is a valid "no part"
            good = {"email": f"{tag}-{name}-{n}@example.org", "name": "Hostile", "password": "password-123"}
            expect = "any" if isinstance(value, str) and name != "email" else "400"
            bodies.append((f"{name}={value!r:.40}", {**good, name: value}, expect))
    good = {"email": f"{tag}@example.org", "name": "Hostile", "password": "password-123"}
    email = good["email"]
    fixed: list[tuple[str, Any]] = [
        ("missing everything", {}),
        ("missing email", {k: v for k, v in good.items() if k != "email"}),
        ("unknown field", {**good, "admin": True}),
        ("nested everything", {k: {"v": v} for k, v in good.items()}),
        ("email list", {**good, "email": [email, email]}),
        ("password short", {**good, "password": "short"}),
        ("name too long", {**good, "name": "n" * 101}),
        ("email too long", {**good, "email": "a" * 250 + "@b.org"}),
        ("not an email", {**good, "email": "not-an-email"}),
        ("email spaces", {**good, "email": "a b@c.org"}),
        ("two ats", {**good, "email": "a@b@c.org"}),
        ("email angle", {**good, "email": "<a@b.org>"}),
        ("email header injection", {**good, "email": "a@b.org\r\nBcc: c@d.org"}),
        ("name newline", {**good, "name": "a\nb"}),
        ("name DEL", {**good, "name": "a\x7fb"}),
        ("name escape", {**good, "name": "\x1b[31mred"}),
        ("part empty", {**good, "part": ""}),
    ]
    return bodies + [(label, body, "400") for label, body in fixed]


def odd_but_signed(secret: str, user_id: str, email: str) -> list[tuple[str, str]]:
    """Tokens with odd claims or headers but signed with the service's own secret: these are valid."""
    now = int(time.time())
    base = {"sub": user_id, "email": email, "iat": now, "exp": now + 3600}
    return [
        ("exp far away", jwt.encode({**base, "exp": 2**70}, secret, algorithm="HS256")),
        (
            "kid traversal",
            jwt.encode(base, secret, algorithm="HS256", headers={"kid": "../../../../dev/null"}),
        ),
        ("other email claim", jwt.encode({**base, "email": "someone@else.org"}, secret, algorithm="HS256")),
    ]


def authorization_shapes(valid: str, secret: str, user_id: str, email: str) -> list[tuple[str, str]]:
    """More than a hundred ``Authorization`` values that must all be refused with 401.

    Everything an HTTP client can send as a header value; control characters go by :func:`raw_get`.
    """
    now = int(time.time())
    header, payload, signature = valid.split(".")

    def b64(data: dict[str, Any] | bytes) -> str:
        raw = data if isinstance(data, bytes) else json.dumps(data, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    def signed(claims: dict[str, Any], key: str = secret, **kwargs: Any) -> str:
        with warnings.catch_warnings():  # HS384/HS512 with the service's (shorter) key: that is the point
            warnings.simplefilter("ignore", InsecureKeyLengthWarning)
            return jwt.encode(claims, key, algorithm=kwargs.pop("algorithm", "HS256"), **kwargs)

    base = {"sub": user_id, "email": email, "iat": now, "exp": now + 3600}
    forged = [
        ("wrong secret", signed(base, "another-secret-" + "y" * 32)),
        ("HS512", signed(base, algorithm="HS512")),
        ("HS384", signed(base, algorithm="HS384")),
        ("alg none", f"{b64({'alg': 'none', 'typ': 'JWT'})}.{payload}."),
        ("alg none no dot", f"{b64({'alg': 'none', 'typ': 'JWT'})}.{payload}"),
        ("alg None", f"{b64({'alg': 'None'})}.{payload}.{signature}"),
        ("alg RS256 header", f"{b64({'alg': 'RS256', 'typ': 'JWT'})}.{payload}.{signature}"),
        ("expired", signed({**base, "iat": now - 7200, "exp": now - 3600})),
        ("exp now", signed({**base, "exp": now - 1})),
        ("no sub", signed({k: v for k, v in base.items() if k != "sub"})),
        ("no exp", signed({k: v for k, v in base.items() if k != "exp"})),
        ("no iat", signed({k: v for k, v in base.items() if k != "iat"})),
        ("sub int", signed({**base, "sub": 1})),
        ("sub null", signed({**base, "sub": None})),
        ("sub list", signed({**base, "sub": [user_id]})),
        ("sub object", signed({**base, "sub": {"id": user_id}})),
        ("sub empty", signed({**base, "sub": ""})),
        ("sub unknown", signed({**base, "sub": "0" * 32})),
        ("sub sql", signed({**base, "sub": SQL})),
        ("sub huge", signed({**base, "sub": "u" * 3000})),
        ("exp string", signed({**base, "exp": str(now + 3600)})),
        ("exp float", signed({**base, "exp": now + 3600.5})),
        ("exp negative", signed({**base, "exp": -1})),
        ("iat future", signed({**base, "iat": now + 86400})),
        ("iat string", signed({**base, "iat": "yesterday"})),
        ("nbf future", signed({**base, "nbf": now + 86400})),
        ("payload swapped", f"{header}.{b64({**base, 'sub': '1' * 32})}.{signature}"),
        ("payload exp extended", f"{header}.{b64({**base, 'exp': now + 10**8})}.{signature}"),
        ("payload not json", f"{header}.{b64(b'not json')}.{signature}"),
        ("payload list", f"{header}.{b64(b'[1,2]')}.{signature}"),
        ("payload empty", f"{header}..{signature}"),
        ("header not json", f"{b64(b'{')}.{payload}.{signature}"),
        ("no signature", f"{header}.{payload}."),
        ("two parts", f"{header}.{payload}"),
        ("four parts", f"{valid}.{signature}"),
        (
            "signature flipped",
            f"{header}.{payload}.{signature[:-2]}{'A' if signature[-2] != 'A' else 'B'}{signature[-1]}",
        ),
        ("signature padded", f"{valid}=="),
        ("lower-cased", valid.lower()),
        ("upper-cased", valid.upper()),
        ("reversed", valid[::-1]),
        ("doubled", valid + valid),
        ("two tokens", f"Bearer {valid} {valid}"),
        ("space inside", valid[:20] + " " + valid[20:]),
        ("dot prefix", "." + valid),
        ("dot suffix", valid + "."),
        ("truncated", valid[:-1]),
        ("half", valid[: len(valid) // 2]),
        ("Bearer glued", "Bearer" + valid),
        ("Bearer twice", f"Bearer Bearer {valid}"),
        ("Token scheme", f"Token {valid}"),
        ("JWT scheme", f"JWT {valid}"),
        ("Basic with token", f"Basic {valid}"),
        ("Basic credentials", "Basic " + base64.b64encode(f"{email}:password-123".encode()).decode()),
        ("Basic user:pass", "Basic dXNlcjpwYXNz"),
        ("Digest", 'Digest username="a", realm="r", nonce="n", uri="/", response="x"'),
        ("quoted twice", json.dumps(json.dumps(valid))),
        ("single quotes", f"'{valid}'"),
        ("backticks", f"`{valid}`"),
        ("unbalanced open", f'"{valid}'),
        ("unbalanced close", f'{valid}"'),
        ("quote in middle", valid[:10] + '"' + valid[10:]),
        ("json object", json.dumps({"token": valid})),
        ("json accessToken", json.dumps({"accessToken": valid, "tokenType": "Bearer"})),
        ("json list", json.dumps([valid])),
        ("json number", "12345"),
        ("json null", "null"),
        ("json true", "true"),
        ("json quoted null", '"null"'),
        ("json quoted empty", '""'),
        ("json quoted spaces", '"   "'),
        ("json quoted Bearer", '"Bearer"'),
        ("json escaped nul", '"\\u0000"'),
        ("json bad escape", '"\\x41"'),
        ("json quote only", '"'),
        ("json three quotes", '"""'),
        ("object Object", "[object Object]"),
        ("undefined", "undefined"),
        ("Bearer undefined", "Bearer undefined"),
        ("Bearer null", "Bearer null"),
        ("Bearer [object Object]", "Bearer [object Object]"),
    ]
    plain = [
        ("space", " "),
        ("spaces", "     "),
        ("tab", "\t"),
        ("Bearer", "Bearer"),
        ("Bearer space", "Bearer "),
        ("Bearer spaces", "Bearer     "),
        ("bearer", "bearer"),
        ("BEARER x", "BEARER x"),
        ("bearer x", "bearer x"),
        ("Bearer x", "Bearer x"),
        ("Bearer dots", "Bearer .."),
        ("Bearer a.b.c", "Bearer a.b.c"),
        ("Bearer dash", "Bearer -"),
        ("Basic", "Basic"),
        ("Basic space", "Basic "),
        ("x", "x"),
        ("0", "0"),
        ("-1", "-1"),
        ("long a", "a" * 4000),
        ("long Bearer", "Bearer " + "a" * 4000),
        ("long dots", ".".join(["a" * 1000] * 3)),
        ("valid plus tail", valid + "a" * 1000),
        ("non-ASCII", "Bearer tökén"),
        ("Hangul", "Bearer 토큰"),
        ("emoji", "Bearer 🗳️"),
        ("full-width token", full_width(valid)),
        ("zero-width space", "\u200b" + valid),
        ("NBSP Bearer", "Bearer\u00a0" + valid),
        ("RTL override", "\u202e" + valid),
        ("SQL", SQL),
        ("SQL Bearer", "Bearer " + SQL),
        ("path traversal", "../../etc/passwd"),
        ("template", "{{7*7}}"),
        ("format", "%s%s%n"),
        ("html", "<script>alert(1)</script>"),
        ("CRLF-less header", "Bearer x Bearer y"),
        ("comma list", f"{valid}, {valid}"),
        ("semicolon", f"Bearer {valid};"),
    ]
    shapes = forged + plain
    assert len(shapes) >= 100, len(shapes)
    return shapes


# refused by aiohttp's HTTP parser (a plain-text 400) before any handler runs
CONTROL_AUTHORIZATION = [
    b"\x01",
    b"Bearer \x7f",
    b"Bearer \x1b[31m",
    b"Bearer\x0bx",
    b"\x08\x08",
    b"Bearer \x00x",
]
# bytes that are not UTF-8: aiohttp passes them on as lone surrogates
NON_UTF8_AUTHORIZATION = [b"Bearer \xff\xfe", b"\xc3\x28", b"Bearer \xed\xa0\x80", b"\x80"]

# JSON bodies that give a key twice: parsers disagree on which wins, so every one is a 400
REPEATED_KEYS = [
    '{"candidateId": 4, "candidateId": 5}',
    '{"candidateId": 4, "candidateId": 4}',
    '{"email": "a@example.org", "email": "b@example.org", "password": "password-123"}',
    '{"email": "a@example.org", "password": "x", "password": "password-123"}',
    '{"email": "a@example.org", "name": "A", "password": "password-123", "name": "Admin"}',
    '{"a": {"b": 1, "b": 2}, "candidateId": 4}',
    '{"\\u0061": 1, "a": 2}',  # the same key, spelled once escaped
    '{"\\ud800": 1, "\\ud800": 2}',
    '{"' + "k" * 5000 + '": 1, "' + "k" * 5000 + '": 2}',
]
# format characters (Unicode category Cf) and C1 controls: a name or email holding one reads as another
HIDDEN_CHARACTERS = [
    "\u202e",  # right-to-left override
    "\u202d",  # left-to-right override
    "\u2066",  # left-to-right isolate
    "\u200b",  # zero-width space
    "\u200c",  # zero-width non-joiner
    "\u200d",  # zero-width joiner
    "\u2060",  # word joiner
    "\ufeff",  # zero-width no-break space (BOM)
    "\u00ad",  # soft hyphen
    "\u061c",  # Arabic letter mark
    "\U000e0041",  # tag latin capital letter A
    "\u009b",  # control sequence introducer (C1 control)
]

# Requests aiohttp's own parser refuses before any handler runs: (label, bytes). Each carries ECHO,
# which neither the answer nor the log may quote back.
ECHO = b"ECHO"


def _head(line: bytes, *headers: bytes) -> bytes:
    return b"\r\n".join((line, b"Host: x", *headers)) + b"\r\n\r\n"


_LOGIN = b"POST /auth/login HTTP/1.1"
_CHUNKED = b"Transfer-Encoding: chunked"
PARSER_REJECTIONS = [
    ("header over 8,190 bytes", _head(b"GET /candidates HTTP/1.1", b"X-Big: " + ECHO * 2300)),
    ("request line over 8,190 bytes", _head(b"GET /" + ECHO * 2300 + b" HTTP/1.1")),
    ("200 headers", _head(b"GET /candidates HTTP/1.1", *(b"X-%d: %s" % (n, ECHO) for n in range(200)))),
    ("bad chunk size", _head(_LOGIN, _CHUNKED) + ECHO + b"zz\r\nabc\r\n0\r\n\r\n"),
    ("Content-Length and Transfer-Encoding",
     _head(_LOGIN, _CHUNKED, b"Content-Length: 5", b"X-E: " + ECHO) + b"0\r\n\r\n"),
    ("two Content-Lengths",
     _head(_LOGIN, b"Content-Length: 5", b"Content-Length: 6", b"X-E: " + ECHO) + b"hello"),
    ("negative Content-Length", _head(_LOGIN, b"Content-Length: -" + ECHO)),
    ("not a request line", ECHO + b"\r\n\r\n"),
    ("bad method", _head(b"G\x01T /" + ECHO + b" HTTP/1.1")),
    ("NUL in the path", _head(b"GET /" + ECHO + b"\x00 HTTP/1.1")),
    ("control character in a header name", _head(b"GET / HTTP/1.1", b"X-" + ECHO + b"\x01: y")),
    ("control character in a header value", _head(b"GET / HTTP/1.1", b"X-A: " + ECHO + b"\x7f")),
    ("space before the colon", _head(b"GET / HTTP/1.1", b"X-" + ECHO + b" : y")),
    ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + ECHO),
    ("TLS on the plain port", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + ECHO + b"\r\n\r\n"),
]
# Requests whose client goes away partway through the body: the start of each, then the close.
ABORTED_BODIES = [
    ("legacy login", _head(_LOGIN, b"Content-Length: 1000") + b"email=a%40b.org&pass"),
    ("JSON signup", _head(b"POST /api/v1/users HTTP/1.1", b"Content-Type: application/json",
                          b"Content-Length: 100000") + b'{"email": "a@b.org", "name": "'),
    ("chunked legacy signup",
     _head(b"POST /auth/signup HTTP/1.1", _CHUNKED) + b"10\r\nemail=a%40b.org&\r\n"),
]
