"""The OpenID verifier against fake (hostile or broken) homeservers on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
import hashlib
import logging
import socket
import time
import traceback

import pytest
from support.dnsserver import DNSServer
from support.fakehomeserver import USERINFO_PATH, FakeHomeserver, make_test_tls

from thirdparty_invite.errors import UserFacingError
from thirdparty_invite.identity.discovery import ServerResolver
from thirdparty_invite.identity.verifier import IdentitySettings, OpenIDVerifier, VerifiedToken
from thirdparty_invite.net.guard import AddressPolicy, make_dns_resolver
from thirdparty_invite.net.http import make_guarded_session

TOKEN = "tok3n-SECRET_value.0123456789"

MakeVerifier = Callable[..., OpenIDVerifier]


@pytest.fixture
async def make_verifier() -> AsyncIterator[MakeVerifier]:
    created: list[OpenIDVerifier] = []

    def make(settings: IdentitySettings, **kwargs: object) -> OpenIDVerifier:
        verifier = OpenIDVerifier(settings, **kwargs)  # type: ignore[arg-type]
        created.append(verifier)
        return verifier

    yield make
    for verifier in created:
        await verifier.close()


@pytest.fixture
async def hs() -> AsyncIterator[FakeHomeserver]:
    async with FakeHomeserver() as server:
        server.valid_tokens = {TOKEN}
        yield server


def mapped(hs: FakeHomeserver, **kwargs: object) -> IdentitySettings:
    return IdentitySettings(server_urls={"hs.test": hs.url}, **kwargs)  # type: ignore[arg-type]


async def expect_error(
    call: Awaitable[VerifiedToken], errcode: str, status: int
) -> UserFacingError:
    with pytest.raises(UserFacingError) as caught:
        await call
    assert (caught.value.errcode, caught.value.http_status) == (errcode, status)
    assert TOKEN not in caught.value.message
    return caught.value


async def test_good_token(hs: FakeHomeserver, make_verifier: MakeVerifier) -> None:
    verifier = make_verifier(mapped(hs, seen_token_ttl=600))
    before = time.time()
    verified = await verifier.verify(TOKEN, "hs.test")
    assert (verified.user_id, verified.server_name) == ("@alice:hs.test", "hs.test")
    # What the session insert spends: the hash of server name and token, never the token.
    assert verified.token_hash == hashlib.sha256(f"hs.test\0{TOKEN}".encode()).hexdigest()
    # In whole milliseconds, as expires_at is: a float second compared with a truncated
    # millisecond failed once in a full run.
    assert int(before * 1000) + 600_000 <= verified.expires_at <= int(time.time() * 1000) + 600_000
    [request] = hs.requests_to(USERINFO_PATH)
    assert request.query == {"access_token": TOKEN}
    assert request.user_agent.startswith("thirdparty_invite/")


async def test_the_verifier_does_not_spend_tokens(
    hs: FakeHomeserver, make_verifier: MakeVerifier
) -> None:
    # Spending is the session insert's job (tests/unit/test_sessions.py): asking twice is fine.
    verifier = make_verifier(mapped(hs))
    first, second = [await verifier.verify(TOKEN, "hs.test") for _ in range(2)]
    assert first.token_hash == second.token_hash


async def test_server_name_is_compared_case_insensitively(
    hs: FakeHomeserver, make_verifier: MakeVerifier
) -> None:
    assert (await make_verifier(mapped(hs)).verify(TOKEN, "HS.Test")).user_id == "@alice:hs.test"


@pytest.mark.parametrize(
    "sub",
    ["@alice:matrix.org", "@alice:hs.test:8448", "@alice:hs.test.evil", "@alice:evil.hs.test"],
)
async def test_sub_of_another_server_is_refused(
    hs: FakeHomeserver, make_verifier: MakeVerifier, sub: str
) -> None:
    hs.sub = sub
    await expect_error(make_verifier(mapped(hs)).verify(TOKEN, "hs.test"), "TPI_SUB_MISMATCH", 403)


@pytest.mark.parametrize(
    "raw",
    [b"{}", b'{"sub": null}', b'{"sub": 5}', b'{"sub": "alice"}', b'{"sub": "@:hs.test"}', b"[]"],
)
async def test_missing_or_garbage_sub_is_refused(
    hs: FakeHomeserver, make_verifier: MakeVerifier, raw: bytes
) -> None:
    hs.userinfo_raw = raw
    await expect_error(make_verifier(mapped(hs)).verify(TOKEN, "hs.test"), "TPI_SUB_MISMATCH", 403)


async def test_unknown_token(hs: FakeHomeserver, make_verifier: MakeVerifier) -> None:
    error = await expect_error(
        make_verifier(mapped(hs)).verify("some-other-token", "hs.test"), "M_UNKNOWN_TOKEN", 401
    )
    assert "Sign in again" in error.message


@pytest.mark.parametrize(
    ("allow", "deny", "server_name", "allowed"),
    [
        ((), ("hs.test",), "hs.test", False),
        ((), ("*.test",), "HS.test", False),
        ((), ("hs.test",), "hs.test:8448", False),  # the host alone matches too
        (("*.example.org",), (), "hs.test", False),
        (("hs.*",), (), "hs.test", True),
        (("hs.test",), ("hs.test",), "hs.test", False),  # deny wins
        ((), ("other.test",), "hs.test", True),
    ],
)
async def test_allow_and_deny_lists(
    hs: FakeHomeserver,
    make_verifier: MakeVerifier,
    allow: tuple[str, ...],
    deny: tuple[str, ...],
    server_name: str,
    allowed: bool,
) -> None:
    settings = IdentitySettings(
        server_urls={"hs.test": hs.url, "hs.test:8448": hs.url},
        homeserver_allow=allow,
        homeserver_deny=deny,
    )
    verifier = make_verifier(settings)
    if allowed:
        assert (await verifier.verify(TOKEN, server_name)).user_id == "@alice:hs.test"
    else:
        await expect_error(verifier.verify(TOKEN, server_name), "TPI_SERVER_NOT_ALLOWED", 403)
        assert hs.requests == []  # refused before any network I/O


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_unreachable_server(make_verifier: MakeVerifier) -> None:
    settings = IdentitySettings(server_urls={"hs.test": f"http://127.0.0.1:{closed_port()}"})
    await expect_error(
        make_verifier(settings).verify(TOKEN, "hs.test"), "TPI_SERVER_UNREACHABLE", 502
    )


async def test_timeout(hs: FakeHomeserver, make_verifier: MakeVerifier) -> None:
    hs.userinfo_delay = 2.0
    error = await expect_error(
        make_verifier(mapped(hs, timeout=0.2)).verify(TOKEN, "hs.test"),
        "TPI_SERVER_UNREACHABLE",
        502,
    )
    assert "in time" in error.message


@pytest.mark.parametrize(
    ("status", "raw", "words"),
    [
        (500, b'{"errcode": "M_UNKNOWN"}', "HTTP status 500"),
        (404, b"{}", "HTTP status 404"),
        (200, b"<html>hello</html>", "not JSON"),
        (200, b"[" * 60000 + b"]" * 60000, "too large"),
        (200, b"[" * 30000 + b"]" * 30000, "not JSON"),
        (200, b'{"sub": "' + b"x" * (65 * 1024) + b'"}', "too large"),
    ],
)
async def test_broken_answers(
    hs: FakeHomeserver, make_verifier: MakeVerifier, status: int, raw: bytes, words: str
) -> None:
    hs.userinfo_status, hs.userinfo_raw = status, raw
    error = await expect_error(
        make_verifier(mapped(hs)).verify(TOKEN, "hs.test"), "TPI_SERVER_UNREACHABLE", 502
    )
    assert words in error.message


async def test_redirects_are_not_followed(make_verifier: MakeVerifier) -> None:
    async with FakeHomeserver() as hs, FakeHomeserver() as elsewhere:
        # A homeserver must answer itself; following a redirect would hand the token onward.
        base = f"{hs.url}/redirecting"
        hs.redirect(f"/redirecting{USERINFO_PATH}", f"{elsewhere.url}{USERINFO_PATH}")
        settings = IdentitySettings(server_urls={"hs.test": base})
        await expect_error(
            make_verifier(settings).verify(TOKEN, "hs.test"), "TPI_SERVER_UNREACHABLE", 502
        )
        assert elsewhere.requests == []


@pytest.mark.parametrize(
    "token", ["", " ", "has space", "tab\there", "x" * 513, "caf\u00e9", "new\nline", None, 12]
)
async def test_malformed_token(
    hs: FakeHomeserver, make_verifier: MakeVerifier, token: object
) -> None:
    await expect_error(make_verifier(mapped(hs)).verify(token, "hs.test"), "TPI_BAD_TOKEN", 400)  # type: ignore[arg-type]
    assert hs.requests == []


async def test_longest_token_is_accepted(hs: FakeHomeserver, make_verifier: MakeVerifier) -> None:
    hs.valid_tokens = {"x" * 512}
    assert (
        await make_verifier(mapped(hs)).verify("x" * 512, "hs.test")
    ).user_id == "@alice:hs.test"


@pytest.mark.parametrize(
    "name",
    ["", "hs test", "hs.test:0", "hs.test:99999", "[::1", "@alice:hs.test", None, "a" * 300],
)
async def test_malformed_server_name(
    hs: FakeHomeserver, make_verifier: MakeVerifier, name: object
) -> None:
    await expect_error(
        make_verifier(mapped(hs)).verify(TOKEN, name),  # type: ignore[arg-type]
        "TPI_BAD_SERVER_NAME",
        400,
    )
    assert hs.requests == []


async def test_verifier_is_usable_after_close(
    hs: FakeHomeserver, make_verifier: MakeVerifier
) -> None:
    hs.valid_tokens = None
    verifier = make_verifier(mapped(hs))
    assert (await verifier.verify("first", "hs.test")).user_id == "@alice:hs.test"
    await verifier.close()
    assert (await verifier.verify("second", "hs.test")).user_id == "@alice:hs.test"


def test_invalid_server_urls_key_is_a_configuration_error() -> None:
    with pytest.raises(ValueError):
        OpenIDVerifier(IdentitySettings(server_urls={"bad name": "http://x"}))


# Discovery end to end: HTTPS with a test CA, a loopback DNS server, SRV records.


@pytest.fixture
async def tls_hs() -> AsyncIterator[FakeHomeserver]:
    async with FakeHomeserver(ssl_context=make_test_tls().server) as server:
        server.valid_tokens = {TOKEN}
        yield server


@pytest.fixture
async def dns(tls_hs: FakeHomeserver) -> AsyncIterator[DNSServer]:
    records = {
        "_matrix-fed._tcp.hs.test": [("SRV", f"0 0 {tls_hs.port} target.test.")],
        "_matrix-fed._tcp.wrongcert.test": [("SRV", f"0 0 {tls_hs.port} target.test.")],
        "target.test": [("A", "127.0.0.1")],
        "delegated.test": [("A", "127.0.0.1")],
    }
    async with DNSServer(records) as server:
        yield server


def discovering(dns: DNSServer, **kwargs: object) -> IdentitySettings:
    options: dict = {"timeout": 5.0, **kwargs}
    return IdentitySettings(dns_nameservers=(dns.nameserver,), **options)


async def test_discovered_server_over_https(
    tls_hs: FakeHomeserver, dns: DNSServer, make_verifier: MakeVerifier
) -> None:
    settings = discovering(dns, allow_private_addresses=True)
    verifier = make_verifier(settings, ssl_context=make_test_tls().client)
    assert (await verifier.verify(TOKEN, "hs.test")).user_id == "@alice:hs.test"
    [request] = tls_hs.requests_to(USERINFO_PATH)
    assert request.host_header == "hs.test"


async def test_discovered_loopback_server_is_refused_by_default(
    tls_hs: FakeHomeserver, dns: DNSServer, make_verifier: MakeVerifier
) -> None:
    verifier = make_verifier(discovering(dns), ssl_context=make_test_tls().client)
    error = await expect_error(
        verifier.verify(TOKEN, "hs.test"), "TPI_SERVER_FORBIDDEN_ADDRESS", 403
    )
    assert "private or local" in error.message
    assert tls_hs.requests == []


async def test_allowed_networks_open_one_network(
    tls_hs: FakeHomeserver, dns: DNSServer, make_verifier: MakeVerifier
) -> None:
    settings = discovering(dns, allowed_networks=("127.0.0.1/32",))
    verifier = make_verifier(settings, ssl_context=make_test_tls().client)
    assert (await verifier.verify(TOKEN, "hs.test")).user_id == "@alice:hs.test"


async def test_private_ip_literal_server_name(
    tls_hs: FakeHomeserver, dns: DNSServer, make_verifier: MakeVerifier
) -> None:
    name = f"127.0.0.1:{tls_hs.port}"
    tls_hs.sub = f"@alice:{name}"
    strict = make_verifier(discovering(dns), ssl_context=make_test_tls().client)
    await expect_error(strict.verify(TOKEN, name), "TPI_SERVER_FORBIDDEN_ADDRESS", 403)
    assert tls_hs.requests == []
    permissive = make_verifier(
        discovering(dns, allow_private_addresses=True), ssl_context=make_test_tls().client
    )
    assert (await permissive.verify(TOKEN, name)).user_id == f"@alice:{name}"
    assert tls_hs.requests[-1].host_header == name


async def test_certificate_must_match_the_server_name(
    tls_hs: FakeHomeserver, dns: DNSServer, make_verifier: MakeVerifier
) -> None:
    # wrongcert.test's SRV points at a server whose certificate does not name wrongcert.test.
    tls_hs.sub = "@alice:wrongcert.test"
    settings = discovering(dns, allow_private_addresses=True)
    verifier = make_verifier(settings, ssl_context=make_test_tls().client)
    error = await expect_error(
        verifier.verify(TOKEN, "wrongcert.test"), "TPI_SERVER_UNREACHABLE", 502
    )
    assert "certificate" in error.message
    assert tls_hs.requests_to(USERINFO_PATH) == []


async def test_spoofing_homeserver_reached_by_discovery_is_refused(
    tls_hs: FakeHomeserver, dns: DNSServer, make_verifier: MakeVerifier
) -> None:
    tls_hs.sub = "@admin:matrix.org"
    settings = discovering(dns, allow_private_addresses=True)
    verifier = make_verifier(settings, ssl_context=make_test_tls().client)
    await expect_error(verifier.verify(TOKEN, "hs.test"), "TPI_SUB_MISMATCH", 403)


async def test_well_known_delegation_end_to_end(
    tls_hs: FakeHomeserver, dns: DNSServer, make_verifier: MakeVerifier
) -> None:
    dns.set("hs.test", ("A", "127.0.0.1"))
    tls_hs.route("/.well-known/matrix/server", {"m.server": f"delegated.test:{tls_hs.port}"})
    policy = AddressPolicy(allowed_networks=("127.0.0.1/32",))
    dns_resolver = make_dns_resolver([dns.nameserver], 2.0)
    tls = make_test_tls()
    async with make_guarded_session(policy, dns_resolver, 5.0, ssl_context=tls.client) as session:
        resolver = ServerResolver(session, dns_resolver, policy, well_known_port=tls_hs.port)
        settings = discovering(dns, allowed_networks=("127.0.0.1/32",))
        verifier = make_verifier(settings, resolver=resolver, ssl_context=tls.client)
        assert (await verifier.verify(TOKEN, "hs.test")).user_id == "@alice:hs.test"
    [request] = tls_hs.requests_to(USERINFO_PATH)
    assert request.host_header == f"delegated.test:{tls_hs.port}"


async def test_dns_failure_is_unreachable(dns: DNSServer, make_verifier: MakeVerifier) -> None:
    dns.servfail.add("_matrix-fed._tcp.broken.test")
    verifier = make_verifier(discovering(dns), ssl_context=make_test_tls().client)
    await expect_error(verifier.verify(TOKEN, "broken.test"), "TPI_SERVER_UNREACHABLE", 502)
    # No A record at all for the 8448 fallback: a DNS failure when connecting.
    await expect_error(verifier.verify(TOKEN, "nowhere.test"), "TPI_SERVER_UNREACHABLE", 502)


def _all_text(error: BaseException) -> str:
    return "".join(traceback.format_exception(error)) + repr(error) + str(error.args)


async def test_the_token_never_reaches_logs_or_errors(
    hs: FakeHomeserver,
    tls_hs: FakeHomeserver,
    dns: DNSServer,
    make_verifier: MakeVerifier,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    hs.userinfo_delay = 0.0
    good = make_verifier(mapped(hs))
    discovered = make_verifier(
        discovering(dns, allow_private_addresses=True), ssl_context=make_test_tls().client
    )
    strict = make_verifier(discovering(dns), ssl_context=make_test_tls().client)
    unreachable = make_verifier(
        IdentitySettings(server_urls={"hs.test": f"http://127.0.0.1:{closed_port()}"})
    )
    slow = make_verifier(mapped(hs, timeout=0.2))
    failures: list[BaseException] = []

    async def attempt(call: Awaitable[VerifiedToken]) -> None:
        try:
            await call
        except UserFacingError as error:
            failures.append(error)

    await attempt(good.verify(TOKEN, "hs.test"))  # succeeds
    await attempt(discovered.verify(TOKEN, "wrongcert.test"))  # certificate
    await attempt(strict.verify(TOKEN, "hs.test"))  # forbidden address
    await attempt(unreachable.verify(TOKEN, "hs.test"))  # connection refused
    await attempt(discovered.verify(TOKEN, "nowhere.test"))  # DNS failure
    tls_hs.sub = "@mallory:matrix.org"
    await attempt(discovered.verify(TOKEN, "hs.test"))  # spoofed sub
    tls_hs.valid_tokens = set()
    await attempt(discovered.verify(TOKEN, "hs.test"))  # unknown token
    hs.valid_tokens = None
    hs.userinfo_status, hs.userinfo_raw = 500, b"oops"
    await attempt(good.verify(TOKEN + "x", "hs.test"))  # server error
    hs.userinfo_delay = 1.0
    await attempt(slow.verify(TOKEN, "hs.test"))  # timeout
    await attempt(good.verify(TOKEN + " ", "hs.test"))  # malformed

    assert len(failures) == 9
    for error in failures:
        assert TOKEN not in _all_text(error)
    ours = [r for r in caplog.records if not r.name.startswith(("aiohttp.server", "aiohttp.web"))]
    assert ours, "expected the verifier to log its refusals"
    assert all(TOKEN not in record.getMessage() for record in ours)
    assert TOKEN not in caplog.text


async def test_every_srv_target_is_tried(
    tls_hs: FakeHomeserver, dns: DNSServer, make_verifier: MakeVerifier
) -> None:
    # Three dead targets before the live one: a verifier that gave up after three could not
    # verify anybody on this server.
    dead = [closed_port() for _ in range(3)]
    records = [("SRV", f"{i} 0 {port} target.test.") for i, port in enumerate(dead)]
    dns.set("_matrix-fed._tcp.hs.test", *records, ("SRV", f"9 0 {tls_hs.port} target.test."))
    settings = discovering(dns, allow_private_addresses=True)
    verifier = make_verifier(settings, ssl_context=make_test_tls().client)
    assert (await verifier.verify(TOKEN, "hs.test")).user_id == "@alice:hs.test"


async def test_when_every_target_fails_the_last_reason_is_given(
    dns: DNSServer, make_verifier: MakeVerifier
) -> None:
    records = [("SRV", f"{i} 0 {closed_port()} target.test.") for i in range(5)]
    dns.set("_matrix-fed._tcp.hs.test", *records)
    settings = discovering(dns, allow_private_addresses=True)
    verifier = make_verifier(settings, ssl_context=make_test_tls().client)
    error = await expect_error(verifier.verify(TOKEN, "hs.test"), "TPI_SERVER_UNREACHABLE", 502)
    assert "connection failed" in error.message


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A port that accepts TCP connections (into the backlog) and never answers: a TLS
    handshake with it hangs until the client gives up."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


async def test_a_target_that_hangs_cannot_starve_the_next(
    tls_hs: FakeHomeserver, dns: DNSServer, make_verifier: MakeVerifier, black_hole: int
) -> None:
    dns.set(
        "_matrix-fed._tcp.hs.test",
        ("SRV", f"0 0 {black_hole} target.test."),
        ("SRV", f"1 0 {tls_hs.port} target.test."),
    )
    settings = discovering(dns, allow_private_addresses=True, timeout=4.0)
    verifier = make_verifier(settings, ssl_context=make_test_tls().client)
    started = time.monotonic()
    # The first target had its share of the time to connect (half), not all of it: had it
    # had all, the deadline would have passed before the second was asked. No upper bound
    # on the time: the second target's answer may be slow on a busy machine.
    assert (await verifier.verify(TOKEN, "hs.test")).user_id == "@alice:hs.test"
    assert time.monotonic() - started > 1.9  # the first was tried, for its share


async def test_one_deadline_covers_the_whole_verification(
    dns: DNSServer, make_verifier: MakeVerifier, black_hole: int
) -> None:
    records = [("SRV", f"{i} 0 {black_hole} target.test.") for i in range(10)]
    dns.set("_matrix-fed._tcp.hs.test", *records)
    settings = discovering(dns, allow_private_addresses=True, timeout=1.0)
    verifier = make_verifier(settings, ssl_context=make_test_tls().client)
    started = time.monotonic()
    await expect_error(verifier.verify(TOKEN, "hs.test"), "TPI_SERVER_UNREACHABLE", 502)
    # Not 10 x 1 s; the margin is wide, as a busy machine runs timers late.
    assert time.monotonic() - started < 5.0


async def test_slow_discovery_counts_against_the_deadline(
    dns: DNSServer, make_verifier: MakeVerifier
) -> None:
    dns.silent.add("_matrix-fed._tcp.slow.test")  # the SRV query is never answered
    verifier = make_verifier(discovering(dns, timeout=0.5), ssl_context=make_test_tls().client)
    started = time.monotonic()
    await expect_error(verifier.verify(TOKEN, "slow.test"), "TPI_SERVER_UNREACHABLE", 502)
    # Without the deadline, discovery would go on to its next lookups (each as long as
    # this one); the margin lets a busy machine run the timer late.
    assert time.monotonic() - started < 1.5
