"""Rate limits per client address on the public endpoints: token buckets, 429 with Retry-After.

A client is its address: the connecting peer, or, when the peer is one of the operator's
`web.trusted_proxies`, the right-most X-Forwarded-For entry that is not itself a trusted
proxy (entries to its left are whatever the client chose to send). IPv6 clients are keyed
on their /64, the block one subscriber usually gets. The table of buckets is bounded: a
bucket that has refilled carries no information and is dropped, and past `max_entries` the
least recently used go first, so a flood of addresses cannot grow memory without bound.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
import ipaddress
import logging
import math
import time
from typing import TYPE_CHECKING

from aiohttp import web
import attrs

from .support import Handler, json_error

if TYPE_CHECKING:
    from ..config import RateLimit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_ENTRIES = 20_000  # about 3 MB of buckets at most


# ---- who the client is --------------------------------------------------------------


def parse_address(text: str) -> IPAddress | None:
    """An IP address as proxies write it: bare, `[v6]`, `[v6]:port` or `v4:port`; an
    IPv4-mapped IPv6 address is the IPv4 address. None for anything else."""
    text = text.strip()
    if text.startswith("["):
        text, bracket, rest = text[1:].partition("]")
        if not bracket or (
            rest and not (rest.startswith(":") and rest[1:].isascii() and rest[1:].isdigit())
        ):
            return None
    elif text.count(":") == 1:  # v4:port (a bare IPv6 address has at least two colons)
        text, _, port = text.partition(":")
        if not (port.isascii() and port.isdigit()):
            return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            continue  # config.py refuses these already
    return tuple(networks)


def _key(address: IPAddress) -> str:
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((int(address), 64), strict=False))
    return str(address)


def client_key(
    peer: str | None, forwarded_for: Iterable[str], trusted: tuple[IPNetwork, ...]
) -> str:
    """The rate-limit key of a request from `peer` carrying these X-Forwarded-For header
    values. A forwarded address is believed only from a trusted proxy; a malformed header
    from one is ignored (the proxy is then the client)."""
    address = parse_address(peer or "")
    if address is None:
        return peer or "unknown"  # not an IP peer (a unix socket): one shared bucket
    if not trusted or not any(address in network for network in trusted):
        return _key(address)
    entries = ",".join(forwarded_for).split(",")
    leftmost = address
    for entry in reversed(entries):
        if not entry.strip():
            continue
        hop = parse_address(entry)
        if hop is None:
            return _key(address)  # garbage from the proxy's client: trust none of it
        if not any(hop in network for network in trusted):
            return _key(hop)
        leftmost = hop
    return _key(leftmost)  # every hop is a trusted proxy: the first is the client


# ---- token buckets ------------------------------------------------------------------


@attrs.define
class _Bucket:
    tokens: float
    updated: float
    refused: bool = False  # refused since it last had a token (log once per episode)


@attrs.frozen
class Refusal:
    wait: float  # seconds until the next request would be allowed
    first: bool  # the first refusal since this client last had a token


class RateLimiter:
    """Token buckets keyed by (limit name, client key)."""

    def __init__(
        self,
        limits: Mapping[str, RateLimit],
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = {name: limit for name, limit in limits.items() if limit.burst > 0}
        self.max_entries = max_entries
        self.clock = clock
        self._buckets: OrderedDict[tuple[str, str], _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def _tokens(self, name: str, bucket: _Bucket, now: float) -> float:
        limit = self.limits[name]
        return min(limit.burst, bucket.tokens + (now - bucket.updated) / limit.refill)

    def _drop_refilled(self, now: float) -> None:
        """Drop least recently used buckets that have refilled: they say nothing a fresh
        bucket would not. Each call drops at most what earlier calls added."""
        while self._buckets:
            (name, _), bucket = next(iter(self._buckets.items()))
            if self._tokens(name, bucket, now) < self.limits[name].burst:
                return
            self._buckets.popitem(last=False)

    def take(self, name: str, client: str) -> Refusal | None:
        """Spend one token of `client` for limit `name`; a Refusal when there is none."""
        limit = self.limits.get(name)
        if limit is None:
            return None  # not limited (burst 0)
        now = self.clock()
        self._drop_refilled(now)
        key = (name, client)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(limit.burst), now)
            while len(self._buckets) > self.max_entries:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = self._tokens(name, bucket, now)
            bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            bucket.refused = False
            return None
        first = not bucket.refused
        bucket.refused = True
        return Refusal((1 - bucket.tokens) * limit.refill, first)


def rate_limit_middleware(
    limiter: RateLimiter,
    routes: Mapping[str, str],
    trusted_proxies: Iterable[str],
    log: logging.Logger,
) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """Limits the routes in `routes` ("METHOD /path" -> limit name) per client; others
    pass. Runs before the handler reads the body or checks anything, so a refused request
    costs next to nothing."""
    trusted = parse_networks(trusted_proxies)

    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        name = routes.get(f"{request.method} {resource.canonical}") if resource else None
        if name is None:
            return await handler(request)
        client = client_key(request.remote, request.headers.getall("X-Forwarded-For", ()), trusted)
        refusal = limiter.take(name, client)
        if refusal is None:
            return await handler(request)
        if refusal.first:
            log.info("Rate limit %s reached by %s: waits %.1f s", name, client, refusal.wait)
        wait_ms = math.ceil(refusal.wait * 1000)
        return json_error(
            "M_LIMIT_EXCEEDED",
            "Too many attempts from your network. Wait a little, then try again.",
            429,
            headers={"Retry-After": str(max(1, math.ceil(refusal.wait)))},
            retry_after_ms=wait_ms,
        )

    return middleware
