"""The page's routes over HTTP, without a browser: ``/`` for browsers and for JSON clients, a poll's
page and projector view, and the page's own files (all of them served here, none from elsewhere)."""

from __future__ import annotations

import re

import pytest

from api.page import STATIC, WEB, language, wants_json
from tests.api.helpers import AXIOS_ACCEPT, Client, error_of

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
INDEX = {"api": "/api/v1", "openapi": "/openapi.json", "docs": "/docs"}
SVG_NAMESPACE = "http://www.w3.org/2000/svg"  # a name, not an address anything is fetched from


@pytest.mark.parametrize(("accept", "json"), [
    ("application/json", True),
    (AXIOS_ACCEPT, True),
    ("application/*", True),
    ("text/html, application/json;q=0.9", False),
    ("application/json;q=0.5, text/html;q=0.4", True),
    (BROWSER_ACCEPT, False),
    ("*/*", False),
    ("", False),
    ("application/json;q=0", False),
    ("application/json;q=x", False),
    ("text/html;q=2, application/json", True),  # a weight out of range counts for nothing
])
def test_json_is_answered_to_those_who_prefer_it(accept: str, json: bool) -> None:
    assert wants_json(accept) is json


@pytest.mark.parametrize(("header", "chosen"), [
    ("ko-KR,ko;q=0.9,en-US;q=0.8,en;q=0.7", "ko"),
    ("en-US,en;q=0.9,ko;q=0.8", "en"),
    ("fr-FR, ko;q=0.5", "ko"),
    ("de", "en"),
    ("", "en"),
    ("ko;q=0, en;q=0.1", "en"),
])
def test_the_pages_first_language_follows_accept_language(header: str, chosen: str) -> None:
    assert language(header) == chosen


async def test_a_json_client_at_the_root_gets_the_links(client: Client) -> None:
    response = await client.get("/", headers={"Accept": "application/json"})
    assert response.status == 200
    assert response.content_type == "application/json"
    assert await response.json() == INDEX
    assert "Accept" in response.headers["Vary"]
    for link in INDEX.values():  # each goes somewhere real
        if link != "/api/v1":
            assert (await client.get(link)).status == 200


async def test_a_browser_at_the_root_gets_the_page_in_its_language(client: Client) -> None:
    response = await client.get("/", headers={"Accept": BROWSER_ACCEPT, "Accept-Language": "ko-KR,ko;q=0.9"})
    assert response.status == 200
    assert response.content_type == "text/html"
    page = await response.text()
    assert '<html lang="ko">' in page
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    curl = await client.get("/", headers={"Accept": "*/*"})
    assert curl.content_type == "text/html" and '<html lang="en">' in await curl.text()


async def test_a_polls_page_and_its_projector_view_are_served_and_an_unknown_poll_is_a_404(
    client: Client,
) -> None:
    for path in ("/polls/frontend-leader", "/polls/frontend-leader/screen"):
        response = await client.get(path)
        assert response.status == 200, path
        assert response.content_type == "text/html"
    await error_of(await client.get("/polls/nope"), 404, "unknown_poll")
    await error_of(await client.get("/polls/nope/screen"), 404, "unknown_poll")


async def test_every_file_the_pages_name_is_served_with_its_type(client: Client) -> None:
    names = set()
    for template in ("index.html", "screen.html"):
        page = (WEB / template).read_text(encoding="utf-8")
        names |= set(re.findall(r'(?:src|href)="/assets/([^"]+)"', page))
    for script in STATIC.glob("*.js"):  # the modules' own imports
        names |= set(re.findall(r'from "\./([\w.-]+)"', script.read_text(encoding="utf-8")))
    assert {"app.css", "main.js", "screen.js", "i18n.js", "receipt.js"} <= names
    kinds = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
    for name in sorted(names):
        response = await client.get(f"/assets/{name}")
        assert response.status == 200, name
        assert response.content_type == kinds[name[name.rindex("."):]], name
        assert await response.read() == (STATIC / name).read_bytes()


async def test_a_file_the_client_holds_is_not_sent_again(client: Client) -> None:
    first = await client.get("/assets/main.js")
    etag = first.headers["ETag"]
    again = await client.get("/assets/main.js", headers={"If-None-Match": etag})
    assert again.status == 304
    assert await again.read() == b""


@pytest.mark.parametrize("path", [
    "/assets/nope.js", "/assets/..%2fpage.py", "/assets/%2e%2e%2fpage.py", "/assets/", "/assets/index.html",
])
async def test_nothing_but_the_pages_files_is_served_from_assets(client: Client, path: str) -> None:
    response = await client.get(path)
    assert response.status == 404
    assert response.content_type == "application/json"


def test_the_page_names_no_other_origin() -> None:
    files = [*WEB.glob("*.html"), *STATIC.iterdir()]
    assert len(files) > 8
    for path in files:
        text = path.read_text(encoding="utf-8").replace(SVG_NAMESPACE, "")
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", text), path.name
