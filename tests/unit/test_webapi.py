"""The web API over HTTP, on SQLite and PostgreSQL: sessions, links, errors, limits."""

from __future__ import annotations

from collections.abc import AsyncIterator
import json

import aiohttp
import pytest
import pytest_asyncio
from support.fakehomeserver import FakeHomeserver
from support.plugin_web import serve_plugin_web

from thirdparty_invite.durations import now_ms
from thirdparty_invite.storage import Storage


@pytest_asyncio.fixture(loop_scope="session")
async def homeserver() -> AsyncIterator[FakeHomeserver]:
    async with FakeHomeserver() as hs:
        hs.sub = "@alice:hs.test"
        yield hs


@pytest_asyncio.fixture(loop_scope="session")
async def web(storage: Storage, homeserver: FakeHomeserver):
    overrides = {"identity": {"server_urls": {"hs.test": homeserver.url}}}
    async with serve_plugin_web(storage, overrides) as served:
        yield served


async def sign_in(http: aiohttp.ClientSession, token: str = "tok-1") -> dict:
    async with http.post(
        "api/session", json={"access_token": token, "matrix_server_name": "hs.test"}
    ) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def error_of(resp: aiohttp.ClientResponse) -> tuple[int, str]:
    body = await resp.json()
    assert set(body) == {"errcode", "error"} and body["error"], body
    return resp.status, body["errcode"]


async def test_session_cookie_and_whoami(web) -> None:
    http, _, base = web
    async with http.post(
        "api/session", json={"access_token": "tok-1", "matrix_server_name": "hs.test"}
    ) as resp:
        assert resp.status == 200
        assert (await resp.json())["user_id"] == "@alice:hs.test"
        cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert f"Path={base.path}" in cookie and "Secure" not in cookie  # served over http
    async with http.get("api/session") as resp:
        assert (await resp.json())["user_id"] == "@alice:hs.test"
    async with http.delete("api/session") as resp:
        assert resp.status == 200
    async with http.get("api/session") as resp:
        assert await error_of(resp) == (401, "M_MISSING_TOKEN")


async def test_replayed_openid_token_is_refused(web) -> None:
    http, _, _ = web
    await sign_in(http, "once-only")
    async with http.post(
        "api/session", json={"access_token": "once-only", "matrix_server_name": "hs.test"}
    ) as resp:
        assert await error_of(resp) == (401, "TPI_TOKEN_REPLAYED")


async def test_homeserver_answering_for_another_server_is_refused(web, homeserver) -> None:
    http, _, _ = web
    homeserver.sub = "@admin:victim.org"
    try:
        async with http.post(
            "api/session", json={"access_token": "spoof", "matrix_server_name": "hs.test"}
        ) as resp:
            assert await error_of(resp) == (403, "TPI_SUB_MISMATCH")
    finally:
        homeserver.sub = "@alice:hs.test"


async def test_private_server_is_refused_without_a_mapping(web) -> None:
    http, _, _ = web
    async with http.post(
        "api/session", json={"access_token": "t", "matrix_server_name": "127.0.0.1:8448"}
    ) as resp:
        assert await error_of(resp) == (403, "TPI_SERVER_FORBIDDEN_ADDRESS")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"not json", (400, "M_NOT_JSON")),
        (b"[1, 2]", (400, "M_BAD_JSON")),
        (b"{}", (400, "M_MISSING_PARAM")),
        (b'{"access_token": 5, "matrix_server_name": "hs.test"}', (400, "M_INVALID_PARAM")),
        (
            b'{"access_token": "t", "matrix_server_name": "bad name!"}',
            (400, "TPI_BAD_SERVER_NAME"),
        ),
        (b"\xff\xfe", (400, "M_NOT_JSON")),
    ],
)
async def test_malformed_bodies(web, body: bytes, expected: tuple[int, str]) -> None:
    http, _, _ = web
    async with http.post("api/session", data=body) as resp:
        assert await error_of(resp) == expected


async def test_oversized_bodies_are_refused(web) -> None:
    http, _, _ = web
    big = json.dumps({"access_token": "x" * 20_000, "matrix_server_name": "hs.test"}).encode()
    async with http.post("api/session", data=big) as resp:
        assert await error_of(resp) == (413, "M_TOO_LARGE")

    async def chunks():  # no Content-Length: the limit must hold while streaming
        for _ in range(40):
            yield b"x" * 1024

    async with http.post("api/links/inspect", data=chunks()) as resp:
        assert await error_of(resp) == (413, "M_TOO_LARGE")


async def test_state_changes_need_our_origin(web) -> None:
    http, _, _ = web
    body = {"access_token": "t", "matrix_server_name": "hs.test"}
    async with http.post(
        "api/session", json=body, headers={"Origin": "https://evil.example"}
    ) as r:
        assert await error_of(r) == (403, "TPI_ORIGIN_FORBIDDEN")
    async with aiohttp.ClientSession(base_url=http._base_url) as bare:
        async with bare.post("api/session", json=body) as resp:
            assert await error_of(resp) == (403, "TPI_ORIGIN_REQUIRED")


async def test_link_inspect_and_claim(web) -> None:
    http, services, _ = web
    _, token = await services.links.create("@admin:hs.test", ("!room:hs.test",), 1, 3600)
    async with http.post("api/links/inspect", json={"token": token}) as resp:
        info = await resp.json()
    assert info["status"] == "active" and info["uses_left"] == 1
    assert info["rooms"][0]["room_id"] == "!room:hs.test"
    [room] = info["rooms"]
    assert room["matrix_to"] == "https://matrix.to/#/!room:hs.test?via=hs.test"
    assert room["matrix_uri"] == "matrix:roomid/room:hs.test?action=join&via=hs.test"
    assert "client" not in room  # no web client configured
    assert info["bot"] == {
        "user_id": "@bot:hs.test",
        "matrix_to": "https://matrix.to/#/@bot:hs.test",
        "reads_encrypted_chats": False,  # maubot's test client has no crypto
    }

    async with http.post("api/links/claim", json={"token": token}) as resp:
        assert await error_of(resp) == (401, "M_MISSING_TOKEN")
    await sign_in(http, "claim-tok")
    async with http.post("api/links/claim", json={"token": token}) as resp:
        assert resp.status == 202
        assert (await resp.json())["first_claim"] is True
    async with http.get("api/invites") as resp:
        [invite] = (await resp.json())["invites"]
    assert (invite["room_id"], invite["state"]) == ("!room:hs.test", "pending")
    async with http.post("api/links/inspect", json={"token": token}) as resp:
        assert (await resp.json())["status"] == "used_up"


@pytest.mark.parametrize("state", ["expired", "revoked", "used_up"])
async def test_unusable_links_say_why(web, state: str) -> None:
    http, services, _ = web
    link, token = await services.links.create("@admin:hs.test", ("!r:hs.test",), 1, 3600)
    if state == "expired":
        await services.storage.db.execute(
            "UPDATE invite_links SET expires_at=$1 WHERE id=$2", now_ms() - 1, link.id
        )
    elif state == "revoked":
        await services.links.revoke(link.id, "@admin:hs.test")
    else:
        await services.links.claim(token, "@someone:hs.test")
    await sign_in(http, f"tok-{state}")
    async with http.post("api/links/claim", json={"token": token}) as resp:
        assert await error_of(resp) == (410, f"TPI_LINK_{state.upper()}")


async def test_unknown_and_forged_tokens(web) -> None:
    http, _, _ = web
    for token in ("A" * 32, "short", "../../etc/passwd", "x" * 129):
        async with http.post("api/links/inspect", json={"token": token}) as resp:
            assert (await error_of(resp))[1] in ("TPI_LINK_UNKNOWN", "M_INVALID_PARAM")


async def test_pages_and_assets(web) -> None:
    http, _, _ = web
    async with http.get("invite") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/html")
        assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
        etag = resp.headers["ETag"]
    async with http.get("invite", headers={"If-None-Match": etag}) as resp:
        assert resp.status == 304
    async with http.get("static/invite.js") as resp:
        assert resp.headers["Content-Type"].startswith("text/javascript")
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
    async with http.get("api/openapi.json") as resp:
        assert (await resp.json())["openapi"].startswith("3.")
    for missing in ("static/nope.js", "static/..%2Fmaubot.yaml", "no/such/route"):
        async with http.get(missing) as resp:
            assert (await error_of(resp))[0] == 404
    async with http.put("api/session") as resp:
        assert (await error_of(resp))[0] == 405


@pytest.mark.postgres
async def test_database_outage_is_a_clear_503(postgres_database, homeserver) -> None:
    storage = Storage(postgres_database)
    overrides = {"identity": {"server_urls": {"hs.test": homeserver.url}}}
    async with serve_plugin_web(storage, overrides) as (http, _, _):
        await postgres_database._underlying_pool.stop()  # the database goes away
        async with http.post("api/links/inspect", json={"token": "A" * 32}) as resp:
            assert await error_of(resp) == (503, "TPI_DATABASE_UNAVAILABLE")


async def test_configured_web_client_is_offered(storage: Storage, homeserver) -> None:
    overrides = {
        "identity": {"server_urls": {"hs.test": homeserver.url}},
        "web": {
            "client_name": "Element",
            "client_room_url": "https://app.example/#/room/{room_id}",
        },
    }
    async with serve_plugin_web(storage, overrides) as (http, services, _):
        _, token = await services.links.create("@admin:hs.test", ("!r:hs.test",), 1, 3600)
        async with http.post("api/links/inspect", json={"token": token}) as resp:
            [room] = (await resp.json())["rooms"]
    assert room["client"] == {
        "name": "Element",
        "url": "https://app.example/#/room/%21r%3Ahs.test",
    }


@pytest.mark.parametrize("url", ["http://app.example/{room_id}", "https://app.example/"])
def test_web_client_url_must_be_https_with_a_room_placeholder(url: str) -> None:
    from support.plugin_web import load_settings

    from thirdparty_invite.config import ConfigError

    with pytest.raises(ConfigError, match="client_room_url"):
        load_settings({"web": {"client_room_url": url}})
