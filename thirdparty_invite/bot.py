"""maubot entry point: wires config, storage, services, commands and web routes."""

from __future__ import annotations

from maubot import Plugin
from mautrix.util.async_db import UpgradeTable
from mautrix.util.config import BaseProxyConfig
from yarl import URL

from .chat.commands import InviteBotCommands
from .chat.room_invites import BotInviteHandler
from .config import Config, read_settings
from .durations import now_ms
from .matrix.rooms import RoomOps
from .services.container import Services
from .storage import Storage, upgrade_table
from .webapp.api import WebAPI
from .webapp.static import StaticFiles
from .webapp.support import error_middleware

_PURGE_INTERVAL = 600


class InviteBot(Plugin):
    services: Services | None = None

    @classmethod
    def get_config_class(cls) -> type[BaseProxyConfig]:
        return Config

    @classmethod
    def get_db_upgrade_table(cls) -> UpgradeTable:
        return upgrade_table

    async def start(self) -> None:
        self.config.load_and_update()
        self._commands = InviteBotCommands(None)
        self._bot_invites = BotInviteHandler(None)
        self.register_handler_class(self._commands)
        self.register_handler_class(self._bot_invites)
        await self._start_services()
        self.sched.run_periodically(_PURGE_INTERVAL, self._purge_expired)

    async def _start_services(self) -> None:
        settings = read_settings(self.config)
        public_url = URL(settings.web.public_url) if settings.web.public_url else self.webapp_url
        services = Services(
            settings, Storage(self.database), RoomOps(self.client), public_url, self.log
        )
        self._commands.services = self._bot_invites.services = services
        if self.webapp is not None:
            self.webapp.clear()
            self.webapp.add_middleware(error_middleware(self.log))
            WebAPI(services, self.log).register(self.webapp)
            StaticFiles(self.loader.read_file).register(self.webapp)
        await services.start()
        self.services = services

    async def _purge_expired(self) -> None:
        if self.services is not None:
            await self.services.storage.sessions.purge_expired(now_ms())

    async def stop(self) -> None:
        if self.services is not None:
            await self.services.stop()
            self.services = None

    async def on_external_config_update(self) -> None:
        # Services hold their settings by value: rebuilding them is simplest and always right.
        self.config.load_and_update()
        await self.stop()
        await self._start_services()
