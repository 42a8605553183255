"""Prove who a user is from an OpenID token their homeserver issued.

The browser sends `{access_token, matrix_server_name}`. Both are untrusted: a hostile homeserver
can answer anything, so the answer's `sub` must belong to the server we asked, and we must have
reached that server through proper discovery (or an operator-configured URL). The token is a
credential: it never appears in a log line or an error message.

The verifier does not remember tokens: it returns a `VerifiedToken` whose `token_hash` the
caller must spend exactly once (the web session insert does, under a unique column), so a
token is marked only after its homeserver vouched for it, in the same write that uses it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from fnmatch import fnmatchcase
import hashlib
import logging
import re
import ssl
import time
from types import MappingProxyType

import aiohttp
import attrs
import dns.exception
import yarl

from ..errors import UserFacingError
from ..matrix.ids import (
    InvalidMatrixID,
    InvalidServerName,
    format_server_name,
    normalize_server_name,
    parse_server_name,
    parse_user_id,
)
from ..net.guard import AddressPolicy, ForbiddenAddress, check_url_host
from ..net.http import InvalidJSON, OutboundHTTP, ResponseTooLarge, parse_json, read_body_limited
from .discovery import DiscoveryError, ResolvedServer, ServerResolver

log = logging.getLogger(__name__)

USERINFO_PATH = "_matrix/federation/v1/openid/userinfo"
USERINFO_BODY_LIMIT = 64 * 1024
_TOKEN = re.compile(r"[\x21-\x7e]{1,512}\Z")


def _frozen_mapping(value: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(value))


@attrs.frozen
class IdentitySettings:
    """How the verifier reaches homeservers.

    `server_urls` maps server names to base URLs (`http://127.0.0.1:8008`) that skip discovery and
    the address policy: the operator vouches for them. `homeserver_allow`/`homeserver_deny` are
    fnmatch globs matched against the server name and against its host alone; deny wins, and an
    empty allow list allows every server. `allowed_networks` opens specific private networks
    (CIDR) without `allow_private_addresses` opening them all."""

    server_urls: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_mapping)
    allow_private_addresses: bool = False
    homeserver_allow: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    homeserver_deny: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    timeout: float = 10.0
    seen_token_ttl: float = 3600.0
    dns_nameservers: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    allowed_networks: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    discovery_failure_ttl: float = 3600.0


@attrs.frozen
class VerifiedToken:
    """What a homeserver vouched for.

    The caller must spend `token_hash` before trusting `user_id`: store it under a unique key
    kept at least until `expires_at` (ms), and refuse the sign-in when it was already there
    (`TPI_TOKEN_REPLAYED`). The hash covers the server name and the token."""

    user_id: str
    server_name: str
    token_hash: str
    expires_at: int


@attrs.frozen
class _Target:
    """One place to send the userinfo request."""

    base_url: yarl.URL
    host_header: str | None = None
    tls_server_name: str | None = None
    guarded: bool = True  # False for operator-configured URLs


class _ConnectFailed(Exception):
    """Nothing was sent (no connection): the next candidate may be tried."""


def _unreachable(server_name: str, reason: str) -> UserFacingError:
    return UserFacingError(
        "TPI_SERVER_UNREACHABLE",
        f"Could not check your sign-in with your homeserver {server_name}: {reason}. "
        "Try again in a few minutes; if it keeps failing, ask your homeserver's administrator "
        "whether its federation API is reachable.",
        502,
    )


def _forbidden(server_name: str) -> UserFacingError:
    return UserFacingError(
        "TPI_SERVER_FORBIDDEN_ADDRESS",
        f"Your homeserver {server_name} is only reachable at private or local network addresses, "
        "which this service does not contact. Ask its operator to add it to the server "
        "settings if it is meant to be used here.",
        403,
    )


class OpenIDVerifier:
    """Verifies OpenID tokens against the issuing homeserver. Create one and share it; call
    `close()` on shutdown. `resolver` replaces server discovery (the caller then owns it);
    `ssl_context` replaces the system trust store (tests).

    `settings.timeout` bounds a whole verification: discovery, then the userinfo request to
    each place discovery found (every SRV target, in order) until one answers. Each attempt
    may use the time left, but only its share of it to connect, so a target that swallows
    connection attempts cannot starve the ones after it."""

    def __init__(
        self,
        settings: IdentitySettings,
        *,
        resolver: ServerResolver | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._settings = settings
        self._policy = AddressPolicy(
            allow_private=settings.allow_private_addresses,
            allowed_networks=settings.allowed_networks,
        )
        self._server_urls = {
            normalize_server_name(name): yarl.URL(url)
            for name, url in settings.server_urls.items()
        }
        self._http = OutboundHTTP(
            timeout=settings.timeout,
            policy=self._policy,
            dns_nameservers=settings.dns_nameservers,
            ssl_context=ssl_context,
        )
        self._resolver = resolver
        self._owns_resolver = resolver is None

    async def verify(self, access_token: str, matrix_server_name: str) -> VerifiedToken:
        """What the token's homeserver vouches for, or raise `UserFacingError`.

        The token is not spent here: see `VerifiedToken`."""
        if not isinstance(access_token, str) or not _TOKEN.match(access_token):
            raise UserFacingError(
                "TPI_BAD_TOKEN",
                "The OpenID token is malformed (expected 1 to 512 printable characters). "
                "Sign in again.",
                400,
            )
        try:
            host, port = parse_server_name(matrix_server_name)
        except InvalidServerName as error:
            raise UserFacingError(
                "TPI_BAD_SERVER_NAME", f"The homeserver name is not valid: {error}.", 400
            ) from None
        server_name = format_server_name(host, port)
        self._check_lists(server_name, host)
        deadline = asyncio.get_running_loop().time() + self._settings.timeout
        user_id = await self._ask_homeserver(access_token, server_name, deadline)
        token_hash = hashlib.sha256(f"{server_name}\0{access_token}".encode()).hexdigest()
        expires_at = int((time.time() + self._settings.seen_token_ttl) * 1000)
        return VerifiedToken(user_id, server_name, token_hash, expires_at)

    async def close(self) -> None:
        if self._resolver is not None and self._owns_resolver:
            await self._resolver.close()
            # It holds the session closed below; a new one is made on the next verify().
            self._resolver = None
        await self._http.close()

    def _check_lists(self, server_name: str, host: str) -> None:
        names = (server_name, host)

        def matches(patterns: tuple[str, ...]) -> bool:
            return any(
                fnmatchcase(name, pattern.lower()) for pattern in patterns for name in names
            )

        allow, deny = self._settings.homeserver_allow, self._settings.homeserver_deny
        if matches(deny) or (allow and not matches(allow)):
            log.info("Refused an OpenID token from %s (homeserver allow/deny lists)", server_name)
            raise UserFacingError(
                "TPI_SERVER_NOT_ALLOWED",
                f"Accounts on {server_name} are not accepted here. Sign in with an account on "
                "another homeserver, or ask the operator of this service.",
                403,
            )

    async def _ask_homeserver(self, token: str, server_name: str, deadline: float) -> str:
        mapped = self._server_urls.get(server_name)
        if mapped is not None:
            targets = [_Target(mapped, guarded=False)]
        else:
            targets = [
                _Target(found.base_url, found.host_header, found.tls_server_name)
                for found in await self._discover(server_name, deadline)
            ]
        loop = asyncio.get_running_loop()
        refused = 0
        reason = "no address to connect to"
        for index, target in enumerate(targets):
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise _unreachable(server_name, "it did not answer in time")
            timeout = aiohttp.ClientTimeout(
                total=remaining, connect=remaining / (len(targets) - index)
            )
            try:
                return await self._userinfo(target, token, server_name, timeout)
            except ForbiddenAddress as error:
                log.info("Not contacting %s for %s: %s", target.base_url, server_name, error)
                refused += 1
            except _ConnectFailed as error:
                reason = str(error)
                log.info(
                    "Could not connect to %s for %s: %s", target.base_url, server_name, reason
                )
        if refused and refused == len(targets):
            raise _forbidden(server_name)
        raise _unreachable(server_name, reason)

    async def _discover(self, server_name: str, deadline: float) -> list[ResolvedServer]:
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            resolver = self._server_resolver()
            return await asyncio.wait_for(resolver.resolve_candidates(server_name), remaining)
        except ForbiddenAddress as error:
            log.info("Not contacting %s: %s", server_name, error)
            raise _forbidden(server_name) from None
        except (DiscoveryError, InvalidServerName) as error:
            log.info("Could not locate %s: %s", server_name, error)
            raise _unreachable(server_name, str(error)) from None
        except asyncio.TimeoutError:
            log.info("Locating %s took longer than the verification may", server_name)
            raise _unreachable(server_name, "it could not be located in time") from None
        except dns.exception.DNSException as error:  # e.g. no resolver configuration
            log.error("DNS is not usable: %s", error)
            raise _unreachable(server_name, "DNS is not available here") from None

    async def _userinfo(
        self, target: _Target, token: str, server_name: str, timeout: aiohttp.ClientTimeout
    ) -> str:
        url = (target.base_url / USERINFO_PATH).with_query(access_token=token)
        if target.guarded:
            check_url_host(self._policy, url)
        headers = {"Host": target.host_header} if target.host_header else None
        try:
            session = self._http.guarded() if target.guarded else self._http.direct()
            # No redirects: a redirect could take the token anywhere.
            async with session.get(
                url,
                headers=headers,
                allow_redirects=False,
                timeout=timeout,
                server_hostname=target.tls_server_name if url.scheme == "https" else None,
            ) as response:
                status = response.status
                body = await read_body_limited(response, USERINFO_BODY_LIMIT)
        except ForbiddenAddress:
            raise
        except aiohttp.ClientConnectorCertificateError:
            raise _ConnectFailed(f"its TLS certificate is not valid for {server_name}") from None
        except aiohttp.ClientConnectorDNSError:
            raise _ConnectFailed("its address could not be looked up in DNS") from None
        except aiohttp.ClientConnectorError:
            raise _ConnectFailed("the connection failed") from None
        except aiohttp.ConnectionTimeoutError:
            # Nothing was sent: the next place may still answer in the time left.
            raise _ConnectFailed("the connection timed out") from None
        except (asyncio.TimeoutError, TimeoutError):
            raise _unreachable(server_name, "it did not answer in time") from None
        except ResponseTooLarge:
            raise _unreachable(server_name, "its answer was too large") from None
        except dns.exception.DNSException as error:  # e.g. no resolver configuration
            log.error("DNS is not usable: %s", error)
            raise _unreachable(server_name, "DNS is not available here") from None
        except (aiohttp.ClientError, OSError) as error:
            # aiohttp's messages may quote the URL, token included: only the type is kept.
            log.info("Userinfo request to %s failed: %s", server_name, type(error).__name__)
            raise _unreachable(server_name, "the request failed") from None
        return self._read_answer(status, body, server_name)

    def _read_answer(self, status: int, body: bytes, server_name: str) -> str:
        if status == 401:
            log.info("%s does not know the OpenID token (unknown or expired)", server_name)
            raise UserFacingError(
                "M_UNKNOWN_TOKEN",
                f"{server_name} does not recognise this sign-in (unknown or expired). "
                "Sign in again.",
                401,
            )
        if status != 200:
            raise _unreachable(server_name, f"it answered with HTTP status {status}")
        try:
            answer = parse_json(body)
        except InvalidJSON:
            raise _unreachable(server_name, "its answer was not JSON") from None
        sub = answer.get("sub") if isinstance(answer, dict) else None
        try:
            _, sub_server = parse_user_id(sub)
        except InvalidMatrixID:
            sub_server = None
        if sub_server != server_name:
            # The heart of the check: a homeserver may only vouch for its own users.
            log.warning("%s answered for a user that is not its own; refused", server_name)
            raise UserFacingError(
                "TPI_SUB_MISMATCH",
                f"{server_name} did not confirm a user of its own, so the sign-in cannot be "
                "trusted. Sign in again with an account on that homeserver.",
                403,
            )
        assert isinstance(sub, str)
        return sub

    def _server_resolver(self) -> ServerResolver:
        if self._resolver is None:
            self._resolver = ServerResolver(
                self._http.guarded(),
                self._http.dns,
                self._policy,
                failure_ttl=self._settings.discovery_failure_ttl,
            )
        return self._resolver
