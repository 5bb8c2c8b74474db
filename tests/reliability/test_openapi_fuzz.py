"""Property-based fuzzing of every documented route from the service's own OpenAPI document.

Schemathesis reads ``/openapi.json`` from a live ``vote-ledger serve`` and generates valid and invalid
requests for each operation; every answer must be documented (status and schema) and never a 5xx.
Authenticated routes get a real token, so the vote and ``/me`` paths are exercised past the 401.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.docs import build_spec
from tests.reliability.helpers import (
    Server,
    audit_ok,
    http,
    import_users,
    login,
    start_server,
    write_polls,
    write_users,
)

EXAMPLES = 150  # per operation (13 of them): about 15 s in all
KNOWN_POLLS = ("leader", "marathon")
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance, content_type_conformance]


@dataclass
class LiveApi:
    server: Server
    token: str
    other: tuple[str, str]  # a second user's email and password, for the routes that end a token


ENDS_TOKENS = {("POST", "/api/v1/auth/logout"), ("DELETE", "/api/v1/me")}
"""Operations that may void the token they are sent with: each case of theirs logs in afresh as the
second user, so the shared token goes on authenticating every other operation."""


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    """A real service on a free port, with one registered user whose token authenticates the fuzzer."""
    root: Path = tmp_path_factory.mktemp("fuzz")
    db = root / "ledger.db"
    users = write_users(root / "users.jsonl", 2, prefix="fuzzer")
    import_users(db, root / "users.jsonl")
    # the fuzzer's own failed logins, thousands from one address, must not lock its logins out
    server = start_server(db, config=write_polls(root / "polls.toml"),
                          env={"VOTE_LEDGER_LOGIN_FAILURES_PER_CLIENT": "1000000"})
    try:
        yield LiveApi(server, login(server.url, *users[0]), users[1])
        status, _, body = http("GET", f"{server.url}/healthz")
        assert status == 200, body
        assert server.stop() == 0, server.log_text()[-3000:]
        # the token worked: authenticated operations were exercised past the 401
        answered = set(re.findall(r"^\S+ (\w+ \S+ \d+) [\d.]+ms ", server.log_text(), re.MULTILINE))
        assert {"GET /api/v1/me 200", "GET /auth/token 200"} <= answered, sorted(answered)[:50]
        audit_ok(db)
    finally:
        server.kill()


# The document the service serves (checked equal below), loaded at import so that pytest sees one test
# per operation; the requests go to the live server given as ``base_url``. (``from_fixture`` would load
# it from the server, but schemathesis 4's lazy loader does not work with pytest 9.)
FUZZED = copy.deepcopy(build_spec())
# an answer that never ends (it streams until the client leaves): tests/web/test_stream.py tests it
del FUZZED["paths"]["/api/v1/polls/{pollId}/results/stream"]
schema = schemathesis.openapi.from_dict(FUZZED)
schema.config.generation.update(max_examples=EXAMPLES)


def test_the_served_document_is_the_one_fuzzed(live_api: LiveApi) -> None:
    status, _, body = http("GET", f"{live_api.server.url}/openapi.json")
    assert status == 200
    assert json.loads(body) == json.loads(json.dumps(build_spec()))


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_every_documented_operation_answers_as_documented(case: Any, live_api: LiveApi) -> None:
    poll_id = case.path_parameters.get("pollId") if case.path_parameters else None
    if isinstance(poll_id, str) and len(poll_id) % 3:  # most cases aim at a real poll, the rest miss
        case.path_parameters["pollId"] = KNOWN_POLLS[len(poll_id) % 3 - 1]
    token = live_api.token
    if (case.method.upper(), case.path) in ENDS_TOKENS:
        token = login(live_api.server.url, *live_api.other)
    response = case.call_and_validate(
        base_url=live_api.server.url,
        headers={"Authorization": f"Bearer {token}"},
        checks=CHECKS,
        timeout=10,
    )
    assert response.status_code < 500
