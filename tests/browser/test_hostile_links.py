"""Links that are broken, and a visitor who is too fast: the page always says what happened.

A malformed fragment lands on "malformed", never on an endless "Checking your invite
link…"; an unexpected failure while starting lands on a problem state with a reload; the
plugin's own 429 (its rate limits) shows the wait and counts it down, then lets the
visitor try again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
import contextlib
from pathlib import Path
import re
import secrets

from playwright.async_api import Route, expect
import pytest
import pytest_asyncio
from support.browser_pages import InvitePage
from support.invite_site import PASSWORD, Site

from devtools.stack import RunningStack, running_stack

pytestmark = pytest.mark.browser

MALFORMED = "This invite link is malformed or incomplete"
WAITING = re.compile(r"^Try again \(wait \d+ s\)$")


@pytest.mark.parametrize(
    "fragment",
    ["%", "%E0%A4%A", "abc%zz", "x" * 5000, "abc", "A" * 31 + "!x", "%00" * 20],
    ids=["lone-percent", "cut-utf8-escape", "bad-escape", "5000-chars", "short", "odd", "nul"],
)
async def test_malformed_fragments_say_so(
    site: Site, browser_context, screenshots, fragment: str
) -> None:
    page = InvitePage(await browser_context(), screenshots)
    await page.open(f"{site.plugin.web_url}invite#{fragment}")
    problem = await page.wait_for("state-link-problem")
    await expect(problem.locator("#link-problem-text")).to_contain_text(MALFORMED)
    await expect(page.page.locator("#link-loading")).to_be_hidden()
    await expect(page.page.locator("#bot-alternative")).to_be_hidden()
    await page.shot("malformed")


async def test_trailing_punctuation_from_a_chat_app_is_forgiven(
    site: Site, browser_context, screenshots
) -> None:
    room_id = await site.room("Punctuated")
    link = await site.link(room_id)
    page = InvitePage(await browser_context(), screenshots)
    await page.open(link + ").")
    await page.wait_for("state-mxid")
    await expect(page.page.locator("#link-rooms")).to_contain_text("Punctuated")


async def test_an_unexpected_failure_at_start_offers_a_reload(
    site: Site, browser_context, screenshots
) -> None:
    page = InvitePage(await browser_context(), screenshots)

    async def nonsense(route: Route) -> None:  # 200, but nothing the page can use
        await route.fulfill(status=200, content_type="application/json", body='{"rooms": 5}')

    await page.page.route("**/api/links/inspect", nonsense)
    await page.open(f"{site.plugin.web_url}invite#{'A' * 32}")
    title, _ = await page.problem()
    assert title == "This page could not start"
    await expect(page.page.locator("#link-loading")).to_be_hidden()
    await expect(page.page.locator("#problem-retry")).to_have_text("Reload the page")
    await expect(page.page.locator("#problem-back")).to_be_hidden()
    await page.shot("could-not-start")
    await page.page.unroute("**/api/links/inspect")
    await page.page.locator("#problem-retry").click()
    problem = await page.wait_for("state-link-problem")  # reloaded: the real answer
    await expect(problem.locator("#link-problem-text")).to_contain_text("not valid")


async def test_lost_connection_while_checking_the_link_can_be_retried(
    site: Site, browser_context, screenshots
) -> None:
    room_id = await site.room("Flaky network")
    link = await site.link(room_id)
    page = InvitePage(await browser_context(), screenshots)

    async def drop(route: Route) -> None:
        await route.abort("connectionreset")

    await page.page.route("**/api/links/inspect", drop)
    await page.open(link)
    title, text = await page.problem()
    assert (title, text.split(".")[0]) == (
        "Something stopped us",
        "The invite service could not be reached",
    )
    await expect(page.page.locator("#link-loading")).to_be_hidden()
    await page.shot("no-connection")
    await page.page.unroute("**/api/links/inspect")
    await page.page.locator("#problem-retry").click()
    await page.wait_for("state-mxid")
    await expect(page.page.locator("#link-rooms")).to_contain_text("Flaky network")


# ---- the plugin's rate limits -------------------------------------------------------

LimitedStack = Callable[[dict], Awaitable[RunningStack]]


@pytest_asyncio.fixture(loop_scope="session")
async def limited_stack(site: Site, tmp_path: Path) -> AsyncIterator[LimitedStack]:
    """``await limited_stack(rate_limits)``: another instance of the plugin, with its own
    admin and bot, on the session's Synapse and maubot, with these `rate_limits`."""
    async with contextlib.AsyncExitStack() as stacks:

        async def make(rate_limits: dict) -> RunningStack:
            return await stacks.enter_async_context(
                running_stack(
                    tmp_path / secrets.token_hex(3),
                    synapse=site.synapse,
                    maubot=site.maubot,
                    instance_config={"rate_limits": rate_limits},
                    password=PASSWORD,
                )
            )

        yield make


def off(**limits: dict) -> dict:
    """Every limit off but these."""
    return {name: {"burst": 0} for name in ("session", "link_inspect", "link_claim")} | limits


async def test_too_many_link_checks_show_the_wait(
    limited_stack: LimitedStack, browser_context, screenshots
) -> None:
    stack = await limited_stack(off(link_inspect={"burst": 1, "refill": "6s"}))
    page = InvitePage(await browser_context(), screenshots)
    await page.open(f"{stack.web_url}invite#{'B' * 32}")
    await page.wait_for("state-link-problem")  # the one allowed check: no such link
    await page.page.reload()
    title, text = await page.problem()
    assert title == "Please wait a moment"
    assert "Wait a little" in text
    await expect(page.page.locator("#link-loading")).to_be_hidden()
    retry = page.page.locator("#problem-retry")
    await expect(retry).to_be_disabled()
    await expect(retry).to_have_text(WAITING)
    first = await retry.inner_text()
    await page.shot("too-many-link-checks")
    await expect(retry).not_to_have_text(first, timeout=15_000)  # it counts down
    await expect(page.page.locator("#problem-back")).to_be_hidden()
    await expect(retry).to_be_enabled(timeout=60_000)  # the 6 s refill, with room to spare
    await expect(retry).to_have_text("Try again")
    await retry.click()
    problem = await page.wait_for("state-link-problem")  # checked again, without a reload
    await expect(problem.locator("#link-problem-text")).to_contain_text("not valid")


async def test_too_many_sign_ins_show_the_wait(
    limited_stack: LimitedStack, browser_context, screenshots
) -> None:
    stack = await limited_stack(off(session={"burst": 1, "refill": "12s"}))
    room_id = await stack.room("Busy room")
    link = await stack.link(room_id)
    first, second = await stack.user("first"), await stack.user("second")

    page = InvitePage(await browser_context(), screenshots)
    await page.open(link)
    await page.enter_matrix_id(first.user_id)
    await page.sign_in_with_password(PASSWORD)
    await page.wait_for("state-done")  # the one sign-in the limit allows

    page = InvitePage(await browser_context(), screenshots)
    await page.open(link)
    await page.enter_matrix_id(second.user_id)
    await page.sign_in_with_password(PASSWORD)
    title, _ = await page.problem()
    assert title == "Please wait a moment"
    retry = page.page.locator("#problem-retry")
    await expect(retry).to_be_disabled()
    await expect(retry).to_have_text(WAITING)
    await page.shot("too-many-sign-ins")
    await expect(retry).to_be_enabled(timeout=60_000)  # the 12 s refill, with room to spare
    await retry.click()
    await page.enter_matrix_id(second.user_id)
    await page.sign_in_with_password(PASSWORD)
    await page.wait_for("state-done")
    await page.shot("invited-after-waiting")
    await second.wait_for_invite(room_id)
