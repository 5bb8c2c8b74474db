"""The browser tests' machinery: Debian's Chromium driven by Playwright (never a downloaded
browser), a real ``vote-ledger serve`` to point it at, and screenshots to look at."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.reliability.helpers import Server, http, login

CHROMIUM = Path("/usr/bin/chromium")
REQUIRED = os.environ.get("VOTE_LEDGER_REQUIRE_BROWSER") == "1"
SCREENSHOTS = os.environ.get("VOTE_LEDGER_SCREENSHOTS")  # a folder to keep them in (else the run's tmp)

# The polls the browser tests vote in: results always open; results after close, and never for
# your own team; one part's poll whose results open after you vote.
POLLS_TOML = """
[[polls]]
id = "president"
title = "13기 회장 선거"
policy = "single"
results = "always"
legacy = true

[[polls.candidates]]
name = "정시원"
part = "FE"

[[polls.candidates]]
name = "고은"
part = "BE"

[[polls.candidates]]
name = "유현우"
part = "PM"

[[polls]]
id = "demo-day"
title = "데모데이 최고의 팀"
policy = "changeable"
results = "after_close"
eligibility = { not_own_team = true }

[[polls.candidates]]
name = "Aetheria"
team = "Aetheria"

[[polls.candidates]]
name = "Pre:folio"
team = "Pre:folio"

[[polls.candidates]]
name = "Hooking"
team = "Hooking"

[[polls]]
id = "frontend-leader"
title = "프론트엔드 파트장 투표"
policy = "single"
results = "after_vote"
eligibility = { same_part = "FE" }

[[polls.candidates]]
name = "김서연"
part = "FE"

[[polls.candidates]]
name = "박지훈"
part = "FE"
"""
PRESIDENT = {"정시원": 1, "고은": 2, "유현우": 3}
DEMO_DAY = {"Aetheria": 4, "Pre:folio": 5, "Hooking": 6}


def require_chromium(chromium: Path = CHROMIUM, required: bool = REQUIRED) -> Path:
    """The machine's Chromium; the test is skipped without one, and fails instead where
    ``VOTE_LEDGER_REQUIRE_BROWSER=1`` (as ``.ci/run`` sets it) says it must be there."""
    if chromium.is_file() and os.access(chromium, os.X_OK):
        return chromium
    reason = f"no Chromium at {chromium} (apt-get install -y chromium)"
    if required:
        pytest.fail(f"{reason}, and VOTE_LEDGER_REQUIRE_BROWSER=1 says it must be there")
    pytest.skip(reason)


def api_user(server: Server, email: str, password: str = "password-123", **extra: str) -> str:
    """Sign up through the JSON API, as another client would; a bearer token."""
    status, _, body = http("POST", f"{server.url}/api/v1/users",
                           {"email": email, "name": email.split("@")[0], "password": password, **extra})
    assert status == 201, body
    return login(server.url, email, password)


def api_vote(server: Server, token: str, poll: str, candidate: int) -> dict[str, Any]:
    """Vote through the JSON API; the answer."""
    status, _, body = http("POST", f"{server.url}/api/v1/polls/{poll}/votes", {"candidateId": candidate},
                           {"Authorization": f"Bearer {token}"})
    assert status == 201, body
    answer: dict[str, Any] = json.loads(body)
    return answer


def sign_up_in_page(page: Page, name: str, address: str, password: str = "password-123",
                    part: str = "", team: str = "") -> None:
    page.get_by_role("button", name="Sign up").first.click()
    dialog = page.locator("#auth-dialog")
    form = dialog.locator("#signup-form")
    expect(form).to_be_visible()
    form.get_by_label("Name").fill(name)
    form.get_by_label("Email").fill(address)
    form.get_by_label("Password").fill(password)
    if part:
        form.get_by_label("Part (optional)").fill(part)
    if team:
        form.get_by_label("Team (optional)").fill(team)
    form.get_by_role("button", name="Create account").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#account .who-name")).to_have_text(name)


def log_in_in_page(page: Page, address: str, password: str = "password-123") -> None:
    page.locator("#account").get_by_role("button", name="Log in").click()
    dialog = page.locator("#auth-dialog")
    form = dialog.locator("#login-form")
    form.get_by_label("Email").fill(address)
    form.get_by_label("Password").fill(password)
    form.get_by_role("button", name="Log in").click()
    expect(dialog).to_be_hidden()
