"""`!invitebot ...` commands: `claim` for anyone (in a direct chat with the bot), the rest
for room admins, typed in the room they act on."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from maubot import MessageEvent
from maubot.handlers import command

from ..durations import DurationError, format_duration, now_ms, parse_duration
from ..errors import UserFacingError
from ..matrix.rooms import RoomInfo
from ..services.links import describe_limits

if TYPE_CHECKING:
    from ..services.container import Services

MAX_LINK_USES = 100_000
MAX_ROOMS_PER_LINK = 20
# Subcommands anyone may use; every other one checks the sender's power in the room.
FOR_EVERYONE = ("claim", "help")


class CommandError(UserFacingError):
    """A command's arguments are wrong; the message says how, in a sentence."""

    def __init__(self, message: str) -> None:
        super().__init__("M_INVALID_PARAM", message)


def parse_link_args(args: str) -> tuple[int | None, str | None, list[str]]:
    """(--uses, --expires, rooms) from `[--uses N] [--expires 7d|never] [room ...]`."""
    try:
        words = shlex.split(args or "")
    except ValueError as e:
        raise CommandError(f"Could not read the arguments: {e}.") from None
    uses: int | None = None
    expires: str | None = None
    rooms: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word in ("--uses", "--expires"):
            if i + 1 >= len(words):
                raise CommandError(f"{word} needs a value.")
            value = words[i + 1]
            i += 2
            if word == "--uses":
                if not value.isdigit() or not 1 <= int(value) <= MAX_LINK_USES:
                    raise CommandError(f"--uses takes a number from 1 to {MAX_LINK_USES}.")
                uses = int(value)
            else:
                expires = value
        elif word.startswith("--"):
            raise CommandError(f"Unknown option {word}. Options: --uses N, --expires 7d.")
        else:
            if not (word.startswith("!") or (word.startswith("#") and ":" in word)):
                raise CommandError(f"{word} is not a room ID (!...) or alias (#...:server).")
            rooms.append(word)
            i += 1
    if len(rooms) > MAX_ROOMS_PER_LINK:
        raise CommandError(f"A link may lead to at most {MAX_ROOMS_PER_LINK} rooms.")
    return uses, expires, rooms


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
        await evt.reply(reply)

    @invitebot.subcommand(
        "link", help="A new invite link to this room (or the rooms named); shown once."
    )
    @command.argument(
        "args", label="--uses N] [--expires 7d|never] [room ...", required=False, pass_raw=True
    )
    async def link(self, evt: MessageEvent, args: str = "") -> None:
        try:
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
        await self.services.rooms.reply_with_secret(
            str(evt.room_id),
            str(evt.event_id),
            f"Invite link **#{link.id}** to {names} ({describe_limits(link, now_ms())}):\n\n"
            f"{url}\n\nAnyone holding this link can join; it is shown only now. "
            f"Revoke it with `!invitebot revoke {link.id}`.",
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
        now = now_ms()
        active = sum(1 for link in links if link.unusable_reason(now) is None)
        await evt.reply(
            f"**{info.display_name}** (room version {info.power.room_version})\n\n"
            f"* {power_line}\n"
            f"* Invite links: {active} active of {len(links)}\n"
            f"* Invites: {counts.get('done', 0)} delivered, {counts.get('pending', 0)} queued,"
            f" {counts.get('failed', 0)} failed"
        )

    def _expiry(self, expires: str | None) -> float | None:
        settings = self.services.settings.links
        if expires is None:
            return settings.default_expiry
        if expires.lower() == "never":
            return None
        try:
            seconds = parse_duration(expires)
        except DurationError:
            raise CommandError(
                "--expires takes a duration such as 30m, 12h, 7d or never."
            ) from None
        if not 60 <= seconds <= settings.max_expiry:
            raise CommandError(
                f"--expires must be between 1m and {format_duration(settings.max_expiry)}."
            )
        return seconds

    async def _require_manager(
        self, evt: MessageEvent, room_id: str, bot_needs: tuple[str, ...] = ("invite",)
    ) -> RoomInfo:
        return await self.services.room_admin.require_manager(
            str(evt.sender), room_id, bot_needs=bot_needs, asked_in=str(evt.room_id)
        )


def _help_line(sub: command.CommandHandler) -> str:
    usage = f"!invitebot {sub.__mb_name__} {sub.__mb_usage_args__}".strip()
    return f"* `{usage}`: {sub.__mb_help__}"
