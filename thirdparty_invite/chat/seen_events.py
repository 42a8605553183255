"""Event ids the bot has handled lately: a state event can reach it twice (in its room's
state and in its timeline), and a handler that acts on it must act once."""

from __future__ import annotations

from collections import OrderedDict


class SeenEvents:
    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._seen: OrderedDict[str, None] = OrderedDict()

    def first_sight(self, event_id: str) -> bool:
        """True the first time `event_id` is seen (of the last `size` ids)."""
        if event_id in self._seen:
            return False
        self._seen[event_id] = None
        while len(self._seen) > self.size:
            self._seen.popitem(last=False)
        return True
