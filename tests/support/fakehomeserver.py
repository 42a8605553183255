"""A scriptable stand-in for a homeserver's federation endpoints, for the spoofing tests.

It answers the OpenID userinfo call with whatever `sub` the test chose (a hostile homeserver
claiming someone else's user ID), and serves `/.well-known/matrix/server` bodies, redirects
and cache headers. Good-path tests against a real homeserver use Synapse instead.

    tls = make_test_tls()
    async with FakeHomeserver(ssl_context=tls.server) as hs:
        hs.sub = "@alice:hs.test"
        hs.route("/.well-known/matrix/server", {"m.server": "hs.test:8448"})
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import ipaddress
import json
from pathlib import Path
import ssl
import tempfile
from types import TracebackType

from aiohttp import web
import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from multidict import CIMultiDict

USERINFO_PATH = "/_matrix/federation/v1/openid/userinfo"
_ABSENT = object()


@attrs.frozen
class SeenRequest:
    path: str
    host_header: str
    query: dict[str, str]
    user_agent: str = ""


@attrs.frozen
class _Route:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class FakeHomeserver:
    """An aiohttp server on 127.0.0.1 (or another loopback address) and a random port.

    Userinfo: answers `{"sub": sub}` (no `sub` key when `sub` is None, the raw bytes of
    `userinfo_raw` when set); 401 M_UNKNOWN_TOKEN when `valid_tokens` is a set without the token.
    Other paths answer what `route()` and `redirect()` configured, else 404."""

    def __init__(self, *, host: str = "127.0.0.1", ssl_context: ssl.SSLContext | None = None):
        self.host = host
        self.ssl_context = ssl_context
        self.sub: str | None = "@alice:hs.test"
        self.userinfo_raw: bytes | None = None
        self.userinfo_status = 200
        self.userinfo_delay = 0.0
        self.valid_tokens: set[str] | None = None
        self.requests: list[SeenRequest] = []
        self.port = 0
        self._routes: dict[str, _Route] = {}
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def requests_to(self, path: str) -> list[SeenRequest]:
        return [request for request in self.requests if request.path == path]

    def route(
        self,
        path: str,
        body: object = _ABSENT,
        *,
        status: int = 200,
        headers: dict[str, str] | list[tuple[str, str]] | None = None,
        raw: bytes | None = None,
    ) -> None:
        """Serve `body` as JSON (or `raw` bytes) at `path`. `headers` as a list of pairs may
        repeat a header (several Cache-Control lines)."""
        payload = raw if raw is not None else b"" if body is _ABSENT else json.dumps(body).encode()
        pairs = list(headers.items()) if isinstance(headers, dict) else list(headers or ())
        self._routes[path] = _Route(status, pairs, payload)

    def redirect(self, path: str, location: str, status: int = 302) -> None:
        self._routes[path] = _Route(status, [("Location", location)], b"")

    def _record(self, request: web.Request) -> None:
        self.requests.append(
            SeenRequest(
                request.path,
                request.headers.get("Host", ""),
                dict(request.query),
                request.headers.get("User-Agent", ""),
            )
        )

    async def _userinfo(self, request: web.Request) -> web.Response:
        self._record(request)
        if self.userinfo_delay:
            await asyncio.sleep(self.userinfo_delay)
        token = request.query.get("access_token", "")
        if self.valid_tokens is not None and token not in self.valid_tokens:
            return web.json_response(
                {"errcode": "M_UNKNOWN_TOKEN", "error": "Access Token unknown or expired"},
                status=401,
            )
        if self.userinfo_raw is not None:
            return web.Response(body=self.userinfo_raw, status=self.userinfo_status)
        answer = {} if self.sub is None else {"sub": self.sub}
        return web.json_response(answer, status=self.userinfo_status)

    async def _other(self, request: web.Request) -> web.Response:
        self._record(request)
        route = self._routes.get(request.path)
        if route is None:
            return web.json_response({"errcode": "M_NOT_FOUND"}, status=404)
        return web.Response(
            status=route.status, headers=CIMultiDict(route.headers), body=route.body
        )

    async def __aenter__(self) -> FakeHomeserver:
        app = web.Application()
        app.router.add_get(USERINFO_PATH, self._userinfo)
        app.router.add_route("GET", "/{tail:.*}", self._other)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0, ssl_context=self.ssl_context)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@attrs.frozen
class TestTLS:
    """A throwaway CA and a server certificate it signed. `server` serves the certificate,
    `client` trusts only the CA (and checks host names)."""

    __test__ = False  # not a pytest test class despite the name

    server: ssl.SSLContext
    client: ssl.SSLContext


DEFAULT_TLS_NAMES = ("hs.test", "delegated.test", "target.test", "other.test", "localhost")


@functools.lru_cache(maxsize=4)
def make_test_tls(
    dns_names: tuple[str, ...] = DEFAULT_TLS_NAMES,
    ip_addresses: tuple[str, ...] = ("127.0.0.1", "127.0.0.2"),
) -> TestTLS:
    """Generate a CA and a certificate valid for `dns_names` and `ip_addresses`."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "thirdparty_invite test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with tempfile.TemporaryDirectory() as directory:
        cert_path, key_path = Path(directory, "cert.pem"), Path(directory, "key.pem")
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        server.load_cert_chain(cert_path, key_path)
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM).decode()
    client = ssl.create_default_context(cadata=ca_pem)
    return TestTLS(server=server, client=client)


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
