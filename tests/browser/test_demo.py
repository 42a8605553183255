"""The README's demo command, as a newcomer runs it (`./dev demo`): every path it prints
works in a browser with nothing else set up. The invite link with the demo account; the
link by someone with no Matrix account, who gets one; the binding link with the GitHub
account in the organisation (invited) and with the other (refused, in words), each chosen on
the local GitHub's sign-in page; the admin panel, where the demo admin sees both rooms.
Ctrl-C stops everything; a second run starts clean."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import contextlib
from pathlib import Path
import re
import signal

import aiohttp
from playwright.async_api import Browser, Page, expect
import pytest
from support.browser_pages import InvitePage, JoinPage, PageWatch, Screenshots
from support.manage_page import ManagePage

REPO_ROOT = Path(__file__).resolve().parents[2]
PAGE_TIMEOUT_MS = 30_000  # as conftest.py: every wait on the page
pytestmark = pytest.mark.browser


class Demo:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.process: asyncio.subprocess.Process | None = None
        self.output: list[str] = []

    async def start(self) -> dict[str, str]:
        """Run `./dev demo` until it prints its links; what it printed."""
        self.process = await asyncio.create_subprocess_exec(
            str(REPO_ROOT / "dev"), "demo", "--state-dir", str(self.state_dir),
            cwd=REPO_ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C goes to the demo alone, as in a terminal
        )  # fmt: skip
        assert self.process.stdout is not None
        async with asyncio.timeout(240):
            while not any("Press Ctrl-C" in line for line in self.output):
                line = await self.process.stdout.readline()
                assert line, "the demo stopped early:\n" + "".join(self.output)
                self.output.append(line.decode(errors="replace"))
        text = "".join(self.output)

        def printed(pattern: str) -> str:
            match = re.search(pattern, text)
            assert match, f"{pattern!r} not in the demo's output:\n{text}"
            return match.group(1)

        return {
            "link": printed(r"(http://127\.0\.0\.1:\d+/\S+/invite#\S+)"),
            "binding": printed(r"(http://127\.0\.0\.1:\d+/\S+/join#\S+)"),
            "user_id": printed(r"Matrix ID\s+(@demo-user\S+)"),
            "password": printed(r"Password\s+(\S+)"),
            "member": printed(r"(\S+)\s+a member of \S+: admitted"),
            "outsider": printed(r"(\S+)\s+not in \S+: refused"),
            "panel": printed(r"Admin panel\s+(http://127\.0\.0\.1:\d+/\S+/manage)"),
            "admin_id": printed(r"Admin panel.*\n\s+Matrix ID\s+(@\S+)"),
            "admin_password": printed(r"Admin panel.*\n.*\n\s+Password\s+(\S+)"),
            "server": printed(r"Create one on (\S+)\""),
            "homeserver": printed(r"Homeserver\s+(http://\S+)"),
            "github": printed(r"Local GitHub\s+(http://\S+)"),
        }

    async def interrupt(self) -> int:
        assert self.process is not None and self.process.stdout is not None
        self.process.send_signal(signal.SIGINT)
        async with asyncio.timeout(60):
            rest = await self.process.stdout.read()
            self.output.append(rest.decode(errors="replace"))
            return await self.process.wait()

    async def kill(self) -> None:
        """After a failure: Ctrl-C first, so the demo stops the servers it started (each
        runs in its own session, and a killed demo would leave them running); a hard kill
        only if it does not stop."""
        if self.process is None or self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            async with asyncio.timeout(60):
                await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


async def answers(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as http, http.get(url, timeout=3) as resp:
            return resp.status < 500
    except (aiohttp.ClientError, TimeoutError):
        return False


@contextlib.asynccontextmanager
async def browser_page(chromium: Browser, own_origin: str) -> AsyncIterator[Page]:
    """A page in a fresh context (a newcomer's browser), watched as the plugin's pages."""
    context = await chromium.new_context(viewport={"width": 1024, "height": 800})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    watch = PageWatch(own_origin)
    try:
        page = await context.new_page()
        watch.attach(page)
        yield page
    finally:
        await context.close()
    watch.assert_clean()


async def at_github_as(page: JoinPage, login: str, *, typed: bool = False) -> None:
    """From the providers' step: "Continue with GitHub", the local GitHub's sign-in page
    (the account picked from its list, or typed), then "Authorize" on its consent page."""
    await page.wait_for("state-providers")
    await page.page.locator("#provider-action").click()
    await expect(page.page.get_by_role("heading", name="Sign in to GitHub")).to_be_visible()
    await page.shot("github-sign-in")
    if typed:
        await page.page.get_by_label("Username").fill(login)
        await page.page.get_by_role("button", name="Sign in", exact=True).click()
    else:
        await page.page.get_by_role("button", name=f"Sign in as {login}").click()
    await expect(page.page.get_by_text(f"Signed in as {login}")).to_be_visible()
    await page.shot("github-consent")
    await page.page.get_by_role("button", name="Authorize").click()


async def test_the_demo_shows_every_path_and_stops_cleanly(
    chromium: Browser, tmp_path: Path, screenshots: Screenshots
):
    demo = Demo(tmp_path / "demo")
    try:
        printed = await demo.start()
        origin = printed["link"].split("/_matrix/", 1)[0]
        offer = f"No Matrix account? Create one on {printed['server']}"

        # The invite link, with the demo account.
        async with browser_page(chromium, origin) as browser:
            page = InvitePage(browser, screenshots)
            await page.open(printed["link"])
            await page.enter_matrix_id(printed["user_id"])
            await page.sign_in_with_password(printed["password"])
            await page.wait_for("state-done")
            await page.shot("demo-invited")

        # The invite link again, by someone with no Matrix account: the page makes one on
        # the demo's server with a token the bot mints, and it is invited.
        async with browser_page(chromium, origin) as browser:
            page = InvitePage(browser, screenshots)
            await page.open(printed["link"])
            await page.wait_for("state-mxid")
            await browser.get_by_role("button", name=offer).click()
            form = browser.locator("#state-register")
            await expect(form).to_be_visible()
            await form.get_by_label("Username").fill("newcomer")
            await form.get_by_label("Password", exact=True).fill("newcomer-password-1")
            await form.get_by_label("Password, again").fill("newcomer-password-1")
            await page.shot("new-account-form")
            await form.get_by_role("button", name="Create account").click()
            done = await page.wait_for("state-done")
            await expect(done.locator("#register-welcome")).to_contain_text(
                f"@newcomer:{printed['server']}"
            )
            await page.shot("new-account-invited")

        # The binding link: the GitHub account outside the organisation is refused in
        # words; the page offers a new account on the demo's server too.
        async with browser_page(chromium, origin) as browser:
            page = JoinPage(browser, screenshots)
            await page.open(printed["binding"])
            await page.wait_for("state-mxid")
            await expect(browser.get_by_role("button", name=offer)).to_be_visible()
            await page.shot("binding-page")
            await page.enter_matrix_id(printed["user_id"])
            await page.sign_in_with_password(printed["password"])
            await page.provider_step("GitHub", "Sign in at GitHub")
            await page.shot("provider-step")
            await at_github_as(page, printed["outsider"], typed=True)
            step = await page.provider_step("GitHub", "GitHub says you do not qualify")
            await expect(step.locator(".provider-status")).to_contain_text(
                f"You (@{printed['outsider']} on GitHub) are not a member of the organisation "
                "demo-org."
            )
            await page.shot("outsider-refused")

        # ... and the one in the organisation is invited.
        async with browser_page(chromium, origin) as browser:
            page = JoinPage(browser, screenshots)
            await page.open(printed["binding"])
            await page.enter_matrix_id(printed["user_id"])
            await page.sign_in_with_password(printed["password"])
            await at_github_as(page, printed["member"])
            done = await page.wait_for("state-done")
            await expect(done.locator("#done-title")).to_have_text("You are invited")
            await page.shot("member-invited")

        # The admin panel: the demo admin signs in and sees both rooms.
        async with browser_page(chromium, origin) as browser:
            panel = ManagePage(browser, screenshots)
            await browser.goto(printed["panel"])
            await panel.sign_in(printed["admin_id"], printed["admin_password"])
            rooms = (await panel.rooms()).locator("#room-list")
            for name in ("Demo room", "demo-org members"):
                await expect(rooms.get_by_role("link", name=name, exact=True)).to_be_visible()
            await panel.shot("panel-rooms")
            await panel.open_room("demo-org members")
            await panel.shot("panel-room")

        homeserver, github = printed["homeserver"], printed["github"]
        assert await answers(f"{homeserver}/_matrix/client/versions")
        assert await answers(f"{github}/api/v3/user")  # 401 for no token: it is there
        assert await demo.interrupt() == 0, "".join(demo.output)
        assert "Stopping" in "".join(demo.output)
        for url in (f"{homeserver}/_matrix/client/versions", printed["link"], github):
            assert not await answers(url), f"{url} still answers"  # nothing left

        # A second run in the same place starts from a clean slate and works again.
        again = Demo(tmp_path / "demo")
        try:
            second = await again.start()
            assert second["link"] != printed["link"]
            assert second["binding"] != printed["binding"]
            assert await answers(second["link"].split("#", 1)[0])
            assert await again.interrupt() == 0
        finally:
            await again.kill()
    finally:
        await demo.kill()
