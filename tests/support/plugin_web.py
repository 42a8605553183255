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

from devtools.web_client import web_client
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
    storage: Storage,
    config_overrides: dict | None = None,
    *,
    homeserver_url: str = "http://127.0.0.1:9",
) -> AsyncIterator[tuple[aiohttp.ClientSession, Services, URL]]:
    """(client session for the API, services, public base URL) of a running web app.

    The bot's client points at `homeserver_url`: by default a closed loopback port, so
    tests here never reach Matrix (the bot's homeserver is down, as far as it knows)."""
    settings = load_settings(config_overrides or {})
    bot = TestBot(mxid="@bot:hs.test", mxurl=homeserver_url)
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
    rooms = RoomOps(bot.client, settings.matrix.request_timeout)
    services = Services(settings, storage, rooms, base, log)

    async def read_file(name: str) -> bytes:  # maubot's loaders read files asynchronously
        return (ROOT / name).read_bytes()

    install_web_app(plugin_app, services, read_file, log)
    async with web_client(str(base)) as http:
        try:
            yield http, services, base
        finally:
            await services.stop()
            await bot.client.api.session.close()
            await server.close()
