"""Who may manage a room's invites: one check for the chat commands and (next) the admin API.

A room admin is someone whose power level allows inviting in the room. The check reads
the room's full state fresh from the homeserver (power changes must count at once), and
refuses rooms the bot joined as a direct chat: anyone can start one, so no operator
vetted them. It also checks that the bot itself can do what is asked.
"""

from __future__ import annotations

from mautrix.errors import MatrixRequestError

from ..errors import UserFacingError
from ..matrix.rooms import HomeserverUnavailable, RoomInfo, RoomOps
from .direct_chats import DirectChats

SLOW_HOMESERVER = (
    "My homeserver is not answering right now, so I cannot check the room. Try again in a minute."
)


class RoomAdmin:
    def __init__(self, rooms: RoomOps, direct_chats: DirectChats) -> None:
        self.rooms = rooms
        self.direct_chats = direct_chats

    async def resolve(self, refs: list[str]) -> list[str]:
        """Room IDs, in order and without repeats, from room IDs and aliases."""
        room_ids: list[str] = []
        for ref in refs:
            try:
                room_id = await self.rooms.resolve_room(ref)
            except HomeserverUnavailable:
                raise UserFacingError("TPI_HOMESERVER_SLOW", SLOW_HOMESERVER, 504) from None
            except MatrixRequestError:
                raise UserFacingError(
                    "M_NOT_FOUND", f"I could not find the room {ref}.", 404
                ) from None
            if room_id not in room_ids:
                room_ids.append(room_id)
        return room_ids

    async def require_manager(
        self,
        user_id: str,
        room_id: str,
        *,
        bot_needs: tuple[str, ...] = ("invite",),
        asked_in: str | None = None,
    ) -> RoomInfo:
        """The room's info if `user_id` may manage invites there and the bot can act.

        Raises UserFacingError with a sentence saying what is missing. `asked_in` is the
        room the request was typed in, so the answer can say "this room".
        """
        try:
            direct_chat = await self.direct_chats.is_direct_chat(room_id)
            info = await self.rooms.room_info(room_id, fresh=True)
        except HomeserverUnavailable:
            raise UserFacingError("TPI_HOMESERVER_SLOW", SLOW_HOMESERVER, 504) from None
        except MatrixRequestError:
            raise UserFacingError(
                "TPI_BOT_NOT_IN_ROOM",
                f"I am not in {room_id}, so I cannot manage it. Invite me there first.",
                404,
            ) from None
        if direct_chat:
            where = "This room" if room_id == asked_in else room_id
            raise UserFacingError(
                "TPI_DIRECT_CHAT",
                f"{where} is a direct chat with me: room admin commands work only in rooms "
                "an operator invited me to.",
                403,
            )
        sender_missing = info.power.missing(user_id, ("invite",))
        if sender_missing:
            raise UserFacingError(
                "M_FORBIDDEN",
                f"Only people who may invite in {info.display_name} can manage its invites "
                f"(you lack {sender_missing[0]}).",
                403,
            )
        bot_missing = info.power.missing(self.rooms.bot_user_id, bot_needs)
        if bot_missing:
            raise UserFacingError(
                "TPI_BOT_LACKS_POWER",
                f"I cannot do that in {info.display_name}: I lack {'; '.join(bot_missing)}. "
                "Raise my power level and try again.",
                403,
            )
        return info
