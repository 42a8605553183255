"""Single sign-on: the page sends the visitor to their homeserver's SSO (a real OpenID
provider behind Synapse) and finishes with the login token Synapse sends back."""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from playwright.async_api import expect
import pytest
from support.browser_pages import InvitePage, serve_login_flows
from support.invite_site import IDP_NAME, Site, device_ids

pytestmark = pytest.mark.browser


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


async def test_homeserver_with_only_single_sign_on(site: Site, browser_context, screenshots):
    room_id = await site.room("SSO only")
    link = await site.link(room_id)
    flows = [
        {
            "type": "m.login.sso",
            "identity_providers": [
                {"id": "oidc-work", "name": "Work account"},
                {"id": "oidc-school", "name": "School account"},
            ],
        },
        {"type": "m.login.token"},
    ]
    async with serve_login_flows(flows) as server_name:
        page = InvitePage(await browser_context(), screenshots)
        await page.open(link)
        await page.enter_matrix_id(f"@pupil:{server_name}")
        await page.wait_for("state-signin")
        await expect(page.page.locator("#password-block")).to_be_hidden()
        buttons = page.page.locator("#sso-buttons button")
        await expect(buttons).to_have_text(
            ["Continue with Work account", "Continue with School account"]
        )
        await expect(page.page.locator("#sso-intro")).to_have_text(
            "Your homeserver signs you in through:"
        )
        await expect(page.page.locator("#signin-privacy")).to_contain_text(
            "You sign in on your homeserver's own pages."
        )
        await page.shot("sso-only")
        # Each button leads to that provider's SSO redirect, with the page as the way back.
        async with page.page.expect_request("**/login/sso/redirect/oidc-school**") as sent:
            await buttons.nth(1).click()
        redirect = (await sent.value).url
        assert "redirectUrl=" + quote(link.split("#", 1)[0], safe="") in redirect
