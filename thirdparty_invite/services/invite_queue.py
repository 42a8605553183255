"""Delivers queued invites (and removals): durable, paced by the homeserver, idempotent.

Every invite is a row in invite_queue before anything is sent, so a restart loses
nothing. Before inviting, the worker asks the room who the person already is: an invite
that was sent just before a crash is then recognised as "already invited" instead of
being sent twice. One worker per plugin instance sends one invite at a time; on 429 the
whole worker pauses for the server's Retry-After, because Synapse counts invites per
sender and per room, not per person. Removals a binding's loss policy asks for travel
the same queue (action "kick"), with the same durability and pacing.
"""

from __future__ import annotations

import logging
import random
from typing import Protocol

from mautrix.errors import MatrixRequestError

from ..config import InviteSettings
from ..durations import now_ms
from ..matrix.rooms import HomeserverUnavailable, InviteAttempt, Member, RoomOps
from ..storage import QueuedInvite, Storage
from .poll_loop import PollLoop

_BATCH = 20
_IDLE_POLL = 30.0
REMOVAL_PROTECTED = "{user} has a power level at or above mine here: I never remove them."
REMOVAL_NEEDS_POWER = "I may not remove people here: give me the power level needed to kick."
REMOVAL_REFUSED = "The homeserver refused the removal: {error}"


class FailureReporter(Protocol):
    async def invite_failed(self, item: QueuedInvite, errcode: str, error: str) -> None: ...

    async def invite_done(self, item: QueuedInvite, outcome: str) -> None: ...


def classify_refusal(attempt: InviteAttempt, user_id: str) -> tuple[str, str]:
    """(errcode, message a room admin can act on) for a refused invite."""
    text = (attempt.error or "").lower()
    if attempt.errcode == "M_INVITE_BLOCKED" or "block" in text:
        return "TPI_INVITE_BLOCKED", f"{user_id} does not accept invites (blocked)."
    if "banned" in text:
        return "TPI_USER_BANNED", f"{user_id} is banned from the room; unban them first."
    if "permission" in text or "power" in text or "not in room" in text:
        return (
            "TPI_BOT_LACKS_POWER",
            "The bot may not invite in this room: give it the power level needed to invite.",
        )
    if attempt.status == 404 or attempt.errcode == "M_NOT_FOUND":
        return "TPI_ROOM_UNKNOWN", "The room does not exist or the bot is not in it."
    return (
        attempt.errcode or "M_FORBIDDEN",
        f"The homeserver refused the invite: {attempt.error or attempt.status}",
    )


def _sent_for(member: Member, item: QueuedInvite, bot_user_id: str) -> bool:
    """Whether the person's pending invite is the one the bot sent for this queue row: the
    bot sent it after the row was queued. An invite from an earlier claim (the row queued
    again since) or from someone else is "already invited"."""
    return (
        member.membership == "invite"
        and member.sender == bot_user_id
        and member.sent_at is not None
        and member.sent_at >= item.queued_at
    )


def _already_member(attempt: InviteAttempt) -> bool:
    return "already in the room" in (attempt.error or "").lower()


class InviteQueue:
    def __init__(
        self,
        storage: Storage,
        rooms: RoomOps,
        settings: InviteSettings,
        reporter: FailureReporter,
        log: logging.Logger,
    ) -> None:
        self.storage = storage
        self.rooms = rooms
        self.settings = settings
        self.reporter = reporter
        self.log = log
        self._paused_until = 0  # ms; set by a 429 for every invite, not only that one
        # While the homeserver is unreachable, one log line when it goes and one when it
        # is back, rather than one per invite tried.
        self._homeserver_down = False
        self.loop = PollLoop(
            "thirdparty_invite-queue",
            "Invite queue pass",
            self.run_once,
            self._seconds_until_due,
            log,
            retry_after=5.0,
        )

    def start(self) -> None:
        self.loop.start()

    async def stop(self, grace: float = 5.0) -> None:
        """Stop after the invite in flight: cancelling it mid-request would leave an invite
        the server made but the queue never recorded (harmless, but the audit log lies)."""
        await self.loop.stop(grace)

    def wake(self) -> None:
        self.loop.wake()

    async def invites_of(self, user_id: str) -> list[QueuedInvite]:
        """The person's invites, queued or finished, oldest first."""
        return await self.storage.queue.for_user(user_id)

    async def counts_for_room(self, room_id: str) -> dict[str, int]:
        """How many of the room's invites are pending, done or failed."""
        return await self.storage.queue.counts_for_room(room_id)

    async def _seconds_until_due(self) -> float:
        next_at = await self.storage.queue.next_due_at()
        if next_at is None:
            return _IDLE_POLL
        wait_ms = max(next_at, self._paused_until) - now_ms()
        return min(max(wait_ms / 1000, 0.0), _IDLE_POLL)

    async def run_once(self) -> int:
        """Work every invite that is due now; returns how many were attempted."""
        attempted = 0
        while now_ms() >= self._paused_until and not self.loop.stopping:
            due = await self.storage.queue.due(now_ms(), _BATCH)
            if not due:
                break
            for item in due:
                if now_ms() < self._paused_until or self.loop.stopping:
                    return attempted
                await self._deliver(item)
                attempted += 1
        return attempted

    async def _deliver(self, item: QueuedInvite) -> None:
        if item.action == "kick":
            await self._remove(item)
            return
        try:
            member = await self.rooms.member(item.room_id, item.user_id)
        except HomeserverUnavailable as e:
            await self._homeserver_unreachable(item, str(e))
            return
        except MatrixRequestError as e:
            await self._temporary_failure(item, e.errcode or "M_UNKNOWN", str(e.message or e))
            return
        self._homeserver_back()
        membership = member.membership if member else None
        if member is not None and _sent_for(member, item, self.rooms.bot_user_id):
            # The bot's own invite for this row, sent before a crash or a timeout let it
            # record it: the audit log credits the bot with it.
            await self._finish(item, "invited")
            return
        if membership in ("join", "invite"):
            outcome = "already_joined" if membership == "join" else "already_invited"
            await self._finish(item, outcome)
            return
        if membership == "ban":
            await self._fail(
                item,
                "TPI_USER_BANNED",
                f"{item.user_id} is banned from the room; unban them first.",
            )
            return
        sent_at = now_ms()
        attempt = await self.rooms.invite(item.room_id, item.user_id, self.settings.reason)
        if attempt.ok:
            await self._finish(item, "invited")
        elif attempt.status == 403 and _already_member(attempt):
            await self._finish(item, "already_joined")
        elif attempt.status in (400, 403, 404):
            errcode, message = classify_refusal(attempt, item.user_id)
            await self._fail(item, errcode, message)
        else:
            await self._not_done(item, attempt, sent_at)

    async def _remove(self, item: QueuedInvite) -> None:
        """A removal a binding's policy asked for: only of someone still in the room (or
        invited to it), and never of anyone at or above the bot's power level there, read
        fresh from the room."""
        try:
            member = await self.rooms.member(item.room_id, item.user_id)
            if member is None or member.membership not in ("join", "invite", "knock"):
                await self._finish(item, "not_member")
                return
            power = (await self.rooms.room_info(item.room_id, fresh=True)).power
        except HomeserverUnavailable as e:
            await self._homeserver_unreachable(item, str(e))
            return
        except MatrixRequestError as e:
            await self._temporary_failure(item, e.errcode or "M_UNKNOWN", str(e.message or e))
            return
        self._homeserver_back()
        bot = self.rooms.bot_user_id
        if power.level_of(item.user_id) >= power.level_of(bot):
            await self._fail(item, "TPI_PROTECTED", REMOVAL_PROTECTED.format(user=item.user_id))
            return
        if not power.can(bot, "kick"):
            await self._fail(item, "TPI_BOT_LACKS_POWER", REMOVAL_NEEDS_POWER)
            return
        sent_at = now_ms()
        attempt = await self.rooms.kick(item.room_id, item.user_id, item.reason or "")
        if attempt.ok:
            await self._finish(item, "kicked")
        elif attempt.status in (400, 403, 404):
            await self._fail(
                item,
                attempt.errcode or "M_FORBIDDEN",
                REMOVAL_REFUSED.format(error=attempt.error or attempt.status),
            )
        else:
            await self._not_done(item, attempt, sent_at)

    async def _not_done(self, item: QueuedInvite, attempt: InviteAttempt, sent_at: int) -> None:
        """An invite or removal the homeserver neither did nor refused: paced (429),
        unreachable, or failing (5xx); each is tried again."""
        if attempt.status == 429:
            await self._rate_limited(item, attempt, sent_at)
        elif attempt.status == 0:
            await self._homeserver_unreachable(item, attempt.error or "no answer")
        else:
            await self._temporary_failure(
                item,
                attempt.errcode or "TPI_HOMESERVER_ERROR",
                f"The homeserver could not be reached or failed ({attempt.status}).",
            )

    async def _rate_limited(
        self, item: QueuedInvite, attempt: InviteAttempt, sent_at: int
    ) -> None:
        # The server computes the wait when the request arrives (and Synapse holds its
        # 429 answers back for half a second), so count from sending, not answering.
        wait = attempt.retry_after if attempt.retry_after is not None else 5.0
        self._paused_until = max(now_ms(), sent_at + int(wait * 1000))
        await self.storage.queue.retry_later(
            item.id,
            self._paused_until,
            "M_LIMIT_EXCEEDED",
            f"Rate limited by the homeserver; retrying in {wait:.1f}s.",
            now_ms(),
            count_attempt=False,
        )

    async def _finish(self, item: QueuedInvite, outcome: str) -> None:
        await self.storage.queue.finish(item.id, outcome, now_ms())
        await self.reporter.invite_done(item, outcome)

    async def _fail(self, item: QueuedInvite, errcode: str, message: str) -> None:
        await self.storage.queue.fail(item.id, errcode, message, now_ms())
        await self.reporter.invite_failed(item, errcode, message)

    async def _homeserver_unreachable(self, item: QueuedInvite, reason: str) -> None:
        """A temporary failure of the invite at hand; the others wait with it.

        Every invite would fail the same way, so the whole queue pauses for this one's
        backoff instead of spending the other invites' attempts on a dead server.
        """
        if not self._homeserver_down:
            self._homeserver_down = True
            self.log.warning("The homeserver is unreachable (%s); invites wait for it", reason)
        retry_at = await self._temporary_failure(
            item,
            "TPI_HOMESERVER_UNREACHABLE",
            "The bot's homeserver could not be reached; the invite will be retried.",
        )
        if retry_at is not None:
            self._paused_until = max(self._paused_until, retry_at)

    def _homeserver_back(self) -> None:
        if self._homeserver_down:
            self._homeserver_down = False
            self.log.info("The homeserver answers again; delivering queued invites")

    async def _temporary_failure(
        self, item: QueuedInvite, errcode: str, message: str
    ) -> int | None:
        """Retry later with backoff (returns when, in ms), or give up after max_attempts."""
        if item.attempts + 1 >= self.settings.max_attempts:
            await self._fail(item, errcode, f"{message} Gave up after {item.attempts + 1} tries.")
            return None
        # Exponential backoff with jitter, capped by the operator's setting.
        backoff = min(2.0 ** (item.attempts + 1), self.settings.max_backoff)
        backoff *= random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not security
        retry_at = now_ms() + int(backoff * 1000)
        await self.storage.queue.retry_later(item.id, retry_at, errcode, message, now_ms())
        return retry_at
