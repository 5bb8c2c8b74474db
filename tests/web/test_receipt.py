"""The vote receipt in the browser: shown after a vote, verified with Web Crypto against the
published verifier key, refused when any part of it is altered, downloadable as a file that the
offline verifier accepts, and found again from the server after a vote cast elsewhere."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.reliability.helpers import Server, http, run_cli
from tests.web.browser import PRESIDENT, api_user, api_vote, log_in_in_page, sign_up_in_page
from tests.web.conftest import Shot

CHECKS = ["check_body", "check_leaf", "check_inclusion", "check_checkpoint", "check_key", "check_signature"]


def vote_in_page(page: Page, site: Server, candidate: str = "고은") -> None:
    page.goto(site.url + "/polls/president")
    sign_up_in_page(page, "Rae", f"rae-{uuid.uuid4().hex[:8]}@example.com")
    page.locator("#vote-card").get_by_text(candidate).click()
    page.get_by_role("button", name="Vote", exact=True).click()
    expect(page.locator(".receipt")).to_be_visible()


def verify(page: Page) -> str:
    """Press Verify; the outcome's status."""
    page.get_by_role("button", name="Verify in this browser").click()
    banner = page.locator(".verification .banner")
    expect(banner).to_be_visible()
    status: str = banner.get_attribute("data-status") or ""
    return status


def failed_checks(page: Page) -> list[str]:
    failed: list[str] = page.locator(".verification .check-bad").evaluate_all(
        "items => items.map(i => i.dataset.check)")
    return failed


def test_a_receipt_from_a_real_vote_verifies_in_the_browser(site: Server, page: Page, shot: Shot) -> None:
    vote_in_page(page, site)
    receipt = page.locator(".receipt")
    expect(receipt).to_contain_text("Your receipt")
    assert verify(page) == "verified"
    expect(page.locator(".verification .banner")).to_have_text("Verified: your vote is in the signed ledger.")
    checks = page.locator(".verification .check-ok")
    assert checks.evaluate_all("items => items.map(i => i.dataset.check)") == CHECKS
    expect(checks.first).to_contain_text("The receipt holds a vote for 고은 in 13기 회장 선거")
    status, _, body = http("GET", f"{site.url}/api/v1/log/key")
    assert status == 200
    key = json.loads(body)["verifierKey"]
    expect(receipt.locator(".fact dd[title]").last).to_have_attribute("title", key)
    shot(page, "receipt-en-verified")


TAMPERINGS = {
    # another candidate in the body: its hash is no longer the leaf
    "body": ("r => { r.body = r.body.replace(/\"candidate_id\":\\d+/, '\"candidate_id\":1'); }",
             "check_leaf"),
    # one sibling of the path changed: the proof leads to another root
    "proof": ("r => { r.inclusionProof[0] = btoa('x'.repeat(32)); }", "check_inclusion"),
    # the tree size in the signed text changed: the signature no longer holds
    "checkpoint": ("r => { r.checkpoint = r.checkpoint.replace(/\\n(\\d+)\\n/,"
                   " (_, n) => `\\n${Number(n) + 1}\\n`); r.treeSize += 1; }", "check_signature"),
}


@pytest.mark.parametrize("part", list(TAMPERINGS))
def test_a_tampered_receipt_does_not_verify(site: Server, page: Page, shot: Shot, part: str) -> None:
    vote_in_page(page, site)
    change, broken = TAMPERINGS[part]
    # the page keeps the receipt in this browser's storage, whence it shows it again after a reload
    page.evaluate(f"""() => {{
        const all = JSON.parse(localStorage.getItem("vote-ledger.receipts"));
        for (const kept of Object.values(all)) ({change})(kept.receipt);
        localStorage.setItem("vote-ledger.receipts", JSON.stringify(all));
    }}""")
    page.reload()
    expect(page.locator(".receipt")).to_be_visible()
    assert verify(page) == "failed"
    expect(page.locator(".verification .banner")).to_have_text("This receipt does not verify.")
    assert broken in failed_checks(page)
    if part == "body":
        shot(page, "receipt-en-tampered")


def test_the_downloaded_receipt_is_the_votes_and_the_offline_verifier_accepts_it(
    site: Server, page: Page, tmp_path: Path
) -> None:
    vote_in_page(page, site, "유현우")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download receipt").click()
    assert re.fullmatch(r"vote-receipt-president-\d+\.json", download.value.suggested_filename)
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    receipt: dict[str, Any] = json.loads(saved.read_text(encoding="utf-8"))
    assert json.loads(receipt["body"])["data"]["candidate_id"] == PRESIDENT["유현우"]
    key = json.loads(http("GET", f"{site.url}/api/v1/log/key")[2])["verifierKey"]
    checked = run_cli("verify", "receipt", str(saved), "--key", key)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_without_ed25519_in_the_browser_the_page_says_so(site: Server, page: Page) -> None:
    page.add_init_script("""
        const importKey = crypto.subtle.importKey.bind(crypto.subtle);
        crypto.subtle.importKey = (format, data, algorithm, ...rest) =>
            algorithm && algorithm.name === "Ed25519"
                ? Promise.reject(new DOMException("Ed25519 is not supported", "NotSupportedError"))
                : importKey(format, data, algorithm, ...rest);
    """)
    vote_in_page(page, site)
    assert verify(page) == "unsupported"
    expect(page.locator(".verification .banner")).to_contain_text("cannot check Ed25519 signatures")
    assert failed_checks(page) == []


def test_a_vote_cast_elsewhere_shows_its_receipt_from_the_server(site: Server, page: Page) -> None:
    address = f"sam-{uuid.uuid4().hex[:8]}@example.com"
    answer = api_vote(site, api_user(site, address), "president", PRESIDENT["정시원"])
    page.goto(site.url + "/polls/president")
    log_in_in_page(page, address)
    expect(page.locator(".receipt")).to_contain_text(f"#{answer['seq']}")
    assert verify(page) == "verified"
