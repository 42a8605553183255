"""Shared plumbing of the benchmarks: a Synapse, a maubot running the plugin, a room.

Everything listens on 127.0.0.1 only and lives in a temporary directory; ``Stack.stop()``
stops every process the stack started (call it in a ``finally``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
import contextlib
from pathlib import Path
import secrets
import shutil
import sys
import tempfile
import time
from typing import Any

import aiohttp
from aiohttp.abc import AbstractCookieJar

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from devtools.matrix_user import MatrixUser  # noqa: E402
from devtools.maubot_server import MaubotServer  # noqa: E402
from devtools.plugin import (  # noqa: E402
    RunningPlugin,
    ask_for_link,
    build_mbp,
    room_managed_by_bot,
    start_plugin,
)
from devtools.synapse import SynapseServer  # noqa: E402


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in 0..1); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


def figure(name: str, value: object, note: str = "") -> None:
    """One figure per line, ``name: value  (note)``, flushed at once."""
    text = f"{name:<34} {value}"
    if note:
        text += f"  ({note})"
    print(text, flush=True)


def progress(message: str) -> None:
    print(f"# {message}", file=sys.stderr, flush=True)


async def gather_limited(limit: int, coros: Sequence[Any]) -> list[Any]:
    """``asyncio.gather`` with at most ``limit`` coroutines running at once."""
    semaphore = asyncio.Semaphore(limit)

    async def run(coro: Any) -> Any:
        async with semaphore:
            return await coro

    return list(await asyncio.gather(*(run(c) for c in coros)))


class Stack:
    """Synapse + maubot + the plugin instance, an admin (operator) and the bot user."""

    def __init__(self, *, rc_invites: dict | None = None, keep: bool = False) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="tpi-bench-"))
        self.keep = keep
        self.synapse = SynapseServer(self.workdir / "synapse", rc_invites=rc_invites)
        self.maubot: MaubotServer | None = None
        self.admin: MatrixUser | None = None
        self.bot: MatrixUser | None = None
        self.plugin: RunningPlugin | None = None
        self.instance_id = f"tpibench{secrets.token_hex(3)}"

    @property
    def db_path(self) -> Path:
        assert self.maubot is not None
        return self.maubot.workdir / "plugin_dbs" / f"{self.instance_id}.db"

    @property
    def web_url(self) -> str:
        assert self.plugin is not None
        return self.plugin.web_url

    @property
    def origin(self) -> str:
        assert self.plugin is not None
        return self.plugin.origin

    async def start(self) -> Stack:
        mbp = await asyncio.to_thread(build_mbp, self.workdir)
        await self.synapse.start()
        self.maubot = MaubotServer(self.workdir / "maubot", homeserver_url=self.synapse.base_url)
        await self.maubot.start()
        self.admin = await self.synapse.register_user(f"admin-{secrets.token_hex(3)}")
        self.bot = await self.synapse.register_user(f"bot-{secrets.token_hex(3)}")
        self.plugin = await start_plugin(
            self.maubot, self.synapse, self.bot, [self.admin.user_id], self.instance_id, mbp
        )
        return self

    async def stop(self) -> None:
        """Stop maubot, then Synapse. Idempotent; safe after a failed start."""
        try:
            if self.maubot is not None:
                await self.maubot.stop()
        finally:
            await self.synapse.stop()
            if not self.keep:
                shutil.rmtree(self.workdir, ignore_errors=True)

    async def room_with_bot(self, name: str) -> str:
        """A room (Synapse's default version) where the bot has joined and may invite."""
        assert self.admin is not None and self.bot is not None
        return await room_managed_by_bot(self.admin, self.bot, name)

    async def make_link(self, room_id: str, uses: int) -> str:
        """``!invitebot link --uses N`` in the room; returns the link's token."""
        assert self.admin is not None and self.bot is not None
        return (await ask_for_link(self.admin, self.bot, room_id, f"--uses {uses}"))[1]

    def web_session(self, *, cookies: bool = True, limit: int = 100) -> aiohttp.ClientSession:
        """A browser-like client of the plugin's web API (Origin header, own cookie jar)."""
        jar: AbstractCookieJar = (
            aiohttp.CookieJar(unsafe=True) if cookies else aiohttp.DummyCookieJar()
        )
        return aiohttp.ClientSession(
            base_url=self.web_url,
            headers={"Origin": self.origin},
            cookie_jar=jar,
            connector=aiohttp.TCPConnector(limit=limit),
            timeout=aiohttp.ClientTimeout(total=120),
        )

    async def wait_web_ready(self, timeout: float = 60.0) -> float:
        """Seconds until the plugin's web API answers again (e.g. after a maubot restart)."""
        started = time.monotonic()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            while True:
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                    async with http.get(self.web_url + "api/session") as resp:
                        # 401 = the plugin's own "not signed in" answer: the route is up.
                        if resp.status in (200, 401):
                            return time.monotonic() - started
                if time.monotonic() - started > timeout:
                    raise TimeoutError(f"plugin web API not back within {timeout:.0f} s")
                await asyncio.sleep(0.05)


def run_main(run: Callable[[Any], Awaitable[None]], args: Any) -> None:
    """Run a bench's coroutine; Ctrl-C ends it after its finally blocks stopped the servers."""
    try:
        asyncio.run(run(args))
    except KeyboardInterrupt:
        print("interrupted; everything was stopped", file=sys.stderr)
