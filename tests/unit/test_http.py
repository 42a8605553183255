"""net/http.py: the plugin's outbound HTTP sessions and bounded body reading."""

from __future__ import annotations

import gzip
from pathlib import Path
import re

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
import pytest
from support.dnsserver import DNSServer
from support.fakehomeserver import FakeHomeserver

from thirdparty_invite.net.guard import AddressPolicy, ForbiddenAddress
from thirdparty_invite.net.http import (
    PLUGIN_VERSION,
    USER_AGENT,
    InvalidJSON,
    OutboundHTTP,
    ResponseTooLarge,
    make_direct_session,
    read_body_limited,
    read_json_limited,
)


def test_user_agent_names_the_plugin_and_its_version(project_root: Path) -> None:
    manifest = (project_root / "maubot.yaml").read_text()
    [version] = re.findall(r"^version:\s*(\S+)\s*$", manifest, re.MULTILINE)
    assert version == PLUGIN_VERSION
    assert USER_AGENT.startswith(f"thirdparty_invite/{PLUGIN_VERSION} ")


async def test_direct_session_hygiene() -> None:
    async with FakeHomeserver() as server, make_direct_session(5.0) as session:
        server.route("/set", {}, headers={"Set-Cookie": "s=1; Path=/"})
        async with session.get(f"{server.url}/set") as response:
            assert response.status == 200
        assert len(session.cookie_jar) == 0  # no cookie travels to the next server
        assert session.trust_env is False  # no proxy from the environment
        assert session.timeout.total == 5.0
        assert server.requests[0].user_agent == USER_AGENT


async def test_outbound_http_makes_sessions_on_first_use_and_again_after_close() -> None:
    http = OutboundHTTP(timeout=3.0, policy=AddressPolicy(), dns_nameservers=["127.0.0.1:53"])
    guarded, direct = http.guarded(), http.direct()
    assert http.guarded() is guarded and http.direct() is direct
    assert guarded.timeout.total == direct.timeout.total == 3.0
    assert [ns.port for ns in http.dns.nameservers] == [53]
    await http.close()
    assert guarded.closed and direct.closed
    again = http.guarded()
    assert again is not guarded and not again.closed
    await http.close()


async def test_outbound_http_guarded_session_applies_the_policy() -> None:
    async with DNSServer({"lo.test": [("A", "127.0.0.1")]}) as dns, FakeHomeserver() as server:
        strict = OutboundHTTP(
            timeout=3.0, policy=AddressPolicy(), dns_nameservers=[dns.nameserver]
        )
        loose = OutboundHTTP(
            timeout=3.0, policy=AddressPolicy(allow_private=True), dns_nameservers=[dns.nameserver]
        )
        try:
            # A name resolving to loopback: refused by the resolver, before connecting.
            with pytest.raises(ForbiddenAddress):
                await strict.guarded().get(f"http://lo.test:{server.port}/")
            assert server.requests == []
            async with loose.guarded().get(f"http://lo.test:{server.port}/") as response:
                assert response.status == 404
            # The direct session has no policy at all (operator-configured URLs).
            async with strict.direct().get(f"{server.url}/") as response:
                assert response.status == 404
            assert len(server.requests) == 2
        finally:
            await strict.close()
            await loose.close()


async def test_read_body_limited() -> None:
    async with FakeHomeserver() as server, aiohttp.ClientSession() as session:
        server.route("/small", raw=b"x" * 100)
        server.route("/big", raw=b"x" * (64 * 1024 + 1))
        async with session.get(f"{server.url}/small") as response:
            assert await read_body_limited(response, 64 * 1024) == b"x" * 100
        async with session.get(f"{server.url}/big") as response:
            with pytest.raises(ResponseTooLarge):
                await read_body_limited(response, 64 * 1024)


@pytest.mark.parametrize(
    ("raw", "outcome"),
    [
        (b'{"a": [1, 2]}', {"a": [1, 2]}),
        (b"[]", []),
        (b"not json", InvalidJSON),
        (b"[" * 30000 + b"]" * 30000, InvalidJSON),  # nested past Python's recursion limit
        (b'"' + b"x" * 2000 + b'"', ResponseTooLarge),
    ],
)
async def test_read_json_limited(raw: bytes, outcome: object) -> None:
    async with FakeHomeserver() as server, aiohttp.ClientSession() as session:
        server.route("/doc", raw=raw)
        async with session.get(f"{server.url}/doc") as response:
            if isinstance(outcome, type) and issubclass(outcome, Exception):
                with pytest.raises(outcome):
                    await read_json_limited(response, 100_000 if outcome is InvalidJSON else 1000)
            else:
                assert await read_json_limited(response, 100_000) == outcome


async def test_read_body_limited_without_a_length_and_compressed() -> None:
    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(10):
            await response.write(b"x" * 1000)
        return response

    async def gzipped(request: web.Request) -> web.Response:
        # 100 kB that compress to a few hundred bytes: the limit is on what is read.
        body = gzip.compress(b"y" * 100_000)
        return web.Response(body=body, headers={"Content-Encoding": "gzip"})

    app = web.Application()
    app.router.add_get("/chunked", chunked)
    app.router.add_get("/gzipped", gzipped)
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as session:
        async with session.get(server.make_url("/chunked")) as response:
            assert response.content_length is None
            assert await read_body_limited(response, 10_000) == b"x" * 10_000
        async with session.get(server.make_url("/chunked")) as response:
            with pytest.raises(ResponseTooLarge):
                await read_body_limited(response, 9_999)
        async with session.get(server.make_url("/gzipped")) as response:
            with pytest.raises(ResponseTooLarge):
                await read_body_limited(response, 50_000)
