"""The SSO harness with real parts: Synapse logs a user in through the local OpenID Connect
provider (devtools/oidc) in Debian's Chromium, as the browser tests will."""

from __future__ import annotations

from collections.abc import AsyncIterator
import contextlib
from urllib.parse import parse_qs, quote, urlsplit

import aiohttp
from aiohttp import web
from playwright.async_api import async_playwright, expect
import pytest
from support import server_logs
from support.browser_pages import serve_on_loopback

from devtools.browser import launch_chromium
from devtools.oidc_provider import OIDCProvider
from devtools.stack import SSO, Homeserver, running_homeserver
from devtools.synapse import SynapseServer

pytestmark = pytest.mark.integration

IDP_ID = "test"
IDP_NAME = "Test OpenID Provider"
SYNAPSE_IDP_ID = f"oidc-{IDP_ID}"  # Synapse prefixes the ids of oidc_providers entries


@pytest.fixture(scope="module")
async def sso_homeserver(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Homeserver]:
    async with running_homeserver(
        tmp_path_factory.mktemp("sso"), sso=SSO(idp_id=IDP_ID, idp_name=IDP_NAME)
    ) as homeserver:
        with server_logs.attached(homeserver.started):
            yield homeserver


@pytest.fixture(scope="module")
def oidc_provider(sso_homeserver: Homeserver) -> OIDCProvider:
    assert sso_homeserver.oidc is not None
    return sso_homeserver.oidc


@pytest.fixture(scope="module")
def sso_synapse(sso_homeserver: Homeserver) -> SynapseServer:
    return sso_homeserver.synapse


@contextlib.asynccontextmanager
async def client_page() -> AsyncIterator[str]:
    """A stand-in for a Matrix client on loopback: the URL Synapse sends the user back to."""

    async def landing(request: web.Request) -> web.Response:
        return web.Response(text="<h1>Back at the client</h1>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/sso-done", landing)
    async with serve_on_loopback(app) as server_name:
        yield f"http://{server_name}/sso-done"


async def test_sso_login_through_the_local_openid_provider(
    oidc_provider: OIDCProvider, sso_synapse: SynapseServer
):
    # The SSO account maps onto this existing user (allow_existing_users, localpart from
    # preferred_username); its Matrix password is unrelated to the provider's password.
    alice = await sso_synapse.register_user("alice")
    account = oidc_provider.add_account("alice", "provider-password", name="Alice Example")

    async with aiohttp.ClientSession() as http:
        async with http.get(f"{sso_synapse.base_url}/_matrix/client/v3/login") as resp:
            assert resp.status == 200
            flows = {flow["type"]: flow for flow in (await resp.json())["flows"]}
    assert "m.login.token" in flows
    assert flows["m.login.sso"]["identity_providers"] == [{"id": SYNAPSE_IDP_ID, "name": IDP_NAME}]

    async with client_page() as client_url, async_playwright() as playwright:
        browser = await launch_chromium(playwright)
        try:
            page = await browser.new_page()
            await page.goto(
                f"{sso_synapse.base_url}/_matrix/client/v3/login/sso/redirect/"
                f"{SYNAPSE_IDP_ID}?redirectUrl={quote(client_url, safe='')}"
            )

            # The provider's login form; a wrong password is refused there.
            await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
            assert page.url.startswith(oidc_provider.issuer + "/interaction/")
            await page.get_by_label("Username").fill(account.preferred_username)
            await page.get_by_label("Password").fill("not-the-password")
            await page.get_by_role("button", name="Sign in").click()
            await expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
            assert page.url.startswith(oidc_provider.issuer + "/interaction/")

            await page.get_by_label("Password").fill(account.password)
            await page.get_by_role("button", name="Sign in").click()

            # Synapse asks before handing a login token to a client it does not know
            # (the redirect URL is not in sso.client_whitelist).
            await expect(
                page.get_by_role("heading", name="Continue to your account")
            ).to_be_visible()
            assert page.url.startswith(sso_synapse.oidc_callback_url)
            await expect(page.get_by_text(alice.user_id)).to_be_visible()
            await page.get_by_role("link", name="Continue").click()

            await page.wait_for_url(f"{client_url}?*")
            await expect(page.get_by_role("heading")).to_have_text("Back at the client")
            login_tokens = parse_qs(urlsplit(page.url).query)["loginToken"]
        finally:
            await browser.close()

    async with aiohttp.ClientSession() as http:
        body = {"type": "m.login.token", "token": login_tokens[0]}
        async with http.post(f"{sso_synapse.base_url}/_matrix/client/v3/login", json=body) as resp:
            assert resp.status == 200, await resp.text()
            login = await resp.json()
        assert login["user_id"] == alice.user_id
        headers = {"Authorization": f"Bearer {login['access_token']}"}
        whoami_url = f"{sso_synapse.base_url}/_matrix/client/v3/account/whoami"
        async with http.get(whoami_url, headers=headers) as resp:
            assert (await resp.json())["user_id"] == alice.user_id
