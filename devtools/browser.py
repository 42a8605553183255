"""Debian's Chromium driven by Playwright, for the browser tests and manual checks.

Playwright's own browser downloads are never used: ``/usr/bin/chromium`` comes from Debian
(``./dev`` installs it when missing).
"""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Browser, Playwright

CHROMIUM = Path("/usr/bin/chromium")

# Quiet, self-contained Chromium: no sandbox (tests may run as root), no background
# traffic to Google services, nothing that could reach beyond loopback on its own.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--no-first-run",
    "--disable-features=Translate,MediaRouter,OptimizationHints",
]


def chromium_path() -> str:
    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} is missing: run ./dev test, which installs it.")
    return str(CHROMIUM)


async def launch_chromium(playwright: Playwright, **options: object) -> Browser:
    return await playwright.chromium.launch(
        executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True, **options
    )
