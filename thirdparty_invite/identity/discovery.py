"""Find a homeserver's federation API from its server name.

Follows the Server-Server API, "Resolving server names": IP literal, explicit port,
`/.well-known/matrix/server` delegation (cached), SRV `_matrix-fed._tcp` then the deprecated
`_matrix._tcp`, then port 8448. Every address involved passes through the `AddressPolicy`: IP
literals here, DNS answers in the guarded session's resolver, redirect hops before each request.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
import email.utils
import itertools
import logging
import random
import time

import aiohttp
import attrs
import dns.asyncresolver
import dns.exception
import dns.name
import dns.resolver
import yarl

from ..matrix.ids import (
    InvalidServerName,
    format_server_name,
    normalize_server_name,
    parse_hostname,
    parse_server_name,
)
from ..net.guard import AddressPolicy, ForbiddenAddress, check_url_host, is_ip_literal
from ..net.http import InvalidJSON, ResponseTooLarge, parse_json, read_body_limited

log = logging.getLogger(__name__)

DEFAULT_FEDERATION_PORT = 8448
WELL_KNOWN_BODY_LIMIT = 64 * 1024
WELL_KNOWN_MAX_REDIRECTS = 3
WELL_KNOWN_DEFAULT_TTL = 24 * 3600.0
WELL_KNOWN_MAX_TTL = 48 * 3600.0
# Failures are cached for this long at first, doubling on each repeated failure up to the
# resolver's failure_ttl: the spec asks for exponential back-off, at most an hour by default.
WELL_KNOWN_FIRST_FAILURE_TTL = 60.0
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class DiscoveryError(Exception):
    """The server could not be located (DNS failure, service declared absent)."""


class _WellKnownFailure(Exception):
    """No usable delegation; the spec says to carry on with SRV lookups."""


@attrs.frozen
class ResolvedServer:
    """Where to send federation requests: connect to `base_url`, send `Host: host_header`, and
    require a TLS certificate valid for `tls_server_name`."""

    base_url: yarl.URL
    host_header: str
    tls_server_name: str


@attrs.frozen
class SrvRecord:
    priority: int
    weight: int
    port: int
    target: str


def order_srv_records(
    records: Sequence[SrvRecord], randint: Callable[[int, int], int]
) -> list[SrvRecord]:
    """Order SRV records as RFC 2782 says: by priority, and within a priority by a weighted
    random draw (`randint(a, b)` returns a <= n <= b) repeated over the records left."""
    ordered: list[SrvRecord] = []
    for priority in sorted({record.priority for record in records}):
        # Zero-weight records go first, so they are picked only when the draw is 0.
        group = sorted((r for r in records if r.priority == priority), key=lambda r: r.weight > 0)
        while group:
            draw = randint(0, sum(record.weight for record in group))
            running_sums = itertools.accumulate(record.weight for record in group)
            ordered.append(group.pop(next(i for i, s in enumerate(running_sums) if s >= draw)))
    return ordered


def well_known_cache_ttl(headers: Mapping[str, str], now: float) -> float:
    """Seconds to cache a .well-known answer: Cache-Control max-age, else Expires, else 24 h;
    never more than 48 h. `now` is the wall clock, used when the answer has no Date."""
    directives: dict[str, str] = {}
    for part in headers.get("Cache-Control", "").split(","):
        key, _, value = part.strip().partition("=")
        directives[key.strip().lower()] = value.strip().strip('"')
    ttl = WELL_KNOWN_DEFAULT_TTL
    if "no-store" in directives or "no-cache" in directives:
        ttl = 0.0
    elif directives.get("max-age", "").isdigit():
        ttl = float(directives["max-age"])
    elif "Expires" in headers:
        try:
            expires = email.utils.parsedate_to_datetime(headers["Expires"]).timestamp()
            date = headers.get("Date")
            base = email.utils.parsedate_to_datetime(date).timestamp() if date else now
            ttl = expires - base
        except (TypeError, ValueError):
            ttl = 0.0  # HTTP: an invalid Expires means "already expired"
    return max(0.0, min(ttl, WELL_KNOWN_MAX_TTL))


@attrs.frozen
class _Delegation:
    server: str | None  # the delegated server name; None after a failure
    expires_at: float
    failures: int = 0


class ServerResolver:
    """Resolves server names to `ResolvedServer`s, caching .well-known answers.

    `session` should come from `net.http.make_guarded_session` with the same `policy`; the
    resolver does not own it. `randint` drives the SRV weighted draw, `wall_clock` reads HTTP
    dates; `well_known_port` exists for tests only (the spec fixes 443)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        dns_resolver: dns.asyncresolver.Resolver,
        policy: AddressPolicy,
        clock: Callable[[], float] = time.monotonic,
        *,
        randint: Callable[[int, int], int] | None = None,
        wall_clock: Callable[[], float] = time.time,
        failure_ttl: float = 3600.0,
        cache_size: int = 10_000,
        well_known_port: int = 443,
    ) -> None:
        self._session = session
        self._dns = dns_resolver
        self._policy = policy
        self._clock = clock
        self._randint = randint or random.SystemRandom().randint
        self._wall_clock = wall_clock
        self._failure_ttl = failure_ttl
        self._cache_size = cache_size
        self._well_known_port = well_known_port
        self._cache: OrderedDict[str, _Delegation] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[str | None]] = {}

    async def resolve(self, server_name: str) -> ResolvedServer:
        """The preferred place to reach `server_name`. Raises `InvalidServerName`,
        `ForbiddenAddress` (IP literal refused by the policy) or `DiscoveryError`."""
        return (await self.resolve_candidates(server_name))[0]

    async def resolve_candidates(self, server_name: str) -> list[ResolvedServer]:
        """Every place to try, best first (several only when SRV records list several)."""
        host, port = parse_server_name(server_name)
        if is_ip_literal(host) or port is not None:
            return [self._explicit(host, port)]
        delegated = await self._delegation(host)
        if delegated is None:
            return await self._srv_or_default(host)
        delegated_host, delegated_port = parse_server_name(delegated)
        if is_ip_literal(delegated_host) or delegated_port is not None:
            return [self._explicit(delegated_host, delegated_port)]
        return await self._srv_or_default(delegated_host)

    async def close(self) -> None:
        """Stop .well-known fetches still running (the session is the caller's to close)."""
        for future in list(self._inflight.values()):
            future.cancel()
        self._inflight.clear()

    def _explicit(self, host: str, port: int | None) -> ResolvedServer:
        # Host header: the name as given, port included; certificate: the host (or its IP).
        if is_ip_literal(host):
            self._policy.check_ip(host)
        return _server(host, port or DEFAULT_FEDERATION_PORT, format_server_name(host, port), host)

    async def _srv_or_default(self, host: str) -> list[ResolvedServer]:
        for service in ("_matrix-fed._tcp", "_matrix._tcp"):
            records = await self._lookup_srv(f"{service}.{host}")
            if records:
                return self._srv_candidates(host, records)
        return [_server(host, DEFAULT_FEDERATION_PORT, host, host)]

    async def _lookup_srv(self, name: str) -> list[SrvRecord]:
        try:
            answer = await self._dns.resolve(name, "SRV")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException as error:
            # Carrying on to port 8448 could reach a different server than the SRV names.
            raise DiscoveryError(f"DNS lookup of {name} failed ({type(error).__name__})") from None
        records = [SrvRecord(r.priority, r.weight, r.port, r.target.to_text()) for r in answer]
        if len(records) == 1 and records[0].target == dns.name.root.to_text():
            raise DiscoveryError(f"{name} declares that the service is not offered")
        return records

    def _srv_candidates(self, host: str, records: Sequence[SrvRecord]) -> list[ResolvedServer]:
        candidates: list[ResolvedServer] = []
        refusal: ForbiddenAddress | None = None
        for record in order_srv_records(records, self._randint):
            try:
                target = parse_hostname(record.target.rstrip("."))
                if is_ip_literal(target):
                    self._policy.check_ip(target)
            except InvalidServerName:
                log.info("Ignoring SRV record of %s with target %r", host, record.target)
                continue
            except ForbiddenAddress as refused:
                refusal = refused
                continue
            # Connect to the target, but speak to (and check the certificate of) the host.
            candidates.append(_server(target, record.port, host, host))
        if not candidates:
            if refusal is not None:
                raise refusal
            raise DiscoveryError(f"the SRV records of {host} name no usable target")
        return candidates

    async def _delegation(self, host: str) -> str | None:
        entry = self._cache.get(host)
        if entry is not None and entry.expires_at > self._clock():
            return entry.server
        future = self._inflight.get(host)
        if future is None:
            # One fetch per host however many verifications wait for it.
            future = asyncio.ensure_future(self._refresh(host, entry))
            self._inflight[host] = future
            future.add_done_callback(lambda done: self._forget_fetch(host, done))
        return await asyncio.shield(future)

    def _forget_fetch(self, host: str, done: asyncio.Future[str | None]) -> None:
        if self._inflight.get(host) is done:
            del self._inflight[host]

    async def _refresh(self, host: str, previous: _Delegation | None) -> str | None:
        try:
            server, ttl = await self._fetch_well_known(host)
        except _WellKnownFailure as failure:
            failures = previous.failures + 1 if previous is not None else 1
            backoff = WELL_KNOWN_FIRST_FAILURE_TTL * 2 ** min(failures - 1, 30)
            ttl = min(backoff, self._failure_ttl)
            log.info("No server delegation for %s: %s (retry in %d s)", host, failure, ttl)
            self._store(host, _Delegation(None, self._clock() + ttl, failures))
            return None
        log.debug("%s delegates to %s (cached for %d s)", host, server, ttl)
        self._store(host, _Delegation(server, self._clock() + ttl))
        return server

    def _store(self, host: str, entry: _Delegation) -> None:
        self._cache[host] = entry
        self._cache.move_to_end(host)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    async def _fetch_well_known(self, host: str) -> tuple[str, float]:
        url = yarl.URL.build(
            scheme="https",
            host=host,
            port=self._well_known_port,
            path="/.well-known/matrix/server",
        )
        try:
            for _hop in range(WELL_KNOWN_MAX_REDIRECTS + 1):
                check_url_host(self._policy, url)
                async with self._session.get(url, allow_redirects=False) as response:
                    if response.status in _REDIRECT_STATUSES:
                        url = _redirect_target(url, response.headers.get("Location"))
                        continue
                    if response.status != 200:
                        raise _WellKnownFailure(f"HTTP status {response.status}")
                    body = await read_body_limited(response, WELL_KNOWN_BODY_LIMIT)
                    ttl = well_known_cache_ttl(response.headers, self._wall_clock())
                return _parse_well_known(body), ttl
        except (ForbiddenAddress, ResponseTooLarge) as error:
            raise _WellKnownFailure(str(error)) from None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as error:
            raise _WellKnownFailure(f"request failed ({type(error).__name__})") from None
        raise _WellKnownFailure(f"more than {WELL_KNOWN_MAX_REDIRECTS} redirects")


def _server(host: str, port: int, host_header: str, tls_server_name: str) -> ResolvedServer:
    url = yarl.URL.build(scheme="https", host=host, port=port)
    return ResolvedServer(base_url=url, host_header=host_header, tls_server_name=tls_server_name)


def _redirect_target(current: yarl.URL, location: str | None) -> yarl.URL:
    if not location:
        raise _WellKnownFailure("redirect without a Location")
    try:
        target = current.join(yarl.URL(location))
    except ValueError:
        raise _WellKnownFailure("redirect to an invalid URL") from None
    if target.scheme != "https" or not target.host:
        raise _WellKnownFailure("redirect away from https")
    return target


def _parse_well_known(body: bytes) -> str:
    try:
        document = parse_json(body)
    except InvalidJSON:
        raise _WellKnownFailure("the body is not JSON") from None
    server = document.get("m.server") if isinstance(document, dict) else None
    if not isinstance(server, str):
        raise _WellKnownFailure('the JSON has no "m.server" string')
    try:
        return normalize_server_name(server)
    except InvalidServerName as error:
        raise _WellKnownFailure(f"m.server is invalid: {error}") from None
