"""Find a homeserver's federation API from its server name.

Follows the Server-Server API, "Resolving server names": IP literal, explicit port,
`/.well-known/matrix/server` delegation (cached), SRV `_matrix-fed._tcp` then the deprecated
`_matrix._tcp`, then port 8448. Every address involved passes through the `AddressPolicy`: IP
literals here, DNS answers in the guarded session's resolver, redirect hops before each request.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Sequence
import email.utils
import itertools
import logging
import random
import time
from typing import Generic, TypeVar

import aiohttp
import attrs
import dns.asyncresolver
import dns.exception
import dns.name
import dns.resolver
from multidict import MultiMapping
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
# Synapse follows .well-known redirects with Twisted's RedirectAgent, whose limit is 20.
WELL_KNOWN_MAX_REDIRECTS = 20
WELL_KNOWN_DEFAULT_TTL = 24 * 3600.0
WELL_KNOWN_MAX_TTL = 48 * 3600.0
# Synapse's floor for a period given by the headers (no-store included): a .well-known sent
# with `no-store` would otherwise cost an extra HTTPS fetch on every sign-in.
WELL_KNOWN_MIN_TTL = 5 * 60.0
# Refresh a delegation when this fraction of its TTL is left (Synapse's
# WELL_KNOWN_GRACE_PERIOD_FACTOR): lookups meanwhile get the cached answer at once.
WELL_KNOWN_REFRESH_FACTOR = 0.2
# When a refresh fails for a reason that may pass (no connection, timeout, 5xx), the last
# good answer keeps being used for up to this long after it expired, so a homeserver's brief
# .well-known outage does not lock its users out. A definite answer (404, a body without
# m.server) ends the delegation at once, as in Synapse.
STALE_GRACE = 3600.0
# Failures are cached for this long at first, doubling on each repeated failure up to the
# resolver's failure_ttl: the spec asks for exponential back-off, at most an hour by default.
WELL_KNOWN_FIRST_FAILURE_TTL = 60.0
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class DiscoveryError(Exception):
    """The server could not be located (DNS failure, service declared absent)."""


class _WellKnownFailure(Exception):
    """No usable delegation; the spec says to carry on with SRV lookups. `temporary` when
    asking again later may well succeed (no connection, timeout, 5xx, oversized body)."""

    def __init__(self, reason: str, *, temporary: bool = False) -> None:
        super().__init__(reason)
        self.temporary = temporary


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


def well_known_cache_ttl(headers: MultiMapping[str], now: float) -> float:
    """Seconds to cache a .well-known answer, from its headers (every `Cache-Control` line
    counts): 0 for no-store/no-cache, else max-age (the smallest, if several), else Expires,
    else 24 h; never more than 48 h. `now` is the wall clock, used when there is no Date.
    The resolver raises a result under `WELL_KNOWN_MIN_TTL` to that floor, as Synapse does."""
    directives: dict[str, list[str]] = {}
    for line in headers.getall("Cache-Control", ()):
        for part in line.split(","):
            key, _, value = part.strip().partition("=")
            directives.setdefault(key.strip().lower(), []).append(value.strip().strip('"'))
    max_ages = [int(value) for value in directives.get("max-age", ()) if value.isdigit()]
    ttl = WELL_KNOWN_DEFAULT_TTL
    if "no-store" in directives or "no-cache" in directives:
        ttl = 0.0
    elif max_ages:
        ttl = float(min(max_ages))
    elif "Expires" in headers:
        try:
            # Several Expires lines make no sense; Synapse reads the last one, so do we.
            expires_at = headers.getall("Expires")[-1]
            expires = email.utils.parsedate_to_datetime(expires_at).timestamp()
            date = headers.get("Date")
            base = email.utils.parsedate_to_datetime(date).timestamp() if date else now
            ttl = expires - base
        except (TypeError, ValueError):
            ttl = 0.0  # HTTP: an invalid Expires means "already expired"
    return max(0.0, min(ttl, WELL_KNOWN_MAX_TTL))


K = TypeVar("K")
V = TypeVar("V")


class _LRU(Generic[K, V]):
    """A dict that forgets its least recently stored entries beyond `size`."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        return self._entries.get(key)

    def put(self, key: K, value: V) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def pop(self, key: K) -> None:
        self._entries.pop(key, None)


@attrs.frozen
class _Delegation:
    """A cached .well-known outcome and what to do with it as time passes."""

    server: str | None  # the delegated server name; None: no delegation (SRV, then 8448)
    refresh_at: float  # from then on, a lookup answers from here and refreshes meanwhile
    expires_at: float  # from then on, a lookup waits for a fresh answer
    stale_until: float = 0.0  # a good answer may stand in for failed refreshes until then
    failures: int = 0  # consecutive failed fetches, for the back-off


@attrs.frozen
class _GoodSrv:
    records: tuple[SrvRecord, ...]
    stale_until: float


class ServerResolver:
    """Resolves server names to `ResolvedServer`s, caching .well-known answers.

    `session` should come from `net.http.make_guarded_session` with the same `policy`; the
    resolver does not own it. `randint` drives the SRV weighted draw, `wall_clock` reads HTTP
    dates; `well_known_port` exists for tests only (the spec fixes 443).

    As Synapse does, a delegation is refreshed before it expires (when a fifth of its TTL is
    left; lookups meanwhile answer from the cache at once), and a refresh that fails for a
    reason that may pass keeps the last good answer in use; unlike Synapse, also after it
    expired, for up to `STALE_GRACE`. An SRV lookup whose DNS query fails likewise falls back
    to the last good answer for the same name, within its TTL plus `STALE_GRACE`."""

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
        self._well_known_port = well_known_port
        self._cache: _LRU[str, _Delegation] = _LRU(cache_size)
        self._good_srv: _LRU[str, _GoodSrv] = _LRU(cache_size)
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

    async def refreshes_done(self) -> None:
        """Wait for the .well-known fetches running now, background refreshes included."""
        while self._inflight:
            await asyncio.wait(list(self._inflight.values()))

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
            self._good_srv.pop(name)  # a definite "none": nothing stale to fall back to
            return []
        except dns.exception.DNSException as error:
            good = self._good_srv.get(name)
            if good is not None and self._clock() < good.stale_until:
                log.info("DNS lookup of %s failed (%s): using its last answer", name, error)
                return list(good.records)
            # Carrying on to port 8448 could reach a different server than the SRV names.
            raise DiscoveryError(f"DNS lookup of {name} failed ({type(error).__name__})") from None
        records = [SrvRecord(r.priority, r.weight, r.port, r.target.to_text()) for r in answer]
        if len(records) == 1 and records[0].target == dns.name.root.to_text():
            self._good_srv.pop(name)
            raise DiscoveryError(f"{name} declares that the service is not offered")
        ttl = answer.rrset.ttl if answer.rrset is not None else 0
        self._good_srv.put(name, _GoodSrv(tuple(records), self._clock() + ttl + STALE_GRACE))
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
        now = self._clock()
        if entry is not None and now < entry.expires_at:
            if now >= entry.refresh_at:
                self._fetch(host)  # in the background: this lookup is answered now
            return entry.server
        return await asyncio.shield(self._fetch(host))

    def _fetch(self, host: str) -> asyncio.Future[str | None]:
        """The running fetch of `host`'s .well-known, started if there is none: one fetch per
        host however many lookups wait for it."""
        future = self._inflight.get(host)
        if future is None:
            future = asyncio.ensure_future(self._refresh(host))
            self._inflight[host] = future
            future.add_done_callback(lambda done: self._fetch_done(host, done))
        return future

    def _fetch_done(self, host: str, done: asyncio.Future[str | None]) -> None:
        if self._inflight.get(host) is done:
            del self._inflight[host]
        if not done.cancelled() and done.exception() is not None:
            # Nobody may be waiting (a background refresh): say so rather than lose it.
            log.error("Refreshing the delegation of %s failed", host, exc_info=done.exception())

    async def _refresh(self, host: str) -> str | None:
        previous = self._cache.get(host)
        try:
            server, ttl = await self._fetch_well_known(host)
        except _WellKnownFailure as failure:
            now = self._clock()
            failures = previous.failures + 1 if previous is not None else 1
            backoff = WELL_KNOWN_FIRST_FAILURE_TTL * 2 ** min(failures - 1, 30)
            retry = min(backoff, self._failure_ttl)
            if (
                failure.temporary
                and previous is not None
                and previous.server is not None
                and now < previous.stale_until
            ):
                log.info(
                    "Could not refresh the delegation of %s (%s): still using %s, retry in %d s",
                    host,
                    failure,
                    previous.server,
                    retry,
                )
                stale = attrs.evolve(
                    previous,
                    refresh_at=now + retry,
                    expires_at=previous.stale_until,
                    failures=failures,
                )
                self._cache.put(host, stale)
                return previous.server
            log.info("No server delegation for %s: %s (retry in %d s)", host, failure, retry)
            self._cache.put(host, _Delegation(None, now + retry, now + retry, failures=failures))
            return None
        now = self._clock()
        ttl = max(ttl, WELL_KNOWN_MIN_TTL)
        refresh_at = now + ttl * (1 - WELL_KNOWN_REFRESH_FACTOR)
        self._cache.put(host, _Delegation(server, refresh_at, now + ttl, now + ttl + STALE_GRACE))
        return server

    async def _fetch_well_known(self, host: str) -> tuple[str, float]:
        url = yarl.URL.build(
            scheme="https",
            host=host,
            port=self._well_known_port,
            path="/.well-known/matrix/server",
        )
        try:
            for _hop in range(WELL_KNOWN_MAX_REDIRECTS + 1):
                # Every hop is checked: an IP literal here, a name's addresses on connecting.
                check_url_host(self._policy, url)
                async with self._session.get(url, allow_redirects=False) as response:
                    if response.status in _REDIRECT_STATUSES:
                        url = _redirect_target(url, response.headers.get("Location"))
                        continue
                    if response.status >= 500:
                        raise _WellKnownFailure(f"HTTP status {response.status}", temporary=True)
                    if response.status != 200:
                        raise _WellKnownFailure(f"HTTP status {response.status}")
                    body = await read_body_limited(response, WELL_KNOWN_BODY_LIMIT)
                    ttl = well_known_cache_ttl(response.headers, self._wall_clock())
                return _parse_well_known(body), ttl
        except ForbiddenAddress as error:
            raise _WellKnownFailure(str(error)) from None
        except ResponseTooLarge as error:
            raise _WellKnownFailure(str(error), temporary=True) from None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as error:
            reason = f"request failed ({type(error).__name__})"
            raise _WellKnownFailure(reason, temporary=True) from None
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
