"""The plugin's services, built once per start and shared by commands and web routes."""

from __future__ import annotations

import logging

from yarl import URL

from ..config import Settings
from ..durations import now_ms
from ..identity.verifier import OpenIDVerifier
from ..matrix.registration_tokens import SynapseAdminMinter
from ..matrix.rooms import RoomOps
from ..net.guard import AddressPolicy
from ..net.http import OutboundHTTP
from ..providers.registry import SINGLE_KINDS as SINGLE_PROVIDER_KINDS
from ..providers.registry import ProviderRegistry
from ..storage import Storage
from .bindings import BindingService
from .bot_memberships import BotMemberships
from .direct_chats import DirectChats
from .direct_claims import DirectClaims
from .grants import GrantService
from .invite_queue import InviteQueue
from .kept_tokens import KeptTokens
from .links import LinkService
from .loss_policy import LossPolicy
from .manage import ManageService
from .managed_rooms import ManagedRooms
from .provider_credentials import StoredCredentials
from .provider_signin import ProviderSignIn
from .rechecks import RecheckService
from .registration import RegistrationService
from .reporting import MembershipReporter
from .room_admin import RoomAdmin
from .room_directory import RoomDirectory
from .room_upgrades import RoomUpgrades
from .spaces import SpaceRooms
from .web_sessions import WebSessionService
from .webhooks import WebhookService

QUEUE_REQUEST_TIMEOUT = 30.0
PROVIDER_TIMEOUT = 10.0


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
        self.spaces = SpaceRooms(rooms, settings.admin_room, log.getChild("spaces"))
        self.grants = GrantService(storage, self.queue.wake, self.spaces, log.getChild("grants"))
        self.links = LinkService(storage, self.grants)
        self.direct_chats = DirectChats(rooms)
        self.room_admin = RoomAdmin(rooms, self.direct_chats)
        self.bot_memberships = BotMemberships(settings, storage, rooms, self.direct_chats)
        self.room_directory = RoomDirectory(rooms, settings.web)
        self.room_upgrades = RoomUpgrades(
            storage, rooms, self.direct_chats, settings.admin_room, log.getChild("upgrades")
        )
        # Provider endpoints are the operator's choice (a self-hosted GitLab or Keycloak
        # may be on a private network): they are reached with the direct session.
        self.provider_http = OutboundHTTP(timeout=PROVIDER_TIMEOUT, policy=AddressPolicy())
        self.providers = ProviderRegistry(settings.providers, self.provider_http)
        for provider in self.providers.all():  # refreshed listing tokens outlive restarts
            provider.credentials = StoredCredentials(storage.credentials, provider.id)
        if self.providers.unavailable:
            log.warning("Provider bindings are off: %s", self.providers.unavailable)
        self.bindings = BindingService(storage, self.providers, settings.rechecks.interval)
        self.loss_policy = LossPolicy(
            storage,
            rooms,
            settings.rechecks,
            settings.admin_room,
            self.queue.wake,
            self.spaces.expand,
        )
        self.kept_tokens = KeptTokens(storage, settings.rechecks.token_key, log.getChild("kept"))
        self.rechecks = RecheckService(
            storage,
            self.bindings,
            self.loss_policy,
            self.kept_tokens,
            settings.rechecks,
            log.getChild("rechecks"),
        )
        self.webhooks = WebhookService(
            storage, self.providers, self.rechecks, log.getChild("webhooks")
        )
        self.provider_signin = ProviderSignIn(
            storage,
            self.bindings,
            self.grants,
            self.oauth_callback_url,
            settings.providers.max_matrix_ids_per_account,
            self.kept_tokens.keep,
        )
        registration = settings.registration
        self.registration = RegistrationService(
            registration,
            storage,
            self.bindings,
            self.links,
            self.grants,
            self.provider_signin,
            settings.providers.max_matrix_ids_per_account,
            SynapseAdminMinter(registration.admin_api_url, registration.admin_token)
            if registration.enabled
            else None,
            log.getChild("registration"),
        )
        # The admin panel: the rooms a person may manage, and its actions.
        self.managed_rooms = ManagedRooms(
            storage, rooms, self.room_admin, self.direct_chats, log.getChild("panel")
        )
        self.manage = ManageService(
            storage,
            self.managed_rooms,
            self.links,
            self.bindings,
            self.rechecks,
            self.grants,
            self.reporter,
            self.providers,
            settings.links,
            self.binding_url,
            self.spaces,
            self.registration,
            settings.web.show_external_accounts,
        )
        self.direct_claims = DirectClaims(
            self.links,
            self.bindings,
            self.provider_signin,
            self.binding_signin_url,
            rooms,
            self.room_directory,
            self.queue,
            log.getChild("direct_claims"),
        )

    def invite_url(self, token: str) -> str:
        # The token travels in the fragment: browsers never send it to the server in the
        # request line or a Referer, so it stays out of access logs.
        return str(self.public_base_url / "invite") + "#" + token

    def binding_url(self, public_id: str) -> str:
        return str(self.public_base_url / "join") + "#" + public_id

    def manage_url(self, room_id: str) -> str:
        """The admin panel, opened on a room (the fragment stays in the browser)."""
        return str(self.public_base_url / "manage") + "#" + room_id

    def binding_signin_url(self, public_id: str, ticket: str) -> str:
        """The page of a binding with a one-time ticket standing in for the Matrix sign-in."""
        return str(self.public_base_url / "join") + f"#{public_id}.{ticket}"

    def describe_providers(self) -> str:
        """What `!invitebot providers` answers: what is set up, and what to register."""
        registry = self.providers
        if registry.unavailable:
            return f"Provider rules are off on this bot. {registry.unavailable}"
        configured = registry.all()
        lines = [f"* **{p.display_name}**: `{p.id} <rule>`" for p in configured]
        missing = [k for k in SINGLE_PROVIDER_KINDS if registry.get(k) is None]
        text = (
            "Providers set up here:\n\n" + "\n".join(lines)
            if lines
            else "No provider is set up here yet."
        )
        if missing:
            text += (
                f"\n\nNot set up: {', '.join(missing)} (the operator adds them to the instance "
                "config; any number of OpenID Connect providers can be added too)."
            )
        hooks = [
            f"* {p.display_name}: {self.webhook_url(p.kind)}"
            for p in configured
            if p.webhook_secret and self.public_base_url is not None
        ]
        if hooks:
            text += "\n\nWebhook URLs (deliveries re-check the people concerned):\n\n"
            text += "\n".join(hooks)
        return (
            f"{text}\n\nCallback URL to register with each provider's OAuth application:"
            f" {self.oauth_callback_url}"
        )

    def webhook_url(self, kind: str) -> str:
        return str(self.public_base_url / "api" / "webhooks" / kind)

    @property
    def oauth_callback_url(self) -> str:
        """The one callback URL operators register at every provider ("" without a web
        app, as under maubot's test fixtures)."""
        if self.public_base_url is None:
            return ""
        return str(self.public_base_url / "api" / "oauth" / "callback")

    async def purge_expired(self) -> None:
        """Forget expired web sessions and used OpenID tokens, and refresh tokens no seat
        needs any more (run every few minutes)."""
        await self.storage.sessions.purge_expired(now_ms())
        await self.storage.signins.purge_expired(now_ms())
        await self.storage.kept_tokens.forget_unused()
        await self.registration.purge_expired()  # unused registration tokens, at Synapse too

    async def start(self) -> None:
        self.queue.start()
        self.room_upgrades.start()
        self.rechecks.start()
        self.grants.start()

    async def stop(self) -> None:
        await self.grants.stop()
        await self.provider_signin.stop()  # its checks still use the providers
        await self.rechecks.stop()
        await self.room_upgrades.stop()
        await self.direct_claims.stop()
        await self.queue.stop()
        await self.verifier.close()
        await self.providers.close()
        await self.provider_http.close()
        await self.registration.close()
