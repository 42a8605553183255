"""Browser tests: Debian's Chromium, driven by Playwright, through the real invite pages.

One stack (devtools/stack.py: Synapse with .well-known, a tight failed-login limit and a
local OpenID provider for SSO; a full maubot server running the built .mbp) serves the whole
session; each test gets a fresh browser context, its own users and its own room. Tests of
bindings ask for ``providers``: a local GitHub and Patreon, and the OpenID provider as a
provider of the plugin's own, all set up in the plugin's config.

Every test saves screenshots of the states it passes through under
test-artifacts/screenshots/<test name>/ and fails if the page reached anything but
loopback, threw a script error, or broke its Content-Security-Policy.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
import re

import attrs
from playwright.async_api import Browser, Page, async_playwright, expect
import pytest
import pytest_asyncio
from support import server_logs
from support.browser_pages import PAGE_TIMEOUT_MS, Screenshots, page_opener
from support.invite_site import IDP_NAME, PASSWORD, Site
from support.providers.github import FakeGitHub
from support.providers.patreon import FakePatreon

from devtools.browser import launch_chromium
from devtools.stack import SSO, running_stack

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO_ROOT / "test-artifacts" / "screenshots"
# The web client the operator offers on the result page, next to matrix.to.
WEB_CLIENT = "Element"
WEB_CLIENT_ROOM_URL = "https://app.element.io/#/room/{room_id}"
# Per account: three wrong passwords, then Synapse answers 429 for about ten seconds.
FAILED_LOGIN_LIMIT = {"per_second": 0.1, "burst_count": 3}
# Every wait on the page gets 30 s: actions by the context's default (below), assertions
# here (Playwright's own default is 5 s, which a sign-in through Synapse's password hashing
# can take on a busy machine). A passing assertion returns as soon as it holds.
expect.set_options(timeout=PAGE_TIMEOUT_MS)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def site(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Site]:
    async with running_stack(
        tmp_path_factory.mktemp("browser"),
        sso=SSO(idp_id="idp", idp_name=IDP_NAME),
        synapse_config={"rc_login": {"failed_attempts": FAILED_LOGIN_LIMIT}},
        password=PASSWORD,
        instance_config={
            "web": {"client_name": WEB_CLIENT, "client_room_url": WEB_CLIENT_ROOM_URL}
        },
    ) as stack:
        with server_logs.attached(stack.started):
            yield stack


# The plugin's own OpenID Connect provider (providers.oidc.<id>): the stack's test provider.
OIDC_PROVIDER_ID = "staff"
OIDC_PROVIDER_NAME = "Staff SSO"


@attrs.frozen
class Providers:
    """The providers of the binding tests, each showing its consent page to the browser
    (``auto_approve`` False) until a test says otherwise."""

    github: FakeGitHub
    patreon: FakePatreon
    # The plugin's `providers` config they make: a test that reconfigures the plugin for
    # its own needs passes it along and restores it, or later tests lose the providers.
    section: dict = attrs.field(factory=dict, eq=False)
    oidc_id: str = OIDC_PROVIDER_ID


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def providers(site: Site) -> AsyncIterator[Providers]:
    callback = f"{site.web_url}api/oauth/callback"
    assert site.oidc is not None
    async with FakeGitHub() as github, FakePatreon() as patreon:
        section = {
            "github": github.config_section(callback_url=callback),
            "patreon": patreon.config_section(redirect_uris=[callback]),
            "oidc": {
                OIDC_PROVIDER_ID: site.oidc.config_section(
                    redirect_uris=[callback], name=OIDC_PROVIDER_NAME
                )
            },
        }
        await site.configure(providers=section)
        yield Providers(github, patreon, section)
        await site.configure()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await launch_chromium(playwright)
        try:
            yield browser
        finally:
            await browser.close()


def _test_directory_name(request: pytest.FixtureRequest) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name).strip("-")


@pytest_asyncio.fixture(loop_scope="session")
async def browser_context(
    chromium: Browser, site: Site
) -> AsyncIterator[Callable[..., Awaitable[Page]]]:
    """``await open_page(**context_options)``: a page in a fresh context (no cookies)."""
    async with page_opener(chromium, site.plugin.origin) as open_page:
        yield lambda **options: open_page(**options)


@pytest.fixture
def screenshots(request: pytest.FixtureRequest) -> Screenshots:
    return Screenshots(SCREENSHOTS / _test_directory_name(request))
