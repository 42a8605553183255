"""maubot entry point: wires config, storage, services, commands and web routes."""

from __future__ import annotations

from maubot import Plugin
from mautrix.util.async_db import UpgradeTable
from mautrix.util.config import BaseProxyConfig
from yarl import URL

from .chat.commands import InviteBotCommands
from .chat.room_invites import BotInviteHandler
from .chat.room_labels import RoomLabelHandler
from .chat.room_upgrades import RoomUpgradeHandler
from .chat.space_children import SpaceChildHandler
from .config import Config, ConfigError, Settings, read_settings
from .matrix.rooms import RoomOps
from .services.container import Services
from .storage import Storage, upgrade_table
from .webapp.app import install_web_app

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
        try:
            settings = read_settings(self.config)
        except ConfigError as e:
            # Nothing runs yet, so there are no old settings to keep: refuse to start,
            # naming every wrong key (maubot shows the instance as stopped, with this log).
            message = "The instance config has errors, fix them and start again: " + str(e)
            self.log.error(message)
            raise RuntimeError(message) from None
        self._commands = InviteBotCommands(None)
        self._bot_invites = BotInviteHandler(None)
        self.register_handler_class(self._commands)
        self.register_handler_class(self._bot_invites)
        self._room_upgrades = RoomUpgradeHandler(None)
        self.register_handler_class(self._room_upgrades)
        self._space_children = SpaceChildHandler(None)
        self.register_handler_class(self._space_children)
        self._room_labels = RoomLabelHandler(None)
        self.register_handler_class(self._room_labels)
        await self._start_services(settings)
        self.sched.run_periodically(_PURGE_INTERVAL, self._purge_expired)

    def _build_services(self, settings: Settings) -> Services:
        public_url = URL(settings.web.public_url) if settings.web.public_url else self.webapp_url
        rooms = RoomOps(self.client, settings.matrix.request_timeout)
        return Services(settings, Storage(self.database), rooms, public_url, self.log)

    async def _start_services(self, settings: Settings) -> None:
        services = self._build_services(settings)
        self._commands.services = self._bot_invites.services = services
        self._room_upgrades.services = self._space_children.services = services
        self._room_labels.services = services
        if self.webapp is not None:
            install_web_app(self.webapp, services, self.loader.read_file, self.log)
        await services.start()
        self.services = services

    async def _purge_expired(self) -> None:
        if self.services is not None:
            await self.services.purge_expired()

    async def stop(self) -> None:
        if self.services is not None:
            await self.services.stop()
            self.services = None

    async def on_external_config_update(self) -> None:
        """Apply a config saved in maubot's manager, or keep the running one if it is wrong.

        The new settings are read and validated before anything running is touched: a
        wrong value must never leave the bot half-stopped (accepting claims with no queue
        to deliver them). Services hold their settings by value, so a good config rebuilds
        them, which is simplest and always right.
        """
        self.config.load_and_update()
        try:
            settings = read_settings(self.config)
        except ConfigError as e:
            await self._refuse_config(e)
            return
        await self.stop()
        await self._start_services(settings)

    async def _refuse_config(self, error: ConfigError) -> None:
        problems = "\n".join(f"* {problem}" for problem in error.problems)
        self.log.error(
            "The new instance config was NOT applied; still running on the previous one. "
            "Wrong keys: %s",
            "; ".join(error.problems),
        )
        if self.services is not None and self.services.settings.admin_room:
            await self.services.rooms.send_notice(
                self.services.settings.admin_room,
                "The new instance config was **not applied**: I keep running on the previous "
                f"one until these keys are fixed:\n\n{problems}",
            )
