"""The OpenAPI document (valid, complete, generated from the request schemas) and the offline docs page."""

from __future__ import annotations

import re
from typing import Any

import pytest
from marshmallow import Schema
from openapi_schema_validator import OAS30Validator
from openapi_schema_validator import validate as validate_instance
from openapi_spec_validator import validate

from api.schemas import LegacySignupSchema, LoginSchema, UserCreateSchema, VoteRequestSchema
from tests.api.helpers import Client, bearer, legacy_user
from tests.conftest import signup_and_login

METHODS = {"get", "post", "put", "patch", "delete"}
DOCS_MACHINERY = {"/openapi.json", "/docs", "/docs/init.js"}  # the docs page itself


async def spec_of(client: Client) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status == 200
    assert response.content_type == "application/json"
    spec: dict[str, Any] = await response.json()
    return spec


def served_routes(client: Client) -> set[tuple[str, str]]:
    """(method, path) of every route the app serves, without HEAD, OPTIONS and the static assets."""
    return {
        (route.method, route.resource.canonical)
        for route in client.app.router.routes()
        if route.resource is not None
        and route.method not in ("HEAD", "OPTIONS")
        and not route.resource.canonical.startswith("/docs/assets")
    }


def documented_routes(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        for method in operations
        if method in METHODS
    }


async def test_openapi_document_is_a_valid_openapi_3_document(client: Client) -> None:
    spec = await spec_of(client)
    assert spec["openapi"].startswith("3.")
    validate(spec)


async def test_openapi_document_lists_exactly_the_routes_the_app_serves(client: Client) -> None:
    served = served_routes(client)
    documented = documented_routes(await spec_of(client))
    assert ("POST", "/api/v1/polls/{pollId}/votes") in served  # the path names are comparable
    assert {path for _, path in served} >= DOCS_MACHINERY  # the docs page's own routes count too
    assert served - documented == set(), "served but not documented"
    assert documented - served == set(), "documented but not served"


def component(
    spec: dict[str, Any], method: str, path: str, media: str = "application/json"
) -> dict[str, Any]:
    ref: str = spec["paths"][path][method]["requestBody"]["content"][media]["schema"]["$ref"]
    schema: dict[str, Any] = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return schema


@pytest.mark.parametrize(("method", "path", "schema"), [
    ("post", "/api/v1/users", UserCreateSchema),
    ("post", "/api/v1/auth/login", LoginSchema),
    ("post", "/api/v1/polls/{pollId}/votes", VoteRequestSchema),
    ("post", "/auth/signup", LegacySignupSchema),
])
async def test_request_bodies_are_documented_from_the_schemas_that_validate_them(
    client: Client, method: str, path: str, schema: type[Schema]
) -> None:
    documented = component(await spec_of(client), method, path)
    instance = schema()
    assert set(documented["properties"]) == {f.data_key or name for name, f in instance.fields.items()}
    assert set(documented.get("required", [])) == {
        f.data_key or name for name, f in instance.fields.items() if f.required
    }


def response_schema(spec: dict[str, Any], method: str, path: str, status: int) -> dict[str, Any]:
    """The documented schema of one answer, with the components so that ``$ref`` resolves."""
    responses = spec["paths"][path][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {path} does not document {status}"
    content = responses[str(status)]["content"]
    media = "application/json" if "application/json" in content else next(iter(content))
    return {**content[media]["schema"], "components": spec["components"]}


async def test_answers_match_their_documented_schemas(client: Client) -> None:
    spec = await spec_of(client)
    token = await signup_and_login(client, "alice@example.com", part="FE")
    legacy = await legacy_user(client, "bob@example.com")
    poll = "/api/v1/polls/frontend-leader"
    calls: list[tuple[int, str, str, str, dict[str, Any]]] = [  # expected status first
        (201, "POST", "/api/v1/users", "/api/v1/users",
         {"json": {"email": "carol@example.com", "name": "Carol", "password": "password-123"}}),
        (409, "POST", "/api/v1/users", "/api/v1/users",
         {"json": {"email": "carol@example.com", "name": "Carol", "password": "password-123"}}),
        (400, "POST", "/api/v1/users", "/api/v1/users", {"json": {"email": "x"}}),
        (415, "POST", "/api/v1/users", "/api/v1/users", {"data": "email=x"}),
        (200, "POST", "/api/v1/auth/login", "/api/v1/auth/login",
         {"json": {"email": "alice@example.com", "password": "password-123"}}),
        (401, "POST", "/api/v1/auth/login", "/api/v1/auth/login",
         {"json": {"email": "alice@example.com", "password": "wrong"}}),
        (200, "GET", "/api/v1/me", "/api/v1/me", {"headers": bearer(token)}),
        (401, "GET", "/api/v1/me", "/api/v1/me", {}),
        (200, "GET", "/api/v1/polls", "/api/v1/polls", {}),
        (200, "GET", poll, "/api/v1/polls/{pollId}", {}),
        (404, "GET", "/api/v1/polls/nope", "/api/v1/polls/{pollId}", {}),
        (201, "POST", f"{poll}/votes", "/api/v1/polls/{pollId}/votes",
         {"json": {"candidateId": 2}, "headers": bearer(token)}),
        (409, "POST", f"{poll}/votes", "/api/v1/polls/{pollId}/votes",
         {"json": {"candidateId": 2}, "headers": bearer(token)}),
        (200, "GET", f"{poll}/results", "/api/v1/polls/{pollId}/results", {}),
        (200, "GET", f"{poll}/results?at=1", "/api/v1/polls/{pollId}/results", {}),
        (400, "GET", f"{poll}/results?at=x", "/api/v1/polls/{pollId}/results", {}),
        (200, "GET", "/healthz", "/healthz", {}),
        (200, "GET", "/candidates", "/candidates", {}),
        (200, "GET", "/vote?id=3", "/vote", {"headers": {"Authorization": legacy}}),
        (409, "GET", "/vote?id=3", "/vote", {"headers": {"Authorization": legacy}}),
        (400, "GET", "/vote?id=x", "/vote", {"headers": {"Authorization": legacy}}),
        (200, "GET", "/auth/token", "/auth/token", {"params": {"token": legacy}}),
        (400, "GET", "/auth/token", "/auth/token", {}),
        (201, "POST", "/auth/signup", "/auth/signup",
         {"data": {"email": "d@example.com", "password": "p", "name": "D"}}),
        (401, "POST", "/auth/login", "/auth/login", {"data": {"email": "d@example.com", "password": "bad"}}),
    ]
    for status, method, url, path, kwargs in calls:
        response = await client.request(method, url, **kwargs)
        assert response.status == status, (method, url, await response.text())
        body = await response.json()
        validate_instance(body, response_schema(spec, method, path, status), cls=OAS30Validator)


async def test_legacy_login_is_documented_as_text(client: Client) -> None:
    spec = await spec_of(client)
    assert set(spec["paths"]["/auth/login"]["post"]["responses"]["200"]["content"]) == {"text/plain"}


# --- /docs ------------------------------------------------------------------------------------------


async def test_docs_page_uses_only_assets_the_service_serves_itself(client: Client) -> None:
    response = await client.get("/docs")
    assert response.status == 200
    assert response.content_type == "text/html"
    page = await response.text()
    assert "http://" not in page and "https://" not in page
    assert "//" not in page  # nor protocol-relative ones
    assets = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']+)["\']', page)
    assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
    for asset in assets:
        assert asset.startswith("/"), asset
        served = await client.get(asset)
        assert served.status == 200, asset
        assert len(await served.read()) > 0, asset
        if asset.endswith(".js"):
            assert "javascript" in served.content_type, asset


async def test_docs_page_loads_the_document_from_this_service(client: Client) -> None:
    init = await (await client.get("/docs/init.js")).text()
    urls = re.findall(r'url\s*:\s*["\']([^"\']+)["\']', init)
    assert urls == ["/openapi.json"]
    assert "//" not in init


async def test_docs_page_turns_off_the_online_validator(client: Client) -> None:
    init = await (await client.get("/docs/init.js")).text()
    assert re.search(r"validatorUrl\s*:\s*null", init)
