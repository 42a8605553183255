"""Reading the arguments of `!invitebot` commands; errors say what was wrong."""

from __future__ import annotations

import shlex

from ..errors import UserFacingError
from ..matrix.ids import is_room_alias, is_room_id

MAX_LINK_USES = 100_000
MAX_ROOMS_PER_LINK = 20


class CommandError(UserFacingError):
    """A command's arguments are wrong; the message says how, in a sentence."""

    def __init__(self, message: str) -> None:
        super().__init__("M_INVALID_PARAM", message)


def take_register_flag(args: str) -> tuple[str, bool]:
    """(the other arguments, whether `--register` was among them): `link` and `bind` both
    take it, to offer a new account on the operator's homeserver to people who qualify."""
    try:
        words = shlex.split(args or "")
    except ValueError:
        return args, False  # the parser of the command says what is wrong
    if "--register" not in words:
        return args, False
    return shlex.join(w for w in words if w != "--register"), True


def parse_link_args(args: str) -> tuple[int | None, str | None, list[str]]:
    """(--uses, --expires, rooms) from `[--uses N] [--expires 7d|never] [room ...]`."""
    try:
        words = shlex.split(args or "")
    except ValueError as e:
        raise CommandError(f"Could not read the arguments: {e}.") from None
    uses: int | None = None
    expires: str | None = None
    rooms: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word in ("--uses", "--expires"):
            if i + 1 >= len(words):
                raise CommandError(f"{word} needs a value.")
            value = words[i + 1]
            i += 2
            if word == "--uses":
                if not value.isdigit() or not 1 <= int(value) <= MAX_LINK_USES:
                    raise CommandError(f"--uses takes a number from 1 to {MAX_LINK_USES}.")
                uses = int(value)
            else:
                expires = value
        elif word.startswith("--"):
            raise CommandError(
                f"Unknown option {word}. Options: --uses N, --expires 7d, --register."
            )
        else:
            if not _is_room_ref(word):
                raise CommandError(f"{word} is not a room ID (!...) or alias (#...:server).")
            rooms.append(word)
            i += 1
    if len(rooms) > MAX_ROOMS_PER_LINK:
        raise CommandError(f"A link may lead to at most {MAX_ROOMS_PER_LINK} rooms.")
    return uses, expires, rooms


def _is_room_ref(word: str) -> bool:
    return is_room_id(word) or is_room_alias(word)


def parse_bind_args(args: str) -> tuple[str, list[str]]:
    """(rules text, rooms) from `<provider> <rule> [and ...] [--room ROOM ...]`."""
    try:
        words = shlex.split(args or "")
    except ValueError as e:
        raise CommandError(f"Could not read the arguments: {e}.") from None
    rules: list[str] = []
    rooms: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--room":
            if i + 1 >= len(words) or not _is_room_ref(words[i + 1]):
                raise CommandError("--room takes a room ID (!...) or alias (#...:server).")
            rooms.append(words[i + 1])
            i += 2
        elif word.startswith("--"):
            raise CommandError(
                f"Unknown option {word}. Options: --room ROOM (repeatable), --register."
            )
        else:
            rules.append(word)
            i += 1
    if not rules:
        raise CommandError(
            "Say who may join, e.g. `!invitebot bind github team:matrix-org/maintainers` "
            "(`!invitebot providers` lists the providers set up here)."
        )
    if len(rooms) > MAX_ROOMS_PER_LINK:
        raise CommandError(f"A binding may lead to at most {MAX_ROOMS_PER_LINK} rooms.")
    return " ".join(rules), rooms
