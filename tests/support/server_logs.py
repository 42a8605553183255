"""Log tails of the servers a test session started, attached to the report of a failed test.

Fixtures that start servers wrap their use in ``with server_logs.attached(servers):``; the
hook in tests/conftest.py reads them. The same server name may be attached twice (a
session Synapse and a module's own): each attachment is its own section.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from devtools.ports import ManagedServer

_sources: dict[object, tuple[str, Callable[[], str]]] = {}


@contextmanager
def attached(servers: Iterable[ManagedServer], lines: int = 50) -> Iterator[None]:
    """While the block runs, failed tests' reports end with these servers' log tails."""
    keys = []
    for server in servers:
        key = object()
        _sources[key] = (f"{server.name} log tail", lambda s=server: s.log_tail(lines))
        keys.append(key)
    try:
        yield
    finally:
        for key in keys:
            _sources.pop(key, None)


def sections() -> list[tuple[str, str]]:
    result = []
    for title, source in _sources.values():
        try:
            result.append((title, source()))
        except Exception as e:  # never hide the real failure
            result.append((title, f"(could not read log: {e})"))
    return result
