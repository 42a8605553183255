"""Spaces as the bot reads them: whether a room is one, and the rooms it lists as children.

The answer comes from the room hierarchy endpoint (`GET /_matrix/client/v1/rooms/{id}/
hierarchy` with `max_depth=0`): its first entry is the room itself, with its `room_type`
(from `m.room.create`) and its `m.space.child` events (`children_state`, with
`origin_server_ts`). That is one small answer, where the room's full state would bring
every member event of a large space along.

A child counts only while its event's `via` is a non-empty list of server names: the spec
treats a child without `via` as removed (sending empty content is how clients remove one).
Children are ordered as the spec orders them: by `order` (printable ASCII, at most 50
characters, compared as strings) when present, then by the event's timestamp, then by
room ID.
"""

from __future__ import annotations

from typing import Any

import attrs

from .ids import is_room_id

SPACE_ROOM_TYPE = "m.space"
_ORDER_MAX_LENGTH = 50


def child_via(content: Any) -> list[str]:
    """The servers of an m.space.child content; empty when the child is not (or no longer)
    listed."""
    via = content.get("via") if isinstance(content, dict) else None
    if not isinstance(via, list):
        return []
    return [server for server in via if isinstance(server, str) and server]


def _valid_order(content: dict[str, Any]) -> str | None:
    order = content.get("order")
    if not isinstance(order, str) or len(order) > _ORDER_MAX_LENGTH:
        return None
    if not all(0x20 <= ord(c) <= 0x7E for c in order):
        return None
    return order


@attrs.frozen
class SpaceChild:
    room_id: str
    via: tuple[str, ...]
    order: str | None = None
    at: int = 0  # origin_server_ts of the m.space.child event, ms

    def sort_key(self) -> tuple[int, str, int, str]:
        # Children with an order come first, in that order; the rest by age, then ID.
        return (0 if self.order is not None else 1, self.order or "", self.at, self.room_id)


@attrs.frozen
class SpaceInfo:
    """A room as a space: `is_space` from its type, `children` listed with a `via`."""

    room_id: str
    is_space: bool
    children: tuple[SpaceChild, ...] = ()

    @property
    def child_ids(self) -> tuple[str, ...]:
        return tuple(child.room_id for child in self.children)

    @classmethod
    def from_hierarchy(cls, room_id: str, data: Any) -> SpaceInfo:
        """Read the first page of a hierarchy answer for `room_id` (malformed: no space)."""
        rooms = data.get("rooms") if isinstance(data, dict) else None
        entry = next(
            (r for r in rooms or [] if isinstance(r, dict) and r.get("room_id") == room_id),
            None,
        )
        if entry is None:
            return cls(room_id, False)
        is_space = entry.get("room_type") == SPACE_ROOM_TYPE
        children: dict[str, SpaceChild] = {}
        for event in entry.get("children_state") or []:
            if not isinstance(event, dict) or event.get("type") != "m.space.child":
                continue
            child_id, content = event.get("state_key"), event.get("content")
            via = child_via(content)
            if not is_room_id(child_id) or child_id == room_id or not via:
                continue
            at = event.get("origin_server_ts")
            children[child_id] = SpaceChild(
                room_id=child_id,
                via=tuple(via),
                order=_valid_order(content),
                at=at if isinstance(at, int) and not isinstance(at, bool) else 0,
            )
        ordered = sorted(children.values(), key=SpaceChild.sort_key)
        return cls(room_id, is_space, tuple(ordered) if is_space else ())
