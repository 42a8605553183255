"""A fake OAuth 2.0 authorization server (authorization code grant) for the provider fakes
(`FakeDiscord`, `FakePatreon`): each adds its paths, API and world.

What it checks, as real providers do: the client ID, the redirect URI (exact match with a
registered one; a wrong one gets an error page, never a redirect), `response_type=code`,
a state, known scopes, PKCE S256 (required, or checked when sent), the signed-in person's
consent (a page with "Authorize" / "Cancel", or `auto_approve`), single-use codes that
expire and are bound to the client, redirect URI and challenge, client authentication at
the token endpoint, and bearer tokens that carry the granted scopes. Scripted failures
(`fail`) and a log of requests with secrets redacted (`requests`) are for the tests.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable, Iterable
import hashlib
import html
import json
from pathlib import Path
import secrets
import time
from typing import Any, ClassVar
from urllib.parse import unquote_plus, urlencode

import aiohttp
from aiohttp import web
import attrs
from yarl import URL

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
SECRET_FORM_FIELDS = frozenset({"client_secret", "code", "code_verifier", "refresh_token"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def fixture(provider: str, name: str) -> Any:
    return json.loads((FIXTURES / provider / name).read_text())


@attrs.frozen
class SeenRequest:
    """One request the fake answered. Secrets are redacted from headers and forms (their
    keys stay, so tests see they were sent); `target` is the raw path and query as sent,
    so a secret leaked into a URL shows there."""

    method: str
    path: str
    target: str
    query: dict[str, str]
    headers: dict[str, str]
    form: dict[str, str]
    area: str  # "authorize", "token" or "api"


@attrs.define
class FakeClient:
    client_id: str
    client_secret: str
    redirect_uris: list[str]
    name: str


@attrs.define
class IssuedCode:
    client_id: str
    redirect_uri: str
    account: Any
    scopes: frozenset[str]
    challenge: str | None
    issued_at: float = attrs.field(factory=time.monotonic)
    used: bool = False
    expired: bool = False
    tokens: list[str] = attrs.field(factory=list)


@attrs.define
class IssuedToken:
    account: Any
    scopes: frozenset[str]
    client_id: str
    revoked: bool = False


@attrs.define
class Failure:
    mode: int | str  # an HTTP status, "timeout", "malformed", "html", "huge" or "empty"
    times: int | None  # None: until clear_failures()


class FakeOAuthServer:
    """An OAuth 2.0 authorization server (code grant) on 127.0.0.1 and a random port, with
    a consent page, single-use expiring codes bound to client, redirect URI and PKCE
    challenge, client authentication, bearer tokens carrying scopes, scripted failures and
    a log of requests. Subclasses add the provider's paths, API and world."""

    provider_name: ClassVar[str]
    authorize_path: ClassVar[str]
    token_paths: ClassVar[tuple[str, ...]]
    known_scopes: ClassVar[frozenset[str]]
    pkce: ClassVar[str] = "required"  # or "optional": checked only when a challenge came
    client_auth: ClassVar[frozenset[str]] = frozenset({"basic", "post"})
    code_lifetime = 600.0

    def __init__(self, *, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        # False: show the consent page; True: approve at once; "deny": refuse at once.
        self.auto_approve: bool | str = False
        self.requests: list[SeenRequest] = []
        self.clients: dict[str, FakeClient] = {}
        self.signed_in: Any = None
        self._grants: frozenset[str] | None = None
        self._codes: dict[str, IssuedCode] = {}
        self._tokens: dict[str, IssuedToken] = {}
        self._pending: dict[str, tuple[FakeClient, dict[str, str], frozenset[str]]] = {}
        self._failures: dict[str, Failure] = {}
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None

    # --- scripting ------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def register_client(
        self,
        client_id: str,
        client_secret: str,
        redirect_uris: Iterable[str] = (),
        *,
        name: str = "Matrix invites",
    ) -> FakeClient:
        client = self.clients.get(client_id)
        if client is None:
            client = self.clients[client_id] = FakeClient(client_id, client_secret, [], name)
        client.client_secret = client_secret
        client.redirect_uris.extend(u for u in redirect_uris if u not in client.redirect_uris)
        return client

    def allow_redirect_uri(self, uri: str, client_id: str | None = None) -> None:
        for client in self.clients.values():
            if client_id in (None, client.client_id) and uri not in client.redirect_uris:
                client.redirect_uris.append(uri)

    def sign_in_as(self, account: Any, grants: Iterable[str] | None = None) -> None:
        """`account` is "logged in" at the provider; `grants` limits the scopes they allow
        (None: all that are asked)."""
        self.signed_in = account
        self._grants = None if grants is None else frozenset(grants)

    def sign_out(self) -> None:
        self.signed_in = None

    def fail(self, area: str, status: int | str = 503, *, times: int | None = None) -> None:
        """Make "authorize", "token" or "api" answer `status` (an HTTP status, "timeout":
        hang until the server stops, "malformed": broken JSON, "html": an HTML page,
        "huge": an endless JSON body, "empty": nothing) the next `times` times (None: until
        clear_failures())."""
        assert area in ("authorize", "token", "api"), area
        self._failures[area] = Failure(status, times)

    def clear_failures(self) -> None:
        self._failures.clear()

    def expire_codes(self) -> None:
        for code in self._codes.values():
            code.expired = True

    def expire_tokens(self) -> None:
        for token in self._tokens.values():
            token.revoked = True

    def requests_to(self, area: str) -> list[SeenRequest]:
        return [r for r in self.requests if r.area == area]

    async def approve(self, authorization_url: str, decision: bool | str = True) -> dict[str, str]:
        """Follow an authorization URL as the signed-in person's browser would, approving
        (or with decision="deny", refusing); the query of the redirect back."""
        before, self.auto_approve = self.auto_approve, decision
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(authorization_url, allow_redirects=False) as response,
            ):
                assert response.status in (302, 303), await response.text()
                location = response.headers["Location"]
        finally:
            self.auto_approve = before
        return dict(URL(location).query)

    # --- provider specifics (subclasses) ---------------------------------------------

    def add_api_routes(self, add: Callable[[str, str, Handler], None]) -> None:
        raise NotImplementedError

    def api_error(self, status: int) -> web.Response:
        """The provider's error answer with this status (401, 429, 5xx...)."""
        raise NotImplementedError

    def skip_consent(self, params: dict[str, str], client: FakeClient, scopes: frozenset[str]):
        return False

    def token_body(self, access_token: str, scopes: frozenset[str]) -> dict[str, Any]:
        raise NotImplementedError

    # --- serving ----------------------------------------------------------------------

    async def __aenter__(self) -> FakeOAuthServer:
        app = web.Application()

        def add(method: str, path: str, handler: Handler, area: str = "api") -> None:
            app.router.add_route(method, path, self._wrap(handler, area))

        add("GET", self.authorize_path, self._authorize, "authorize")
        add("POST", self.authorize_path, self._consent, "authorize")
        for path in self.token_paths:
            add("POST", path, self._token, "token")
        self.add_api_routes(add)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._stopping.set()  # hanging handlers return, so the runner stops at once
        if self._runner is not None:
            await self._runner.cleanup()

    def _wrap(self, handler: Handler, area: str) -> Handler:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            form: dict[str, str] = {}
            if request.content_type == "application/x-www-form-urlencoded":
                form = {k: str(v) for k, v in (await request.post()).items()}
            self.requests.append(
                SeenRequest(
                    request.method,
                    request.path,
                    request.raw_path,
                    dict(request.query),
                    {k: _redact_header(k, v) for k, v in request.headers.items()},
                    {k: "<redacted>" if k in SECRET_FORM_FIELDS else v for k, v in form.items()},
                    area,
                )
            )
            failure = self._failures.get(area)
            if failure is not None:
                if failure.times is not None:
                    failure.times -= 1
                    if failure.times <= 0:
                        del self._failures[area]
                return await self._failed(request, failure.mode)
            return await handler(request)

        return wrapped

    async def _failed(self, request: web.Request, mode: int | str) -> web.StreamResponse:
        if isinstance(mode, int):
            return self.api_error(mode)
        if mode == "timeout":
            await self._stopping.wait()
            return web.Response(status=503)
        if mode == "malformed":
            return web.Response(body=b'{"data": {"id": "1", ', content_type="application/json")
        if mode == "html":
            return web.Response(
                text="<html><body>Maintenance</body></html>", content_type="text/html"
            )
        if mode == "empty":
            return web.Response(body=b"", content_type="application/json")
        assert mode == "huge", mode
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        try:
            await response.write(b'{"padding": "')
            for _ in range(256):  # 16 MiB, far past any client's limit
                await response.write(b"x" * 65536)
        except (ConnectionError, aiohttp.ClientConnectionResetError):
            pass  # the client gave up reading, as it should
        return response

    # --- authorization endpoint -------------------------------------------------------

    async def _authorize(self, request: web.Request) -> web.StreamResponse:
        params = dict(request.query)
        client = self.clients.get(params.get("client_id", ""))
        if client is None:
            return _page("Unknown application", "No application has this client_id.", 400)
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in client.redirect_uris:
            # Never redirect to an address the application did not register.
            return _page("Invalid redirect_uri", "It is not registered for the app.", 400)
        state = params.get("state", "")
        if not state:
            return _page("Missing state", "The application must send a state.", 400)
        if params.get("response_type") != "code":
            return _back(redirect_uri, error="unsupported_response_type", state=state)
        scopes = frozenset(params.get("scope", "").split())
        if not scopes or not scopes <= self.known_scopes:
            return _back(redirect_uri, error="invalid_scope", state=state)
        challenge, method = params.get("code_challenge"), params.get("code_challenge_method")
        if (challenge or self.pkce == "required") and (method != "S256" or not challenge):
            return _back(redirect_uri, error="invalid_request", state=state)
        if self.signed_in is None:
            return _page("Not signed in", f"No one is signed in at {self.provider_name}.", 401)
        if self.auto_approve == "deny":
            return _back(redirect_uri, error="access_denied", state=state)
        if self.auto_approve or self.skip_consent(params, client, scopes):
            return self._issue(client, params, scopes)
        ticket = secrets.token_urlsafe(16)
        self._pending[ticket] = (client, params, scopes)
        return web.Response(
            text=_consent_page(self, client, scopes, ticket), content_type="text/html"
        )

    async def _consent(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        pending = self._pending.pop(str(form.get("ticket", "")), None)
        if pending is None:
            return _page("Expired", "This consent page was already used.", 400)
        client, params, scopes = pending
        if form.get("decision") != "authorize":
            return _back(params["redirect_uri"], error="access_denied", state=params["state"])
        return self._issue(client, params, scopes)

    def _issue(
        self, client: FakeClient, params: dict[str, str], scopes: frozenset[str]
    ) -> web.Response:
        granted = scopes if self._grants is None else scopes & self._grants
        code = secrets.token_urlsafe(24)
        self._codes[code] = IssuedCode(
            client.client_id,
            params["redirect_uri"],
            self.signed_in,
            granted,
            params.get("code_challenge"),
        )
        return _back(params["redirect_uri"], code=code, state=params["state"])

    # --- token endpoint ----------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        if request.content_type != "application/x-www-form-urlencoded":
            return _oauth_error(400, "invalid_request", "The body must be form-encoded.")
        form = {k: str(v) for k, v in (await request.post()).items()}
        client = self._authenticate(request, form)
        if client is None:
            return _oauth_error(401, "invalid_client", "Client authentication failed.")
        if form.get("grant_type") != "authorization_code":
            return _oauth_error(400, "unsupported_grant_type", "Only authorization_code.")
        issued = self._codes.get(form.get("code", ""))
        if issued is None:
            return _oauth_error(400, "invalid_grant", 'Invalid "code" in request.')
        if issued.used:
            for token in issued.tokens:  # a replayed code revokes what it gave (RFC 6749)
                self._tokens[token].revoked = True
            return _oauth_error(400, "invalid_grant", 'Invalid "code" in request.')
        issued.used = True
        too_old = time.monotonic() - issued.issued_at > self.code_lifetime
        if issued.expired or too_old:
            return _oauth_error(400, "invalid_grant", 'Invalid "code" in request.')
        if issued.client_id != client.client_id or issued.redirect_uri != form.get("redirect_uri"):
            return _oauth_error(400, "invalid_grant", 'Invalid "redirect_uri" in request.')
        verifier = form.get("code_verifier")
        if issued.challenge is not None and (
            verifier is None or _s256(verifier) != issued.challenge
        ):
            return _oauth_error(400, "invalid_grant", 'Invalid "code_verifier" in request.')
        access_token = secrets.token_urlsafe(24)
        self._tokens[access_token] = IssuedToken(issued.account, issued.scopes, client.client_id)
        issued.tokens.append(access_token)
        return web.json_response(self.token_body(access_token, issued.scopes))

    def _authenticate(self, request: web.Request, form: dict[str, str]) -> FakeClient | None:
        methods = []
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            basic = _decode_basic(header)
            if basic is None:
                return None
            methods.append(("basic", *basic))
        if "client_secret" in form:
            methods.append(("post", form.get("client_id", ""), form["client_secret"]))
        if len(methods) != 1 or methods[0][0] not in self.client_auth:
            return None  # none, two at once (RFC 6749 2.3), or one this provider refuses
        _, client_id, secret = methods[0]
        client = self.clients.get(client_id)
        if client is None or not secrets.compare_digest(client.client_secret, secret):
            return None
        if form.get("client_id", client_id) != client_id:
            return None
        return client

    def bearer(self, request: web.Request) -> IssuedToken | None:
        header = request.headers.get("Authorization", "")
        token = self._tokens.get(header[7:]) if header.startswith("Bearer ") else None
        return None if token is None or token.revoked else token


def _decode_basic(header: str) -> tuple[str, str] | None:
    """The client ID and secret of a Basic header; RFC 6749 2.3.1 form-urlencodes each
    before they are joined, so a ':' inside either arrives as %3A."""
    try:
        pair = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    client_id, colon, secret = pair.partition(":")
    return (unquote_plus(client_id), unquote_plus(secret)) if colon else None


def _redact_header(name: str, value: str) -> str:
    if name.lower() in ("authorization", "cookie"):
        return f"{value.split(' ', 1)[0]} <redacted>"
    return value


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _back(redirect_uri: str, **params: str) -> web.Response:
    separator = "&" if "?" in redirect_uri else "?"
    return web.Response(
        status=302, headers={"Location": f"{redirect_uri}{separator}{urlencode(params)}"}
    )


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=status)


def _page(title: str, text: str, status: int) -> web.Response:
    body = f"<!doctype html><title>{html.escape(title)}</title><h1>{html.escape(title)}</h1>"
    return web.Response(
        text=f"{body}<p>{html.escape(text)}</p>", status=status, content_type="text/html"
    )


def _consent_page(
    server: FakeOAuthServer, client: FakeClient, scopes: frozenset[str], ticket: str
) -> str:
    who = html.escape(str(getattr(server.signed_in, "name", server.signed_in)))
    items = "".join(f"<li>{html.escape(s)}</li>" for s in sorted(scopes))
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Authorize {html.escape(client.name)}</title></head><body><main>"
        f"<h1>{html.escape(client.name)}</h1>"
        f"<p>wants to access your {html.escape(server.provider_name)} account "
        f"<strong>{who}</strong>:</p><ul>{items}</ul>"
        f'<form method="post" action="{server.authorize_path}">'
        f'<input type="hidden" name="ticket" value="{ticket}">'
        '<button type="submit" name="decision" value="cancel">Cancel</button> '
        '<button type="submit" name="decision" value="authorize">Authorize</button>'
        "</form></main></body></html>"
    )
