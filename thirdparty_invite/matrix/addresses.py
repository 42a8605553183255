"""Pointing at Matrix rooms and people: their server, and links that open them in the
person's own client (matrix.to, and the `matrix:` URI scheme). Pure: no client, no I/O."""

from __future__ import annotations

from urllib.parse import quote

from .ids import InvalidMatrixID, parse_room_id, server_name_of


def server_of(entity_id: str) -> str:
    """The server of a user ID or room ID, "" when it names none (room v12) or is no ID."""
    try:
        if entity_id.startswith("!"):
            return parse_room_id(entity_id)[1] or ""
        return server_name_of(entity_id)
    except InvalidMatrixID:
        return ""


def matrix_to(entity_id: str, via: str | None = None) -> str:
    """A link that opens a room or user in the person's own client, through matrix.to.

    `via` (a server in the room) lets clients join rooms whose ID names no server (v12).
    """
    suffix = f"?via={quote(via, safe=':')}" if via else ""
    return f"https://matrix.to/#/{quote(entity_id, safe='!@#:')}{suffix}"


def matrix_uri(room_id: str, via: str | None = None) -> str:
    """The `matrix:` URI (spec: "Matrix URI scheme"): opens the user's own installed app."""
    opaque = quote(room_id.removeprefix("!"), safe=":")
    query = f"?action=join&via={quote(via, safe=':')}" if via else "?action=join"
    return f"matrix:roomid/{opaque}{query}"
