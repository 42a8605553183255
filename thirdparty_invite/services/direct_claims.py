"""Claiming an invite link by direct message: `!invitebot claim <code>` sent to the bot.

The sender of a Matrix event is already authenticated by their homeserver, so no OpenID
step is needed: the claim goes straight to `LinkService.claim`, exactly as the web API's
does (same use counting, same errors). The bot answers at once, then again in the same
chat once the invite queue has handled the person's invites. The code itself is a secret
that admits people: it is never logged, never echoed, and a claim typed where others can
read it is refused (and the message redacted when the bot may).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import logging
import time

import attrs
from mautrix.errors import MatrixRequestError

from ..errors import UserFacingError
from ..matrix.addresses import matrix_to
from ..matrix.rooms import HomeserverUnavailable, RoomOps
from ..storage import QueuedInvite
from .bindings import BindingService, BindingView
from .direct_chats import is_private_chat
from .invite_queue import InviteQueue
from .links import LinkService
from .provider_signin import ProviderSignIn
from .room_directory import RoomDirectory

RESULT_WAIT = 60.0  # seconds the bot waits for the queue before saying "still queued"
_POLL_INTERVAL = 0.5

USAGE = (
    "Send me the invite link you were given, in a direct message: "
    "`!invitebot claim <link>` (the whole link, or the code after its #)."
)

# What went wrong, told to the person invited; the queue's own text is for room admins.
_FAILURES_FOR_THE_PERSON = {
    "TPI_USER_BANNED": "you are banned from this room.",
    "TPI_INVITE_BLOCKED": "your account does not accept invites (see your client's or "
    "homeserver's invite settings), so the invite was refused.",
    "TPI_BOT_LACKS_POWER": "I am not allowed to invite people there; its admins have been told.",
    "TPI_ROOM_UNKNOWN": "the room no longer exists or I am no longer in it.",
}


def parse_claim_code(text: str | None) -> str:
    """The link's token from what a person pasted, "" when nothing was.

    Accepts the bare token or the whole link (`https://.../invite#TOKEN`), with the
    `<...>` or backticks that clients and people wrap links in. The token is checked by
    LinkService; this only finds it.
    """
    words = [w.strip("<>`'\"") for w in (text or "").split()]
    words = [w for w in words if w]
    if not words:
        return ""
    linked = [w for w in words if "#" in w]
    code = linked[0] if linked else " ".join(words)
    return code.rsplit("#", 1)[1] if "#" in code else code


def describe_outcome(item: QueuedInvite | None, room_name: str, room_id: str) -> str:
    """One line for the person: how the invite to one room went."""
    if item is None or item.state == "pending":
        return (
            f"**{room_name}**: still queued (the homeserver is pacing invites); "
            "it will arrive without you doing anything."
        )
    if item.state == "failed":
        reason = _FAILURES_FOR_THE_PERSON.get(item.errcode or "") or (
            item.error or "the homeserver refused the invite."
        )
        return f"**{room_name}**: I could not invite you: {reason}"
    if item.outcome == "already_joined":
        return f"**{room_name}**: you are already a member ({matrix_to(room_id)})."
    if item.outcome == "already_invited":
        return f"**{room_name}**: you already have an invite: {matrix_to(room_id)}"
    return (
        f"**{room_name}**: invited! Accept the invite in your client, or open {matrix_to(room_id)}"
    )


BINDING_IN_SHARED_ROOM = (
    "Send me that link in a direct chat: I answer there with a sign-in link that is for you alone."
)
SOMETHING_WENT_WRONG = "Something went wrong on my side; please try again in a few minutes."


@attrs.frozen
class ClaimReply:
    text: str
    # Send marked sensitive (kept out of logs): it carries a sign-in ticket.
    sensitive: bool = False


class DirectClaims:
    def __init__(
        self,
        links: LinkService,
        bindings: BindingService,
        provider_signin: ProviderSignIn,
        signin_url: Callable[[str, str], str],
        rooms: RoomOps,
        room_directory: RoomDirectory,
        queue: InviteQueue,
        log: logging.Logger,
        result_wait: float = RESULT_WAIT,
    ) -> None:
        self.links = links
        self.bindings = bindings
        self.provider_signin = provider_signin
        self.signin_url = signin_url
        self.rooms = rooms
        self.room_directory = room_directory
        self.queue = queue
        self.log = log
        self.result_wait = result_wait
        self._reporters: set[asyncio.Task] = set()

    async def claim(
        self, room_id: str, event_id: str, sender: str, text: str | None
    ) -> ClaimReply:
        """Claim the link in `text` for `sender`; returns the immediate answer.

        An invite link's result follows as a second message in the same room, from a
        background task, so the command handler never waits for the queue. A binding's
        link is answered with a sign-in link for the sender alone (to send marked
        sensitive: it stands in for their Matrix sign-in).
        """
        token = parse_claim_code(text)
        if not token:
            return ClaimReply(USAGE)
        binding = await self._binding(token)
        try:
            joined = await self.rooms.joined_members(room_id)
        except (MatrixRequestError, HomeserverUnavailable):
            return ClaimReply(
                "I could not check who can read this chat; please try again in a minute."
            )
        private = is_private_chat(joined, self.rooms.bot_user_id, sender)
        if binding is not None:
            if not private:
                return ClaimReply(BINDING_IN_SHARED_ROOM)
            return await self._sign_in_link(sender, binding)
        if not private:
            return ClaimReply(await self._refuse_in_shared_room(room_id, event_id))
        try:
            result = await self.links.claim(token, sender)
        except UserFacingError as e:
            return ClaimReply(e.message)
        except Exception:
            self.log.exception("A claim by %s failed", sender)
            return ClaimReply(SOMETHING_WENT_WRONG)
        rooms = result.link.rooms
        names = await self._room_names(rooms)
        self._report_later(room_id, sender, rooms)
        again = "" if result.first_claim else " (you had claimed it before; no use was spent)"
        return ClaimReply(
            f"Link accepted{again}: inviting you to {', '.join(names)}… "
            "I will tell you here how it went."
        )

    async def _binding(self, code: str) -> BindingView | None:
        """The binding a pasted code names, if it is a binding's link (its id is public)."""
        try:
            return await self.bindings.get(code)
        except UserFacingError:
            return None

    async def _sign_in_link(self, sender: str, view: BindingView) -> ClaimReply:
        try:
            ticket = await self.provider_signin.issue_ticket(sender, view)
        except Exception:
            self.log.exception("Could not make a sign-in link for %s", sender)
            return ClaimReply(SOMETHING_WENT_WRONG)
        names = ", ".join(await self._room_names(view.binding.rooms))
        url = self.signin_url(view.binding.public_id, ticket)
        return ClaimReply(
            f"{names} is open to {view.description}. Prove it here, signed in as {sender} "
            f"already (this link is for you alone and works once, for 30 minutes):\n\n{url}",
            sensitive=True,
        )

    async def stop(self) -> None:
        reporters, self._reporters = self._reporters, set()
        for task in reporters:
            task.cancel()
        await asyncio.gather(*reporters, return_exceptions=True)

    async def _refuse_in_shared_room(self, room_id: str, event_id: str) -> str:
        refusal = (
            "Invite links must be sent to me in a direct message, where nobody else can read "
            "them: start a direct chat with me and send `!invitebot claim <link>` there."
        )
        if await self._redact(room_id, event_id):
            return (
                f"{refusal} I removed your message, but people here may have seen the link "
                "before that; if it matters, ask a room admin for a new one."
            )
        return (
            f"{refusal} I could not remove your message here (I lack the power to): delete "
            "it yourself, since anyone who reads the link can use it."
        )

    async def _redact(self, room_id: str, event_id: str) -> bool:
        try:
            info = await self.rooms.room_info(room_id, fresh=True)
            if not info.power.can(self.rooms.bot_user_id, "redact"):
                return False
            await self.rooms.redact(room_id, event_id, "An invite link posted in a shared room")
        except (MatrixRequestError, HomeserverUnavailable):
            return False
        return True

    async def _room_names(self, room_ids: tuple[str, ...]) -> list[str]:
        """Names as the web page shows them: asked together, the room ID when unknown."""
        return [room.name for room in await self.room_directory.describe(room_ids)]

    def _report_later(self, chat_room_id: str, user_id: str, rooms: tuple[str, ...]) -> None:
        task = asyncio.create_task(
            self._report_when_done(chat_room_id, user_id, rooms),
            name="thirdparty_invite-claim-result",
        )
        self._reporters.add(task)
        task.add_done_callback(self._reporters.discard)

    async def _report_when_done(
        self, chat_room_id: str, user_id: str, rooms: tuple[str, ...]
    ) -> None:
        try:
            items = await self._wait_for_queue(user_id, rooms)
            names = await self._room_names(rooms)
            lines = [
                describe_outcome(items.get(room_id), name, room_id)
                for room_id, name in zip(rooms, names, strict=True)
            ]
            await self.rooms.send_notice(
                chat_room_id, "How your invites went:\n\n" + "\n".join(f"* {ln}" for ln in lines)
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            self.log.exception("Could not tell %s how their claimed invites went", user_id)

    async def _wait_for_queue(
        self, user_id: str, rooms: tuple[str, ...]
    ) -> dict[str, QueuedInvite]:
        """The person's queue rows for these rooms, once none is pending or time is up."""
        deadline = time.monotonic() + self.result_wait
        while True:
            items = {
                item.room_id: item
                for item in await self.queue.invites_of(user_id)
                if item.room_id in rooms
            }
            settled = all(items.get(r) and items[r].state != "pending" for r in rooms)
            if settled or time.monotonic() >= deadline:
                return items
            await asyncio.sleep(_POLL_INTERVAL)
