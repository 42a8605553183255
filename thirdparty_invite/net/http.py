"""The one place the plugin makes HTTP client sessions for talking to the outside world.

Two kinds, with the same hygiene:

* **guarded** (`make_guarded_session`): every address it connects to passes the SSRF
  `AddressPolicy` (DNS answers go through `GuardedResolver`). For URLs that come from users
  or from remote servers: homeservers found by discovery, `.well-known`, OAuth endpoints a
  user could influence. Callers must still run `check_url_host` on every URL they request
  (aiohttp never resolves IP literals) and follow redirects themselves, checking each hop
  (`allow_redirects=False`).
* **direct** (`make_direct_session`): no address policy, for URLs the operator configured
  (`identity.server_urls`, a provider's fixed API endpoints, a self-hosted GitLab).

Both have a total timeout (a request may pass a tighter `aiohttp.ClientTimeout`), no cookie
jar (cookies from one server never travel to another), `trust_env=False` (a proxy from the
environment would bypass the address checks and see every URL, tokens included), a
User-Agent naming the plugin and its version, and TLS checked against the system trust store
unless an `ssl_context` is given (tests). `OutboundHTTP` holds one of each, made on first
use, for a service that calls out (the OpenID verifier; the OAuth providers next).

Bodies are read with `read_body_limited` / `read_json_limited`, never `response.json()`:
a hostile server could otherwise make the plugin buffer any amount of data.
"""

from __future__ import annotations

from collections.abc import Sequence
import json
import ssl
from typing import Any

import aiohttp
import dns.asyncresolver

from .guard import AddressPolicy, GuardedResolver, make_dns_resolver

# Kept equal to maubot.yaml's version by tests/unit/test_http.py.
PLUGIN_VERSION = "0.1.0"
USER_AGENT = f"thirdparty_invite/{PLUGIN_VERSION} (maubot plugin)"


class ResponseTooLarge(Exception):
    """A response body exceeded the size we are willing to read."""


class InvalidJSON(ValueError):
    """A response body that is not JSON (or is absurdly nested)."""


def _session(
    connector: aiohttp.TCPConnector, timeout: float, user_agent: str
) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout),
        headers={"User-Agent": user_agent},
        # Cookies from one server must never travel to another; proxies from the
        # environment would bypass the address checks.
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
    )


def make_guarded_session(
    policy: AddressPolicy,
    dns_resolver: dns.asyncresolver.Resolver,
    timeout: float,
    *,
    ssl_context: ssl.SSLContext | None = None,
    user_agent: str = USER_AGENT,
) -> aiohttp.ClientSession:
    """A client session whose every DNS answer passes through `policy`.

    `ssl_context` defaults to the system trust store with certificate and hostname checks.
    Callers must still pass `allow_redirects=False` and run `check_url_host` on every URL."""
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(dns_resolver, policy),
        ssl=ssl_context if ssl_context is not None else True,
    )
    return _session(connector, timeout, user_agent)


def make_direct_session(
    timeout: float,
    *,
    ssl_context: ssl.SSLContext | None = None,
    user_agent: str = USER_AGENT,
) -> aiohttp.ClientSession:
    """A client session for operator-configured URLs: no address policy, same hygiene."""
    connector = aiohttp.TCPConnector(ssl=ssl_context if ssl_context is not None else True)
    return _session(connector, timeout, user_agent)


class OutboundHTTP:
    """A guarded and a direct session sharing one policy, DNS resolver and default timeout,
    each made on first use (so building one costs nothing until it is needed, and it may be
    built outside a running event loop). `close()` closes them; the object stays usable, the
    sessions are made again on the next use.

    `dns_nameservers`: IP addresses with optional ports; empty means the system's."""

    def __init__(
        self,
        *,
        timeout: float,
        policy: AddressPolicy,
        dns_nameservers: Sequence[str] = (),
        ssl_context: ssl.SSLContext | None = None,
        user_agent: str = USER_AGENT,
    ) -> None:
        self.timeout = timeout
        self.policy = policy
        self._dns_nameservers = tuple(dns_nameservers)
        self._ssl_context = ssl_context
        self._user_agent = user_agent
        self._dns: dns.asyncresolver.Resolver | None = None
        self._guarded: aiohttp.ClientSession | None = None
        self._direct: aiohttp.ClientSession | None = None

    @property
    def dns(self) -> dns.asyncresolver.Resolver:
        """The DNS resolver behind the guarded session (discovery's SRV lookups use it too)."""
        if self._dns is None:
            self._dns = make_dns_resolver(self._dns_nameservers, self.timeout)
        return self._dns

    def guarded(self) -> aiohttp.ClientSession:
        if self._guarded is None or self._guarded.closed:
            self._guarded = make_guarded_session(
                self.policy,
                self.dns,
                self.timeout,
                ssl_context=self._ssl_context,
                user_agent=self._user_agent,
            )
        return self._guarded

    def direct(self) -> aiohttp.ClientSession:
        if self._direct is None or self._direct.closed:
            self._direct = make_direct_session(
                self.timeout, ssl_context=self._ssl_context, user_agent=self._user_agent
            )
        return self._direct

    async def close(self) -> None:
        for session in (self._guarded, self._direct):
            if session is not None:
                await session.close()
        self._guarded = self._direct = None


async def read_body_limited(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """Read a response body, refusing to buffer more than `limit` bytes."""
    length = response.content_length
    if length is not None and length > limit:
        raise ResponseTooLarge(f"response body of {length} bytes is too large")
    if length is not None and not response.headers.get("Content-Encoding"):
        # The common case (a small answer with its length, as from the userinfo call):
        # one read, no chunk loop. aiohttp stops at Content-Length, so this is bounded.
        return await response.content.read()
    body = bytearray()
    async for chunk in response.content.iter_chunked(16 * 1024):
        body.extend(chunk)
        if len(body) > limit:
            raise ResponseTooLarge(f"response body exceeds {limit} bytes")
    return bytes(body)


def parse_json(body: bytes) -> Any:
    """`json.loads`, raising `InvalidJSON` for anything that is not JSON."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON
        raise InvalidJSON("the body is not JSON") from None


async def read_json_limited(response: aiohttp.ClientResponse, limit: int) -> Any:
    """The JSON of a response body of at most `limit` bytes. Raises `ResponseTooLarge` or
    `InvalidJSON`; the content type is not checked (servers get it wrong)."""
    return parse_json(await read_body_limited(response, limit))
