"""Rate limits per client address: the buckets, who the client is, and 429 on each route."""

from __future__ import annotations

import ipaddress
import math

import aiohttp
import pytest
from support.plugin_web import serve_plugin_web

from thirdparty_invite.config import RateLimit
from thirdparty_invite.storage import Storage
from thirdparty_invite.webapp.ratelimit import (
    RateLimiter,
    client_key,
    parse_address,
    parse_networks,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ---- buckets ------------------------------------------------------------------------


def test_burst_then_one_per_refill() -> None:
    clock = Clock()
    limiter = RateLimiter({"inspect": RateLimit(3, 10.0)}, clock=clock)
    assert [limiter.take("inspect", "a") for _ in range(3)] == [None, None, None]
    refusal = limiter.take("inspect", "a")
    assert refusal and refusal.wait == pytest.approx(10) and refusal.first
    clock.now += 4
    refusal = limiter.take("inspect", "a")
    assert refusal and refusal.wait == pytest.approx(6) and not refusal.first
    assert limiter.take("inspect", "b") is None  # another client has its own bucket
    clock.now += 6
    assert limiter.take("inspect", "a") is None  # one token back
    assert limiter.take("inspect", "a").first  # a new episode of being limited
    clock.now += 1000
    assert [limiter.take("inspect", "a") for _ in range(3)] == [None, None, None]  # capped


def test_limits_are_separate_and_burst_zero_is_off() -> None:
    limiter = RateLimiter(
        {"session": RateLimit(1, 60.0), "link_claim": RateLimit(0, 1.0)}, clock=Clock()
    )
    assert limiter.take("session", "a") is None
    assert limiter.take("session", "a") is not None
    assert all(limiter.take("link_claim", "a") is None for _ in range(100))
    assert limiter.take("not_configured", "a") is None
    assert len(limiter) == 1  # nothing kept for unlimited routes


def test_refilled_buckets_are_forgotten() -> None:
    clock = Clock()
    limiter = RateLimiter({"inspect": RateLimit(2, 5.0)}, clock=clock)
    for client in range(100):
        limiter.take("inspect", f"10.0.0.{client}")
    assert len(limiter) == 100
    clock.now += 5 * 2  # every bucket is full again: nothing worth remembering
    limiter.take("inspect", "10.0.1.1")
    assert len(limiter) == 1


def test_a_flood_of_addresses_cannot_grow_the_table() -> None:
    clock = Clock()
    limiter = RateLimiter({"inspect": RateLimit(1, 3600.0)}, max_entries=50, clock=clock)
    limiter.take("inspect", "victim")
    for i in range(10_000):
        limiter.take("inspect", f"spoofed-{i}")
        assert len(limiter) <= 50
    # The least recently used went first, and a fresh bucket is what it gets back.
    assert limiter.take("inspect", "victim") is None


def test_the_most_recent_clients_stay_limited() -> None:
    limiter = RateLimiter({"inspect": RateLimit(1, 3600.0)}, max_entries=10, clock=Clock())
    limiter.take("inspect", "busy")
    for i in range(20):
        limiter.take("inspect", f"other-{i}")
        assert limiter.take("inspect", "busy") is not None  # used again: kept


# ---- who the client is --------------------------------------------------------------

PROXIES = parse_networks(["127.0.0.1", "10.1.0.0/16", "fd00::/8"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "key"),
    [
        # no proxy trusted: the peer, whatever the header claims
        ("203.0.113.7", [], "203.0.113.7"),
        ("203.0.113.7", ["198.51.100.1"], "203.0.113.7"),
        # a trusted proxy: the right-most address it did not add itself
        ("127.0.0.1", ["198.51.100.1"], "198.51.100.1"),
        ("127.0.0.1", ["6.6.6.6, 198.51.100.1"], "198.51.100.1"),  # spoofed entry left of it
        ("127.0.0.1", ["6.6.6.6, 198.51.100.1, 10.1.2.3"], "198.51.100.1"),  # two proxies
        ("127.0.0.1", ["6.6.6.6", "198.51.100.1"], "198.51.100.1"),  # two header lines
        ("127.0.0.1", ["198.51.100.1:4711"], "198.51.100.1"),
        ("127.0.0.1", ["[2001:db8::1]:443"], "2001:db8::/64"),
        ("127.0.0.1", [" 198.51.100.1 ,, "], "198.51.100.1"),
        ("127.0.0.1", ["::ffff:198.51.100.1"], "198.51.100.1"),
        ("127.0.0.1", ["10.1.0.5, 10.1.0.6"], "10.1.0.5"),  # all proxies: the first
        # a malformed header from a trusted proxy: the proxy is the client
        ("127.0.0.1", ["unknown"], "127.0.0.1"),
        ("127.0.0.1", ["198.51.100.1, garbage"], "127.0.0.1"),
        ("127.0.0.1", ["198.51.100.1:http"], "127.0.0.1"),
        ("127.0.0.1", ["[2001:db8::1"], "127.0.0.1"),
        ("127.0.0.1", ["01.2.3.4"], "127.0.0.1"),
        ("127.0.0.1", ["\udcff\udcfe"], "127.0.0.1"),  # non-UTF-8 bytes, as aiohttp keeps them
        ("127.0.0.1", ["1.2.3.4" * 500], "127.0.0.1"),
        ("127.0.0.1", [], "127.0.0.1"),
        # IPv6: the /64
        ("2001:db8:1:2:aaaa::1", [], "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", [], "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", [], "2001:db8:1:3::/64"),
        ("::ffff:203.0.113.7", [], "203.0.113.7"),  # IPv4 on a dual-stack socket
        ("fd00::1", ["2001:db8:5::1, fd12::3"], "2001:db8:5::/64"),
        # not an IP peer (a unix socket)
        (None, ["198.51.100.1"], "unknown"),
    ],
)
def test_client_key(peer: str | None, forwarded: list[str], key: str) -> None:
    assert client_key(peer, forwarded, PROXIES) == key


def test_addresses_as_proxies_write_them() -> None:
    assert parse_address("198.51.100.1") == ipaddress.ip_address("198.51.100.1")
    assert parse_address("[::1]") == ipaddress.ip_address("::1")
    for bad in ("", "1.2.3", "1.2.3.4:", "[::1]x", "::1]", "1.2.3.4:٣", "a.b.c.d", "[1.2.3.4"):
        assert parse_address(bad) is None, bad


# ---- over HTTP ----------------------------------------------------------------------

TIGHT = {"burst": 2, "refill": "30s"}


async def refused(resp: aiohttp.ClientResponse) -> int:
    """Asserts a 429 as documented; returns Retry-After in seconds."""
    assert resp.status == 429
    body = await resp.json()
    assert set(body) == {"errcode", "error", "retry_after_ms"}
    assert body["errcode"] == "M_LIMIT_EXCEEDED" and body["error"]
    retry_after = int(resp.headers["Retry-After"])
    assert retry_after == math.ceil(body["retry_after_ms"] / 1000) and 0 < retry_after <= 30
    return retry_after


@pytest.mark.parametrize(
    ("route", "limit", "body"),
    [
        ("api/session", "session", {"access_token": "t", "matrix_server_name": "bad name!"}),
        ("api/links/inspect", "link_inspect", {"token": "A" * 32}),
        ("api/links/claim", "link_claim", {"token": "A" * 32}),
    ],
)
async def test_each_public_route_answers_429_with_retry_after(
    storage: Storage, route: str, limit: str, body: dict
) -> None:
    async with serve_plugin_web(storage, {"rate_limits": {limit: TIGHT}}) as (http, _, _):
        for _ in range(2):
            async with http.post(route, json=body) as resp:
                assert resp.status in (400, 401, 404)  # refused for what it is, not counted
        async with http.post(route, json=body) as resp:
            await refused(resp)
        # Other routes and other limits are untouched.
        async with http.get("api/session") as resp:
            assert resp.status == 401
        other = "api/links/inspect" if route != "api/links/inspect" else "api/session"
        async with http.post(other, json=body) as resp:
            assert resp.status != 429


async def test_a_request_refused_for_its_origin_still_counts(storage: Storage) -> None:
    async with serve_plugin_web(storage, {"rate_limits": {"session": TIGHT}}) as (http, _, _):
        evil = {"Origin": "https://evil.example"}
        for _ in range(2):
            async with http.post("api/session", json={}, headers=evil) as resp:
                assert resp.status == 403
        async with http.post("api/session", json={}) as resp:
            await refused(resp)


async def test_forwarded_addresses_count_only_behind_a_trusted_proxy(storage: Storage) -> None:
    limits = {"rate_limits": {"link_inspect": TIGHT}}
    body = {"token": "A" * 32}

    async def statuses(http: aiohttp.ClientSession, client: str, n: int) -> list[int]:
        out = []
        for _ in range(n):
            async with http.post(
                "api/links/inspect", json=body, headers={"X-Forwarded-For": client}
            ) as resp:
                out.append(resp.status)
        return out

    # Untrusted peer: X-Forwarded-For is the client's own claim and changes nothing.
    async with serve_plugin_web(storage, limits) as (http, _, _):
        assert await statuses(http, "198.51.100.1", 2) == [404, 404]
        assert await statuses(http, "198.51.100.2", 1) == [429]

    # Behind a trusted proxy (the test client on loopback): each forwarded client counts.
    trusted = limits | {"web": {"trusted_proxies": ["127.0.0.0/8"]}}
    async with serve_plugin_web(storage, trusted) as (http, _, _):
        assert await statuses(http, "198.51.100.1", 3) == [404, 404, 429]
        assert await statuses(http, "198.51.100.2", 2) == [404, 404]
        # A client prepending a spoofed address is still itself.
        assert await statuses(http, "6.6.6.6, 198.51.100.2", 1) == [429]
        # IPv6 clients share their /64.
        assert await statuses(http, "2001:db8::1", 2) == [404, 404]
        assert await statuses(http, "2001:db8::ffff:1", 1) == [429]
        assert await statuses(http, "2001:db8:0:1::1", 1) == [404]
