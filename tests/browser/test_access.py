"""The page for everyone: keyboard only, a 360 px phone, screen readers (axe-core, live
regions), dark mode, a returning visitor; and assets served from the .mbp as they should be."""

from __future__ import annotations

import json
from pathlib import Path

from playwright.async_api import Page, Response, expect
import pytest
from support.browser_pages import InvitePage
from support.invite_site import PASSWORD, Site

pytestmark = pytest.mark.browser

AXE = Path(__file__).resolve().parent / "node_modules" / "axe-core" / "axe.min.js"


async def tab_to(page: Page, presses: int = 1) -> str:
    for _ in range(presses):
        await page.keyboard.press("Tab")
    return await page.evaluate(
        "(() => { const e = document.activeElement;"
        " return (e.id || e.textContent || e.tagName).trim(); })()"
    )


async def test_keyboard_only(site: Site, browser_context, screenshots):
    room_id = await site.room("Keyboard lovers")
    link = await site.link(room_id)
    user = await site.user()
    page = InvitePage(await browser_context(), screenshots)
    keyboard = page.page.keyboard
    await page.open(link)
    await page.wait_for("state-mxid")
    assert await page.focused_id() == "mxid"  # ready to type, nothing to click first
    # Focus order follows the page: the address option, Continue, the DM alternative.
    assert await tab_to(page.page) == "My homeserver has a different address"
    assert await tab_to(page.page) == "mxid-continue"
    assert await tab_to(page.page) == "No password at hand? Message the bot instead"
    await keyboard.press("Shift+Tab")
    await keyboard.press("Shift+Tab")
    await keyboard.press("Shift+Tab")
    assert await page.focused_id() == "mxid"
    await keyboard.type(user.user_id)
    await page.shot("typed-matrix-id")
    await keyboard.press("Enter")
    await page.wait_for("state-signin")
    assert await page.focused_id() == "password"
    await keyboard.type(PASSWORD)
    await keyboard.press("Enter")
    await page.wait_for("state-done")
    # Focus lands on the result's heading, and the next Tab reaches the way into the room.
    assert await page.page.evaluate("document.activeElement.textContent") == "You are invited"
    assert await tab_to(page.page) == "Open with matrix.to"
    await page.shot("invited-focus-on-open")
    await user.wait_for_invite(room_id)


async def test_phone_sized_screen(site: Site, browser_context, screenshots):
    room_id = await site.room(
        "A room with a rather long name, to see how it wraps on a phone",
        topic="Phones are where most people open links from a chat.",
    )
    link = await site.link(room_id, "--uses 3")
    user = await site.user()
    phone = await browser_context(
        viewport={"width": 360, "height": 740},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    page = InvitePage(phone, screenshots)

    async def fits() -> None:
        width = await phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 360, f"the page is {width} px wide on a 360 px screen"

    await page.open(link)
    await page.wait_for("state-mxid")
    await fits()
    await page.shot("phone-link-page")
    await page.enter_matrix_id(user.user_id)
    await page.wait_for("state-signin")
    await fits()
    await page.shot("phone-sign-in")
    await page.sign_in_with_password(PASSWORD)
    await page.wait_for("state-done")
    await fits()
    # Buttons are easy to hit with a thumb: full width, at least 44 px high.
    box = await phone.get_by_role("link", name="Open with matrix.to").bounding_box()
    assert box["height"] >= 40 and box["width"] >= 280
    await page.shot("phone-invited")
    await user.wait_for_invite(room_id)


async def axe_violations(page: Page) -> list[str]:
    await page.add_script_tag(path=str(AXE))
    result = await page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']]}"
        for v in result["violations"]
    ]


@pytest.mark.parametrize("scheme", ["light", "dark"])
async def test_accessibility_checks_pass_in_every_state(
    site: Site, browser_context, screenshots, scheme: str
):
    room_id = await site.room(f"Accessible ({scheme})", topic="Checked by axe-core.")
    link = await site.link(room_id)
    user = await site.user()
    # The page's CSP rightly refuses injected scripts: bypass it for the checker only.
    browser = await browser_context(bypass_csp=True, color_scheme=scheme)
    page = InvitePage(browser, screenshots)
    found: dict[str, list[str]] = {}

    async def check(state: str) -> None:
        found[state] = await axe_violations(browser)
        await page.shot(f"{scheme}-{state}")

    await page.open(link)
    await page.wait_for("state-mxid")
    await browser.locator("#bot-alternative summary").click()  # open: check its contents too
    await check("link-page")
    await browser.get_by_role("button", name="Continue").click()  # empty Matrix ID
    await expect(browser.locator("#mxid-error")).to_be_visible()
    await check("matrix-id-error")
    await page.enter_matrix_id(user.user_id)
    await page.wait_for("state-signin")
    await page.sign_in_with_password("not the password")
    await expect(browser.locator("#password-error")).to_be_visible()
    await check("wrong-password")
    await page.sign_in_with_password(PASSWORD)
    await page.wait_for("state-done")
    await check("invited")
    assert not any(found.values()), json.dumps(found, indent=1)


async def test_progress_is_announced(site: Site, browser_context, screenshots):
    room_id = await site.room("Announcements")
    link = await site.link(room_id)
    user = await site.user()
    browser = await browser_context()
    page = InvitePage(browser, screenshots)
    await page.open(link)
    # Record every text the polite live region is given, as a screen reader would hear it.
    await browser.evaluate(
        """() => {
          window.heard = [];
          new MutationObserver(() => {
            const text = document.getElementById("announcer").textContent;
            if (text) window.heard.push(text);
          }).observe(document.getElementById("announcer"), {childList: true, subtree: true,
                                                           characterData: true});
        }"""
    )
    await page.enter_matrix_id(user.user_id)
    await page.sign_in_with_password(PASSWORD)
    await page.wait_for("state-done")
    # Announced 30 ms after the state shows: wait for the last one, then read them all.
    await browser.wait_for_function(
        "window.heard.some((text) => text.startsWith('You are invited'))"
    )
    heard = await browser.evaluate("window.heard")
    for step in (
        "Looking for your homeserver",
        "Signing in to your homeserver",
        "Getting a one-time proof of your Matrix ID",
        "Signing out the temporary session",
        "Claiming your invite",
        "You are invited",
    ):
        assert any(text.startswith(step) for text in heard), (step, heard)
    live = browser.locator("#announcer")
    await expect(live).to_have_attribute("role", "status")
    await expect(live).to_have_attribute("aria-live", "polite")


async def test_signed_in_visitor_is_not_asked_again(site: Site, browser_context, screenshots):
    first, second = await site.room("First room"), await site.room("Second room")
    first_link, second_link = await site.link(first), await site.link(second)
    user = await site.user()
    page = InvitePage(await browser_context(), screenshots)
    await page.open(first_link)
    await page.enter_matrix_id(user.user_id)
    await page.sign_in_with_password(PASSWORD)
    await page.wait_for("state-done")
    # A second link in the same browser: the web session from the first proof still holds.
    await page.open(second_link)
    session = await page.wait_for("state-session")
    await expect(session.locator("#session-user")).to_have_text(user.user_id)
    assert await page.focused_id() == "session-join"
    await page.shot("signed-in-already")
    await page.page.get_by_role("button", name="Join").click()
    await page.wait_for("state-done")
    await page.shot("second-room-invited")
    await user.wait_for_invite(second)
    # "Use another account" ends that session: the next visit asks for a Matrix ID again.
    await page.page.reload()
    await page.wait_for("state-session")
    await page.page.get_by_role("button", name="Use another account").click()
    await page.wait_for("state-mxid")
    await page.page.reload()
    await page.wait_for("state-mxid")


async def test_assets_come_from_the_plugin_with_the_right_headers(
    site: Site, browser_context, screenshots
):
    room_id = await site.room("Headers")
    link = await site.link(room_id)
    browser = await browser_context()
    responses: list[Response] = []
    browser.on("response", lambda response: responses.append(response))
    page = InvitePage(browser, screenshots)
    await page.open(link)
    await page.wait_for("state-mxid")
    ours = {
        r.url.split(site.plugin.web_url, 1)[1]: r
        for r in responses
        if r.url.startswith(site.plugin.web_url) and r.request.method == "GET"
    }
    expected_types = {
        "invite": "text/html; charset=utf-8",
        "static/style.css": "text/css; charset=utf-8",
        "static/invite.js": "text/javascript; charset=utf-8",
        "static/homeserver.js": "text/javascript; charset=utf-8",
        "static/plugin-api.js": "text/javascript; charset=utf-8",
        "static/ui.js": "text/javascript; charset=utf-8",
        "static/rooms.js": "text/javascript; charset=utf-8",
    }
    for path, content_type in expected_types.items():
        response = ours[path]
        headers = await response.all_headers()
        assert response.status == 200, path
        assert headers["content-type"] == content_type, path
        assert headers["x-content-type-options"] == "nosniff", path
        assert "etag" in headers, path
    page_headers = await ours["invite"].all_headers()
    csp = page_headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert page_headers["cache-control"] == "no-cache"
    assert "max-age" in (await ours["static/invite.js"].all_headers())["cache-control"]
