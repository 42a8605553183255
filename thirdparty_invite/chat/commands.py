"""`!invitebot ...` commands: `claim` for anyone (in a direct chat with the bot), the rest
for room admins, typed in the room they act on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from maubot import MessageEvent
from maubot.handlers import command

from ..durations import now_ms
from ..errors import UserFacingError
from ..matrix.rooms import RoomInfo
from ..services import registration_texts
from ..services.links import describe_limits, expiry_seconds
from . import lifecycle
from .arguments import parse_bind_args, parse_link_args, take_register_flag

if TYPE_CHECKING:
    from ..services.container import Services

# Subcommands anyone may use; every other one checks the sender's power in the room.
FOR_EVERYONE = ("claim", "help")


class InviteBotCommands:
    def __init__(self, services: Services) -> None:
        self.services = services

    @command.new("invitebot", help="Invites people who qualify into rooms.")
    async def invitebot(self, evt: MessageEvent) -> None:
        pass  # require_subcommand: maubot answers with the help text.

    @invitebot.subcommand("help", help="This list.")
    async def help(self, evt: MessageEvent) -> None:
        await evt.reply(self.help_text())

    def help_text(self) -> str:
        """The command list, generated from the subcommand definitions below."""
        subs = self.invitebot.__mb_subcommands__
        lines = ["**!invitebot** invites people who qualify into rooms.", "", "For everyone:"]
        lines += [_help_line(sub) for sub in subs if sub.__mb_name__ in FOR_EVERYONE]
        lines += ["", "For room admins (who may invite in the room), typed in that room:"]
        lines += [_help_line(sub) for sub in subs if sub.__mb_name__ not in FOR_EVERYONE]
        return "\n".join(lines)

    @invitebot.subcommand(
        "claim", help="Send me an invite link in a direct message, and I invite you."
    )
    @command.argument("code", label="link", required=True, pass_raw=True)
    async def claim(self, evt: MessageEvent, code: str = "") -> None:
        # Never log `code`: it admits people. The service checks where it was sent.
        reply = await self.services.direct_claims.claim(
            str(evt.room_id), str(evt.event_id), str(evt.sender), code
        )
        if reply.sensitive:
            await self.services.rooms.reply_with_secret(
                str(evt.room_id), str(evt.event_id), reply.text
            )
        else:
            await evt.reply(reply.text)

    @invitebot.subcommand(
        "link", help="A new invite link to this room (or the rooms named); shown once."
    )
    @command.argument(
        "args",
        label="--uses N] [--expires 7d|never] [--register] [room ...",
        required=False,
        pass_raw=True,
    )
    async def link(self, evt: MessageEvent, args: str = "") -> None:
        try:
            args, register = take_register_flag(args)
            self._require_registration(register)
            uses, expires, room_refs = parse_link_args(args)
            expires_in = self._expiry(expires)
            rooms = await self.services.room_admin.resolve(room_refs or [str(evt.room_id)])
            infos = [await self._require_manager(evt, room_id) for room_id in rooms]
        except UserFacingError as e:
            await evt.reply(e.message)
            return
        link, token = await self.services.links.create(
            str(evt.sender), tuple(rooms), uses, expires_in
        )
        names = ", ".join(info.display_name for info in infos)
        url = self.services.invite_url(token)
        gaps = await self._space_gaps(tuple(rooms))
        if register:
            gaps += await self._offer_registration("link", link.id, link.rooms, evt)
        await self.services.rooms.reply_with_secret(
            str(evt.room_id),
            str(evt.event_id),
            f"Invite link **#{link.id}** to {names} ({describe_limits(link, now_ms())}):\n\n"
            f"{url}\n\nAnyone holding this link can join; it is shown only now. "
            f"Revoke it with `!invitebot revoke {link.id}`.{gaps}"
            f"\n\nManage this room on the web: {self.services.manage_url(str(evt.room_id))}",
        )

    @invitebot.subcommand("links", help="This room's invite links, uses left and expiry.")
    async def links(self, evt: MessageEvent) -> None:
        try:
            await self._require_manager(evt, str(evt.room_id))
        except UserFacingError as e:
            await evt.reply(e.message)
            return
        links = await self.services.links.for_room(str(evt.room_id))
        if not links:
            await evt.reply("This room has no invite links. Create one with `!invitebot link`.")
            return
        now = now_ms()
        lines = []
        for link in links:
            state = link.unusable_reason(now) or "active"
            lines.append(
                f"* **#{link.id}** {state}: {describe_limits(link, now)}; by {link.created_by}"
                f"{await self._offers_accounts('link', link.id)}"
            )
        await evt.reply("Invite links of this room:\n\n" + "\n".join(lines))

    @invitebot.subcommand("revoke", help="Revoke an invite link: it admits nobody any more.")
    @command.argument("link_id", label="id", required=True)
    async def revoke(self, evt: MessageEvent, link_id: str) -> None:
        link = None
        if link_id.lstrip("#").isdigit():
            link = await self.services.links.get(int(link_id.lstrip("#")))
        if link is None or str(evt.room_id) not in link.rooms:
            await evt.reply(f"This room has no invite link #{link_id.lstrip('#')}.")
            return
        try:
            for room_id in link.rooms:
                await self._require_manager(evt, room_id, bot_needs=())
        except UserFacingError as e:
            await evt.reply(e.message)
            return
        if await self.services.links.revoke(link.id, str(evt.sender)):
            await evt.reply(f"Invite link #{link.id} is revoked: it admits nobody from now on.")
        else:
            await evt.reply(f"Invite link #{link.id} was already revoked.")

    @invitebot.subcommand(
        "bind",
        help="Open this room (or those named) to people who satisfy every rule, e.g. "
        "`github team:matrix-org/maintainers and patreon tier:Gold`.",
    )
    @command.argument(
        "args",
        label="provider> <rule> [and ...] [--room ROOM ...] [--register",
        required=True,
        pass_raw=True,
    )
    async def bind(self, evt: MessageEvent, args: str = "") -> None:
        try:
            args, register = take_register_flag(args)
            self._require_registration(register)
            rules_text, room_refs = parse_bind_args(args)
            self.services.bindings.parse(rules_text)  # say what is wrong with them first
            rooms = await self.services.room_admin.resolve(room_refs or [str(evt.room_id)])
            infos = [await self._require_manager(evt, room_id) for room_id in rooms]
            view = await self.services.bindings.create(str(evt.sender), rules_text, tuple(rooms))
        except UserFacingError as e:
            await evt.reply(e.message)
            return
        names = ", ".join(info.display_name for info in infos)
        public_id = view.binding.public_id
        # What a provider could not check at bind time (bound anyway), for the admin.
        notes = "".join(f"\n\nNote: {note}" for note in view.notes)
        notes += await self._space_gaps(view.binding.rooms)
        if register:
            notes += await self._offer_registration(
                "binding", view.binding.id, view.binding.rooms, evt
            )
        await evt.reply(
            f"{names} is now open to {view.description}.\n\n"
            f"Share this link: {self.services.binding_url(public_id)}\n\n"
            f"Binding `{public_id}`; remove it with `!invitebot unbind {public_id}`.{notes}"
            f"\n\nManage this room on the web: {self.services.manage_url(str(evt.room_id))}"
        )

    @invitebot.subcommand("bindings", help="This room's bindings, in words, with their links.")
    async def bindings(self, evt: MessageEvent) -> None:
        try:
            await self._require_manager(evt, str(evt.room_id), bot_needs=())
        except UserFacingError as e:
            await evt.reply(e.message)
            return
        views = await self.services.bindings.for_room(str(evt.room_id))
        if not views:
            await evt.reply(
                "This room has no bindings. Open it to people who prove something at a "
                "provider with `!invitebot bind` (`!invitebot providers` lists them)."
            )
            return
        lines = [
            f"* `{v.binding.public_id}`: open to {v.description}; by {v.binding.created_by}; "
            f"{self.services.binding_url(v.binding.public_id)}"
            f"{await self._offers_accounts('binding', v.binding.id)}"
            for v in views
        ]
        await evt.reply("Bindings of this room:\n\n" + "\n".join(lines))

    @invitebot.subcommand("unbind", help="Remove a binding: its link admits nobody any more.")
    @command.argument("binding_id", label="id", required=True)
    async def unbind(self, evt: MessageEvent, binding_id: str) -> None:
        try:
            view = await self.services.bindings.get(binding_id.strip("`"))
        except UserFacingError:
            view = None
        if view is None or str(evt.room_id) not in view.binding.rooms:
            await evt.reply(f"This room has no binding {binding_id}.")
            return
        try:
            for room_id in view.binding.rooms:
                await self._require_manager(evt, room_id, bot_needs=())
        except UserFacingError as e:
            await evt.reply(e.message)
            return
        await self.services.bindings.remove(view, str(evt.sender))
        await evt.reply(
            f"Binding `{view.binding.public_id}` is removed: its link admits nobody from now "
            "on. People it admitted stay."
        )

    @invitebot.subcommand(
        "policy",
        help="What happens to people a binding admitted once they no longer qualify: kick, "
        "notify (the default) or dry-run, after an optional grace period.",
    )
    @command.argument("args", label="binding> <kick|notify|dry-run> [--grace 3d", pass_raw=True)
    async def policy(self, evt: MessageEvent, args: str = "") -> None:
        await self._lifecycle(evt, lifecycle.policy, args)

    @invitebot.subcommand(
        "recheck", help="Re-check now whether the people this room's bindings admitted qualify."
    )
    @command.argument("args", label="binding] [--accept-shrink", required=False, pass_raw=True)
    async def recheck(self, evt: MessageEvent, args: str = "") -> None:
        await self._lifecycle(evt, lifecycle.recheck, args)

    @invitebot.subcommand("audit", help="The last entries of this room's audit log (10 at most).")
    @command.argument("args", label="n", required=False, pass_raw=True)
    async def audit(self, evt: MessageEvent, args: str = "") -> None:
        await self._lifecycle(evt, lifecycle.audit, args)

    async def _space_gaps(self, rooms: tuple[str, ...]) -> str:
        """For spaces among `rooms`: the rooms they list where the bot cannot invite."""
        gaps = await self.services.spaces.power_gaps(rooms)
        return "".join(f"\n\n{gap}" for gap in gaps)

    async def _lifecycle(self, evt: MessageEvent, handler: lifecycle.Handler, args: str) -> None:
        try:
            reply = await handler(self.services, str(evt.sender), str(evt.room_id), args)
        except UserFacingError as e:
            reply = e.message
        await evt.reply(reply)

    @invitebot.subcommand(
        "providers", help="The providers set up on this bot, and the callback URL to register."
    )
    async def providers(self, evt: MessageEvent) -> None:
        try:
            await self._require_manager(evt, str(evt.room_id), bot_needs=())
        except UserFacingError as e:
            await evt.reply(e.message)
            return
        await evt.reply(self.services.describe_providers())

    @invitebot.subcommand("status", help="What the bot may do here, links and invites.")
    async def status(self, evt: MessageEvent) -> None:
        room_id = str(evt.room_id)
        try:
            info = await self._require_manager(evt, room_id, bot_needs=())
        except UserFacingError as e:
            await evt.reply(e.message)
            return
        missing = info.power.missing(self.services.rooms.bot_user_id, ("invite", "kick"))
        power_line = (
            "I can invite and remove people here."
            if not missing
            else "I lack power for: " + "; ".join(missing) + "."
        )
        counts = await self.services.queue.counts_for_room(room_id)
        links = await self.services.links.for_room(room_id)
        bindings = await self.services.bindings.for_room(room_id)
        now = now_ms()
        active = sum(1 for link in links if link.unusable_reason(now) is None)
        unavailable = self.services.providers.unavailable
        binding_line = f"* Bindings: {len(bindings)}" + (
            f" (provider rules are off: {unavailable})" if unavailable else ""
        )
        binding_lines = "".join(
            f"\n{line}" for line in await lifecycle.binding_status(self.services, bindings)
        )
        await evt.reply(
            f"**{info.display_name}** (room version {info.power.room_version})\n\n"
            f"* {power_line}\n"
            f"* Invite links: {active} active of {len(links)}\n"
            f"{binding_line}{binding_lines}\n"
            f"* Invites: {counts.get('done', 0)} delivered, {counts.get('pending', 0)} queued,"
            f" {counts.get('failed', 0)} failed"
        )

    def _expiry(self, expires: str | None) -> float | None:
        return expiry_seconds(self.services.settings.links, expires)

    async def _offers_accounts(self, kind: str, item_id: int) -> str:
        """The note on the line of a link or binding made with --register."""
        if not await self.services.registration.offered(kind, item_id):
            return ""
        return registration_texts.offers_note(self.services.settings.registration.server_name)

    def _require_registration(self, register: bool) -> None:
        if register and self.services.registration.minter is None:
            raise registration_texts.command_off()

    async def _offer_registration(
        self, kind: str, item_id: int, rooms: tuple[str, ...], evt: MessageEvent
    ) -> str:
        """Offer new accounts through the link or binding just made; the reply's note."""
        await self.services.registration.offer(kind, item_id, rooms, str(evt.sender))
        return registration_texts.offered_note(self.services.settings.registration.server_name)

    async def _require_manager(
        self, evt: MessageEvent, room_id: str, bot_needs: tuple[str, ...] = ("invite",)
    ) -> RoomInfo:
        return await self.services.room_admin.require_manager(
            str(evt.sender), room_id, bot_needs=bot_needs, asked_in=str(evt.room_id)
        )


def _help_line(sub: command.CommandHandler) -> str:
    usage = f"!invitebot {sub.__mb_name__} {sub.__mb_usage_args__}".strip()
    return f"* `{usage}`: {sub.__mb_help__}"
