"""The README's demo command, as a newcomer runs it: a link to open, an account to sign in
with, a real invite at the end; Ctrl-C stops everything; a second run starts clean."""

from __future__ import annotations

import asyncio
from pathlib import Path
import re
import signal
import sys

import aiohttp
from playwright.async_api import Browser
import pytest
from support.browser_pages import InvitePage, PageWatch, Screenshots

REPO_ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.browser


class Demo:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.process: asyncio.subprocess.Process | None = None
        self.output: list[str] = []

    async def start(self) -> dict[str, str]:
        """Run `python -m devtools.demo` until it prints its link; what it printed."""
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "devtools.demo", "--state-dir", str(self.state_dir),
            cwd=REPO_ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C goes to the demo alone, as in a terminal
        )  # fmt: skip
        assert self.process.stdout is not None
        async with asyncio.timeout(180):
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
            "user_id": printed(r"Matrix ID\s+(@\S+)"),
            "password": printed(r"Password\s+(\S+)"),
            "homeserver": printed(r"Homeserver\s+(http://\S+)"),
        }

    async def interrupt(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        async with asyncio.timeout(60):
            rest = await self.process.stdout.read()
            self.output.append(rest.decode(errors="replace"))
            return await self.process.wait()

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


async def answers(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as http, http.get(url, timeout=3) as resp:
            return resp.status < 500
    except (aiohttp.ClientError, TimeoutError):
        return False


async def test_demo_gives_a_working_link_and_stops_cleanly(
    chromium: Browser, tmp_path: Path, screenshots: Screenshots
):
    demo = Demo(tmp_path / "demo")
    try:
        printed = await demo.start()
        context = await chromium.new_context()
        try:
            browser = await context.new_page()
            watch = PageWatch(printed["link"].split("/_matrix/", 1)[0])
            watch.attach(browser)
            page = InvitePage(browser, screenshots)
            await page.open(printed["link"])
            await page.enter_matrix_id(printed["user_id"])
            await page.sign_in_with_password(printed["password"])
            await page.wait_for("state-done")
            await page.shot("demo-invited")
            watch.assert_clean()
        finally:
            await context.close()
        homeserver = printed["homeserver"]
        assert await answers(f"{homeserver}/_matrix/client/versions")
        assert await demo.interrupt() == 0, "".join(demo.output)
        assert "Stopping" in "".join(demo.output)
        assert not await answers(f"{homeserver}/_matrix/client/versions")  # nothing left
        assert not await answers(printed["link"])

        # A second run in the same place starts from a clean slate and works again.
        again = Demo(tmp_path / "demo")
        try:
            second = await again.start()
            assert second["link"] != printed["link"]
            assert await answers(second["link"].split("#", 1)[0])
            assert await again.interrupt() == 0
        finally:
            await again.kill()
    finally:
        await demo.kill()
