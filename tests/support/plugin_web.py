"""The plugin's web routes served the way maubot serves them, for tests without maubot.

maubot's `maubot_plugin` fixture passes webapp=None, so this builds a real PluginWebApp,
mounts it under a prefix with the same path rewriting maubot's server does, and serves it
on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
import logging
from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from maubot.plugin_server import PluginWebApp
from maubot.testing.bot import TestBot
from yarl import URL

from thirdparty_invite.config import Config, read_settings
from thirdparty_invite.matrix.rooms import RoomOps
from thirdparty_invite.services.container import Services
from thirdparty_invite.storage import Storage
from thirdparty_invite.webapp.app import install_web_app

ROOT = Path(__file__).resolve().parent.parent.parent
PREFIX = "/_matrix/maubot/plugin/tests"


def load_settings(overrides: dict) -> object:
    from mautrix.util.config import RecursiveDict
    from ruamel.yaml import YAML

    base = RecursiveDict(YAML().load((ROOT / "base-config.yaml").read_text()))
    config = Config(load=lambda: overrides, load_base=lambda: base, save=lambda _: None)
    config.load_and_update()
    return read_settings(config)


@asynccontextmanager
async def serve_plugin_web(
    storage: Storage, config_overrides: dict | None = None
) -> AsyncIterator[tuple[aiohttp.ClientSession, Services, URL]]:
    """(client session for the API, services, public base URL) of a running web app."""
    settings = load_settings(config_overrides or {})
    # The bot's client points at a closed loopback port: tests here never reach Matrix.
    bot = TestBot(mxid="@bot:hs.test", mxurl="http://127.0.0.1:9")
    log = logging.getLogger("test.web")
    plugin_app = PluginWebApp()
    app = web.Application()

    async def dispatch(request: web.Request) -> web.StreamResponse:
        request = request.clone(rel_url=request.rel_url.with_path(request.path[len(PREFIX) :]))
        return await plugin_app.handle(request)

    app.router.add_route("*", PREFIX + "/{tail:.*}", dispatch)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    base = URL(f"http://127.0.0.1:{server.port}{PREFIX}/")
    services = Services(settings, storage, RoomOps(bot.client), base, log)

    async def read_file(name: str) -> bytes:  # maubot's loaders read files asynchronously
        return (ROOT / name).read_bytes()

    install_web_app(plugin_app, services, read_file, log)
    origin = f"http://127.0.0.1:{server.port}"
    async with aiohttp.ClientSession(
        base_url=f"{origin}{PREFIX}/",
        headers={"Origin": origin},
        cookie_jar=aiohttp.CookieJar(unsafe=True),  # cookies from 127.0.0.1
    ) as http:
        try:
            yield http, services, base
        finally:
            await services.stop()
            await bot.client.api.session.close()
            await server.close()
