"""Server discovery, against a real DNS server and a real HTTPS server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
import email.utils
import itertools
import random

import attrs
import dns.asyncresolver
from multidict import CIMultiDict
import pytest
from support.dnsserver import DNSServer
from support.fakehomeserver import FakeHomeserver, make_test_tls
import yarl

from thirdparty_invite.identity.discovery import (
    STALE_GRACE,
    WELL_KNOWN_MAX_REDIRECTS,
    WELL_KNOWN_MIN_TTL,
    DiscoveryError,
    ResolvedServer,
    ServerResolver,
    SrvRecord,
    order_srv_records,
    well_known_cache_ttl,
)
from thirdparty_invite.net.guard import AddressPolicy, ForbiddenAddress, make_dns_resolver
from thirdparty_invite.net.http import make_guarded_session

WELL_KNOWN = "/.well-known/matrix/server"
HOUR = 3600.0


def _scripted(*draws: int) -> tuple[list[tuple[int, int]], object]:
    asked: list[tuple[int, int]] = []
    queue = list(draws)

    def randint(low: int, high: int) -> int:
        asked.append((low, high))
        return queue.pop(0)

    return asked, randint


def test_srv_order_by_priority_then_weighted_draw() -> None:
    a = SrvRecord(priority=20, weight=0, port=1, target="a.")
    b = SrvRecord(priority=10, weight=10, port=2, target="b.")
    c = SrvRecord(priority=10, weight=30, port=3, target="c.")
    d = SrvRecord(priority=10, weight=60, port=4, target="d.")
    asked, randint = _scripted(50, 15, 0, 0)
    # Priority 10 first: running sums 10, 40, 100; a draw of 50 picks d, then of 15 picks c.
    assert order_srv_records([a, d, b, c], randint) == [d, c, b, a]  # type: ignore[arg-type]
    assert asked == [(0, 100), (0, 40), (0, 10), (0, 0)]


def test_srv_zero_weight_goes_first_and_wins_only_a_zero_draw() -> None:
    heavy = SrvRecord(priority=0, weight=5, port=1, target="heavy.")
    zero = SrvRecord(priority=0, weight=0, port=2, target="zero.")
    assert order_srv_records([heavy, zero], _scripted(0, 0)[1])[0] == zero  # type: ignore[arg-type]
    assert order_srv_records([heavy, zero], _scripted(1, 0)[1])[0] == heavy  # type: ignore[arg-type]


def test_srv_weights_shape_the_distribution() -> None:
    records = [SrvRecord(0, 10, 1, "light."), SrvRecord(0, 90, 2, "heavy.")]
    rng = random.Random(20240601)
    firsts = [order_srv_records(records, rng.randint)[0].target for _ in range(2000)]
    assert 0.85 < firsts.count("heavy.") / 2000 < 0.95


@pytest.mark.parametrize(
    ("headers", "ttl"),
    [
        ({}, 24 * HOUR),
        ({"Cache-Control": "max-age=600"}, 600),
        ({"Cache-Control": "public, max-age=0"}, 0),
        ({"Cache-Control": "max-age=9999999"}, 48 * HOUR),
        ({"Cache-Control": "no-store"}, 0),
        ({"Cache-Control": "max-age=bogus"}, 24 * HOUR),
        ({"Expires": email.utils.formatdate(1_000_000 + 7200, usegmt=True)}, 7200),
        (
            {
                "Date": email.utils.formatdate(500_000, usegmt=True),
                "Expires": email.utils.formatdate(500_000 + 60, usegmt=True),
            },
            60,
        ),
        ({"Expires": "garbage"}, 0),
        ({"Expires": email.utils.formatdate(1_000_000 - 60, usegmt=True)}, 0),
        ({"Expires": email.utils.formatdate(1_000_000 + 10**7, usegmt=True)}, 48 * HOUR),
        # Every Cache-Control line counts, not only the first.
        ([("Cache-Control", "public"), ("Cache-Control", "max-age=600")], 600),
        ([("Cache-Control", "max-age=600"), ("cache-control", "no-store")], 0),
        ([("Cache-Control", "max-age=600"), ("Cache-Control", "max-age=60")], 60),
        ([("Cache-Control", "public, max-age=600, no-cache")], 0),
        (
            [
                ("Expires", email.utils.formatdate(1_000_000 + 60, usegmt=True)),
                ("Expires", email.utils.formatdate(1_000_000 + 120, usegmt=True)),
            ],
            120,
        ),
    ],
)
def test_well_known_cache_ttl(headers: dict[str, str] | list[tuple[str, str]], ttl: float) -> None:
    pairs = headers.items() if isinstance(headers, dict) else headers
    assert well_known_cache_ttl(CIMultiDict(pairs), now=1_000_000.0) == ttl


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@attrs.define
class Env:
    dns: DNSServer
    hs: FakeHomeserver
    clock: FakeClock
    make: object  # (policy=..., **kwargs) -> ServerResolver
    dns_resolvers: list[dns.asyncresolver.Resolver]  # of the resolvers made, in order

    def resolver(self, policy: AddressPolicy | None = None, **kwargs: object) -> ServerResolver:
        return self.make(policy, **kwargs)  # type: ignore[operator]

    def well_known_requests(self) -> int:
        return len(self.hs.requests_to(WELL_KNOWN))


LOOPBACK_ONLY = AddressPolicy(allowed_networks=("127.0.0.1/32",))


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    tls = make_test_tls()
    async with (
        DNSServer({"hs.test": [("A", "127.0.0.1")]}) as dns,
        FakeHomeserver(ssl_context=tls.server) as hs,
    ):
        clock = FakeClock()
        sessions = []
        dns_resolvers = []

        def make(policy: AddressPolicy | None, **kwargs: object) -> ServerResolver:
            # A fresh DNS resolver each time: dnspython caches answers, negative ones too.
            dns_resolver = make_dns_resolver([dns.nameserver], 2.0)
            dns_resolvers.append(dns_resolver)
            policy = policy or LOOPBACK_ONLY
            session = make_guarded_session(policy, dns_resolver, 5.0, ssl_context=tls.client)
            sessions.append(session)
            options: dict = {"well_known_port": hs.port, "randint": lambda low, high: 0}
            options.update(kwargs)
            return ServerResolver(session, dns_resolver, policy, clock, **options)

        try:
            yield Env(dns, hs, clock, make, dns_resolvers)
        finally:
            for session in sessions:
                await session.close()


def server(url: str, host: str, tls: str) -> ResolvedServer:
    parsed = yarl.URL(url)
    # Built like discovery builds it, so an explicit :443 compares equal.
    base_url = yarl.URL.build(scheme=parsed.scheme, host=parsed.host or "", port=parsed.port)
    return ResolvedServer(base_url=base_url, host_header=host, tls_server_name=tls)


async def test_ip_literal_needs_no_lookup(env: Env) -> None:
    resolver = env.resolver()
    assert await resolver.resolve("8.8.8.8") == server(
        "https://8.8.8.8:8448", "8.8.8.8", "8.8.8.8"
    )
    assert await resolver.resolve("[2606:4700::1]:443") == server(
        "https://[2606:4700::1]:443", "[2606:4700::1]:443", "2606:4700::1"
    )
    assert env.dns.queries == []
    assert env.hs.requests == []


async def test_private_ip_literal_is_refused_unless_allowed(env: Env) -> None:
    for name in ("127.0.0.2", "10.0.0.1:8448", "[::1]", "[::ffff:192.168.1.1]:443"):
        with pytest.raises(ForbiddenAddress):
            await env.resolver().resolve(name)
    allowed = await env.resolver(AddressPolicy(allow_private=True)).resolve("10.0.0.1:8448")
    assert allowed == server("https://10.0.0.1:8448", "10.0.0.1:8448", "10.0.0.1")


async def test_explicit_port_skips_well_known_and_srv(env: Env) -> None:
    resolved = await env.resolver().resolve("HS.test:1234")
    assert resolved == server("https://hs.test:1234", "hs.test:1234", "hs.test")
    assert env.hs.requests == []
    assert env.dns.queries == []


async def test_srv_matrix_fed_after_failed_well_known(env: Env) -> None:
    env.dns.set("_matrix-fed._tcp.hs.test", ("SRV", "10 0 8800 target.test."))
    env.dns.set("_matrix._tcp.hs.test", ("SRV", "10 0 9999 old.test."))
    resolved = await env.resolver().resolve("hs.test")
    # Connect to the SRV target, but talk to (and check the certificate of) hs.test.
    assert resolved == server("https://target.test:8800", "hs.test", "hs.test")
    assert env.well_known_requests() == 1
    assert [q for q in env.dns.queries if q[1] == "SRV"] == [("_matrix-fed._tcp.hs.test", "SRV")]


async def test_deprecated_matrix_srv_is_the_fallback(env: Env) -> None:
    env.dns.set("_matrix._tcp.hs.test", ("SRV", "10 0 9999 old.test."))
    resolved = await env.resolver().resolve("hs.test")
    assert resolved == server("https://old.test:9999", "hs.test", "hs.test")
    assert [q[0] for q in env.dns.queries if q[1] == "SRV"] == [
        "_matrix-fed._tcp.hs.test",
        "_matrix._tcp.hs.test",
    ]


async def test_port_8448_is_the_last_resort(env: Env) -> None:
    resolved = await env.resolver().resolve("hs.test")
    assert resolved == server("https://hs.test:8448", "hs.test", "hs.test")


async def test_srv_candidates_follow_priority_and_weight(env: Env) -> None:
    env.dns.set(
        "_matrix-fed._tcp.hs.test",
        ("SRV", "20 0 1 backup.test."),
        ("SRV", "10 10 2 light.test."),
        ("SRV", "10 90 3 heavy.test."),
    )
    _, randint = _scripted(50, 0, 0)
    candidates = await env.resolver(randint=randint).resolve_candidates("hs.test")
    assert [(c.base_url.host, c.base_url.port) for c in candidates] == [
        ("heavy.test", 3),
        ("light.test", 2),
        ("backup.test", 1),
    ]
    assert {(c.host_header, c.tls_server_name) for c in candidates} == {("hs.test", "hs.test")}


async def test_srv_with_dot_target_means_no_service(env: Env) -> None:
    env.dns.set("_matrix-fed._tcp.hs.test", ("SRV", "0 0 0 ."))
    with pytest.raises(DiscoveryError, match="not offered"):
        await env.resolver().resolve("hs.test")


async def test_srv_target_that_is_a_private_ip_is_refused(env: Env) -> None:
    env.dns.set("_matrix-fed._tcp.hs.test", ("SRV", "0 0 8448 10.0.0.1."))
    with pytest.raises(ForbiddenAddress):
        await env.resolver().resolve("hs.test")
    env.dns.set(
        "_matrix-fed._tcp.hs.test", ("SRV", "0 0 8448 10.0.0.1."), ("SRV", "5 0 8448 ok.test.")
    )
    resolved = await env.resolver().resolve("hs.test")
    assert resolved.base_url == yarl.URL("https://ok.test:8448")


async def test_srv_lookup_failure_is_an_error_not_a_fallback(env: Env) -> None:
    env.dns.servfail.add("_matrix-fed._tcp.hs.test")
    with pytest.raises(DiscoveryError, match="DNS lookup"):
        await env.resolver().resolve("hs.test")


DELEGATIONS = {
    # m.server: (base URL, Host header, TLS name)
    "delegated.test:4321": (
        "https://delegated.test:4321",
        "delegated.test:4321",
        "delegated.test",
    ),
    "8.8.8.8": ("https://8.8.8.8:8448", "8.8.8.8", "8.8.8.8"),
    "[2606:4700::1]:443": ("https://[2606:4700::1]:443", "[2606:4700::1]:443", "2606:4700::1"),
    "delegated.test": ("https://delegated.test:8448", "delegated.test", "delegated.test"),
    "Delegated.TEST": ("https://delegated.test:8448", "delegated.test", "delegated.test"),
}


@pytest.mark.parametrize(("delegation", "expected"), sorted(DELEGATIONS.items()))
async def test_well_known_delegation(
    env: Env, delegation: str, expected: tuple[str, str, str]
) -> None:
    env.hs.route(WELL_KNOWN, {"m.server": delegation})
    assert await env.resolver().resolve("hs.test") == server(*expected)
    [request] = env.hs.requests_to(WELL_KNOWN)
    assert request.host_header == f"hs.test:{env.hs.port}"


async def test_delegated_name_uses_its_own_srv_records(env: Env) -> None:
    env.hs.route(WELL_KNOWN, {"m.server": "delegated.test"})
    env.dns.set("_matrix-fed._tcp.hs.test", ("SRV", "0 0 1111 wrong.test."))
    env.dns.set("_matrix._tcp.delegated.test", ("SRV", "0 0 2222 target.test."))
    resolved = await env.resolver().resolve("hs.test")
    assert resolved == server("https://target.test:2222", "delegated.test", "delegated.test")
    env.dns.set("_matrix-fed._tcp.delegated.test", ("SRV", "0 0 3333 target.test."))
    resolved = await env.resolver().resolve("hs.test")  # a new resolver: nothing cached
    assert resolved.base_url.port == 3333


async def test_delegation_to_private_ip_is_refused(env: Env) -> None:
    env.hs.route(WELL_KNOWN, {"m.server": "192.168.1.10:8448"})
    with pytest.raises(ForbiddenAddress):
        await env.resolver().resolve("hs.test")


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b"{}",
        b'{"m.server": 42}',
        b'{"m.server": "bad name"}',
        b'{"m.server": "a:b:c"}',
        b"[" * 30000 + b"]" * 30000,
        b'{"m.server": "' + b"a" * (70 * 1024) + b'"}',
    ],
)
async def test_unusable_well_known_falls_back_to_srv(env: Env, body: bytes) -> None:
    env.hs.route(WELL_KNOWN, raw=body)
    env.dns.set("_matrix-fed._tcp.hs.test", ("SRV", "0 0 8800 target.test."))
    resolved = await env.resolver().resolve("hs.test")
    assert resolved.base_url == yarl.URL("https://target.test:8800")


async def test_well_known_is_cached_and_refreshed_before_it_expires(env: Env) -> None:
    env.hs.route(WELL_KNOWN, {"m.server": "delegated.test:1"})
    resolver = env.resolver()
    await resolver.resolve("hs.test")
    [request] = env.hs.requests_to(WELL_KNOWN)
    assert request.user_agent.startswith("thirdparty_invite/")
    env.hs.route(WELL_KNOWN, {"m.server": "delegated.test:2"})
    env.clock.now += 0.8 * 24 * HOUR - 1
    assert (await resolver.resolve("hs.test")).base_url.port == 1
    await resolver.refreshes_done()
    assert env.well_known_requests() == 1
    # The last fifth of the TTL: answered from the cache at once, refreshed meanwhile.
    env.clock.now += 2
    assert (await resolver.resolve("hs.test")).base_url.port == 1
    await resolver.refreshes_done()
    assert env.well_known_requests() == 2
    assert (await resolver.resolve("hs.test")).base_url.port == 2
    assert env.well_known_requests() == 2


async def test_an_expired_delegation_is_fetched_before_answering(env: Env) -> None:
    env.hs.route(WELL_KNOWN, {"m.server": "delegated.test:1"})
    resolver = env.resolver()
    await resolver.resolve("hs.test")
    env.hs.route(WELL_KNOWN, {"m.server": "delegated.test:2"})
    env.clock.now += 24 * HOUR + 1  # nobody asked during the refresh window
    assert (await resolver.resolve("hs.test")).base_url.port == 2
    assert env.well_known_requests() == 2


async def refreshed_port(env: Env, resolver: ServerResolver) -> int:
    """The port a lookup answers, once any refresh it started has finished."""
    port = (await resolver.resolve("hs.test")).base_url.port
    await resolver.refreshes_done()
    assert port is not None
    return port


@pytest.mark.parametrize(
    "headers",
    [
        {"Cache-Control": "max-age=600"},
        # A second Cache-Control line counts too.
        [("Cache-Control", "public"), ("Cache-Control", "max-age=600")],
    ],
)
async def test_well_known_max_age_is_honoured(
    env: Env, headers: dict[str, str] | list[tuple[str, str]]
) -> None:
    env.hs.route(WELL_KNOWN, {"m.server": "delegated.test:1"}, headers=headers)
    resolver = env.resolver()
    await resolver.resolve("hs.test")
    env.clock.now += 479  # refresh from 480 s (a fifth of 600 s left)
    await refreshed_port(env, resolver)
    assert env.well_known_requests() == 1
    env.clock.now += 2
    await refreshed_port(env, resolver)
    assert env.well_known_requests() == 2


async def test_well_known_cache_is_capped_at_48_hours(env: Env) -> None:
    headers = {"Cache-Control": "max-age=31536000"}
    env.hs.route(WELL_KNOWN, {"m.server": "delegated.test:1"}, headers=headers)
    resolver = env.resolver()
    await resolver.resolve("hs.test")
    env.clock.now += 0.8 * 48 * HOUR - 1
    await refreshed_port(env, resolver)
    assert env.well_known_requests() == 1
    env.clock.now += 2
    await refreshed_port(env, resolver)
    assert env.well_known_requests() == 2


@pytest.mark.parametrize(
    "headers",
    [
        {"Cache-Control": "no-store"},
        [("Cache-Control", "max-age=86400"), ("Cache-Control", "no-store")],
        {"Cache-Control": "max-age=0"},
    ],
)
async def test_no_store_is_cached_for_synapses_five_minutes(
    env: Env, headers: dict[str, str] | list[tuple[str, str]]
) -> None:
    # Synapse floors a period from the headers at 5 minutes (no-store included): without
    # it, every sign-in would pay an extra HTTPS fetch.
    env.hs.route(WELL_KNOWN, {"m.server": "delegated.test:1"}, headers=headers)
    resolver = env.resolver()
    await resolver.resolve("hs.test")
    env.clock.now += 0.8 * WELL_KNOWN_MIN_TTL - 1
    await refreshed_port(env, resolver)
    assert env.well_known_requests() == 1
    env.clock.now += WELL_KNOWN_MIN_TTL
    await refreshed_port(env, resolver)
    assert env.well_known_requests() == 2


async def test_a_brief_well_known_outage_keeps_the_last_good_delegation(env: Env) -> None:
    headers = {"Cache-Control": "max-age=600"}
    env.hs.route(WELL_KNOWN, {"m.server": "delegated.test:1"}, headers=headers)
    resolver = env.resolver()
    await resolver.resolve("hs.test")
    env.hs.route(WELL_KNOWN, {"errcode": "M_UNKNOWN"}, status=503)
    env.clock.now += 481  # refresh window: the refresh fails
    assert await refreshed_port(env, resolver) == 1
    env.clock.now += 600  # expired, but within the grace: still the last good answer
    assert await refreshed_port(env, resolver) == 1
    env.clock.now += STALE_GRACE  # grace over: no delegation (SRV, then 8448)
    assert await refreshed_port(env, resolver) == 8448
    env.hs.route(WELL_KNOWN, {"m.server": "delegated.test:3"})  # back
    env.clock.now += 3600
    assert await refreshed_port(env, resolver) == 3


async def test_a_stale_delegation_is_used_when_the_first_refresh_comes_after_expiry(
    env: Env,
) -> None:
    env.hs.route(WELL_KNOWN, {"m.server": "delegated.test:1"})
    resolver = env.resolver()
    await resolver.resolve("hs.test")
    env.hs.route(WELL_KNOWN, raw=b"x" * (70 * 1024))  # too large: may be temporary
    env.clock.now += 24 * HOUR + 10
    assert await refreshed_port(env, resolver) == 1
    assert env.well_known_requests() == 2
    env.clock.now += 30  # within the retry back-off: answered from the cache, no fetch
    assert await refreshed_port(env, resolver) == 1
    assert env.well_known_requests() == 2


@pytest.mark.parametrize("answer", [{"status": 404}, {"raw": b"not json"}, {"body": {}}])
async def test_a_definite_answer_ends_the_delegation_at_once(
    env: Env, answer: dict[str, object]
) -> None:
    env.hs.route(WELL_KNOWN, {"m.server": "delegated.test:1"})
    resolver = env.resolver()
    await resolver.resolve("hs.test")
    env.hs.route(WELL_KNOWN, **answer)  # type: ignore[arg-type]
    env.clock.now += 24 * HOUR + 1
    assert await refreshed_port(env, resolver) == 8448


async def test_failures_are_cached_with_backoff_up_to_the_limit(env: Env) -> None:
    resolver = env.resolver(failure_ttl=100.0)
    assert (await resolver.resolve("hs.test")).base_url.port == 8448  # 404: fallback
    await resolver.resolve("hs.test")
    assert env.well_known_requests() == 1
    env.clock.now += 61  # first failure: cached for 60 s
    await resolver.resolve("hs.test")
    assert env.well_known_requests() == 2
    env.clock.now += 99  # second failure: 120 s, capped at failure_ttl=100
    await resolver.resolve("hs.test")
    assert env.well_known_requests() == 2
    env.clock.now += 2
    env.hs.route(WELL_KNOWN, {"m.server": "delegated.test:7"})
    assert (await resolver.resolve("hs.test")).base_url.port == 7
    assert env.well_known_requests() == 3


async def test_concurrent_resolves_share_one_fetch(env: Env) -> None:
    import asyncio

    env.hs.route(WELL_KNOWN, {"m.server": "delegated.test:1"})
    resolver = env.resolver()
    results = await asyncio.gather(*(resolver.resolve("hs.test") for _ in range(10)))
    assert {r.base_url.port for r in results} == {1}
    assert env.well_known_requests() == 1


def redirect_chain(env: Env, hops: int) -> None:
    """WELL_KNOWN -> /hop1 -> ... -> /final, `hops` redirects of mixed kinds and forms."""
    paths = [WELL_KNOWN] + [f"/hop{i}" for i in range(1, hops)] + ["/final"]
    statuses = [302, 301, 307, 308, 303]
    for i, (here, there) in enumerate(itertools.pairwise(paths)):
        # Relative and absolute Location headers alike.
        target = there if i % 2 else f"https://hs.test:{env.hs.port}{there}"
        env.hs.redirect(here, target, status=statuses[i % len(statuses)])
    env.hs.route("/final", {"m.server": "delegated.test:1"})


async def test_redirects_are_followed_as_far_as_synapse_follows_them(env: Env) -> None:
    assert WELL_KNOWN_MAX_REDIRECTS == 20  # Twisted's RedirectAgent default, used by Synapse
    redirect_chain(env, WELL_KNOWN_MAX_REDIRECTS)
    assert (await env.resolver().resolve("hs.test")).base_url.port == 1
    assert len(env.hs.requests_to("/final")) == 1


async def test_too_many_redirects_fail(env: Env) -> None:
    redirect_chain(env, WELL_KNOWN_MAX_REDIRECTS + 1)
    assert (await env.resolver().resolve("hs.test")).base_url.port == 8448
    assert env.hs.requests_to("/final") == []


@pytest.fixture
def inner_tls_server() -> Iterator[FakeHomeserver]:
    yield FakeHomeserver(host="127.0.0.2", ssl_context=make_test_tls().server)


async def test_redirect_to_private_ip_is_refused(
    env: Env, inner_tls_server: FakeHomeserver
) -> None:
    async with inner_tls_server as inner:
        inner.route(WELL_KNOWN, {"m.server": "attacker.test:1"})
        env.hs.redirect(WELL_KNOWN, f"https://127.0.0.2:{inner.port}{WELL_KNOWN}")
        assert (await env.resolver().resolve("hs.test")).base_url.port == 8448
        assert inner.requests == []
        # Allowing private addresses lets the same redirect through.
        permissive = env.resolver(AddressPolicy(allow_private=True))
        assert (await permissive.resolve("hs.test")).base_url.port == 1
        assert len(inner.requests) == 1


async def test_redirect_to_a_name_resolving_to_loopback_is_refused(
    env: Env, inner_tls_server: FakeHomeserver
) -> None:
    async with inner_tls_server as inner:
        inner.route(WELL_KNOWN, {"m.server": "attacker.test:1"})
        env.dns.set("other.test", ("A", "127.0.0.2"))
        env.hs.redirect(WELL_KNOWN, f"https://other.test:{inner.port}{WELL_KNOWN}")
        assert (await env.resolver().resolve("hs.test")).base_url.port == 8448
        assert inner.requests == []


async def test_redirect_to_plain_http_is_refused(env: Env) -> None:
    env.hs.redirect(WELL_KNOWN, f"http://hs.test:{env.hs.port}/final")
    env.hs.route("/final", {"m.server": "delegated.test:1"})
    assert (await env.resolver().resolve("hs.test")).base_url.port == 8448
    assert env.hs.requests_to("/final") == []


async def test_well_known_host_resolving_to_loopback_is_not_contacted(env: Env) -> None:
    env.hs.route(WELL_KNOWN, {"m.server": "delegated.test:1"})
    resolver = env.resolver(AddressPolicy())  # loopback not allowed at all
    assert (await resolver.resolve("hs.test")).base_url.port == 8448
    assert env.hs.requests == []


async def test_well_known_certificate_must_match(env: Env) -> None:
    env.dns.set("nocert.test", ("A", "127.0.0.1"))
    env.hs.route(WELL_KNOWN, {"m.server": "delegated.test:1"})
    assert (await env.resolver().resolve("nocert.test")).base_url.port == 8448
    assert env.hs.requests == []  # the TLS handshake failed before any request


async def test_srv_dns_failure_falls_back_to_the_last_answer_for_a_while(env: Env) -> None:
    env.dns.ttl = 0  # dnspython caches nothing: every lookup reaches the DNS server
    env.dns.set("_matrix-fed._tcp.hs.test", ("SRV", "10 0 8800 target.test."))
    resolver = env.resolver()
    assert (await resolver.resolve("hs.test")).base_url.port == 8800
    env.dns.servfail.add("_matrix-fed._tcp.hs.test")
    env.clock.now += STALE_GRACE - 1
    assert (await resolver.resolve("hs.test")).base_url.port == 8800
    env.clock.now += 2
    with pytest.raises(DiscoveryError, match="DNS lookup"):
        await resolver.resolve("hs.test")


async def test_srv_records_withdrawn_are_not_used_after_dns_fails(env: Env) -> None:
    env.dns.ttl = 0
    env.dns.set("_matrix-fed._tcp.hs.test", ("SRV", "10 0 8800 target.test."))
    resolver = env.resolver()
    assert (await resolver.resolve("hs.test")).base_url.port == 8800
    del env.dns.records["_matrix-fed._tcp.hs.test"]  # NXDOMAIN: a definite "none"
    assert (await resolver.resolve("hs.test")).base_url.port == 8448
    env.dns_resolvers[-1].cache.flush()  # dnspython keeps the NXDOMAIN for a while
    env.dns.servfail.add("_matrix-fed._tcp.hs.test")
    with pytest.raises(DiscoveryError, match="DNS lookup"):
        await resolver.resolve("hs.test")
