"""Hostile input to the web API: every answer is a clean `{errcode, error}` 4xx.

Bodies that JSON cannot turn into a plain object within limits, cookies and headers that are
not UTF-8, methods a route does not take, clients that hang up mid-body, and Origin headers
that only look like ours. The server runs the way maubot runs it (a handler keeps running
when its client disconnects), over SQLite.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import gzip
import logging
import sqlite3

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer, make_mocked_request
import asyncpg
import pytest
import pytest_asyncio
from support import plugin_web
from support.fakehomeserver import FakeHomeserver
from support.raw_http import build_request, send_and_hang_up, send_raw
from yarl import URL

from devtools.ports import free_port
from thirdparty_invite.errors import UserFacingError
from thirdparty_invite.storage import Storage
from thirdparty_invite.webapp.origins import OriginCheck, parse_origin
from thirdparty_invite.webapp.support import (
    MAX_JSON_DEPTH,
    is_database_error,
    parse_json_object,
)


class MaubotLikeServer(TestServer):
    """aiohttp's TestServer cancels a handler whose client disconnects; maubot's AppRunner
    does not (the handler then sees the error reading the body), and that is what we test."""

    async def _make_runner(self, **kwargs):
        kwargs["handler_cancellation"] = False
        return web.AppRunner(self.app, **kwargs)


@pytest_asyncio.fixture(loop_scope="session")
async def homeserver() -> AsyncIterator[FakeHomeserver]:
    async with FakeHomeserver() as hs:
        hs.sub = "@mallory:hs.test"
        yield hs


@pytest_asyncio.fixture(loop_scope="session")
async def web_app(storage: Storage, homeserver: FakeHomeserver, monkeypatch):
    monkeypatch.setattr(plugin_web, "TestServer", MaubotLikeServer)
    overrides = {
        "identity": {"server_urls": {"hs.test": homeserver.url}},
        # Limits are tested in test_ratelimit.py; here every request must reach the parser.
        "rate_limits": {name: {"burst": 0} for name in ("session", "link_inspect", "link_claim")},
    }
    async with plugin_web.serve_plugin_web(storage, overrides) as served:
        yield served


async def signed_in_cookie(http: aiohttp.ClientSession, token: str) -> str:
    async with http.post(
        "api/session", json={"access_token": token, "matrix_server_name": "hs.test"}
    ) as resp:
        assert resp.status == 200, await resp.text()
        return resp.cookies["tpi_session"].value


def assert_error(resp_status: int, body: object, expected: tuple[int, str]) -> None:
    assert isinstance(body, dict) and set(body) == {"errcode", "error"}, body
    assert isinstance(body["error"], str) and body["error"]
    assert (resp_status, body["errcode"]) == expected, body


# ---- bodies -------------------------------------------------------------------------

NOT_JSON = (400, "M_NOT_JSON")
BAD_JSON = (400, "M_BAD_JSON")
DEEP = MAX_JSON_DEPTH + 1

HOSTILE_BODIES = {
    "arrays nested past the limit": (b"[" * DEEP + b"]" * DEEP, BAD_JSON),
    "arrays nested past Python's recursion limit": (b"[" * 7000 + b"]" * 7000, BAD_JSON),
    "objects nested past the limit": (b'{"a":' * DEEP + b"1" + b"}" * DEEP, BAD_JSON),
    "unbalanced nesting": (b"[" * 8000, BAD_JSON),
    "brackets inside strings do not count": (
        b'{"token": "' + b"[" * 200 + b'"}',
        (400, "M_INVALID_PARAM"),
    ),
    "not UTF-8": (b'{"token": "\xff\xfe"}', NOT_JSON),
    "overlong UTF-8": (b'{"token": "\xc0\xaf"}', NOT_JSON),
    "UTF-8-encoded surrogate": (b'{"token": "\xed\xa0\x80"}', NOT_JSON),
    "UTF-16 with a BOM": ('{"token": "abc"}'.encode("utf-16"), NOT_JSON),
    "UTF-8 BOM": (b'\xef\xbb\xbf{"token": "abc"}', NOT_JSON),
    "lone surrogate escape": (b'{"token": "\\ud800abc"}', BAD_JSON),
    "lone surrogate in a key": (b'{"\\udfff": 1, "token": "abc"}', BAD_JSON),
    "NaN": (b'{"token": NaN}', NOT_JSON),
    "Infinity": (b'{"token": "a", "n": Infinity}', NOT_JSON),
    "-Infinity": (b'{"token": "a", "n": -Infinity}', NOT_JSON),
    "float overflowing to inf": (b'{"token": "a", "n": 1e999}', BAD_JSON),
    "integer past Python's digit limit": (b'{"token": ' + b"9" * 5000 + b"}", BAD_JSON),
    "integer past 2**53": (b'{"token": "a", "n": 9007199254740993}', BAD_JSON),
    "duplicate keys": (b'{"token": "a", "token": "b"}', BAD_JSON),
    "top-level array": (b"[]", BAD_JSON),
    "top-level string": (b'"token"', BAD_JSON),
    "top-level null": (b"null", BAD_JSON),
    "empty body": (b"", NOT_JSON),
    "trailing garbage": (b'{"token": "a"} x', NOT_JSON),
    "control character in a value": (b'{"token": "abc\\u0000def"}', (400, "M_INVALID_PARAM")),
    "wrong type": (b'{"token": ["a"]}', (400, "M_INVALID_PARAM")),
}


@pytest.mark.parametrize(("body", "expected"), HOSTILE_BODIES.values(), ids=HOSTILE_BODIES)
def test_body_parser_refuses(body: bytes, expected: tuple[int, str]) -> None:
    try:
        data = parse_json_object(body)
    except UserFacingError as e:
        assert (e.http_status, e.errcode) == expected
    else:
        assert expected[1] == "M_INVALID_PARAM", data  # parses; the route refuses the value


def test_body_parser_takes_plain_objects() -> None:
    assert parse_json_object('{"token": "ü😀", "n": -1.5e3, "x": [1, {"y": null}]}'.encode()) == {
        "token": "ü😀",
        "n": -1500.0,
        "x": [1, {"y": None}],
    }
    nested = b"[" * (MAX_JSON_DEPTH - 1) + b"]" * (MAX_JSON_DEPTH - 1)
    assert parse_json_object(b'{"a": ' + nested + b"}")["a"]
    assert parse_json_object(b'{"pair": "\\ud83d\\ude00"}') == {"pair": "😀"}


@pytest.mark.parametrize("route", ["api/session", "api/links/inspect", "api/links/claim"])
@pytest.mark.parametrize(("body", "expected"), HOSTILE_BODIES.values(), ids=HOSTILE_BODIES)
async def test_every_post_route_answers_hostile_bodies_with_a_4xx(
    web_app, route: str, body: bytes, expected: tuple[int, str]
) -> None:
    http, _, base = web_app
    # A claim reads its body only once the person is signed in.
    cookie = await signed_in_cookie(http, f"hostile-{hash(body)}") if "claim" in route else ""
    response = await send_raw(
        base.port,
        build_request(
            "POST",
            f"{base.path}{route}",
            f"127.0.0.1:{base.port}",
            [
                ("Origin", f"http://127.0.0.1:{base.port}"),
                ("Content-Type", "application/json"),
                ("Cookie", f"tpi_session={cookie}"),
            ],
            body,
        ),
    )
    assert response.headers["content-type"].startswith("application/json")
    if expected[1] == "M_INVALID_PARAM" and route == "api/session":
        expected = (400, "M_MISSING_PARAM")  # no access_token in these bodies
    assert_error(response.status, response.json(), expected)


async def test_content_type_and_encoding(web_app) -> None:
    http, _, base = web_app
    body = b'{"token": "' + b"A" * 32 + b'"}'
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "image/png"):
        async with http.post(
            "api/links/inspect", data=body, headers={"Content-Type": content_type}
        ) as resp:  # the bytes decide, as in Synapse
            assert_error(resp.status, await resp.json(), (404, "TPI_LINK_UNKNOWN"))
    # Answered, and the connection closed (aiohttp itself then logs the broken stream).
    response = await send_raw(
        base.port,
        build_request(
            "POST",
            f"{base.path}api/links/inspect",
            f"127.0.0.1:{base.port}",
            [("Content-Encoding", "gzip")],
            b"not gzip at all",
        ),
    )
    assert_error(response.status, response.json(), NOT_JSON)
    bomb = gzip.compress(b" " * 2_000_000)  # 2 MB of spaces in 2 KB: the limit holds
    async with http.post(
        "api/links/inspect", data=bomb, headers={"Content-Encoding": "gzip"}
    ) as resp:
        assert_error(resp.status, await resp.json(), (413, "M_TOO_LARGE"))


# ---- headers, cookies, methods ------------------------------------------------------


@pytest.mark.parametrize(
    "cookie",
    [
        b"tpi_session=\xff\xfe\xc3",
        b"tpi_session=\xc3\xa9t\xc3\xa9",
        b"tpi_session=" + b"A" * 4000,
        b'tpi_session="quoted"; tpi_session=second',
        b"tpi_session=a b c",
        b"\xff=\xff; tpi_session",
        b";;;=;",
    ],
)
async def test_cookies_that_are_not_tokens_are_no_session(web_app, cookie: bytes) -> None:
    _, _, base = web_app
    origin = f"http://127.0.0.1:{base.port}"
    for method, route, expected in [
        ("GET", "api/session", (401, "M_MISSING_TOKEN")),
        ("GET", "api/invites", (401, "M_MISSING_TOKEN")),
        ("POST", "api/links/claim", (401, "M_MISSING_TOKEN")),
    ]:
        response = await send_raw(
            base.port,
            build_request(
                method,
                f"{base.path}{route}",
                f"127.0.0.1:{base.port}",
                [("Cookie", cookie), ("Origin", origin)],
                b'{"token": "x"}' if method == "POST" else None,
            ),
        )
        assert_error(response.status, response.json(), expected)
    response = await send_raw(
        base.port,
        build_request(
            "DELETE",
            f"{base.path}api/session",
            f"127.0.0.1:{base.port}",
            [("Cookie", cookie), ("Origin", origin)],
        ),
    )
    assert (response.status, response.json()) == (200, {})


@pytest.mark.parametrize(
    "origin",
    [b"\xff\xfe", b"http://127.0.0.1\xc3\xa9", b"null", b"http://127.0.0.1:1@evil.example"],
)
async def test_undecodable_or_odd_origins_are_refused(web_app, origin: bytes) -> None:
    _, _, base = web_app
    response = await send_raw(
        base.port,
        build_request(
            "POST",
            f"{base.path}api/session",
            f"127.0.0.1:{base.port}",
            [("Origin", origin)],
            b"{}",
        ),
    )
    assert_error(response.status, response.json(), (403, "TPI_ORIGIN_FORBIDDEN"))


async def test_wrong_methods_say_which_are_allowed(web_app) -> None:
    http, _, _ = web_app
    cases = {
        "api/session": {"GET", "POST", "DELETE"},
        "api/links/inspect": {"POST"},
        "api/links/claim": {"POST"},
        "api/invites": {"GET"},
    }
    for route, allowed in cases.items():
        for method in ("PUT", "PATCH", "OPTIONS", "TRACE", "PROPFIND"):
            async with http.request(method, route) as resp:
                assert_error(resp.status, await resp.json(), (405, "M_UNRECOGNIZED"))
                assert {m.strip() for m in resp.headers["Allow"].split(",")} - {"HEAD"} == allowed
        # A method HTTP does not know never reaches us: aiohttp answers 400 on its own.
        async with http.request("FROB", route) as resp:
            assert resp.status == 400


async def test_odd_paths_and_queries(web_app) -> None:
    _, _, base = web_app
    host = f"127.0.0.1:{base.port}"
    for target, status in [
        (f"{base.path}api/session/", 404),
        (f"{base.path}api//session", 404),
        (f"{base.path}API/SESSION", 404),
        (f"{base.path}api/%73ession", 401),  # percent-decoded: it is api/session
        (f"{base.path}api/%ff%fe", 404),
        (f"{base.path}api/session;x=1", 404),
        (f"{base.path}static/%2e%2e%2fmaubot.yaml", 404),
        (f"{base.path}static/..%5cmaubot.yaml", 404),
        (f"{base.path}api/session?%ff=%fe&a=" + "b" * 4000, 401),
        (f"{base.path}api/session?tpi_session=abc&tpi_session=def", 401),
    ]:
        response = await send_raw(base.port, build_request("GET", target, host))
        assert response.status == status, target
        assert_error(response.status, response.json(), (status, response.json()["errcode"]))


# ---- a client that hangs up ---------------------------------------------------------


async def test_client_hanging_up_mid_body_is_one_quiet_line(web_app, caplog) -> None:
    _, _, base = web_app
    caplog.set_level(logging.DEBUG)
    for route in ("api/session", "api/links/inspect"):
        request = build_request(
            "POST",
            f"{base.path}{route}",
            f"127.0.0.1:{base.port}",
            [("Origin", f"http://127.0.0.1:{base.port}"), ("Content-Length", "1000")],
            b'{"token":"',
            content_length=False,
        )
        caplog.clear()
        await send_and_hang_up(base.port, request)
        # The handler notices in its own time (later on a busy machine): a generous deadline.
        deadline = asyncio.get_running_loop().time() + 30
        while not any("went away" in r.getMessage() for r in caplog.records):
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.05)
        messages = [r.getMessage() for r in caplog.records if r.name.startswith("test.web")]
        assert messages == [f"Client went away while sending its request to /{route}"]
        assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
        assert "Database unavailable" not in caplog.text


# ---- which errors are the database's ------------------------------------------------


async def test_only_database_errors_are_database_errors() -> None:
    assert is_database_error(sqlite3.OperationalError("database is locked"))
    assert is_database_error(sqlite3.OperationalError("disk I/O error"))
    assert not is_database_error(sqlite3.OperationalError("no such table: grants"))
    assert not is_database_error(sqlite3.OperationalError('near "SELEC": syntax error'))
    assert is_database_error(asyncpg.InterfaceError("pool is closed"))
    assert is_database_error(asyncpg.TooManyConnectionsError("too many"))
    assert not is_database_error(asyncpg.UniqueViolationError("dup"))  # a bug, not an outage

    closed_port = free_port()
    try:  # Postgres down: the driver's connect raises a plain OSError
        await asyncpg.connect(f"postgres://x@127.0.0.1:{closed_port}/db", timeout=5)
    except OSError as e:
        assert is_database_error(e)
    else:
        raise AssertionError("connected to a closed port")

    try:  # a homeserver down: the same OSError, raised in aiohttp
        async with aiohttp.ClientSession() as session:
            await session.get(f"http://127.0.0.1:{closed_port}/")
    except OSError as e:
        assert not is_database_error(e)
    else:
        raise AssertionError("connected to a closed port")

    try:
        raise ConnectionResetError("Connection lost")  # a client hanging up
    except ConnectionResetError as e:
        assert not is_database_error(e)


# ---- origins ------------------------------------------------------------------------

PUBLIC = URL("https://good.example/_matrix/maubot/plugin/x/")
TRUSTED = ("https://trusted.example:8443", "http://dev.example/")

ORIGINS = {
    # same (scheme, host, port): allowed
    "https://good.example": True,
    "https://GOOD.example": True,
    "HTTPS://good.EXAMPLE": True,
    "https://good.example:443": True,
    "https://trusted.example:8443": True,
    "http://dev.example": True,
    "http://dev.example:80": True,
    # anything else: refused
    "http://good.example": False,
    "https://good.example:8443": False,
    "https://good.example:0443": False,
    "https://good.example:": False,
    "https://good.example:65536": False,
    "https://good.example:99999": False,
    "https://good.example.": False,
    "https://good.example/": False,
    "https://good.example/path": False,
    "https://good.example?x": False,
    "https://good.example#x": False,
    "https://evil@good.example": False,
    "https://good.example@evil.example": False,
    "https://good.example:443@evil.example": False,
    "https://good.example.evil.example": False,
    "https://evil.example/good.example": False,
    "https://good.example https://evil.example": False,
    "https://good.example, https://evil.example": False,
    "https:// good.example": False,
    "https://good .example": False,
    "https://good.example\t": False,
    "https:/good.example": False,
    "https:///good.example": False,
    "//good.example": False,
    "good.example": False,
    "javascript://good.example": False,
    "ftp://good.example": False,
    "wss://good.example": False,
    "null": False,
    "https://trusted.example": False,
    "https://trusted.example:8444": False,
    "http://trusted.example:8443": False,
    "https://dev.example": False,
    "https://xn--gd-eka.example": False,
    "https://göod.example": False,
    "https://good\u2024example": False,
    "https://good%2eexample": False,
    "https://[::1]": False,
    "https://..": False,
}


@pytest.mark.parametrize(("origin", "allowed"), ORIGINS.items(), ids=list(ORIGINS))
def test_origin_check(origin: str, allowed: bool) -> None:
    check = OriginCheck(PUBLIC, TRUSTED)
    request = make_mocked_request(
        "POST", "/api/session", headers={"Origin": origin, "Host": "maubot.internal:29316"}
    )
    if allowed:
        check.check(request)
    else:
        with pytest.raises(UserFacingError) as refused:
            check.check(request)
        assert refused.value.errcode == "TPI_ORIGIN_FORBIDDEN"


def test_trusted_origins_must_be_bare_origins() -> None:
    check = OriginCheck(
        PUBLIC,
        (
            "https://evil@userinfo.example",
            "https://path.example/app",
            "https://query.example?x=1",
            "https://bücher.example",
            " https://spaced.example/ ",
        ),
    )
    assert check.allowed == {
        ("https", "good.example", 443),
        ("https", "xn--bcher-kva.example", 443),
        ("https", "spaced.example", 443),
    }


def test_origin_of_an_idna_public_url() -> None:
    check = OriginCheck(URL("https://bücher.example/x/"), ())
    for origin, allowed in [
        ("https://xn--bcher-kva.example", True),
        ("https://XN--BCHER-KVA.example", True),
        ("https://bücher.example", False),  # browsers send the ASCII form
    ]:
        request = make_mocked_request("POST", "/", headers={"Origin": origin, "Host": "x"})
        if allowed:
            check.check(request)
        else:
            with pytest.raises(UserFacingError):
                check.check(request)


@pytest.mark.parametrize(
    ("host", "origin", "allowed"),
    [
        ("localhost:8080", "http://localhost:8080", True),  # the request's own scheme
        ("localhost:8080", "https://localhost:8080", True),  # the public URL's scheme
        ("LOCALHOST:8080", "http://localhost:8080", True),
        ("localhost:8080", "http://localhost", False),
        ("localhost:8080", "http://localhost:8081", False),
        ("localhost", "http://localhost:80", True),
        ("localhost", "https://localhost", True),
        ("localhost", "http://localhost:8080", False),
        ("[::1]:8080", "http://[::1]:8080", True),
        ("[::1]:8080", "http://[0:0::1]:8080", True),
        ("[::1]:8080", "http://[::2]:8080", False),
        ("evil@localhost:8080", "http://localhost:8080", False),
        ("localhost:8080, evil", "http://localhost:8080", False),
        ("localhost:8080", "ftp://localhost:8080", False),
    ],
)
def test_same_host_fallback_compares_scheme_and_port(host: str, origin: str, allowed: bool):
    check = OriginCheck(PUBLIC, ())
    request = make_mocked_request("POST", "/", headers={"Origin": origin, "Host": host})
    if allowed:
        check.check(request)
    else:
        with pytest.raises(UserFacingError):
            check.check(request)


def test_parse_origin_normalises() -> None:
    assert parse_origin("HTTPS://Good.Example") == ("https", "good.example", 443)
    assert parse_origin("http://good.example:8080") == ("http", "good.example", 8080)
    assert parse_origin("http://[0:0:0:0:0:0:0:1]:80") == ("http", "[::1]", 80)
    assert parse_origin("http://[::ffff:zz]") is None
