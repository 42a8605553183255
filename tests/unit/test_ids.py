"""thirdparty_invite.matrix.ids: the grammar of server names, user IDs, room IDs, aliases."""

from __future__ import annotations

import pytest

from thirdparty_invite.matrix.ids import (
    InvalidMatrixID,
    InvalidServerName,
    format_server_name,
    is_room_alias,
    is_room_id,
    is_server_name,
    is_user_id,
    normalize_server_name,
    parse_room_alias,
    parse_room_id,
    parse_server_name,
    parse_user_id,
    server_name_of,
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("example.org", ("example.org", None)),
        ("Example.ORG:8448", ("example.org", 8448)),
        ("matrix.example-1.org:1", ("matrix.example-1.org", 1)),
        ("localhost", ("localhost", None)),
        ("xn--bcher-kva.example", ("xn--bcher-kva.example", None)),
        ("1.2.3.4", ("1.2.3.4", None)),
        ("1.2.3.4:65535", ("1.2.3.4", 65535)),
        ("[::1]", ("::1", None)),
        ("[2001:DB8:0::1]:443", ("2001:db8::1", 443)),
        ("[::ffff:1.2.3.4]:8448", ("::ffff:102:304", 8448)),
        ("a" * 63 + ".org", ("a" * 63 + ".org", None)),
    ],
)
def test_parse_server_name_accepts(name: str, expected: tuple[str, int | None]) -> None:
    assert parse_server_name(name) == expected


BAD_NAMES = [
    *"""
    :8448 example.org: example.org:0 example.org:65536 example.org:08448 example.org:84a8
    example.org:8448:1 example..org .example.org example.org. -a.org a-.org a_b.org a/b.org
    @example.org ::1 [::1 [::1]x [::1]: [1.2.3.4] [fe80::1%eth0] [] 256.1.1.1 1.2.3.04 127.1
    1.2.3 example.123
    """.split(),
    "",
    "exa mple.org",
    "ex\u00e4mple.org",
    "a" * 64 + ".org",  # label too long
    "a." * 127 + "org",  # name too long
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_parse_server_name_rejects(name: str) -> None:
    with pytest.raises(InvalidServerName):
        parse_server_name(name)


def test_parse_server_name_rejects_non_strings() -> None:
    with pytest.raises(InvalidServerName):
        parse_server_name(12345)  # type: ignore[arg-type]


def test_normalize_server_name() -> None:
    assert normalize_server_name("HS.Example.org:443") == "hs.example.org:443"
    assert normalize_server_name("[2001:db8:0:0::1]") == "[2001:db8::1]"


def test_format_server_name() -> None:
    assert format_server_name("example.org", None) == "example.org"
    assert format_server_name("2001:db8::1", 443) == "[2001:db8::1]:443"
    assert is_server_name("example.org:8448")
    assert not is_server_name("exa mple.org")


def test_errors_are_value_errors() -> None:
    # Callers that only care "valid or not" may catch ValueError.
    assert issubclass(InvalidServerName, InvalidMatrixID)
    assert issubclass(InvalidMatrixID, ValueError)


def test_parse_user_id() -> None:
    assert parse_user_id("@alice:hs.test") == ("alice", "hs.test")
    assert parse_user_id("@a.b=c/d+e:HS.test:8448") == ("a.b=c/d+e", "hs.test:8448")
    assert parse_user_id("@x:[::1]:80") == ("x", "[::1]:80")
    assert server_name_of("@alice:Example.ORG") == "example.org"
    assert is_user_id("@alice:hs.test")
    bad = ["alice", "@alice", "@:hs.test", "@al ice:hs.test", "@a:bad name", 7, None, ""]
    bad += ["@caf\u00e9:hs.test", "@" + "a" * 250 + ":hs.test", "!room:hs.test"]
    for value in bad:
        with pytest.raises(InvalidMatrixID):
            parse_user_id(value)
        assert not is_user_id(value)


@pytest.mark.parametrize(
    ("room_id", "parts"),
    [
        ("!abcDEF:example.org", ("abcDEF", "example.org")),
        ("!abc:Example.ORG:8448", ("abc", "example.org:8448")),
        ("!abc:[::1]", ("abc", "[::1]")),
        # Room version 12: no server part, the opaque part is unpadded base64url.
        (
            "!0Ptrn7vSJTYo0Zk1rnT2FQ0c3Y5bnzD4X6sWLNUPQm8",
            ("0Ptrn7vSJTYo0Zk1rnT2FQ0c3Y5bnzD4X6sWLNUPQm8", None),
        ),
        ("!a-b_c", ("a-b_c", None)),
    ],
)
def test_parse_room_id(room_id: str, parts: tuple[str, str | None]) -> None:
    assert parse_room_id(room_id) == parts
    assert is_room_id(room_id)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "!",
        "!:example.org",
        "abc:example.org",
        "#abc:example.org",
        "!a b:example.org",
        "!abc:bad name",
        "!abc:",
        "!abc\u00e9",
        "!" + "a" * 255,
        None,
        5,
    ],
)
def test_parse_room_id_rejects(value: object) -> None:
    with pytest.raises(InvalidMatrixID):
        parse_room_id(value)
    assert not is_room_id(value)


def test_parse_room_alias() -> None:
    assert parse_room_alias("#room:Example.org") == ("room", "example.org")
    assert parse_room_alias("#caf\u00e9-\u2603:example.org:8448") == (
        "caf\u00e9-\u2603",
        "example.org:8448",
    )
    assert is_room_alias("#room:example.org")
    for bad in [
        "#room",
        "#:example.org",
        "room:example.org",
        "!room:example.org",
        "#ro om:example.org",
        "#a\0b:example.org",
        "#room:bad name",
        "#" + "\u2603" * 90 + ":x.org",
        None,
    ]:
        with pytest.raises(InvalidMatrixID):
            parse_room_alias(bad)
        assert not is_room_alias(bad)
