"""Room upgrades: the bot follows a room it serves to its replacement, and takes the
room's links, bindings and queued invites along.

What the bot knows about an upgrade it reads from room state, never from a table of its
own: the old room's m.room.tombstone names the replacement (Synapse's auth rules let only
people with that power send one), and an invite's stripped m.room.create names the room it
replaces (`predecessor`). So after a restart nothing is lost: `catch_up` looks for
tombstones in every room with links, bindings or pending invites.

- A tombstone seen live, or found on start: join the replacement through the upgrader's
  server. Synapse does not invite anyone on upgrade, but the bot gets in when the new
  room's join rule lets it (public, or restricted to members of the old room, which is how
  Element upgrades rooms) or when someone invited it already. Then the rows move (one
  transaction, `RoomStore.move`), and the new room and the admin room are told, with what
  the bot lacks if the copied power levels do not let it invite.
- It cannot join (invite-only, not invited): the old room and the admin room are told,
  once, exactly what to do. Until then links keep inviting into the old room (Synapse
  leaves the bot able to invite there); those people are invited to the new room too when
  the bot arrives, as the move re-queues everyone the bot invited since the upgrade.
- An invite into a room whose predecessor's tombstone (read by the bot itself, as a member
  of the old room) names that room is accepted from anyone: the inviter holds invite
  power in the new room (auth rules again), and the old room's admins chose the new room
  by upgrading. Operators' vetting of the old room carries over to its replacement.
- Chains (A -> B -> C) are walked hop by hop: each room is joined (a room restricted to
  B's members needs the bot in B) and its rows moved on.
- Following is idempotent: the `room_upgraded` audit entry of the move marks the upgrade
  as done, so the tombstone, the invite into the new room, that invite's second delivery
  and a restart's catch-up, whichever comes after the first, join nothing, re-queue nobody
  and tell nobody (hops out of one room take turns, so "after" is well defined).
"""

from __future__ import annotations

import asyncio
import logging

from mautrix.errors import MatrixRequestError

from ..durations import now_ms
from ..matrix.addresses import matrix_to
from ..matrix.rooms import HomeserverUnavailable, RoomOps
from ..matrix.tombstones import Tombstone
from ..storage import RoomHoldings, RoomMove, Storage
from .direct_chats import DirectChats

_MAX_HOPS = 10
# Rows finished this long before the tombstone's timestamp still count as "since the
# upgrade": the homeserver's clock and the bot's may differ a little.
_CLOCK_SLACK_MS = 60_000


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def describe_carried(links: int, bindings: int, invites: int) -> str:
    """ "2 invite links, 1 binding and 3 queued invites", leaving out the zeros."""
    parts = [
        _count(n, one, many)
        for n, one, many in (
            (links, "invite link", "invite links"),
            (bindings, "binding", "bindings"),
            (invites, "queued invite", "queued invites"),
        )
        if n
    ]
    if len(parts) > 1:
        return ", ".join(parts[:-1]) + " and " + parts[-1]
    return parts[0] if parts else ""


def followed_notice(old_room: str, move: RoomMove, missing: list[str]) -> str:
    carried = describe_carried(move.links, move.bindings, move.invites)
    text = f"I followed this room's upgrade (it replaces {old_room})"
    text += f" and carried over {carried}." if carried else "."
    if move.links:
        text += " The invite links keep working and lead here now."
    if missing:
        text += f" To invite people here I need more power: {'; '.join(missing)}."
    return text


def waiting_notice(tomb: Tombstone, holdings: RoomHoldings, reason: str) -> str:
    new_room = matrix_to(tomb.replacement, tomb.via[0] if tomb.via else None)
    carried = describe_carried(holdings.links, holdings.bindings, holdings.pending_invites)
    what = f"this room's {carried}" if carried else "what I do for this room"
    return (
        f"This room was upgraded, but I cannot follow it to the new room {new_room}: "
        f"{reason}. Invite me there (anyone who may invite in the new room can) and I will "
        f"join and carry over {what}. Until then, invite links keep inviting people here, "
        "and I will invite them to the new room too once I am in."
    )


def _refusal(error: MatrixRequestError) -> str:
    text = str(error.message or error).rstrip(".")
    if error.errcode == "M_FORBIDDEN":
        return f"the new room does not let me in ({text})"
    return f"joining failed ({error.errcode or 'error'}: {text})"


class RoomUpgrades:
    def __init__(
        self,
        storage: Storage,
        rooms: RoomOps,
        direct_chats: DirectChats,
        admin_room: str,
        log: logging.Logger,
    ) -> None:
        self.storage = storage
        self.rooms = rooms
        self.direct_chats = direct_chats
        self.admin_room = admin_room
        self.log = log
        # One hop out of a room at a time: the tombstone, the invite into the new room and
        # that invite's second delivery (in the new room's timeline) arrive within a second,
        # and each after the first must find the move recorded, not move and tell again.
        self._hop_locks: dict[str, asyncio.Lock] = {}
        # Replacement room -> tombstone of the room whose admins were asked to invite us.
        self._waiting: dict[str, Tombstone] = {}
        # Replacement room -> the room it replaces, for rooms the bot followed into: the
        # invite arrives a second time in the new room's timeline, without stripped state.
        self._replaces: dict[str, str] = {}
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._catch_up(), name="thirdparty_invite-upgrades")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _catch_up(self) -> None:
        try:
            await self.catch_up()
        except asyncio.CancelledError:
            raise
        except Exception:
            self.log.exception("Looking for room upgrades missed while stopped failed")

    async def catch_up(self) -> None:
        """Follow upgrades of rooms with links, bindings or pending invites that happened
        while the bot was not listening (maubot skips the first sync after a start)."""
        for room_id in await self.storage.rooms.managed_rooms():
            try:
                tomb = await self.rooms.tombstone(room_id)
            except (MatrixRequestError, HomeserverUnavailable) as e:
                self.log.debug("No tombstone check for %s: %s", room_id, e)
                continue
            if tomb is not None:
                await self.follow(tomb)

    async def on_tombstone(self, tomb: Tombstone) -> None:
        """A tombstone seen in a room the bot is in."""
        if await self.direct_chats.is_direct_chat(tomb.room_id):
            return  # nothing to carry; and a DM was never a room an operator vetted
        await self.follow(tomb)

    async def follow_on_invite(self, room_id: str, inviter: str, predecessor: str | None) -> bool:
        """Handle an invite into the replacement of a room the bot was in: True when it was
        one (the bot joined and carried the room over, or tried), False for any other
        invite, which the caller vets as usual."""
        candidates = [predecessor, self._replaces.get(room_id)]
        if room_id in self._waiting:
            candidates.append(self._waiting[room_id].room_id)
        for old_room in dict.fromkeys(c for c in candidates if c):
            tomb = await self._verified_tombstone(old_room, room_id)
            if tomb is not None:
                if not await self.storage.rooms.was_moved(old_room, room_id):
                    await self.storage.audit.add(
                        now_ms(), inviter, "bot_invited_to_replacement", room_id, old_room
                    )
                await self.follow(tomb)
                return True
        return False

    async def _verified_tombstone(self, old_room: str, new_room: str) -> Tombstone | None:
        # The bot reads the old room's state itself, as a member (or as it was when the bot
        # left): the stripped state an invite carries is only a hint.
        try:
            if await self.direct_chats.is_direct_chat(old_room):
                return None
            tomb = await self.rooms.tombstone(old_room)
        except (MatrixRequestError, HomeserverUnavailable):
            return None
        return tomb if tomb is not None and tomb.replacement == new_room else None

    async def follow(self, tomb: Tombstone) -> None:
        """Join the replacement (and its replacements), move the rows, tell the admins.
        Idempotent: an upgrade already followed (its move recorded) is walked through
        without joining, moving or telling anyone again."""
        origin, seen = tomb.room_id, {tomb.room_id}
        new_any, carried = False, RoomMove()
        for _ in range(_MAX_HOPS):
            moved = await self._hop(tomb)
            if moved is None:
                return
            if not moved.repeated:
                # Each hop moves everything the previous one brought: the last new one
                # says what arrived at the end of the chain.
                new_any, carried = True, moved
            seen.add(tomb.replacement)
            try:
                after = await self.rooms.tombstone(tomb.replacement)
            except (MatrixRequestError, HomeserverUnavailable):
                after = None
            if after is None or after.replacement in seen:
                break
            tomb = after
        if new_any:
            await self._announce(origin, tomb.replacement, carried, seen)
        else:
            self.log.info(
                "Upgrade of %s to %s was followed already: nothing to do",
                origin,
                tomb.replacement,
            )

    async def _hop(self, tomb: Tombstone) -> RoomMove | None:
        """One upgrade, one at a time per old room; None when the bot could not get in."""
        # Kept for the plugin's life: upgrades are rare, a lock per upgraded room is small.
        async with self._hop_locks.setdefault(tomb.room_id, asyncio.Lock()):
            if await self.storage.rooms.was_moved(tomb.room_id, tomb.replacement):
                return await self._move(tomb, repeated=True)
            return await self._join_and_move(tomb)

    async def _join_and_move(self, tomb: Tombstone) -> RoomMove | None:
        """Join the replacement and move the rows (the admins are told what to do when the
        bot cannot get in)."""
        try:
            await self.rooms.join_via(tomb.replacement, tomb.via)
        except MatrixRequestError as e:
            await self._cannot_follow(tomb, _refusal(e))
            return None
        except HomeserverUnavailable as e:
            # Not the room's answer: try again at the next start or the next trigger.
            self.log.warning("Could not follow %s to its replacement: %s", tomb.room_id, e)
            return None
        self._waiting.pop(tomb.replacement, None)
        await self.storage.audit.add(
            now_ms(),
            tomb.sender or self.rooms.bot_user_id,
            "bot_joined",
            tomb.replacement,
            None,
            f"replacement of {tomb.room_id}",
        )
        return await self._move(tomb, repeated=False)

    async def _move(self, tomb: Tombstone, *, repeated: bool) -> RoomMove:
        still_invited: list[str] = []
        if not repeated:  # the first move re-queued them; a repeated one re-queues nobody
            try:
                members = await self.rooms.members(tomb.room_id)
            except (MatrixRequestError, HomeserverUnavailable):
                members = {}
            still_invited = [user for user, state in members.items() if state == "invite"]
        self._replaces[tomb.replacement] = tomb.room_id
        moved = await self.storage.rooms.move(
            tomb.room_id,
            tomb.replacement,
            upgraded_at=tomb.at - _CLOCK_SLACK_MS,
            still_invited=still_invited,
            actor=tomb.sender or self.rooms.bot_user_id,
            now=now_ms(),
        )
        if not (moved.repeated and moved.empty):
            self.log.info(
                "%s %s to %s: %s",
                "Moved late rows of" if moved.repeated else "Followed",
                tomb.room_id,
                tomb.replacement,
                moved.describe(),
            )
        return moved

    async def _announce(self, origin: str, final: str, total: RoomMove, chain: set[str]) -> None:
        missing: list[str] = []
        name = final
        try:
            info = await self.rooms.room_info(final, fresh=True)
            missing = info.power.missing(self.rooms.bot_user_id, ("invite",))
            name = info.display_name
        except (MatrixRequestError, HomeserverUnavailable):
            pass
        await self.rooms.send_notice(final, followed_notice(origin, total, missing))
        if self.admin_room and self.admin_room != final:
            carried = describe_carried(total.links, total.bindings, total.invites)
            text = f"{name} was upgraded: I followed it to {matrix_to(final)}"
            text += f" and carried over {carried}." if carried else "."
            if missing:
                text += f" There I lack: {'; '.join(missing)}."
            if self.admin_room in chain:
                text += f" This was my admin room: set `admin_room` to `{final}` in my config."
            await self.rooms.send_notice(self.admin_room, text)

    async def _cannot_follow(self, tomb: Tombstone, reason: str) -> None:
        self._waiting[tomb.replacement] = tomb
        rooms = self.storage.rooms
        if await rooms.was_told(tomb.room_id, "room_upgrade_waiting", tomb.replacement):
            return  # asked once (maybe before a restart): the admins know
        text = waiting_notice(tomb, await rooms.holdings(tomb.room_id), reason)
        await self.rooms.send_notice(tomb.room_id, text)
        if self.admin_room and self.admin_room != tomb.room_id:
            await self.rooms.send_notice(self.admin_room, f"In {tomb.room_id}: {text}")
        await self.storage.audit.add(
            now_ms(),
            self.rooms.bot_user_id,
            "room_upgrade_waiting",
            tomb.room_id,
            tomb.replacement,
            reason,
        )
