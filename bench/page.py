"""How quick the invite page is for a person, in Debian's Chromium against the real stack.

    .venv/bin/python bench/page.py [--loads N] [--joins M]

Prints: the page's weight (requests and bytes of our own files), the time from opening a
link to the Matrix ID field being ready, cold (fresh browser context: nothing cached) and
warm (same context: assets revalidated from cache), and the time from pressing "Sign in
and join" to "You are invited" (sign-in, OpenID, logout, proof check, claim, and the real
invite by the queue), each as median and p95 over the runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import secrets
import sys
import time

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from playwright.async_api import Page, async_playwright

from bench.common import Stack, figure, percentile, progress, run_main
from devtools.browser import launch_chromium

PASSWORD = "bench-password-1"


async def time_to_ready(page: Page, link: str) -> float:
    started = time.perf_counter()
    await page.goto(link)
    await page.locator("#state-mxid").wait_for(state="visible")
    return time.perf_counter() - started


def summary(values: list[float]) -> str:
    median, p95 = percentile(values, 0.5) * 1000, percentile(values, 0.95) * 1000
    return f"median {median:.0f} ms, p95 {p95:.0f} ms"


async def run(args: argparse.Namespace) -> None:
    stack = Stack()
    try:
        progress("starting Synapse and maubot ...")
        await stack.start()
        room_id = await stack.room("Bench room")
        link = await stack.link(room_id, f"--uses {args.joins + 1}")
        async with async_playwright() as playwright:
            browser = await launch_chromium(playwright)
            try:
                # Page weight: what the first visit transfers from the plugin.
                context = await browser.new_context()
                page = await context.new_page()
                ours: list[int] = []

                async def count(response) -> None:
                    if response.url.startswith(stack.web_url) and "api/" not in response.url:
                        ours.append(len(await response.body()))

                page.on("response", count)
                await time_to_ready(page, link)
                figure("page requests (our files)", len(ours))
                figure("page weight", f"{sum(ours) / 1024:.1f} KiB", "uncompressed")
                await context.close()

                progress(f"{args.loads} cold and warm loads ...")
                cold, warm = [], []
                for _ in range(args.loads):
                    context = await browser.new_context()
                    page = await context.new_page()
                    cold.append(await time_to_ready(page, link))
                    await page.goto("about:blank")
                    warm.append(await time_to_ready(page, link))
                    await context.close()
                figure("link opened -> ID field, cold", summary(cold))
                figure("link opened -> ID field, warm", summary(warm))

                progress(f"{args.joins} joins ...")
                joins = []
                for _ in range(args.joins):
                    user = await stack.synapse.register_user(
                        f"bench-{secrets.token_hex(3)}", PASSWORD
                    )
                    context = await browser.new_context()
                    page = await context.new_page()
                    await time_to_ready(page, link)
                    await page.get_by_label("Your Matrix ID").fill(user.user_id)
                    await page.get_by_role("button", name="Continue").click()
                    await page.get_by_label("Password").fill(PASSWORD)
                    started = time.perf_counter()
                    await page.get_by_role("button", name="Sign in and join").click()
                    await page.locator("#state-done").wait_for(state="visible", timeout=90_000)
                    joins.append(time.perf_counter() - started)
                    await context.close()
                figure("sign in -> invited", summary(joins), f"{args.joins} people")
            finally:
                await browser.close()
    finally:
        await stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--loads", type=int, default=20)
    parser.add_argument("--joins", type=int, default=10)
    run_main(run, parser.parse_args())


if __name__ == "__main__":
    main()
