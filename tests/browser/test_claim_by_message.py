"""No password at hand: the page hands over the exact message to send the bot in a direct
chat, and sending it (from the person's own Matrix account) gets them invited."""

from __future__ import annotations

from playwright.async_api import expect
import pytest
from support.browser_pages import InvitePage
from support.invite_site import Site

pytestmark = pytest.mark.browser


async def test_message_the_bot_instead(site: Site, browser_context, screenshots):
    room_id = await site.room("Messaging fans")
    link = await site.link(room_id)
    user = await site.user()
    browser = await browser_context(permissions=["clipboard-read", "clipboard-write"])
    page = InvitePage(browser, screenshots)
    await page.open(link)
    await page.wait_for("state-mxid")
    await browser.get_by_text("No password at hand? Message the bot instead").click()
    await expect(browser.locator("#bot-link")).to_have_text(site.bot.user_id)
    assert await browser.locator("#bot-link").get_attribute("href") == (
        f"https://matrix.to/#/{site.bot.user_id}"
    )
    # This bot's client has no encryption set up: the page says to start a plain chat.
    await expect(browser.locator("#bot-unencrypted")).to_be_visible()
    await browser.get_by_role("button", name="Copy").click()
    await expect(browser.get_by_role("button", name="Copied")).to_be_visible()
    await page.shot("message-the-bot")
    message = await browser.evaluate("navigator.clipboard.readText()")
    assert message == f"!invitebot claim {link.split('#', 1)[1]}"

    # What the person does next, in their own Matrix app: a direct chat, then the message.
    dm = await user.create_dm(site.bot.user_id)
    await user.wait_for_message(dm, sender=site.bot.user_id, timeout=60)  # the greeting
    await user.send_text(dm, message)
    result = await user.wait_for_message(
        dm,
        lambda c: c.get("body", "").startswith("How your invites went"),
        sender=site.bot.user_id,
        timeout=70,
    )
    assert "Messaging fans" in result["body"]
    await user.wait_for_invite(room_id)
