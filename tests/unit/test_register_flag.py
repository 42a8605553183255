"""`--register` on `link` and `bind`: taken out before each command's own parser."""

from __future__ import annotations

from thirdparty_invite.chat.arguments import parse_bind_args, take_register_flag


def test_the_flag_is_taken_wherever_it_stands() -> None:
    assert take_register_flag("--uses 3 --register #a:x") == ("--uses 3 '#a:x'", True)
    assert take_register_flag("--register") == ("", True)
    assert take_register_flag("--uses 3") == ("--uses 3", False)
    rest, register = take_register_flag("github org:x --register --room '!r:x'")
    assert register and parse_bind_args(rest) == ("github org:x", ["!r:x"])


def test_unreadable_arguments_are_left_to_the_command() -> None:
    assert take_register_flag('--register "unclosed') == ('--register "unclosed', False)
