"""The admin panel for everyone, as the pages are: keyboard only (focus where the news or
the next action is), a 360 px phone without sideways scrolling, axe-core in every state in
light and dark, and what changes announced in the polite live region."""

from __future__ import annotations

import asyncio
import json
import secrets

from playwright.async_api import Page, expect
import pytest
from support.invite_site import PASSWORD, Site
from support.manage_page import ManagePage
from test_access import axe_violations

pytestmark = pytest.mark.browser

RECORD_ANNOUNCEMENTS = """() => {
  window.heard = [];
  const region = document.getElementById("announcer");
  new MutationObserver(() => { if (region.textContent) window.heard.push(region.textContent); })
    .observe(region, {childList: true, subtree: true, characterData: true});
}"""


async def focused_text(page: Page) -> str:
    return await page.evaluate("document.activeElement.textContent.trim()")


async def tab_until(page: Page, text: str, limit: int = 80) -> None:
    """Tab (only) until the focused element reads `text`."""
    for _ in range(limit):
        await page.keyboard.press("Tab")
        if await focused_text(page) == text:
            return
    raise AssertionError(f"{text!r} not reached with Tab")


async def heard_so_far(page: Page, last: str) -> list[str]:
    """What the live region said, once it has said something starting with `last`."""
    for _ in range(300):
        heard = await page.evaluate("window.heard")
        if any(text.startswith(last) for text in heard):
            return heard
        await asyncio.sleep(0.1)
    raise AssertionError(f"never heard {last!r}: {heard}")


async def test_panel_by_keyboard_only(site: Site, providers, browser_context, screenshots):
    name = f"Keyboard panel {secrets.token_hex(2)}"
    room_id = await site.room(name)
    browser = await browser_context()
    page = ManagePage(browser, screenshots)
    keyboard = browser.keyboard
    await page.open_panel(site.web_url)
    await page.wait_for("state-mxid")
    assert await page.focused_id() == "mxid"
    await keyboard.type(site.admin.user_id)
    await keyboard.press("Enter")
    await page.wait_for("state-signin")
    assert await page.focused_id() == "password"
    await keyboard.type(PASSWORD)
    await keyboard.press("Enter")
    await page.wait_for("state-rooms")
    assert await page.focused_id() == "rooms-title"
    await tab_until(browser, name)
    await keyboard.press("Enter")
    await page.room_shown(name)
    assert browser.url.endswith(f"#{room_id}")
    assert await page.focused_id() == "room-title"
    await page.shot("room-focused")

    # A link: open the form, name it, Enter sends it; focus lands on the new link's Copy.
    await tab_until(browser, "Create an invite link")
    await keyboard.press("Enter")
    await keyboard.press("Tab")
    assert await page.focused_id() == "link-name"
    await keyboard.type("By keyboard")
    await keyboard.press("Enter")
    await expect(browser.locator("#link-new-url")).to_be_visible()
    assert await focused_text(browser) == "Copy"
    await page.shot("link-made")
    # Revoke it: the confirmation takes the focus (Escape puts the button back), and then
    # the section's heading does.
    await tab_until(browser, "Revoke")
    await keyboard.press("Enter")
    assert await focused_text(browser) == "Revoke it"
    await keyboard.press("Escape")
    assert await focused_text(browser) == "Revoke"
    await keyboard.press("Enter")
    assert await focused_text(browser) == "Revoke it"
    await keyboard.press("Enter")
    await expect(browser.locator("#links-title")).to_be_focused()

    # A binding: the rule builder's fields, typed; Enter on the button makes it.
    await tab_until(browser, "Create a binding")
    await keyboard.press("Enter")
    await expect(browser.locator("fieldset.rule")).to_be_visible()
    await keyboard.press("Tab")  # the provider (GitHub first)
    await keyboard.press("Tab")  # the kind (org first)
    await keyboard.press("Tab")
    assert await page.focused_id() == "rule-0-field-0"
    await keyboard.type("matrix-org")
    words = browser.locator("fieldset.rule .rule-words")
    await expect(words).to_have_text("Admits members of the GitHub organisation matrix-org.")
    await tab_until(browser, "Create the binding")
    await keyboard.press("Enter")
    await expect(browser.locator("#binding-new-url")).to_be_visible()
    assert await focused_text(browser) == "Copy"
    await page.shot("binding-made")
    # Back to the list of rooms from the keyboard.
    await keyboard.press("Shift+Tab")
    for _ in range(80):
        if await focused_text(browser) == "← All your rooms":
            break
        await keyboard.press("Shift+Tab")
    await keyboard.press("Enter")
    await page.wait_for("state-rooms")
    assert await page.focused_id() == "rooms-title"


async def test_panel_on_a_phone_sized_screen(site: Site, providers, browser_context, screenshots):
    name = "A room with a rather long name, to see how the panel wraps on a phone"
    room_id = await site.room(name, topic="Phones are where admins read the bot's replies.")
    phone = await browser_context(
        viewport={"width": 360, "height": 740},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    page = ManagePage(phone, screenshots)

    async def fits(state: str) -> None:
        width = await phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 360, f"{state}: the page is {width} px wide on a 360 px screen"
        await page.shot(f"phone-{state}")

    await page.open_panel(site.web_url, room_id)
    await page.wait_for("state-mxid")
    await fits("sign-in")
    await page.enter_matrix_id(site.admin.user_id)
    await page.sign_in_with_password(PASSWORD)
    await page.room_shown(name)
    await fits("room")
    await page.create_link(name="A link with a name long enough to wrap on a small screen")
    await fits("link-made")
    await phone.get_by_text("Create a binding").click()
    rule = phone.locator("fieldset.rule").first
    await rule.get_by_label("Kind of rule").select_option("team")
    await rule.get_by_label("Organisation").fill("matrix-org")
    await rule.get_by_label("Team (as in its URL)").fill("core")
    await expect(rule.locator(".rule-words")).to_contain_text("Admits members of team core")
    await phone.get_by_role("button", name="Create the binding").click()
    await expect(phone.locator("#binding-new-url")).to_be_visible()
    await fits("binding-made")
    # Buttons are easy to hit with a thumb: full width, at least 44 px high.
    box = (
        await phone.locator("#bindings-list")
        .get_by_role("button", name="Re-check now")
        .first.bounding_box()
    )
    assert box["height"] >= 40 and box["width"] >= 280
    await page.page.get_by_role("link", name="All your rooms").click()
    await page.wait_for("state-rooms")
    await fits("rooms")


@pytest.mark.parametrize("scheme", ["light", "dark"])
async def test_panel_accessibility_checks_pass_in_every_state(
    site: Site, providers, browser_context, screenshots, scheme: str
):
    name = f"Accessible panel ({scheme})"
    await site.room(name, topic="Checked by axe-core.")
    elsewhere = await site.user("axe-elsewhere")
    not_theirs = await elsewhere.create_room("Not the admin's")
    # The page's CSP rightly refuses injected scripts: bypass it for the checker only.
    browser = await browser_context(bypass_csp=True, color_scheme=scheme)
    page = ManagePage(browser, screenshots)
    found: dict[str, list[str]] = {}

    async def check(state: str) -> None:
        found[state] = await axe_violations(browser)
        await page.shot(f"{scheme}-{state}")

    await page.open_panel(site.web_url)
    await page.wait_for("state-mxid")
    await check("sign-in")
    await page.enter_matrix_id(site.admin.user_id)
    await page.sign_in_with_password(PASSWORD)
    await page.wait_for("state-rooms")
    await check("rooms")
    await page.open_room(name)
    await check("room")
    await page.create_link(name="Checked", uses="3")
    await check("link-made")
    await browser.get_by_text("Create a binding").click()
    rule = browser.locator("fieldset.rule").first
    await rule.get_by_label("Organisation").fill("not an org!")
    await expect(rule.locator(".field-error")).to_be_visible()
    await browser.get_by_role("button", name="Add a rule (and)").click()
    await check("rule-refused")
    await (
        browser.locator("fieldset.rule")
        .nth(1)
        .get_by_role("button", name="Remove this rule")
        .click()
    )
    await rule.get_by_label("Organisation").fill("matrix-org")
    await expect(rule.locator(".rule-words")).to_be_visible()
    await browser.get_by_role("button", name="Create the binding").click()
    await expect(browser.locator("#binding-new-url")).to_be_visible()
    await check("binding-made")
    await (
        browser.locator(".panel-item", has_text="Checked")
        .get_by_role("button", name="Revoke")
        .click()
    )
    await check("confirm")
    await page.open_panel(site.web_url, not_theirs)
    await expect(browser.locator("#room-refusal-text")).to_be_visible()
    await check("refused")
    assert not any(found.values()), json.dumps(found, indent=1)


async def test_panel_changes_are_announced(site: Site, browser_context, screenshots):
    name = f"Announced panel {secrets.token_hex(2)}"
    room_id = await site.room(name)
    browser = await browser_context()
    page = ManagePage(browser, screenshots)
    await page.open_panel(site.web_url, room_id)
    await page.wait_for("state-mxid")
    await browser.evaluate(RECORD_ANNOUNCEMENTS)
    await page.enter_matrix_id(site.admin.user_id)
    await page.sign_in_with_password(PASSWORD)
    await page.room_shown(name)
    await page.create_link(name="Heard")
    item = page.section("links-title").locator(".panel-item", has_text="Heard")
    await item.get_by_role("button", name="Revoke").click()
    await item.get_by_role("button", name="Revoke it").click()
    heard = await heard_so_far(browser, "Heard is revoked")
    for said in (
        "Signing in to your homeserver",
        "Reading the rooms you manage",
        f"{name}: no active invite links",
        "Heard is ready",
        "Revoke Heard?",
        "Heard is revoked",
    ):
        assert any(text.startswith(said) for text in heard), (said, heard)
    await page.shot("announced")
