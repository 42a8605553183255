"""The sentences of the admin panel's API that no chat command already has."""

from __future__ import annotations

from ..errors import UserFacingError

# One answer for a room the person may not manage, a room the bot is not in, a direct
# chat, and a room that does not exist: nothing in it tells them apart, nor names a room.
NOT_ROOM_ADMIN = (
    "You cannot manage that room here: managing a room needs the power to invite people "
    "in it, and the bot must be in it. If your power level changed, reload your rooms."
)
LINK_UNKNOWN = "This room has no invite link #{link_id}."
BINDING_UNKNOWN = "This room has no binding {binding}."
INVITE_UNKNOWN = (
    "{user_id} has no failed invite to this room that a link or binding admitted them to."
)


def not_room_admin() -> UserFacingError:
    return UserFacingError("TPI_NOT_ROOM_ADMIN", NOT_ROOM_ADMIN, 403)
