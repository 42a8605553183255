"""Single sign-on: the page sends the visitor to their homeserver's SSO (a real OpenID
provider behind Synapse) and finishes with the login token Synapse sends back."""

from __future__ import annotations

from urllib.parse import urlsplit

from playwright.async_api import expect
import pytest
from support.browser_pages import InvitePage
from support.invite_site import IDP_NAME, Site

pytestmark = pytest.mark.browser


async def device_ids(user) -> set[str]:
    return {device["device_id"] for device in await user.devices()}


async def test_sso_sign_in_gets_a_real_invite(site: Site, browser_context, screenshots):
    room_id = await site.room("Book club", topic="One chapter a week.")
    link = await site.link(room_id)
    user, provider_password = await site.sso_user()
    devices_before = await device_ids(user)
    page = InvitePage(await browser_context(), screenshots)
    browser = page.page

    await page.open(link)
    await page.enter_matrix_id(user.user_id)
    await page.wait_for("state-signin")
    sso_button = browser.get_by_role("button", name=f"Continue with {IDP_NAME}")
    await expect(sso_button).to_be_visible()
    await page.shot("sign-in-choices")
    await sso_button.click()

    # At the OpenID provider: its own sign-in form.
    await browser.wait_for_url(f"{site.oidc.issuer}/**")
    await browser.get_by_label("Username").fill(user.localpart)
    await browser.get_by_label("Password").fill(provider_password)
    await page.shot("provider-sign-in")
    await browser.get_by_role("button", name="Sign in").click()

    # Synapse asks before handing the account to a site it does not know.
    continue_link = browser.get_by_role("link", name="Continue")
    await expect(continue_link).to_be_visible()
    await page.shot("homeserver-confirms")
    await continue_link.click()

    done = await page.wait_for("state-done")
    await expect(done.locator("#done-title")).to_have_text("You are invited")
    await page.shot("invited")
    # The login token is gone from the address bar; the invite link is back in place.
    address = urlsplit(browser.url)
    assert "loginToken" not in address.query
    assert address.fragment == link.split("#", 1)[1]
    await user.wait_for_invite(room_id)
    assert await device_ids(user) == devices_before


async def test_sso_return_without_its_start_is_refused(site: Site, browser_context, screenshots):
    room_id = await site.room("Lost track")
    url = (await site.link(room_id)).split("#", 1)[0]
    page = InvitePage(await browser_context(), screenshots)
    # A login token arriving in a tab that never started a sign-in (a forged or stale link).
    await page.open(f"{url}?loginToken=forged-or-stale")
    problem = await page.wait_for("state-link-problem")
    await expect(problem).to_contain_text("lost track of it")
    assert "loginToken" not in page.page.url
    await page.shot("sso-return-lost")
