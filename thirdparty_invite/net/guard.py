"""Guard against server-side request forgery (SSRF) on outgoing HTTP requests.

A user hands us a Matrix server name and we make HTTP requests to whatever it resolves to. Without
a guard, a hostile user could point us at loopback, the private network or cloud metadata
services. The guard is applied at three places, so no path around it remains:

* every DNS answer (`GuardedResolver`, used by aiohttp for every connection, hence after every
  redirect too);
* every IP-literal URL (`check_url_host`; aiohttp never consults the resolver for those);
* every IP-literal server name or delegation (`AddressPolicy.check_ip`, called by discovery).

Sessions using the guard are made in `net.http`, the only place client sessions are made.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
import ipaddress
import logging
import socket

from aiohttp.abc import AbstractResolver, ResolveResult
import attrs
import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver
import yarl

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Shared address space for carrier-grade NAT; not "private" to Python's ipaddress module.
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
# NAT64 well-known prefix: a NAT64 gateway forwards these to the embedded IPv4 address.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NUMERIC_FLAGS = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV


class ForbiddenAddress(Exception):
    """An address the policy refuses. The message names the address and its kind; it is safe
    to log and to show (it never contains a URL, hence never a token)."""


def _to_networks(values: Iterable[str | IPNetwork]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(value, strict=False) for value in values)


def _address_kind(ip: IPAddress) -> str | None:
    """Why an address is not a public unicast address, or None when it is one."""
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        return "shared (CGNAT)"
    if isinstance(ip, ipaddress.IPv6Address) and ip in ipaddress.IPv6Network("fc00::/7"):
        return "private (unique local)"
    if ip.is_private:
        return "private"
    if ip.is_reserved:
        return "reserved"
    # Whatever else Python does not call global (documentation ranges, benchmarking, ...).
    if not ip.is_global:
        return "non-global"
    return None


@attrs.frozen
class AddressPolicy:
    """Which addresses outgoing requests may reach.

    `allow_private` lets every address through (for private deployments). `allowed_networks`
    lets through only the listed networks, for an operator who runs homeservers on, say,
    10.1.0.0/16 and wants the rest of the private space kept closed.
    """

    allow_private: bool = False
    allowed_networks: tuple[IPNetwork, ...] = attrs.field(default=(), converter=_to_networks)

    def check_ip(self, ip: str) -> None:
        """Raise `ForbiddenAddress` unless `ip` (an IP literal) may be contacted."""
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            raise ForbiddenAddress(f"{ip!r} is not an IP address") from None
        if self.allow_private:
            return
        # Judge an IPv6 wrapper by the IPv4 address it carries: ::ffff:127.0.0.1 is loopback.
        if isinstance(address, ipaddress.IPv6Address):
            if address.ipv4_mapped is not None:
                address = address.ipv4_mapped
            elif address in _NAT64:
                address = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
            elif address.scope_id:
                address = ipaddress.IPv6Address(str(address).split("%", 1)[0])
        if any(address in network for network in self.allowed_networks):
            return
        kind = _address_kind(address)
        if kind is not None:
            raise ForbiddenAddress(f"{ip} is a {kind} address")


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def check_url_host(policy: AddressPolicy, url: yarl.URL) -> None:
    """Check a URL whose host is an IP literal; aiohttp bypasses the resolver for those, so
    callers must run this before every request and every redirect hop. DNS names pass here and
    are checked by `GuardedResolver` when aiohttp connects."""
    host = url.host
    if host is None:
        raise ForbiddenAddress("URL has no host")
    host = host.rstrip(".")
    if is_ip_literal(host):
        policy.check_ip(host)


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that answers A/AAAA with dnspython and drops refused addresses.

    aiohttp connects only to addresses returned here, so a check here cannot be bypassed by a
    second DNS answer (no rebinding window)."""

    def __init__(self, dns_resolver: dns.asyncresolver.Resolver, policy: AddressPolicy) -> None:
        self._dns = dns_resolver
        self._policy = policy

    async def _lookup(self, host: str, rdtype: str) -> list[str]:
        try:
            answer = await self._dns.resolve(host, rdtype)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        return [rdata.to_text() for rdata in answer]

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        host = host.rstrip(".")
        if is_ip_literal(host):
            self._policy.check_ip(host)
            candidates = [host]
        else:
            candidates = await self._lookup_all(host, family)
        results: list[ResolveResult] = []
        refusals: list[str] = []
        for ip in candidates:
            try:
                self._policy.check_ip(ip)
            except ForbiddenAddress as refused:
                refusals.append(str(refused))
                continue
            ip_family = socket.AF_INET6 if ":" in ip else socket.AF_INET
            results.append(
                ResolveResult(
                    hostname=host,
                    host=ip,
                    port=port,
                    family=ip_family,
                    proto=0,
                    flags=_NUMERIC_FLAGS,
                )
            )
        if not results:
            log.info("Refused every address of %s: %s", host, "; ".join(refusals))
            raise ForbiddenAddress(f"{host} resolves only to refused addresses ({refusals[0]})")
        return results

    async def _lookup_all(self, host: str, family: socket.AddressFamily) -> list[str]:
        rdtypes: Sequence[str]
        if family == socket.AF_INET:
            rdtypes = ("A",)
        elif family == socket.AF_INET6:
            rdtypes = ("AAAA",)
        else:
            rdtypes = ("AAAA", "A")
        answers = await asyncio.gather(
            *(self._lookup(host, rdtype) for rdtype in rdtypes), return_exceptions=True
        )
        addresses: list[str] = []
        failure: BaseException | None = None
        for answer in answers:
            if isinstance(answer, dns.exception.DNSException):
                failure = answer
            elif isinstance(answer, BaseException):
                raise answer
            else:
                addresses.extend(answer)
        if not addresses:
            # An OSError makes aiohttp report a DNS failure (ClientConnectorDNSError).
            reason = type(failure).__name__ if failure else "no A/AAAA records"
            raise OSError(f"DNS lookup of {host} failed: {reason}")
        return addresses

    async def close(self) -> None:
        """Nothing to release: the dnspython resolver belongs to the caller."""


def _parse_nameserver(entry: str) -> tuple[str, int]:
    if entry.startswith("["):
        host, bracket, port = entry[1:].partition("]")
        port = port.removeprefix(":") if bracket else "invalid"
    elif entry.count(":") == 1:
        host, _, port = entry.partition(":")
    else:
        host, port = entry, ""
    valid_port = port == "" or (port.isdigit() and 0 < int(port) < 65536)
    if not is_ip_literal(host) or not valid_port:
        raise ValueError(f"DNS server {entry!r} is not an IP address with an optional port")
    return host, int(port) if port else 53


def make_dns_resolver(nameservers: Sequence[str], lifetime: float) -> dns.asyncresolver.Resolver:
    """A dnspython resolver with an answer cache. `nameservers` are IP addresses with optional
    ports (`10.0.0.53`, `127.0.0.1:5353`, `[::1]:53`); empty means the system configuration."""
    resolver = dns.asyncresolver.Resolver(configure=not nameservers)
    if nameservers:
        resolver.nameservers = [
            dns.nameserver.Do53Nameserver(*_parse_nameserver(entry)) for entry in nameservers
        ]
    resolver.lifetime = lifetime
    resolver.cache = dns.resolver.LRUCache(4096)
    return resolver
