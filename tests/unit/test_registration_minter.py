"""SynapseAdminMinter against a homeserver that misbehaves: every failure is one error type
whose message names no token, and the admin token travels in the header only."""

from __future__ import annotations

from collections.abc import AsyncIterator
import socket

from aiohttp import web
from aiohttp.test_utils import TestServer
import pytest
import pytest_asyncio

from thirdparty_invite.matrix.registration_tokens import MinterUnavailable, SynapseAdminMinter

ADMIN_TOKEN = "syt_the_admin_secret"


@pytest_asyncio.fixture
async def homeserver() -> AsyncIterator[tuple[str, dict]]:
    """A homeserver whose answer each test sets in `behaviour`."""
    behaviour: dict = {"status": 200, "body": {}, "seen": []}

    async def answer(request: web.Request) -> web.Response:
        behaviour["seen"].append((request.method, request.raw_path, request.headers.copy()))
        if behaviour["status"] == 200 and behaviour["body"] is None:
            return web.Response(text="<html>not json</html>")
        return web.json_response(behaviour["body"], status=behaviour["status"])

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/"), behaviour
    finally:
        await server.close()


@pytest.mark.parametrize(
    ("status", "body", "said"),
    [
        (401, {"errcode": "M_UNKNOWN_TOKEN"}, "check registration.admin_token"),
        (403, {"errcode": "M_FORBIDDEN"}, "check registration.admin_token"),
        (500, {"errcode": "M_UNKNOWN"}, "refused (500)"),
        (200, {"token": 5}, "unexpected shape"),
        (200, {"token": "abc", "uses_allowed": "one"}, "unexpected shape"),
        (200, None, "unexpected shape"),
    ],
)
async def test_a_misbehaving_homeserver_is_one_error_naming_no_token(
    homeserver: tuple[str, dict], status: int, body: object, said: str
) -> None:
    url, behaviour = homeserver
    behaviour.update(status=status, body=body)
    minter = SynapseAdminMinter(url, ADMIN_TOKEN)
    try:
        with pytest.raises(MinterUnavailable) as caught:
            await minter.mint(1, 1_900_000_000_000)
    finally:
        await minter.close()
    assert said in str(caught.value) and ADMIN_TOKEN not in str(caught.value)
    method, path, headers = behaviour["seen"][0]
    assert (method, path) == ("POST", "/_synapse/admin/v1/registration_tokens/new")
    assert headers["Authorization"] == f"Bearer {ADMIN_TOKEN}"
    assert ADMIN_TOKEN not in repr(minter)


async def test_tokens_are_quoted_into_the_path_and_404_is_no_token(
    homeserver: tuple[str, dict],
) -> None:
    url, behaviour = homeserver
    behaviour.update(status=404, body={"errcode": "M_NOT_FOUND"})
    minter = SynapseAdminMinter(url, ADMIN_TOKEN)
    try:
        assert await minter.get("a/b?c") is None
        assert await minter.delete("a/b?c") is False
        assert await minter.account_created_at("@new:example.org") is None
    finally:
        await minter.close()
    paths = [path for _, path, _ in behaviour["seen"]]
    # A token with / or ? stays one path segment.
    assert paths[:2] == ["/_synapse/admin/v1/registration_tokens/a%2Fb%3Fc"] * 2
    assert paths[2] == "/_synapse/admin/v2/users/@new:example.org"  # @ and : may stand


async def test_an_unreachable_homeserver_is_said_without_the_address_or_token() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    minter = SynapseAdminMinter(f"http://127.0.0.1:{port}", ADMIN_TOKEN, timeout=2)
    try:
        with pytest.raises(MinterUnavailable) as caught:
            await minter.get("sometoken")
    finally:
        await minter.close()
    assert "cannot be reached" in str(caught.value)
    assert ADMIN_TOKEN not in str(caught.value) and "sometoken" not in str(caught.value)


async def test_account_creation_time_reads_seconds_or_milliseconds(
    homeserver: tuple[str, dict],
) -> None:
    url, behaviour = homeserver
    minter = SynapseAdminMinter(url, ADMIN_TOKEN)
    try:
        behaviour.update(status=200, body={"name": "@a:x", "creation_ts": 1_700_000_000})
        assert await minter.account_created_at("@a:x") == 1_700_000_000_000
        behaviour.update(body={"name": "@a:x", "creation_ts": 1_700_000_000_123})
        assert await minter.account_created_at("@a:x") == 1_700_000_000_123
    finally:
        await minter.close()
