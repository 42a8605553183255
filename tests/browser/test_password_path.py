"""From invite link to real invite with a password, in Chromium, against real servers."""

from __future__ import annotations

from urllib.parse import quote

from playwright.async_api import Request, Response, expect
import pytest
from support.browser_pages import InvitePage
from support.invite_site import PASSWORD, Site, device_ids

pytestmark = pytest.mark.browser


async def test_password_sign_in_gets_a_real_invite(site: Site, browser_context, screenshots):
    room_id = await site.room("Gardening club", topic="Seeds, soil and the odd slug.")
    link = await site.link(room_id, "--uses 5")
    user = await site.user()
    devices_before = await device_ids(user)
    page = InvitePage(await browser_context(), screenshots)
    # Everything the browser sends, and the access token the homeserver hands out.
    sent: list[Request] = []
    access_tokens: list[str] = []
    page.page.on("request", lambda request: sent.append(request))

    async def on_response(response: Response) -> None:
        if response.url.endswith("/_matrix/client/v3/login") and response.request.method == "POST":
            access_tokens.append((await response.json())["access_token"])

    page.page.on("response", on_response)

    await page.open(link)
    await page.wait_for("state-mxid")
    await expect(page.page.locator("h1")).to_have_text("Join Gardening club")
    await expect(page.page.locator("#link-rooms")).to_contain_text("Seeds, soil and the odd slug.")
    await expect(page.page.locator("#link-limits")).to_contain_text("5 more times")
    assert await page.focused_id() == "mxid"
    await page.shot("link-page")

    await page.enter_matrix_id(user.user_id)
    await page.wait_for("state-signin")
    await expect(page.page.locator("#signin-user")).to_have_text(user.user_id)
    await expect(page.page.locator("#signin-privacy")).to_contain_text(
        "Your password goes only to your own homeserver."
    )
    await page.shot("sign-in")
    await page.sign_in_with_password(PASSWORD)

    done = await page.wait_for("state-done")
    await expect(done.locator("#done-title")).to_have_text("You are invited")
    await page.shot("invited")
    open_link = done.get_by_role("link", name="Open with matrix.to")
    assert room_id in await open_link.get_attribute("href")
    app_link = done.get_by_role("link", name="Open in my Matrix app")
    assert (await app_link.get_attribute("href")).startswith("matrix:roomid/")
    client_link = done.get_by_role("link", name="Open in Element")  # the operator's choice
    assert await client_link.get_attribute("href") == (
        "https://app.element.io/#/room/" + quote(room_id, safe="")
    )

    # The invite is real, and the temporary sign-in left no device behind.
    await user.wait_for_invite(room_id)
    assert await device_ids(user) == devices_before
    assert await page.page.evaluate("document.cookie") == ""  # the session cookie is HttpOnly

    # The access token went to the homeserver only; the bot saw the OpenID token alone.
    [access_token] = access_tokens
    to_plugin = [r for r in sent if r.url.startswith(site.plugin.web_url)]
    assert any(r.url.endswith("api/session") and r.method == "POST" for r in to_plugin)
    for request in to_plugin:
        seen = request.url + str(await request.all_headers()) + (request.post_data or "")
        assert access_token not in seen and PASSWORD not in seen, request.url
