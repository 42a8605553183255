"""The admin panel's actions and its view of a room, over the services the chat commands
use (LinkService, BindingService, RecheckService, GrantService) and the same checks: every
action first reads the room fresh through `ManagedRooms.require` (RoomAdmin), and the
rooms of the link or binding it changes, as the commands do."""

from __future__ import annotations

from collections.abc import Callable

import attrs

from ..config import LinkSettings
from ..durations import now_ms
from ..errors import UserFacingError
from ..providers.registry import ProviderRegistry
from ..storage import Binding, InviteLink, Storage
from . import manage_texts as texts
from . import registration_texts
from .bindings import (
    BindingService,
    BindingView,
    grace_seconds,
    policy_needs,
)
from .grants import GrantService, GrantSource
from .links import LinkService, expiry_seconds
from .manage_views import (
    AccountCard,
    AuditCard,
    BindingCard,
    InviteCard,
    Joined,
    LastRecheck,
    LinkCard,
    PersonCard,
    RoomView,
    RuleCard,
)
from .managed_rooms import ManagedRoom, ManagedRooms
from .rechecks import RecheckOutcome, RecheckService
from .registration import RegistrationService
from .reporting import MembershipReporter
from .spaces import SpaceRooms

LIST_LIMIT = 500
AUDIT_LIMIT = 50


class ManageService:
    def __init__(
        self,
        storage: Storage,
        managed: ManagedRooms,
        links: LinkService,
        bindings: BindingService,
        rechecks: RecheckService,
        grants: GrantService,
        reporter: MembershipReporter,
        providers: ProviderRegistry,
        link_settings: LinkSettings,
        binding_url: Callable[[str], str],
        spaces: SpaceRooms,
        registration: RegistrationService,
        show_external_accounts: bool = False,
    ) -> None:
        self.storage = storage
        self.managed = managed
        self.links = links
        self.bindings = bindings
        self.rechecks = rechecks
        self.grants = grants
        self.reporter = reporter
        self.providers = providers
        self.link_settings = link_settings
        self.binding_url = binding_url
        self.spaces = spaces
        self.registration = registration
        self.show_external_accounts = show_external_accounts

    # -- the room -------------------------------------------------------------------------

    async def room_view(self, user_id: str, room_id: str) -> RoomView:
        info = await self.managed.require(user_id, room_id)
        room = ManagedRoom(
            room_id=info.room_id,
            name=info.display_name,
            topic=info.topic,
            is_space=info.is_space,
            may_kick=info.power.can(user_id, "kick"),
        )
        links = await self.links.for_room(room_id)
        views = await self.bindings.for_room(room_id)
        others = {r for link in links for r in link.rooms} | {
            r for view in views for r in view.binding.rooms
        }
        visible = await self.managed.visible_to(user_id, others - {room_id}) | {room_id}
        people = await self.storage.room_people.granted(room_id, LIST_LIMIT)
        accounts = (
            await self.storage.room_people.accounts(room_id) if self.show_external_accounts else {}
        )
        invites = {
            state: [
                InviteCard(i.user_id, i.errcode, i.error, i.updated_at)
                for i in await self.storage.room_people.invites(room_id, state, LIST_LIMIT)
            ]
            for state in ("pending", "failed")
        }
        audit = [
            AuditCard(e.at, e.actor, e.action, e.target, e.detail)
            for e in await self.reporter.recent(room_id, AUDIT_LIMIT)
        ]
        return RoomView(
            room=room,
            links=await self._link_cards(links, visible),
            bindings=[await self._binding_card(view, visible) for view in views],
            people=[
                PersonCard(
                    p.user_id,
                    "link" if p.link_id is not None else "binding",
                    p.link_id,
                    p.binding_public_id,
                    p.at,
                    [
                        AccountCard(provider, name)
                        for provider, name in accounts.get((p.binding_public_id, p.user_id), [])
                    ],
                )
                for p in people
            ],
            invites=invites,
            audit=audit,
        )

    async def _link_cards(self, links: list[InviteLink], visible: set[str]) -> list[LinkCard]:
        ids = [link.id for link in links]
        names = await self.storage.link_names.of(ids)
        claims = await self.storage.room_people.link_claims(ids)
        now = now_ms()
        return [
            LinkCard(
                id=link.id,
                name=names.get(link.id),
                rooms=[r for r in link.rooms if r in visible],
                hidden_rooms=sum(1 for r in link.rooms if r not in visible),
                uses=link.uses,
                max_uses=link.max_uses,
                uses_left=link.uses_left(),
                expires_at=link.expires_at,
                revoked=link.revoked_at is not None,
                state=link.unusable_reason(now) or "active",
                created_by=link.created_by,
                created_at=link.created_at,
                joined=[Joined(user, at) for user, at in claims.get(link.id, [])],
                register=await self.registration.offered("link", link.id),
            )
            for link in links
        ]

    async def _binding_card(self, view: BindingView, visible: set[str]) -> BindingCard:
        binding: Binding = view.binding
        state = await self.rechecks.state(binding.id)
        last = None
        if state is not None and state.last_finished_at is not None:
            last = LastRecheck(
                state.last_finished_at, state.last_outcome, state.last_detail, state.last_calls
            )
        return BindingCard(
            id=binding.public_id,
            description=view.description,
            rules=[RuleCard.of(r) for r in view.rules],
            rooms=[r for r in binding.rooms if r in visible],
            hidden_rooms=sum(1 for r in binding.rooms if r not in visible),
            policy=binding.policy,
            grace_seconds=binding.grace_ms // 1000,
            last_recheck=last,
            next_recheck_at=None if state is None else state.next_at,
            url=self.binding_url(binding.public_id),
            created_by=binding.created_by,
            created_at=binding.created_at,
            register=await self.registration.offered("binding", binding.id),
        )

    # -- links ----------------------------------------------------------------------------

    async def create_link(
        self,
        user_id: str,
        room_id: str,
        more_rooms: list[str],
        name: str | None,
        uses: int | None,
        expires: str | None,
        register: bool = False,
    ) -> tuple[LinkCard, str, list[str]]:
        """A new link (as `!invitebot link`), its token (returned this once), and what the
        reply to the command would add: the rooms of a space where the bot cannot act."""
        rooms = _rooms(room_id, more_rooms)
        expires_in = expiry_seconds(self.link_settings, expires)
        if register:
            self.registration.require_enabled()
        await self.managed.require_all(user_id, rooms, ("invite",))
        link, token = await self.links.create(user_id, tuple(rooms), uses, expires_in)
        if name:
            await self.storage.link_names.set(link.id, name)
        notes = await self.spaces.power_gaps(tuple(rooms))
        if register:
            notes.append(await self._offer("link", link.id, link.rooms, user_id))
        [card] = await self._link_cards([link], set(rooms))
        return card, token, notes

    async def _offer(self, kind: str, item_id: int, rooms: tuple[str, ...], by: str) -> str:
        """Offer new accounts through the link or binding just made (as `--register`)."""
        await self.registration.offer(kind, item_id, rooms, by)
        server_name = self.registration.settings.server_name
        return registration_texts.offered_note(server_name).strip()

    async def revoke_link(self, user_id: str, room_id: str, link_id: int) -> LinkCard:
        await self.managed.require(user_id, room_id)
        link = await self.links.get(link_id)
        if link is None or room_id not in link.rooms:
            raise UserFacingError(
                "TPI_LINK_UNKNOWN", texts.LINK_UNKNOWN.format(link_id=link_id), 404
            )
        await self.managed.require_all(user_id, link.rooms)
        await self.links.revoke(link.id, user_id)
        fresh = await self.links.get(link.id) or link
        [card] = await self._link_cards([fresh], set(fresh.rooms))
        return card

    # -- rules and bindings ---------------------------------------------------------------

    def check_rules(self, text: str) -> tuple[list[RuleCard], str]:
        described, description = self.bindings.describe_text(text)
        return [RuleCard.of(d) for d in described], description

    def provider_list(self) -> tuple[list[dict[str, object]], str | None]:
        providers = [
            {
                "id": p.id,
                "name": p.display_name,
                "kind": p.kind,
                "rule_kinds": [attrs.asdict(shape) for shape in p.rule_shapes()],
            }
            for p in self.providers.all()
        ]
        return providers, self.providers.unavailable or None

    def registration_server(self) -> str | None:
        """The homeserver new accounts are offered on, when the operator set one up."""
        if self.registration.minter is None:
            return None
        return self.registration.settings.server_name

    async def create_binding(
        self,
        user_id: str,
        room_id: str,
        rules: str,
        more_rooms: list[str],
        register: bool = False,
    ) -> tuple[BindingCard, list[str]]:
        """A new binding (as `!invitebot bind`): the rules first, then every room's power."""
        rooms = _rooms(room_id, more_rooms)
        self.bindings.parse(rules)  # say what is wrong with them first
        if register:
            self.registration.require_enabled()
        await self.managed.require_all(user_id, rooms, ("invite",))
        view = await self.bindings.create(user_id, rules, tuple(rooms))
        notes = [*view.notes, *await self.spaces.power_gaps(view.binding.rooms)]
        if register:
            rooms_of = view.binding.rooms
            notes.append(await self._offer("binding", view.binding.id, rooms_of, user_id))
        return await self._binding_card(view, set(rooms)), notes

    async def _binding_in(self, user_id: str, room_id: str, public_id: str) -> BindingView:
        await self.managed.require(user_id, room_id)
        try:
            view = await self.bindings.get(public_id)
        except UserFacingError:
            view = None
        if view is None or room_id not in view.binding.rooms:
            raise UserFacingError(
                "TPI_BINDING_UNKNOWN", texts.BINDING_UNKNOWN.format(binding=public_id), 404
            )
        return view

    async def remove_binding(self, user_id: str, room_id: str, public_id: str) -> BindingCard:
        view = await self._binding_in(user_id, room_id, public_id)
        await self.managed.require_all(user_id, view.binding.rooms)
        await self.bindings.remove(view, user_id)
        return await self._binding_card(view, set(view.binding.rooms))

    async def set_policy(
        self, user_id: str, room_id: str, public_id: str, policy: str, grace: str | None
    ) -> tuple[BindingCard, list[str]]:
        # BindingService.set_policy refuses a policy it does not know, after the checks.
        grace_s = grace_seconds(grace) if grace is not None else 0.0
        view = await self._binding_in(user_id, room_id, public_id)
        needs = policy_needs(policy)
        await self.managed.require_all(user_id, view.binding.rooms, needs)
        view = await self.bindings.set_policy(view, policy, int(grace_s * 1000), user_id)
        gaps = await self.spaces.power_gaps(view.binding.rooms, needs)
        return await self._binding_card(view, set(view.binding.rooms)), gaps

    async def recheck(self, user_id: str, room_id: str, public_id: str) -> RecheckOutcome:
        view = await self._binding_in(user_id, room_id, public_id)
        await self.managed.require_all(user_id, view.binding.rooms)
        return await self.rechecks.recheck_now(view)

    # -- invites --------------------------------------------------------------------------

    async def retry_invite(self, user_id: str, room_id: str, person: str) -> tuple[str, ...]:
        """Queue again a failed invite of someone a live grant admits to the room."""
        await self.managed.require(user_id, room_id, ("invite",))
        row = await self.storage.room_people.failed_invite(room_id, person)
        source = None
        if row is not None and row.grant_id is not None:
            source = await self.storage.room_people.live_grant(row.grant_id, person)
        if source is None:
            raise UserFacingError(
                "TPI_INVITE_UNKNOWN", texts.INVITE_UNKNOWN.format(user_id=person), 404
            )
        link_id, binding_id, external_id = source
        grant = await self.grants.grant(
            person, (room_id,), GrantSource(link_id, binding_id, external_id)
        )
        await self.storage.audit.add(now_ms(), user_id, "invite_retried", room_id, person)
        return grant.rooms


def _rooms(room_id: str, more: list[str]) -> list[str]:
    rooms = [room_id]
    for other in more:
        if other not in rooms:
            rooms.append(other)
    return rooms
