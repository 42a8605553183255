"""The SSRF guard: address classification, DNS answers, IP-literal URLs, guarded sessions."""

from __future__ import annotations

from collections.abc import AsyncIterator
import socket

import pytest
from support.dnsserver import DNSServer
from support.fakehomeserver import FakeHomeserver
import yarl

from thirdparty_invite.net.guard import (
    AddressPolicy,
    ForbiddenAddress,
    GuardedResolver,
    check_url_host,
    make_dns_resolver,
)
from thirdparty_invite.net.http import make_guarded_session

REFUSED = {
    "127.0.0.1": "loopback",
    "127.255.255.254": "loopback",
    "10.1.2.3": "private",
    "172.16.0.1": "private",
    "192.168.1.1": "private",
    "169.254.169.254": "link-local",
    "100.64.0.1": "CGNAT",
    "0.0.0.0": "unspecified",
    "224.0.0.1": "multicast",
    "240.0.0.1": " address",
    "255.255.255.255": " address",
    "192.0.2.10": " address",
    "::1": "loopback",
    "::": "unspecified",
    "fe80::1": "link-local",
    "fc00::1": "unique local",
    "fd12:3456::1": "unique local",
    "ff02::1": "multicast",
    "::ffff:127.0.0.1": "loopback",
    "::ffff:10.0.0.1": "private",
    "::ffff:169.254.169.254": "link-local",
    "64:ff9b::a00:1": "private",
}
PUBLIC = ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]


@pytest.mark.parametrize(("ip", "kind"), sorted(REFUSED.items()))
def test_refuses_non_public_addresses(ip: str, kind: str) -> None:
    with pytest.raises(ForbiddenAddress, match=kind):
        AddressPolicy().check_ip(ip)


@pytest.mark.parametrize("ip", PUBLIC)
def test_allows_public_addresses(ip: str) -> None:
    AddressPolicy().check_ip(ip)


@pytest.mark.parametrize("ip", sorted(REFUSED))
def test_allow_private_lets_everything_through(ip: str) -> None:
    AddressPolicy(allow_private=True).check_ip(ip)


def test_allowed_networks_open_only_those_networks() -> None:
    policy = AddressPolicy(allowed_networks=("127.0.0.1/32", "10.1.0.0/16"))
    policy.check_ip("127.0.0.1")
    policy.check_ip("10.1.200.3")
    policy.check_ip("::ffff:10.1.0.1")
    for ip in ("127.0.0.2", "10.2.0.1", "192.168.0.1"):
        with pytest.raises(ForbiddenAddress):
            policy.check_ip(ip)


def test_a_name_is_not_an_ip() -> None:
    with pytest.raises(ForbiddenAddress, match="not an IP address"):
        AddressPolicy(allow_private=True).check_ip("example.org")


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1/", "https://[::1]:8448/x", "https://10.0.0.1/", "http://[fe80::1]/"]
)
def test_check_url_host_refuses_private_ip_literals(url: str) -> None:
    with pytest.raises(ForbiddenAddress):
        check_url_host(AddressPolicy(), yarl.URL(url))


@pytest.mark.parametrize(
    "url", ["https://example.org/", "http://8.8.8.8:80/", "https://[2606::1]/"]
)
def test_check_url_host_lets_names_and_public_ips_pass(url: str) -> None:
    check_url_host(AddressPolicy(), yarl.URL(url))


def test_make_dns_resolver_parses_nameservers() -> None:
    resolver = make_dns_resolver(["127.0.0.1:5353", "[::1]:53", "10.0.0.53"], 2.0)
    assert [(ns.address, ns.port) for ns in resolver.nameservers] == [
        ("127.0.0.1", 5353),
        ("::1", 53),
        ("10.0.0.53", 53),
    ]
    for bad in ("dns.example", "127.0.0.1:0", "127.0.0.1:x", "[::1"):
        with pytest.raises(ValueError):
            make_dns_resolver([bad], 2.0)


@pytest.fixture
async def dns_server() -> AsyncIterator[DNSServer]:
    records = {
        "loop.test": [("A", "127.0.0.1")],
        "loop6.test": [("AAAA", "::1"), ("AAAA", "::ffff:192.168.0.1")],
        "mixed.test": [("A", "127.0.0.1"), ("A", "8.8.8.8"), ("AAAA", "2606:4700::1")],
        "empty.test": [("TXT", '"nothing"')],
        "lo.test": [("A", "127.0.0.1")],
        "evil.test": [("A", "127.0.0.2")],
    }
    async with DNSServer(records) as server:
        server.servfail.add("broken.test")
        yield server


def _guarded(dns_server: DNSServer, policy: AddressPolicy) -> GuardedResolver:
    return GuardedResolver(make_dns_resolver([dns_server.nameserver], 2.0), policy)


async def test_resolver_refuses_a_name_that_only_points_at_loopback(dns_server: DNSServer) -> None:
    resolver = _guarded(dns_server, AddressPolicy())
    with pytest.raises(ForbiddenAddress, match=r"loop\.test resolves only to refused"):
        await resolver.resolve("loop.test", 443, socket.AF_UNSPEC)
    with pytest.raises(ForbiddenAddress):
        await resolver.resolve("loop6.test", 443, socket.AF_UNSPEC)


async def test_resolver_drops_refused_answers_and_keeps_the_rest(dns_server: DNSServer) -> None:
    results = await _guarded(dns_server, AddressPolicy()).resolve("mixed.test", 8448)
    assert {(r["host"], r["port"]) for r in results} == {("8.8.8.8", 8448)}
    results = await _guarded(dns_server, AddressPolicy()).resolve(
        "mixed.test", 8448, socket.AF_UNSPEC
    )
    assert {(r["host"], r["family"]) for r in results} == {
        ("8.8.8.8", socket.AF_INET),
        ("2606:4700::1", socket.AF_INET6),
    }


async def test_resolver_allow_private(dns_server: DNSServer) -> None:
    results = await _guarded(dns_server, AddressPolicy(allow_private=True)).resolve("loop.test")
    assert [r["host"] for r in results] == ["127.0.0.1"]


async def test_resolver_reports_dns_failures_as_oserror(dns_server: DNSServer) -> None:
    resolver = _guarded(dns_server, AddressPolicy())
    for name in ("nothing-here.test", "empty.test", "broken.test"):
        with pytest.raises(OSError, match="DNS lookup"):
            await resolver.resolve(name, 443, socket.AF_UNSPEC)


async def test_session_refuses_loopback_dns_answer_before_connecting(
    dns_server: DNSServer,
) -> None:
    async with FakeHomeserver() as server:
        dns_resolver = make_dns_resolver([dns_server.nameserver], 2.0)
        async with make_guarded_session(AddressPolicy(), dns_resolver, 5.0) as session:
            with pytest.raises(ForbiddenAddress):
                await session.get(f"http://loop.test:{server.port}/x")
        assert server.requests == []


async def test_session_rechecks_dns_after_a_redirect(dns_server: DNSServer) -> None:
    # Even with aiohttp following redirects, the second hop's DNS answer goes through the guard.
    policy = AddressPolicy(allowed_networks=("127.0.0.1/32",))
    async with FakeHomeserver() as server, FakeHomeserver(host="127.0.0.2") as inner:
        server.redirect("/start", f"http://evil.test:{inner.port}/inner")
        dns_resolver = make_dns_resolver([dns_server.nameserver], 2.0)
        async with make_guarded_session(policy, dns_resolver, 5.0) as session:
            with pytest.raises(ForbiddenAddress, match=r"127\.0\.0\.2"):
                await session.get(f"http://lo.test:{server.port}/start", allow_redirects=True)
        assert [r.path for r in server.requests] == ["/start"]
        assert inner.requests == []


async def test_session_sends_no_cookies_between_hosts(dns_server: DNSServer) -> None:
    async with FakeHomeserver() as server:
        server.route("/set", {}, headers={"Set-Cookie": "s=1; Path=/"})
        policy = AddressPolicy(allow_private=True)
        dns_resolver = make_dns_resolver([dns_server.nameserver], 2.0)
        async with make_guarded_session(policy, dns_resolver, 5.0) as session:
            async with session.get(f"{server.url}/set") as response:
                assert response.status == 200
            assert len(session.cookie_jar) == 0
