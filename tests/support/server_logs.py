"""Log tails of the servers a test session started, attached to the report of a failed test.

Fixtures that start a server call ``attach("synapse log tail", lambda: server.log_tail(40))``
and ``detach`` it when they stop it; the hook in tests/conftest.py reads them.
"""

from __future__ import annotations

from collections.abc import Callable

_sources: dict[str, Callable[[], str]] = {}


def attach(title: str, source: Callable[[], str]) -> None:
    _sources[title] = source


def detach(title: str) -> None:
    _sources.pop(title, None)


def sections() -> list[tuple[str, str]]:
    result = []
    for title, source in _sources.items():
        try:
            result.append((title, source()))
        except Exception as e:  # never hide the real failure
            result.append((title, f"(could not read log: {e})"))
    return result
