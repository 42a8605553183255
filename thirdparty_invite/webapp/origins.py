"""The same-origin rule for state-changing requests: the Origin header parsed strictly
(RFC 6454 serialisation) and compared as a (scheme, host, port) triple."""

from __future__ import annotations

import ipaddress
import re

from aiohttp import web
from yarl import URL

from ..errors import UserFacingError

_DEFAULT_PORTS = {"http": 80, "https": 443}
# RFC 6454 section 6.2 serialisation, with the hosts browsers actually send: a DNS name
# (ASCII, punycode for IDNA), an IPv4 address, or a bracketed IPv6 address. Nothing else:
# no userinfo, no path, no trailing dot, no empty label, no leading zeros in the port.
_HOST = r"(?P<host>[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?)*|\[[0-9A-Fa-f:.]+\])"  # noqa: E501
_PORT = r"(?::(?P<port>[1-9][0-9]{0,4}))?"
_ORIGIN = re.compile(rf"(?P<scheme>https?)://{_HOST}{_PORT}", re.IGNORECASE | re.ASCII)
_HOST_HEADER = re.compile(rf"{_HOST}{_PORT}", re.IGNORECASE | re.ASCII)

Origin = tuple[str, str, int]  # (scheme, host, port): lowercase, default port filled in


def _normal_host(host: str) -> str | None:
    host = host.lower()
    if host.startswith("["):
        try:
            return f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
        except ValueError:
            return None
    return host


def _triple(scheme: str, host: str, port: str | None) -> Origin | None:
    scheme = scheme.lower()
    normal = _normal_host(host)
    number = int(port) if port else _DEFAULT_PORTS[scheme]
    if normal is None or not 0 < number < 65536:
        return None
    return scheme, normal, number


def parse_origin(value: str) -> Origin | None:
    """(scheme, host, port) of an Origin header serialised as RFC 6454 says, else None
    (and None for "null", several origins, userinfo, paths, other schemes...)."""
    match = _ORIGIN.fullmatch(value)
    if match is None:
        return None
    return _triple(match["scheme"], match["host"], match["port"])


def _origin_of_url(url: URL) -> Origin | None:
    """The origin of a configured URL (the public URL, a trusted origin)."""
    if url.scheme not in _DEFAULT_PORTS or not url.raw_host:
        return None
    host = url.raw_host  # IDNA-encoded by yarl, as browsers send it
    if ":" in host:
        host = f"[{host}]"
    return _triple(url.scheme, host, str(url.port) if url.port else None)


class OriginCheck:
    """Same-origin rule for state-changing requests.

    Browsers always send Origin on POST and DELETE and no page can forge it, so a request
    whose Origin is neither our public origin, the host it was sent to, nor an
    operator-trusted origin comes from someone else's page. Origins are compared as
    (scheme, host, port) triples, exactly, after parsing the header strictly.
    """

    def __init__(self, public_base_url: URL, trusted_origins: tuple[str, ...]) -> None:
        self.public_scheme = public_base_url.scheme
        allowed = [_origin_of_url(public_base_url)]
        for origin in trusted_origins:
            try:
                url = URL(origin.strip().rstrip("/"))
            except ValueError:
                continue  # config.py refuses these already
            # Only a bare origin: "https://evil@good" or "https://good/x" trusts nothing.
            bare = url.raw_path in ("", "/") and not (url.query_string or url.fragment)
            if bare and not (url.user or url.password):
                allowed.append(_origin_of_url(url))
        self.allowed: frozenset[Origin] = frozenset(o for o in allowed if o is not None)

    def _request_origins(self, request: web.Request) -> set[Origin]:
        """The origins a page on the host this request was sent to can have: the Host
        header's name and port, with the public URL's scheme (a TLS-terminating proxy
        makes the request itself plain http) or the request's own."""
        match = _HOST_HEADER.fullmatch(request.headers.get("Host", ""))
        if match is None:
            return set()
        origins = set()
        for scheme in {self.public_scheme, request.scheme}:
            if scheme in _DEFAULT_PORTS:
                origin = _triple(scheme, match["host"], match["port"])
                if origin is not None:
                    origins.add(origin)
        return origins

    def check(self, request: web.Request) -> None:
        headers = request.headers.getall("Origin", ())
        if not any(headers):
            raise UserFacingError(
                "TPI_ORIGIN_REQUIRED",
                "This request must come from the invite page (no Origin header was sent).",
                403,
            )
        # A browser sends one Origin header, never two.
        origin = parse_origin(headers[0]) if len(headers) == 1 else None
        if origin is not None and (
            origin in self.allowed or origin in self._request_origins(request)
        ):
            return
        raise UserFacingError(
            "TPI_ORIGIN_FORBIDDEN",
            "This request came from another site's page and was refused.",
            403,
        )
