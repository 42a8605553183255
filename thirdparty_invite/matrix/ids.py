"""The grammar of Matrix identifiers: server names, user IDs, room IDs and room aliases.

Pure functions, no maubot or network: the one place the plugin decides whether a string is a
well-formed Matrix identifier and splits it into parts. Every `parse_*` function raises a
`ValueError` subclass whose message is safe to show to a person; every `is_*` function is the
same check as a bool. Server names come back in canonical form (lower-case host, compressed
IPv6 in brackets), so two spellings of one server compare equal.

Spec: appendices "Server Name", "User Identifiers", "Room IDs", "Room Aliases". Room version
12 room IDs have no server part (`!<43 base64url characters>`); older ones do
(`!opaque:example.org`).
"""

from __future__ import annotations

import ipaddress
import re

__all__ = [
    "InvalidMatrixID",
    "InvalidServerName",
    "format_server_name",
    "is_room_alias",
    "is_room_id",
    "is_server_name",
    "is_user_id",
    "normalize_server_name",
    "parse_hostname",
    "parse_room_alias",
    "parse_room_id",
    "parse_server_name",
    "parse_user_id",
    "server_name_of",
]

MAX_ID_LENGTH = 255  # bytes, for user IDs, room IDs and aliases alike
MAX_SERVER_NAME_LENGTH = 255

_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
_DOTTED_QUAD = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}\Z")
_PORT = re.compile(r"[1-9][0-9]{0,4}\Z")
# Historical user IDs allow any printable ASCII in the localpart except ':'.
_USER_LOCALPART = re.compile(r"[\x21-\x39\x3b-\x7e]+\Z")
# Room IDs are opaque; servers make them of printable ASCII (v12: unpadded base64url).
_ROOM_OPAQUE = re.compile(r"[\x21-\x39\x3b-\x7e]+\Z")


class InvalidMatrixID(ValueError):
    """Not a well-formed Matrix identifier. The message is safe to show."""


class InvalidServerName(InvalidMatrixID):
    """Not a server name per the Matrix grammar. The message is safe to show."""


# Server names


def _parse_port(text: str, name: str) -> int:
    if not _PORT.match(text) or not 1 <= int(text) <= 65535:
        raise InvalidServerName(f"{name!r} has an invalid port")
    return int(text)


def parse_hostname(text: str) -> str:
    """Validate a DNS name or IP literal (IPv6 without brackets), returned in canonical form:
    lower case, IPv4 dotted quad, IPv6 compressed."""
    lowered = text.lower()
    if _DOTTED_QUAD.match(lowered):
        try:
            return str(ipaddress.IPv4Address(lowered))
        except ValueError:
            raise InvalidServerName(f"{text!r} is not a valid IPv4 address") from None
    if ":" in lowered:
        if "%" in lowered:  # a zone index means nothing outside this machine
            raise InvalidServerName(f"{text!r} is not a valid IPv6 address")
        try:
            return ipaddress.IPv6Address(lowered).compressed
        except ValueError:
            raise InvalidServerName(f"{text!r} is not a valid IPv6 address") from None
    labels = lowered.split(".")
    if not all(_DNS_LABEL.match(label) for label in labels) or labels[-1].isdigit():
        # An all-digit last label would be a numeric IPv4 form such as 127.1, not a name.
        raise InvalidServerName(f"{text!r} is not a valid host name")
    return lowered


def parse_server_name(name: object) -> tuple[str, int | None]:
    """Split a server name into (host, port or None).

    The host comes back lower-cased, IP literals canonical and IPv6 without brackets.
    Raises `InvalidServerName`."""
    if (
        not isinstance(name, str)
        or not name
        or len(name) > MAX_SERVER_NAME_LENGTH
        or not name.isascii()
    ):
        raise InvalidServerName("a server name is 1 to 255 ASCII characters")
    if name.startswith("["):
        end = name.find("]")
        if end < 0 or ":" not in name[1:end]:
            raise InvalidServerName(f"{name!r} is not a valid IPv6 literal")
        host_text, rest = name[1:end], name[end + 1 :]
    else:
        host_text, colon, port_text = name.partition(":")
        if ":" in port_text:
            raise InvalidServerName(f"{name!r}: an IPv6 address needs [brackets]")
        rest = colon + port_text
    if not host_text:
        raise InvalidServerName(f"{name!r} has no host")
    host = parse_hostname(host_text)
    if rest == "":
        return host, None
    if not rest.startswith(":"):
        raise InvalidServerName(f"{name!r} has characters after the host")
    return host, _parse_port(rest[1:], name)


def format_server_name(host: str, port: int | None) -> str:
    """The server name of (host, port): IPv6 in brackets, `:port` only when given."""
    shown = f"[{host}]" if ":" in host else host
    return shown if port is None else f"{shown}:{port}"


def normalize_server_name(name: object) -> str:
    """The canonical spelling of a server name (lower-case host), for comparisons.
    Raises `InvalidServerName`."""
    return format_server_name(*parse_server_name(name))


def is_server_name(name: object) -> bool:
    try:
        parse_server_name(name)
    except InvalidServerName:
        return False
    return True


# Identifiers with a sigil


def _split_sigil(value: object, sigil: str, what: str) -> tuple[str, str, bool]:
    """(local part, server part, whether a ':' separated them) of `<sigil>local[:server]`."""
    if not isinstance(value, str) or not value.startswith(sigil):
        raise InvalidMatrixID(f"not a Matrix {what} (it starts with {sigil})")
    if len(value.encode()) > MAX_ID_LENGTH:
        raise InvalidMatrixID(f"a Matrix {what} is at most {MAX_ID_LENGTH} bytes long")
    local, colon, server = value[1:].partition(":")
    return local, server, bool(colon)


def parse_user_id(user_id: object) -> tuple[str, str]:
    """Split `@localpart:server` into (localpart, canonical server name).

    Raises `InvalidMatrixID` (a `ValueError`; `InvalidServerName` for a bad server part)."""
    localpart, server, colon = _split_sigil(user_id, "@", "user ID")
    if not colon or not _USER_LOCALPART.match(localpart):
        raise InvalidMatrixID("not a Matrix user ID such as @alice:example.org")
    return localpart, normalize_server_name(server)


def is_user_id(value: object) -> bool:
    try:
        parse_user_id(value)
    except ValueError:
        return False
    return True


def server_name_of(user_id: object) -> str:
    """The canonical server name of a user ID (`@alice:Example.org` -> `example.org`).
    Raises `InvalidMatrixID`."""
    return parse_user_id(user_id)[1]


def parse_room_id(room_id: object) -> tuple[str, str | None]:
    """Split `!opaque:server` into (opaque, canonical server name), or `!opaque` (room
    version 12 and later) into (opaque, None). Raises `InvalidMatrixID`."""
    opaque, server, colon = _split_sigil(room_id, "!", "room ID")
    if not _ROOM_OPAQUE.match(opaque):
        raise InvalidMatrixID("not a Matrix room ID such as !abcdef:example.org")
    return opaque, normalize_server_name(server) if colon else None


def is_room_id(value: object) -> bool:
    try:
        parse_room_id(value)
    except ValueError:
        return False
    return True


def parse_room_alias(alias: object) -> tuple[str, str]:
    """Split `#alias:server` into (alias local part, canonical server name).

    The local part may hold any character but ':' and NUL (spec); whitespace is refused too,
    since no client can show or type such an alias usefully. Raises `InvalidMatrixID`."""
    localpart, server, colon = _split_sigil(alias, "#", "room alias")
    if not colon or not localpart or any(c == "\0" or c.isspace() for c in localpart):
        raise InvalidMatrixID("not a Matrix room alias such as #room:example.org")
    return localpart, normalize_server_name(server)


def is_room_alias(value: object) -> bool:
    try:
        parse_room_alias(value)
    except ValueError:
        return False
    return True
