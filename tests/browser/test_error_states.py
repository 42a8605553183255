"""Every way the page can fail has a state that says what happened and what to do next."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from playwright.async_api import expect
import pytest
from support.browser_pages import InvitePage, serve_login_flows, serve_on_loopback
from support.invite_site import PASSWORD, Site

from devtools.ports import free_port

pytestmark = pytest.mark.browser


@pytest.fixture
async def homeserver_without_web_login() -> AsyncIterator[str]:
    """A Matrix server that only knows application-service logins; its server name."""
    async with serve_login_flows([{"type": "m.login.application_service"}]) as server_name:
        yield server_name


@pytest.fixture
async def plain_website() -> AsyncIterator[str]:
    """A web server that is not a Matrix homeserver; its host:port."""
    app = web.Application()

    async def bakery(_: web.Request) -> web.Response:
        return web.Response(text="<h1>Our bakery</h1>", content_type="text/html", status=404)

    app.router.add_get("/{tail:.*}", bakery)
    async with serve_on_loopback(app) as server_name:
        yield server_name


async def open_link_as(site: Site, browser_context, screenshots, room_name: str, args: str = ""):
    room_id = await site.room(room_name)
    link = await site.link(room_id, args)
    page = InvitePage(await browser_context(), screenshots)
    await page.open(link)
    return page, room_id, link


async def test_wrong_password_then_rate_limited_then_in(site: Site, browser_context, screenshots):
    page, room_id, _ = await open_link_as(site, browser_context, screenshots, "Choir")
    user = await site.user()
    await page.enter_matrix_id(user.user_id)
    error = page.page.locator("#password-error")
    for attempt in range(3):  # Synapse allows three failures per account, then says wait
        await page.sign_in_with_password(f"wrong-{attempt}")
        await expect(error).to_have_text(
            "Wrong password for this Matrix ID. Check it and try again."
        )
        if attempt == 0:
            assert await page.focused_id() == "password"
            await expect(page.page.get_by_label("Password")).to_have_attribute(
                "aria-invalid", "true"
            )
            await page.shot("wrong-password")
    await page.sign_in_with_password(PASSWORD)
    await expect(error).to_contain_text("Too many sign-in attempts")
    submit = page.page.locator("#password-submit")
    await expect(submit).to_be_disabled()
    await expect(submit).to_contain_text("wait")
    await page.shot("rate-limited")
    await expect(submit).to_be_enabled(timeout=60_000)  # the countdown (Synapse: 10 s) ends
    await page.sign_in_with_password(PASSWORD)
    await page.wait_for("state-done")
    await page.shot("invited-after-waiting")
    await user.wait_for_invite(room_id)


async def test_unreachable_homeserver(site: Site, browser_context, screenshots):
    page, _, _ = await open_link_as(site, browser_context, screenshots, "Unreachable")
    await page.enter_matrix_id(f"@someone:localhost:{free_port()}")  # nothing listens there
    title, text = await page.problem()
    assert title == "We could not reach your homeserver"
    assert "did not answer" in text
    await page.shot("unreachable")
    await page.page.get_by_role("button", name="Check the address").click()
    await page.wait_for("state-mxid")
    assert await page.focused_id() == "homeserver"  # where the fix goes
    await page.shot("enter-homeserver-address")
    # The visitor types their homeserver's real address and gets on.
    user = await site.user()
    await page.page.get_by_label("Your Matrix ID").fill(user.user_id)
    await page.page.get_by_label("Homeserver address").fill(site.synapse.base_url)
    await page.page.get_by_role("button", name="Continue").click()
    await page.wait_for("state-signin")


async def test_not_a_matrix_server(site: Site, browser_context, screenshots, plain_website):
    page, _, _ = await open_link_as(site, browser_context, screenshots, "Not Matrix")
    await page.enter_matrix_id(f"@baker:{plain_website}")
    title, text = await page.problem()
    assert title == "That is not a Matrix homeserver"
    assert "answers, but not as a Matrix homeserver" in text
    await page.shot("not-matrix")


async def test_homeserver_offering_neither_password_nor_sso(
    site: Site, browser_context, screenshots, homeserver_without_web_login
):
    page, _, link = await open_link_as(site, browser_context, screenshots, "No web login")
    await page.enter_matrix_id(f"@bridge:{homeserver_without_web_login}")
    title, text = await page.problem()
    assert title == "Your homeserver does not allow signing in here"
    assert "neither password sign-in nor single sign-on" in text
    # No dead end: the way in by direct message is open, with the exact message to send.
    alternative = page.page.locator("#bot-alternative")
    await expect(alternative).to_have_attribute("open", "")
    token = link.split("#", 1)[1]
    await expect(page.page.locator("#claim-command")).to_have_text(f"!invitebot claim {token}")
    await expect(page.page.locator("#bot-link")).to_have_text(site.bot.user_id)
    await page.shot("no-usable-login")


@pytest.mark.parametrize("status", ["expired", "used_up", "revoked", "unknown", "missing"])
async def test_links_that_no_longer_work(site: Site, browser_context, screenshots, status: str):
    room_id = await site.room(f"Closed door ({status})")
    link = await site.link(room_id, "--uses 1")
    url, token = link.split("#", 1)
    if status == "expired":
        site.expire_link(token)
    elif status == "used_up":
        other = await site.user("first")
        page = InvitePage(await browser_context(), screenshots)
        await page.open(link)
        await page.enter_matrix_id(other.user_id)
        await page.sign_in_with_password(PASSWORD)
        await page.wait_for("state-done")
    elif status == "revoked":
        await site.admin.send_text(room_id, f"!invitebot revoke {site.link_id(token)}")
        await site.admin.wait_for_message(
            room_id, lambda c: "revoked" in c.get("body", "").lower(), sender=site.bot.user_id
        )
    target = {"unknown": f"{url}#{token[::-1]}", "missing": url}.get(status, link)
    page = InvitePage(await browser_context(), screenshots)
    await page.open(target)
    problem = await page.wait_for("state-link-problem")
    expected = {
        "expired": "This invite link has expired.",
        "used_up": "This invite link has been used as many times as it allows.",
        "revoked": "This invite link was withdrawn by a room admin.",
        "unknown": "This invite link is not valid. Check that you copied all of it.",
        "missing": "This page needs the whole invite link, including the part after #.",
    }[status]
    await expect(problem.locator("#link-problem-text")).to_have_text(expected)
    await expect(page.page.locator("#bot-alternative")).to_be_hidden()  # it would not help
    await page.shot(f"link-{status}")


async def test_refused_invite_says_why_and_retry_works(site: Site, browser_context, screenshots):
    page, room_id, _ = await open_link_as(site, browser_context, screenshots, "Strict room")
    user = await site.user()
    await site.admin.ban(room_id, user.user_id, "testing")
    await page.enter_matrix_id(user.user_id)
    await page.sign_in_with_password(PASSWORD)
    title, _ = await page.problem()
    assert title == "The invite did not go through"
    rooms = page.page.locator("#problem-rooms")
    await expect(rooms).to_contain_text("Strict room")
    await expect(rooms).to_contain_text("You are banned from this room.")
    await expect(page.page.locator("#problem-advice")).to_contain_text("does not use up the link")
    await page.shot("invite-refused")
    # The admins lift the ban; the visitor tries again without signing in again.
    await site.admin.request(
        "POST",
        f"/_matrix/client/v3/rooms/{room_id}/unban",
        {"user_id": user.user_id},
    )
    await page.page.get_by_role("button", name="Try again").click()
    await page.wait_for("state-done")
    await page.shot("invited-after-retry")
    await user.wait_for_invite(room_id)
