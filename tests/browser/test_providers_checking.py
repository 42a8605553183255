"""Back from a provider, the binding's page says at once that the check is running, and
each kind of refusal reads as its own: the provider said no, the account was used
already, the provider could not tell, the person cancelled. In Chromium, against the real
stack, with the local GitHub holding its answers for as long as the test needs."""

from __future__ import annotations

import json
import secrets

from playwright.async_api import expect
import pytest
from support.browser_pages import JoinPage
from support.invite_site import PASSWORD, Site, bind
from test_access import axe_violations

pytestmark = pytest.mark.browser

TEAM_RULE = "github team:matrix-org/core"


async def test_the_check_is_shown_and_announced_while_github_is_slow(
    site: Site, providers, browser_context, screenshots
):
    github = providers.github
    room_id = await site.room("Slow GitHub")
    link = await bind(site, room_id, TEAM_RULE)
    user = await site.user()
    github.sign_in_as(
        github.add_account(f"slow{secrets.token_hex(2)}").join_team("matrix-org", "core")
    )
    # The page's CSP rightly refuses injected scripts: bypass it for the checker only.
    browser = await browser_context(bypass_csp=True)
    page = JoinPage(browser, screenshots)
    await page.open(link)
    await page.enter_matrix_id(user.user_id)
    await page.sign_in_with_password(PASSWORD)
    await page.wait_for("state-providers")

    # GitHub does not answer the bot's code exchange until released (it has 10 s).
    release = github.hold("token")
    try:
        await page.sign_in_at("GitHub")
        progress = await page.wait_for("state-progress", timeout=5_000)
        current = progress.locator("#steps li[aria-current='step']")
        await expect(current).to_have_text("Checking your GitHub account…", timeout=5_000)
        await expect(browser.locator("#announcer")).to_have_text(
            "Checking your GitHub account…", timeout=5_000
        )
        await page.shot("checking")
        assert await axe_violations(browser) == []
        # Still checking: the page waits for the bot, it does not guess.
        await expect(current).to_have_text("Checking your GitHub account…")
    finally:
        release()
    done = await page.wait_for("state-done")
    await expect(done.locator("#done-title")).to_have_text("You are invited")
    await page.shot("invited-after-the-wait")
    await user.wait_for_invite(room_id)


async def test_each_kind_of_refusal_has_its_own_heading(
    site: Site, providers, browser_context, screenshots
):
    github = providers.github
    room_id = await site.room("Four kinds of no")
    link = await bind(site, room_id, TEAM_RULE)
    shared = github.add_account(f"seat{secrets.token_hex(2)}").join_team("matrix-org", "core")
    outsider = github.add_account(f"out{secrets.token_hex(2)}").join_org("matrix-org")
    browser = await browser_context(bypass_csp=True)
    page = JoinPage(browser, screenshots)
    headings: dict[str, str] = {}
    found: dict[str, list[str]] = {}

    async def refused(kind: str, title: str, badge: str, button: str) -> None:
        step = await page.provider_step("GitHub", title)
        await expect(step).to_have_attribute("data-problem", kind)
        await expect(step.locator(".badge")).to_have_text(badge)
        await expect(browser.locator("#announcer")).to_contain_text(f"{title}.")
        await expect(browser.locator("#provider-action")).to_have_text(button)
        assert await page.focused_id() == "providers-title"
        headings[kind] = title
        found[kind] = await axe_violations(browser)
        await page.shot(kind.replace("_", "-"))

    # Someone else got in with the shared GitHub account first.
    first = JoinPage(await browser_context(), screenshots)
    await first.open(link)
    await first.enter_matrix_id((await site.user("first")).user_id)
    await first.sign_in_with_password(PASSWORD)
    github.sign_in_as(shared)
    await first.sign_in_at("GitHub")
    await first.wait_for("state-done")

    await page.open(link)
    await page.enter_matrix_id((await site.user("refused")).user_id)
    await page.sign_in_with_password(PASSWORD)

    github.sign_in_as(outsider)
    await page.sign_in_at("GitHub")
    await refused(
        "not_qualified",
        "GitHub says you do not qualify",
        "Not admitted",
        "Sign in at GitHub again",
    )

    github.sign_in_as(shared)
    await page.sign_in_at("GitHub", "Sign in at GitHub again")
    await refused(
        "account_in_use",
        "This GitHub account was already used",
        "Already used",
        "Sign in at GitHub again",
    )

    github.fail("api", 503)
    try:
        await page.sign_in_at("GitHub", "Sign in at GitHub again")
        await refused("unknown", "GitHub could not tell us", "Not finished", "Try GitHub again")
    finally:
        github.recover()

    await page.sign_in_at("GitHub", "Try GitHub again", decision="Cancel")
    await refused(
        "cancelled",
        "You cancelled the sign-in at GitHub",
        "Cancelled",
        "Continue with GitHub",
    )

    assert len(set(headings.values())) == 4, headings
    assert not any(found.values()), json.dumps(found, indent=1)
