"""The panel's switch for new accounts: with `registration:` set up, a link made in the
panel can offer people without a Matrix account one on the operator's homeserver (as
`link --register` does), and its page then offers it; without it, no switch is shown."""

from __future__ import annotations

import secrets

from playwright.async_api import expect
import pytest
from support.invite_site import PASSWORD, Site
from support.manage_page import ManagePage

pytestmark = pytest.mark.browser


async def test_a_link_made_in_the_panel_can_offer_new_accounts(
    site: Site, providers, browser_context, screenshots
):
    name = f"Panel accounts {secrets.token_hex(2)}"
    room_id = await site.room(name)
    page = ManagePage(await browser_context(), screenshots)
    await page.open_panel(site.web_url, room_id)
    await page.enter_matrix_id(site.admin.user_id)
    await page.sign_in_with_password(PASSWORD)
    await page.room_shown(name)
    await page.page.get_by_text("Create an invite link").click()
    await expect(page.page.locator("#link-register")).to_have_count(0)  # not set up here

    operator = await site.user("operator", admin=True)
    server = site.synapse.server_name
    await site.configure(
        providers=providers.section,  # the session's: later tests need them
        registration={
            "server_name": server,
            "admin_api_url": site.synapse.base_url,
            "admin_token": operator.access_token,
        },
    )
    try:
        await offer_accounts_from_the_panel(
            site, room_id, name, server, browser_context, screenshots
        )
    finally:
        await site.configure(providers=providers.section)
        await site.wait_web_ready()


async def offer_accounts_from_the_panel(
    site: Site, room_id: str, name: str, server: str, browser_context, screenshots
) -> None:
    await site.wait_web_ready()
    page = ManagePage(await browser_context(), screenshots)
    await page.open_panel(site.web_url, room_id)
    await page.enter_matrix_id(site.admin.user_id)
    await page.sign_in_with_password(PASSWORD)
    await page.room_shown(name)
    await page.page.get_by_text("Create an invite link").click()
    # The link form's switch (the binding form has its own, now providers are set up).
    switch = page.section("links-title").get_by_label(
        f"Offer people without a Matrix account one on {server}"
    )
    await switch.check()
    await page.shot("switch-on")
    await page.page.get_by_role("button", name="Create the link").click()
    new = page.page.locator("#link-new")
    await expect(new).to_contain_text(
        f"People without a Matrix account can create one on {server}"
    )
    url = await page.page.locator("#link-new-url").inner_text()
    item = page.section("links-title").locator(".panel-item").first
    await expect(item).to_contain_text(f"Offers an account on {server} to people without one.")
    await page.shot("link-offers-accounts")

    visitor = await browser_context()
    await visitor.goto(url)
    await expect(visitor.get_by_text(f"No Matrix account? Create one on {server}")).to_be_visible()
