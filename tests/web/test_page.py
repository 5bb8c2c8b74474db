"""The page in a real browser (Debian's Chromium, headless, through Playwright) against a real
``vote-ledger serve``: sign up, log in, vote, watch the bars move as others vote, refusals,
reloads, a vote cast with the keyboard alone, a phone's screen, and the projector view."""

from __future__ import annotations

import re
import uuid

from playwright.sync_api import Browser, Page, expect

from tests.reliability.helpers import Server
from tests.web.browser import DEMO_DAY, PRESIDENT, api_user, api_vote, log_in_in_page, sign_up_in_page
from tests.web.conftest import Shot


def email(prefix: str) -> str:
    """An address no other test of the module's server has used."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}@example.com"


def bar(page: Page, candidate: int) -> str:
    return f'#bars [data-candidate="{candidate}"]'


def test_a_person_signs_up_votes_and_watches_the_bars_move_as_others_vote(
    site: Server, page: Page, shot: Shot
) -> None:
    page.goto(site.url + "/")
    expect(page.get_by_role("heading", name="Polls", level=1)).to_be_visible()
    expect(page.locator(".poll-card")).to_have_count(3)
    shot(page, "home-en-desktop")
    page.get_by_role("link", name="13기 회장 선거").click()
    expect(page).to_have_url(re.compile(r"/polls/president$"))
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    expect(page.locator(bar(page, 1))).to_be_visible()
    before = int(page.locator("#total").inner_text())
    page.locator("#vote-card").get_by_role("button", name="Sign up").click()
    expect(page.locator("#signup-form")).to_be_visible()
    shot(page, "signup-dialog-en")
    page.keyboard.press("Escape")
    expect(page.locator("#auth-dialog")).to_be_hidden()

    sign_up_in_page(page, "Ada", email("ada"))
    page.locator("#vote-card").get_by_text("고은").click()
    page.get_by_role("button", name="Vote", exact=True).click()
    expect(page.locator("#vote-card .banner-ok")).to_contain_text("Your vote is in the ledger at entry #")
    expect(page.locator("#vote-card .voted-note")).to_have_text("✓You voted for 고은.")
    expect(page.locator(bar(page, PRESIDENT["고은"]))).to_have_class(re.compile("is-mine"))
    expect(page.locator("#total")).to_have_text(str(before + 1))

    # another client votes through the API: the bars move without a reload
    seq = api_vote(site, api_user(site, email("bo")), "president", PRESIDENT["정시원"])["seq"]
    expect(page.locator("#total")).to_have_text(str(before + 2))
    expect(page.locator("#seq")).to_have_text(f"#{seq}")
    expect(page.locator(bar(page, PRESIDENT["정시원"]) + " .bar-votes")).not_to_have_text("0 votes")
    width = page.locator(bar(page, PRESIDENT["정시원"]) + " .bar-fill").evaluate("e => e.style.width")
    assert width != "0%"
    shot(page, "poll-en-after-vote")

    # a reload keeps the session, the ballot and the live results
    page.reload()
    expect(page.locator("#account .who-name")).to_have_text("Ada")
    expect(page.locator("#vote-card .voted-note")).to_have_text("✓You voted for 고은.")
    expect(page.locator("#total")).to_have_text(str(before + 2))
    expect(page.get_by_role("button", name="Vote", exact=True)).to_have_count(0)


def test_a_refused_vote_shows_the_servers_message(site: Server, page: Page, shot: Shot) -> None:
    address = email("cy")
    token = api_user(site, address)
    page.goto(site.url + "/polls/president")
    log_in_in_page(page, address)
    page.locator("#vote-card").get_by_text("유현우").click()
    # meanwhile the same person votes from another device
    api_vote(site, token, "president", PRESIDENT["정시원"])
    page.get_by_role("button", name="Vote", exact=True).click()
    alert = page.locator("#vote-card .form-error")
    expect(alert).to_be_visible()
    expect(alert).to_have_text("You have already voted in poll 'president'")
    expect(alert).to_be_focused()
    shot(page, "poll-en-refused")


def test_own_team_is_not_offered_and_hidden_results_say_when_they_open(
    site: Server, page: Page, shot: Shot
) -> None:
    page.goto(site.url + "/polls/demo-day")
    sign_up_in_page(page, "Dee", email("dee"), team="Hooking")
    expect(page.locator("#hidden-note")).to_contain_text("The results open when the poll closes.")
    expect(page.locator("#bars")).to_be_hidden()
    own = page.locator(f'#vote-card input[value="{DEMO_DAY["Hooking"]}"]')
    expect(own).to_be_disabled()
    page.locator("#vote-card").get_by_text("Aetheria").click()
    page.get_by_role("button", name="Vote", exact=True).click()
    expect(page.locator("#vote-card .voted-note")).to_have_text("✓You voted for Aetheria.")
    expect(page.get_by_role("button", name="Change my vote")).to_be_visible()
    expect(page.locator("#hidden-note")).to_be_visible()  # voting does not open these results
    shot(page, "poll-en-hidden-after-close")


def test_after_vote_results_open_once_you_vote_and_your_ballots_are_listed(
    site: Server, page: Page, shot: Shot
) -> None:
    page.goto(site.url + "/polls/frontend-leader")
    sign_up_in_page(page, "Eun", email("eun"), part="FE")
    expect(page.locator("#hidden-note")).to_contain_text("The results open once you have voted.")
    page.locator("#vote-card").get_by_text("박지훈").click()
    page.get_by_role("button", name="Vote", exact=True).click()
    expect(page.locator("#bars")).to_be_visible()
    expect(page.locator('#bars [data-candidate="8"]')).to_have_class(re.compile("is-mine"))
    page.get_by_role("link", name="Back to all polls").click()
    ballots = page.locator(".ballots")
    expect(ballots.get_by_role("heading", name="Your ballots")).to_be_visible()
    expect(ballots.locator(".ballot.is-voted")).to_have_text(re.compile("프론트엔드 파트장 투표.*박지훈"))
    shot(page, "home-en-ballots")
    # another part's member is told before trying, and the form is not offered
    page.get_by_role("button", name="Log out").click()
    page.goto(site.url + "/polls/frontend-leader")
    sign_up_in_page(page, "Bea", email("bea"), part="BE")
    expect(page.locator("#vote-card")).to_contain_text("Only members of part FE vote in this poll.")
    expect(page.locator("#vote-card form")).to_have_count(0)


def test_a_vote_with_the_keyboard_alone_in_korean(site: Server, browser: Browser, shot: Shot) -> None:
    context = browser.new_context(locale="ko-KR", viewport={"width": 1280, "height": 860})
    page = context.new_page()
    try:
        address = email("key")
        api_user(site, address)
        page.goto(site.url + "/polls/president")
        expect(page.get_by_role("heading", name="13기 회장 선거")).to_be_visible()
        expect(page.locator(".lang-switch [aria-pressed=true]")).to_have_attribute("aria-label", "한국어")

        def tab_to(matches: str) -> None:
            for _ in range(40):
                page.keyboard.press("Tab")
                if page.evaluate(f"document.activeElement.matches({matches!r})"):
                    return
            raise AssertionError(f"Tab never reached {matches}")

        tab_to("#vote-card button")  # 로그인
        expect(page.locator(":focus")).to_have_text("로그인")
        page.keyboard.press("Enter")
        expect(page.locator("#login-email")).to_be_focused()
        page.keyboard.type(address)
        page.keyboard.press("Tab")
        page.keyboard.type("password-123")
        page.keyboard.press("Enter")
        expect(page.locator("#auth-dialog")).to_be_hidden()
        tab_to("#vote-card input[type=radio]")
        page.keyboard.press("ArrowDown")  # the second candidate
        expect(page.locator(f'#vote-card input[value="{PRESIDENT["고은"]}"]')).to_be_checked()
        tab_to("#vote-card button[type=submit]")
        expect(page.locator(":focus")).to_have_text("투표하기")
        shot(page, "poll-ko-keyboard-focus")
        page.keyboard.press("Enter")
        expect(page.locator("#vote-card .voted-note")).to_have_text("✓고은 후보에게 투표했어요.")
        expect(page.locator(bar(page, PRESIDENT["고은"]) + " .pill-mine")).to_have_text("내 선택")
        shot(page, "poll-ko-after-vote")
    finally:
        context.close()


def test_the_language_switch_changes_the_page_and_is_remembered(site: Server, page: Page) -> None:
    page.goto(site.url + "/")
    expect(page.get_by_role("heading", name="Polls", level=1)).to_be_visible()
    page.get_by_role("button", name="한국어").click()
    expect(page.get_by_role("heading", name="투표", level=1)).to_be_visible()
    expect(page.locator("html")).to_have_attribute("lang", "ko")
    page.reload()
    expect(page.get_by_role("heading", name="투표", level=1)).to_be_visible()
    page.get_by_role("button", name="English").click()
    expect(page.get_by_role("heading", name="Polls", level=1)).to_be_visible()


def test_on_a_phone_nothing_overflows_and_the_vote_comes_first(
    site: Server, browser: Browser, shot: Shot
) -> None:
    context = browser.new_context(locale="ko-KR", viewport={"width": 390, "height": 844},
                                  device_scale_factor=2, is_mobile=True, has_touch=True)
    page = context.new_page()
    try:
        page.goto(site.url + "/")
        expect(page.locator(".poll-card")).to_have_count(3)
        shot(page, "home-ko-phone")
        page.get_by_role("link", name="13기 회장 선거").click()
        expect(page.locator(bar(page, 1))).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        vote_top = page.locator("#vote-card").bounding_box()
        results_top = page.locator(".results-card").bounding_box()
        assert vote_top is not None and results_top is not None
        assert vote_top["y"] < results_top["y"]
        shot(page, "poll-ko-phone")
    finally:
        context.close()


def test_the_projector_view_shows_live_bars_in_large_type_and_no_controls(
    site: Server, browser: Browser, shot: Shot
) -> None:
    context = browser.new_context(locale="ko-KR", viewport={"width": 1920, "height": 1080})
    page = context.new_page()
    try:
        page.goto(site.url + "/polls/president/screen")
        title = page.locator("#screen-title")
        expect(title).to_have_text("13기 회장 선거")
        assert float(title.evaluate("e => parseFloat(getComputedStyle(e).fontSize)")) >= 60
        expect(page.locator("body")).to_have_attribute("data-live", "live")
        expect(page.locator("#screen-bars .bar-row")).to_have_count(3)
        assert page.locator("button, input, select, textarea, a").count() == 0
        total = int(page.locator("#screen-total").inner_text())
        api_vote(site, api_user(site, email("fan")), "president", PRESIDENT["유현우"])
        expect(page.locator("#screen-total")).to_have_text(str(total + 1))
        shot(page, "screen-ko-1080p")
    finally:
        context.close()


def test_a_browser_gets_the_page_at_the_root_and_a_json_client_the_links(site: Server, page: Page) -> None:
    response = page.goto(site.url + "/")
    assert response is not None and response.headers["content-type"].startswith("text/html")
    answer = page.request.get(site.url + "/", headers={"Accept": "application/json"})
    assert answer.status == 200
    assert answer.json() == {"api": "/api/v1", "openapi": "/openapi.json", "docs": "/docs"}


def test_the_page_loads_nothing_from_another_origin(site: Server, page: Page) -> None:
    origins: set[str] = set()
    page.on("request", lambda request: origins.add(re.sub(r"^(\w+://[^/]+).*", r"\1", request.url)))
    page.goto(site.url + "/polls/president")
    expect(page.locator(bar(page, 1))).to_be_visible()
    assert origins == {site.url}
