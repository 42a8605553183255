"""What happens when a complete re-check finds someone no longer qualifying.

Each binding has a policy: `kick` (removed, with a reason naming the rule), `notify` (the
room's admins are told) or `dry-run` (the audit log only), and a grace period: a loss
waits that long, and someone who qualifies again meanwhile is left alone. The policy acts
once per loss. Only people who entered through the binding are concerned (the re-check
only looks at its seat holders), and in each room only those with no other way in: a
grant of another live binding of the room, or of an invite link to it. People at or
above the bot's power level are never removed (the queue checks when it gets there).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
import logging

from ..config import RecheckSettings
from ..durations import now_ms
from ..matrix.rooms import HomeserverUnavailable, RoomOps
from ..storage import Storage
from . import recheck_texts as texts
from .bindings import BindingView

# The rooms a loss applies to, from the binding's rooms (a space brings its children).
ExpandRooms = Callable[[tuple[str, ...]], Awaitable[tuple[str, ...]]]


async def _same_rooms(rooms: tuple[str, ...]) -> tuple[str, ...]:
    return rooms


class LossPolicy:
    def __init__(
        self,
        storage: Storage,
        rooms: RoomOps,
        settings: RecheckSettings,
        admin_room: str,
        wake_queue: Callable[[], None],
        expand_rooms: ExpandRooms | None = None,
    ) -> None:
        self.storage = storage
        self.rooms = rooms
        self.settings = settings
        self.admin_room = admin_room
        self.wake_queue = wake_queue
        self.expand_rooms = expand_rooms or _same_rooms
        self.log = logging.getLogger(__name__)

    async def apply(
        self, view: BindingView, reasons: Mapping[str, str], qualifying: Sequence[str]
    ) -> int | None:
        """`reasons`: who no longer qualifies, with the rule (in words) they miss;
        `qualifying`: the binding's other seat holders, who do. Returns when the first
        grace period still running ends (the re-check should look again then), if any."""
        binding, now = view.binding, now_ms()
        # Only those with a recorded loss have one to clear (usually nobody): one read, not
        # one statement per seat holder.
        qualify = set(qualifying)
        for recorded in await self.storage.losses.for_binding(binding.id):
            if recorded.user_id not in qualify:
                continue
            loss = await self.storage.losses.clear(binding.id, recorded.user_id)
            if loss is not None:
                detail = "before the policy acted" if loss.acted_at is None else loss.action
                await self._audit(view, "qualifies_again", loss.user_id, detail or "")
        acted: list[tuple[str, str]] = []
        waiting: list[str] = []
        look_again: int | None = None
        for user_id, reason in sorted(reasons.items()):
            loss = await self.storage.losses.note(binding.id, user_id, now, reason)
            if loss.acted_at is not None:
                continue  # acted on before; nothing more to do until they qualify again
            if loss.first_at == now:
                await self._audit(view, "no_longer_qualifies", user_id, reason)
                if binding.grace_ms:
                    waiting.append(user_id)
            if now - loss.first_at < binding.grace_ms:
                grace_ends = loss.first_at + binding.grace_ms
                look_again = min(look_again or grace_ends, grace_ends)
                continue
            if await self.storage.losses.acted(binding.id, user_id, now, binding.policy):
                await self._act(view, user_id, reason)
                acted.append((user_id, reason))
        if waiting and binding.policy != "dry-run":
            await self.tell_admins(view, texts.pending_notice(view, binding.grace_ms, waiting))
        if acted and binding.policy in ("kick", "notify"):
            await self.tell_admins(view, texts.loss_notice(view, binding.policy, acted))
        if acted and binding.policy == "kick":
            self.wake_queue()
        return look_again

    async def _act(self, view: BindingView, user_id: str, reason: str) -> None:
        binding = view.binding
        if binding.policy != "kick":
            await self._audit(view, f"loss_{binding.policy.replace('-', '_')}", user_id, reason)
            return
        kick_reason = texts.kick_reason(self.settings.kick_reason, reason)
        now = now_ms()
        for room_id in await self._rooms_of(view):
            if await self.storage.losses.qualifies_otherwise(user_id, room_id, binding.id):
                await self.storage.audit.add(
                    now,
                    self.rooms.bot_user_id,
                    "kept",
                    room_id,
                    user_id,
                    f"binding {binding.public_id}: qualifies another way",
                )
                continue
            async with self.storage.db.acquire() as conn:
                await self.storage.queue.enqueue_kick(conn, room_id, user_id, kick_reason, now)
            await self.storage.audit.add(
                now, self.rooms.bot_user_id, "kick_queued", room_id, user_id, reason
            )

    async def _rooms_of(self, view: BindingView) -> tuple[str, ...]:
        """The binding's rooms and, for a space, its children; the named rooms alone when
        the homeserver cannot say now (the children then keep the person: logged)."""
        try:
            return await self.expand_rooms(view.binding.rooms)
        except HomeserverUnavailable as e:
            self.log.warning("Removing from %s only: %s", view.binding.rooms, e)
            return view.binding.rooms

    async def tell_admins(self, view: BindingView, text: str) -> None:
        """The binding's rooms (where its admins are) and the operator's admin room."""
        targets = list(view.binding.rooms)
        if self.admin_room and self.admin_room not in targets:
            targets.append(self.admin_room)
        for room_id in targets:
            await self.rooms.send_notice(room_id, text)

    async def record(self, view: BindingView, action: str, detail: str) -> None:
        """An entry about the binding itself (a re-check's outcome) in each room's log."""
        now = now_ms()
        for room_id in view.binding.rooms:
            await self.storage.audit.add(
                now, self.rooms.bot_user_id, action, room_id, view.binding.public_id, detail
            )

    async def _audit(self, view: BindingView, action: str, user_id: str, detail: str) -> None:
        now = now_ms()
        for room_id in view.binding.rooms:
            await self.storage.audit.add(
                now,
                self.rooms.bot_user_id,
                action,
                room_id,
                user_id,
                f"binding {view.binding.public_id}: {detail}",
            )
