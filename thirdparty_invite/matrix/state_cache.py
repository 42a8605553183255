"""What the bot already knows of its rooms, from its client's state store (fed by sync).

maubot gives every client one SQL state store (mautrix's `PgStateStore`, on maubot's own
database): the bot's membership in each room, and each room's power levels and
m.room.create event, kept current by the sync loop. Reading it costs no homeserver
request, so a bot in 1,000 rooms can list them at once. It can lag: maubot skips the
first sync after a start, so changes made while the bot was down arrive only with the
next change, and rooms joined before the store existed have no entry. Whatever acts on
a room reads it fresh (`RoomOps.room_info(fresh=True)`), which also refreshes the store.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
from mautrix.client import Client
from mautrix.client.state_store.asyncpg import PgStateStore
from mautrix.types import Membership, RoomID, StateEvent, UserID

from .power import RoomPower


@attrs.frozen
class KnownRoom:
    """A room the bot is joined to, as its state store has it (None: not known yet)."""

    room_id: str
    create_event: dict[str, Any] | None
    power_levels: dict[str, Any] | None

    @property
    def complete(self) -> bool:
        return self.create_event is not None and self.power_levels is not None

    @property
    def power(self) -> RoomPower:
        return RoomPower.from_state(self.create_event, self.power_levels)

    @property
    def is_space(self) -> bool:
        content = (self.create_event or {}).get("content") or {}
        return content.get("type") == "m.space"


def _json(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        data = json.loads(value) if isinstance(value, (str, bytes)) else value
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


class StateCache:
    def __init__(self, client: Client) -> None:
        self.client = client

    async def joined_rooms(self) -> list[KnownRoom] | None:
        """Every room the state store says the bot is joined to; None when the client has
        no SQL state store (then nothing is known without asking the homeserver)."""
        store = self.client.state_store
        if not isinstance(store, PgStateStore):
            return None
        # One query for every room: a bot in 1,000 rooms must not pay 2,000 lookups.
        rows = await store.db.fetch(
            "SELECT p.room_id, s.power_levels, s.create_event FROM mx_user_profile p"
            " LEFT JOIN mx_room_state s ON s.room_id = p.room_id"
            " WHERE p.user_id=$1 AND p.membership='join'",
            str(self.client.mxid),
        )
        return [
            KnownRoom(str(row["room_id"]), _json(row["create_event"]), _json(row["power_levels"]))
            for row in rows
        ]

    async def remember(self, room_id: str, state: dict[str, dict[str, Any]]) -> None:
        """Write what a fresh read of the room's full state found (by event type, state
        key ""): the bot is joined, its create event and power levels as sync would."""
        store = self.client.state_store
        if store is None:
            return
        await store.set_membership(RoomID(room_id), UserID(str(self.client.mxid)), Membership.JOIN)
        for event_type in ("m.room.create", "m.room.power_levels"):
            raw = state.get(event_type)
            if raw is None:
                continue
            try:
                event = StateEvent.deserialize({**raw, "room_id": room_id})
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # a server's oddity: the sync loop will say it again
            await store.update_state(event)

    async def left(self, room_id: str) -> None:
        """The homeserver says the bot is not in the room: so says the store from now on."""
        store = self.client.state_store
        if store is not None:
            await store.set_membership(
                RoomID(room_id), UserID(str(self.client.mxid)), Membership.LEAVE
            )
