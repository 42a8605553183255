"""Who may do what in a room, from its m.room.power_levels and m.room.create events.

Room versions 12 and later (and the "hydra" test versions) make the room's creators
outrank everyone: they are not listed in the power levels at all, so a check that reads
only m.room.power_levels would tell a creator they may not manage their own room.
"""

from __future__ import annotations

import math
from typing import Any

import attrs

ACTIONS = ("invite", "kick", "ban", "redact")
# Defaults from the spec when a key is missing from m.room.power_levels.
_ACTION_DEFAULTS = {"invite": 0, "kick": 50, "ban": 50, "redact": 50}


def creators_outrank_everyone(room_version: str) -> bool:
    if room_version.isdigit():
        return int(room_version) >= 12
    return "hydra" in room_version


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


@attrs.frozen
class RoomPower:
    room_version: str
    creators: frozenset[str]
    users: dict[str, int]
    users_default: int
    levels: dict[str, int]
    has_power_levels: bool

    @classmethod
    def from_state(
        cls, create_event: dict[str, Any] | None, power_levels: dict[str, Any] | None
    ) -> RoomPower:
        """Build from the raw m.room.create event (with sender) and power levels content."""
        create_content = (create_event or {}).get("content") or {}
        room_version = str(create_content.get("room_version") or "1")
        creators: set[str] = set()
        if create_event is not None:
            if creators_outrank_everyone(room_version):
                creators.add(create_event.get("sender", ""))
                extra = create_content.get("additional_creators") or []
                creators.update(c for c in extra if isinstance(c, str))
            else:
                # Before power levels exist, the creator has level 100.
                creators.add(create_content.get("creator") or create_event.get("sender", ""))
        creators.discard("")
        content = power_levels or {}
        users = {str(user): _int(level, 0) for user, level in (content.get("users") or {}).items()}
        levels = {
            action: _int(content.get(action), _ACTION_DEFAULTS[action]) for action in ACTIONS
        }
        return cls(
            room_version=room_version,
            creators=frozenset(creators),
            users=users,
            users_default=_int(content.get("users_default"), 0),
            levels=levels,
            has_power_levels=power_levels is not None,
        )

    def level_of(self, user_id: str) -> float:
        if user_id in self.creators and (
            creators_outrank_everyone(self.room_version) or not self.has_power_levels
        ):
            return math.inf
        return self.users.get(user_id, self.users_default)

    def required(self, action: str) -> int:
        return self.levels[action]

    def can(self, user_id: str, action: str) -> bool:
        return self.level_of(user_id) >= self.required(action)

    def missing(self, user_id: str, actions: tuple[str, ...]) -> list[str]:
        """Human descriptions of the actions the user lacks power for."""
        have = self.level_of(user_id)
        shown = "creator" if math.isinf(have) else str(int(have))
        return [
            f"{action} (needs power level {self.required(action)}, has {shown})"
            for action in actions
            if not self.can(user_id, action)
        ]
