"""The plugin's services, built once per start and shared by commands and web routes."""

from __future__ import annotations

import logging

from yarl import URL

from ..config import Settings
from ..durations import now_ms
from ..identity.verifier import OpenIDVerifier
from ..matrix.rooms import RoomOps
from ..storage import Storage
from .bot_memberships import BotMemberships
from .direct_chats import DirectChats
from .direct_claims import DirectClaims
from .grants import GrantService
from .invite_queue import InviteQueue
from .links import LinkService
from .reporting import MembershipReporter
from .room_admin import RoomAdmin
from .room_directory import RoomDirectory
from .room_upgrades import RoomUpgrades
from .web_sessions import WebSessionService

QUEUE_REQUEST_TIMEOUT = 30.0


class Services:
    def __init__(
        self,
        settings: Settings,
        storage: Storage,
        rooms: RoomOps,
        public_base_url: URL,
        log: logging.Logger,
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.rooms = rooms
        self.public_base_url = public_base_url
        self.sessions = WebSessionService(storage, settings.web.session_lifetime)
        self.verifier = OpenIDVerifier(settings.identity)
        self.reporter = MembershipReporter(storage, rooms, settings.admin_room)
        # The queue answers nobody waiting, and an invite to a user on another server
        # waits for that server too: it gets a longer bound than the interactive calls.
        queue_rooms = RoomOps(rooms.client, max(QUEUE_REQUEST_TIMEOUT, rooms.request_timeout))
        self.queue = InviteQueue(
            storage, queue_rooms, settings.invites, self.reporter, log.getChild("queue")
        )
        self.grants = GrantService(storage, self.queue.wake)
        self.links = LinkService(storage, self.grants)
        self.direct_chats = DirectChats(rooms)
        self.room_admin = RoomAdmin(rooms, self.direct_chats)
        self.bot_memberships = BotMemberships(settings, storage, rooms, self.direct_chats)
        self.room_directory = RoomDirectory(rooms, settings.web)
        self.direct_claims = DirectClaims(
            self.links, rooms, self.queue, log.getChild("direct_claims")
        )
        self.room_upgrades = RoomUpgrades(
            storage, rooms, self.direct_chats, settings.admin_room, log.getChild("upgrades")
        )

    def invite_url(self, token: str) -> str:
        # The token travels in the fragment: browsers never send it to the server in the
        # request line or a Referer, so it stays out of access logs.
        return str(self.public_base_url / "invite") + "#" + token

    async def purge_expired(self) -> None:
        """Forget expired web sessions and used OpenID tokens (run every few minutes)."""
        await self.storage.sessions.purge_expired(now_ms())

    async def start(self) -> None:
        self.queue.start()
        self.room_upgrades.start()

    async def stop(self) -> None:
        await self.room_upgrades.stop()
        await self.direct_claims.stop()
        await self.queue.stop()
        await self.verifier.close()
