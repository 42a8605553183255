"""Command arguments and durations."""

from __future__ import annotations

import pytest

from thirdparty_invite.chat.arguments import CommandError, parse_link_args
from thirdparty_invite.durations import DurationError, format_duration, parse_duration


def test_link_args() -> None:
    assert parse_link_args("") == (None, None, [])
    assert parse_link_args("--uses 20 --expires 7d") == (20, "7d", [])
    assert parse_link_args("!abc #room:x.org --uses 1") == (1, None, ["!abc", "#room:x.org"])


@pytest.mark.parametrize(
    "args",
    [
        "--uses",
        "--uses 0",
        "--uses -3",
        "--uses ten",
        "--uses 100001",
        "--bogus 1",
        "room",
        "#noserver",
        '"unclosed',
        " ".join(f"!r{i}" for i in range(21)),
    ],
)
def test_bad_link_args(args: str) -> None:
    with pytest.raises(CommandError):
        parse_link_args(args)


def test_durations() -> None:
    assert parse_duration("7d") == 7 * 86400
    assert parse_duration("90") == 90 and parse_duration(45) == 45
    assert parse_duration("2w") == 14 * 86400
    assert format_duration(90061) == "1d 1h" and format_duration(0) == "0s"
    for bad in ("", "7x", "-1d", "1.5h", True, -3):
        with pytest.raises(DurationError):
            parse_duration(bad)
