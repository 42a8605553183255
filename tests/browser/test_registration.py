"""New accounts in Chromium, end to end on a Synapse that requires registration tokens.

This module starts its own stack (the session's Synapse keeps registration closed): a room
admin binds a room with `--register`, a person with no Matrix account presses "No Matrix
account? Create one on …", signs in at the local GitHub, chooses a username and password,
and the page registers the account at Synapse with the token the bot minted, proves it
and is invited; the page ends by saying how to open the account in an app. The same from
an invite link made with `--register`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
import re
import secrets

import aiohttp
from playwright.async_api import Browser, Page, expect
import pytest
import pytest_asyncio
from support.bot_commands import command
from support.browser_pages import JoinPage, Screenshots, page_opener
from support.providers.github import FakeGitHub

from devtools.matrix_user import MatrixUser
from devtools.stack import RunningStack, running_stack

pytestmark = pytest.mark.browser

TOKEN_REGISTRATION = {"enable_registration": True, "registration_requires_token": True}
# A captcha stage in every sign-up flow: a stage the page cannot do (no key is ever checked:
# nobody gets past it here).
WITH_CAPTCHA = {
    **TOKEN_REGISTRATION,
    "enable_registration_captcha": True,
    "recaptcha_public_key": "test-public-key",
    "recaptcha_private_key": "test-private-key",
}
SIGNUP_URL = "http://localhost:9/signup"
BINDING_LINK = re.compile(r"https?://\S+/join#[A-Za-z0-9_-]{16}")
INVITE_LINK = re.compile(r"https?://\S+/invite#[A-Za-z0-9_-]+")
STATES = (*JoinPage.states, "state-register", "state-register-manual")


SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


class RegisterPage(JoinPage):
    states = STATES


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def reg_site(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningStack]:
    """Synapse with token registration and terms to accept at sign-up (m.login.terms)."""
    workdir = tmp_path_factory.mktemp("browser-registration")
    (workdir / "consent" / "en").mkdir(parents=True)
    (workdir / "consent" / "en" / "1.0.html").write_text("<p>Be kind.</p>")
    terms = {
        "user_consent": {
            "template_dir": str(workdir / "consent"),
            "version": "1.0",
            "require_at_registration": True,
            "policy_name": "House rules",
        }
    }
    async with running_stack(workdir, synapse_config={**TOKEN_REGISTRATION, **terms}) as stack:
        yield stack


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def captcha_site(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[RunningStack, MatrixUser]]:
    """A second stack whose Synapse asks for a captcha on sign-up, and its server admin."""
    async with running_stack(
        tmp_path_factory.mktemp("browser-captcha"), synapse_config=WITH_CAPTCHA
    ) as stack:
        operator = await stack.user("operator", admin=True)
        await stack.configure(
            registration={
                "server_name": stack.synapse.server_name,
                "admin_api_url": stack.synapse.base_url,
                "admin_token": operator.access_token,
                "signup_url": SIGNUP_URL,
            },
        )
        await stack.wait_web_ready()
        yield stack, operator


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def github(reg_site: RunningStack) -> AsyncIterator[FakeGitHub]:
    operator = await reg_site.user("operator", admin=True)
    async with FakeGitHub() as server:
        await reg_site.configure(
            providers={
                "github": server.config_section(
                    callback_url=f"{reg_site.web_url}api/oauth/callback"
                )
            },
            registration={
                "server_name": reg_site.synapse.server_name,
                "admin_api_url": reg_site.synapse.base_url,
                "admin_token": operator.access_token,
            },
        )
        await reg_site.wait_web_ready()
        yield server


@pytest_asyncio.fixture(loop_scope="session")
async def open_page(
    chromium: Browser, reg_site: RunningStack
) -> AsyncIterator[Callable[..., Awaitable[Page]]]:
    """``await open_page()``: a page in a fresh context, watched as the plugin's pages of
    ``site`` (default: this module's stack)."""
    async with page_opener(chromium, reg_site.plugin.origin) as open_page:

        async def open_one(site: RunningStack = reg_site, **options: object) -> Page:
            return await open_page(site.plugin.origin, **options)

        yield open_one


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Screenshots:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name).strip("-")
    return Screenshots(SCREENSHOTS / name)


async def create_account(page: RegisterPage, username: str, password: str) -> None:
    form = await page.wait_for("state-register")
    assert await page.focused_id() == "register-username"
    await form.get_by_label("Username").fill(username)
    await form.get_by_label("Password", exact=True).fill(password)
    await form.get_by_label("Password, again").fill(password)
    # The homeserver's terms, shown as links, must be accepted.
    await expect(form.get_by_role("link", name="House rules")).to_be_visible()
    await form.get_by_label("I accept these terms").check()
    await page.shot("account-form")
    await form.get_by_role("button", name="Create account").click()


async def the_new_account_is_invited(
    stack: RunningStack, username: str, password: str, room_id: str
) -> None:
    user = await MatrixUser.login(stack.synapse.base_url, username, password)
    try:
        await user.wait_for_invite(room_id)
    finally:
        await user.close()


async def test_someone_without_an_account_qualifies_creates_one_and_is_invited(
    reg_site: RunningStack, github: FakeGitHub, open_page, shots
) -> None:
    stack = reg_site
    server = stack.synapse.server_name
    room_id = await stack.room("Newcomers")
    reply = await command(stack, room_id, "!invitebot bind github org:regorg --register")
    link = BINDING_LINK.search(reply)
    assert link, reply
    github.sign_in_as(github.add_account(f"nova{secrets.token_hex(2)}").join_org("regorg"))
    page = RegisterPage(await open_page(), shots)

    await page.open(link.group(0))
    await page.wait_for("state-mxid")
    offer = page.page.get_by_role("button", name=f"No Matrix account? Create one on {server}")
    await expect(offer).to_be_visible()
    await page.shot("offer")
    await offer.click()
    await page.provider_step("GitHub", "Sign in at GitHub")
    await expect(page.page.locator("#providers-user")).to_contain_text(
        f"once you qualify, you create an account on {server}"
    )
    await page.shot("provider-step-without-account")
    await page.sign_in_at("GitHub")

    username = f"nova-{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(12)
    await create_account(page, username, password)
    done = await page.wait_for("state-done")
    await expect(done.locator("#done-title")).to_have_text("You are invited")
    welcome = done.locator("#register-welcome")
    await expect(welcome).to_contain_text(f"@{username}:{server}")
    await expect(welcome).to_contain_text(f"change the homeserver to {server}")
    await page.shot("invited-with-new-account")
    await the_new_account_is_invited(stack, username, password, room_id)


async def test_an_invite_link_with_register_makes_an_account(
    reg_site: RunningStack, github: FakeGitHub, open_page, shots
) -> None:
    stack = reg_site
    server = stack.synapse.server_name
    room_id = await stack.room("Open door")
    reply = await command(stack, room_id, "!invitebot link --uses 2 --register")
    link = INVITE_LINK.search(reply)
    assert link, reply
    page = RegisterPage(await open_page(), shots)
    await page.open(link.group(0))
    await page.wait_for("state-mxid")
    await page.page.get_by_role(
        "button", name=f"No Matrix account? Create one on {server}"
    ).click()
    # A taken username is said on the form, and the code is not spent by it.
    await create_account(page, stack.admin.user_id.split(":")[0][1:], "long-enough-1")
    form = await page.wait_for("state-register")
    await expect(form.locator("#register-username-error")).to_have_text(
        "This username is taken. Choose another."
    )
    await page.shot("username-taken")
    username = f"door-{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(12)
    await create_account(page, username, password)
    done = await page.wait_for("state-done")
    await expect(done.locator("#done-title")).to_have_text("You are invited")
    await expect(done.locator("#register-welcome")).to_contain_text(f"@{username}:{server}")
    await page.shot("invited")
    await the_new_account_is_invited(stack, username, password, room_id)


async def test_a_step_the_page_cannot_do_is_said_with_the_code_to_paste(
    captcha_site: tuple[RunningStack, MatrixUser], open_page, shots
) -> None:
    stack, operator = captcha_site
    server = stack.synapse.server_name
    room_id = await stack.room("Captcha room")
    reply = await command(stack, room_id, "!invitebot link --uses 1 --register")
    link = INVITE_LINK.search(reply)
    assert link, reply
    page = RegisterPage(await open_page(stack), shots)
    await page.open(link.group(0))
    await page.wait_for("state-mxid")
    await page.page.get_by_role(
        "button", name=f"No Matrix account? Create one on {server}"
    ).click()
    manual = await page.wait_for("state-register-manual")
    assert await page.focused_id() == "register-manual-title"
    await expect(manual).to_contain_text("a step this page cannot do for you")
    await expect(manual.get_by_role("link", name="Open the sign-up page")).to_have_attribute(
        "href", SIGNUP_URL
    )
    code = await manual.locator("#register-code").inner_text()
    await page.shot("manual-sign-up")
    # The code shown is a single-use token Synapse knows.
    url = f"{stack.synapse.base_url}/_synapse/admin/v1/registration_tokens/{code}"
    headers = {"Authorization": f"Bearer {operator.access_token}"}
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        assert resp.status == 200
        assert (await resp.json())["uses_allowed"] == 1


AXE = Path(__file__).resolve().parent / "node_modules" / "axe-core" / "axe.min.js"


async def axe_violations(page: Page) -> list[str]:
    await page.add_script_tag(path=str(AXE))
    result = await page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']]}"
        for v in result["violations"]
    ]


@pytest.mark.parametrize("scheme", ["light", "dark"])
async def test_on_a_phone_by_keyboard_the_account_pages_pass_axe(
    reg_site: RunningStack, github: FakeGitHub, open_page, shots, scheme: str
) -> None:
    stack = reg_site
    server = stack.synapse.server_name
    room_id = await stack.room(f"Phone room ({scheme})")
    reply = await command(stack, room_id, "!invitebot link --uses 1 --register")
    link = INVITE_LINK.search(reply)
    assert link, reply
    # The page's CSP rightly refuses injected scripts: bypass it for the checker only.
    phone = await open_page(
        viewport={"width": 360, "height": 740},
        device_scale_factor=2,
        is_mobile=True,
        bypass_csp=True,
        color_scheme=scheme,
    )
    page = RegisterPage(phone, shots)
    found: dict[str, list[str]] = {}

    async def check(state: str) -> None:
        width = await phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 360, f"{state}: the page is {width} px wide on a 360 px screen"
        found[state] = await axe_violations(phone)
        await page.shot(f"{scheme}-{state}")

    await page.open(link.group(0))
    await page.wait_for("state-mxid")
    await check("offer")
    offer = phone.get_by_role("button", name=f"No Matrix account? Create one on {server}")
    await offer.focus()
    await phone.keyboard.press("Enter")
    await page.wait_for("state-register")
    assert await page.focused_id() == "register-username"
    username = f"phone-{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(12)
    await phone.keyboard.type(username)
    for text in (password, "not the same"):
        await phone.keyboard.press("Tab")
        await phone.keyboard.type(text)
    await phone.keyboard.press("Enter")
    await expect(phone.locator("#register-password-error")).to_have_text(
        "The two passwords are not the same."
    )
    await check("form-with-error")
    await phone.get_by_label("Password, again").fill(password)
    await phone.get_by_label("I accept these terms").check()
    await phone.get_by_role("button", name="Create account").click()
    done = await page.wait_for("state-done")
    await expect(done.locator("#register-welcome")).to_contain_text(f"@{username}:{server}")
    await check("welcome")
    assert not any(found.values()), found
