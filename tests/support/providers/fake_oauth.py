"""A fake OAuth 2.0 authorization server (authorization code grant) for the provider fakes
(`FakeDiscord`, `FakePatreon`, `FakeGitLab`, `FakeGitHub`): each adds its paths, API and
world, and where its provider departs from the common rules, overrides a hook (the
redirect-URI rule, how scopes are read and granted, how the token endpoint answers and
refuses, how requests are logged).

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
# Why the token endpoint refuses -> (status, error, error_description), as most providers
# answer (RFC 6749 5.2). GitHub answers otherwise: its fake overrides token_refusal.
TOKEN_REFUSALS = {
    "not_form": (400, "invalid_request", "The body must be form-encoded."),
    "client": (401, "invalid_client", "Client authentication failed."),
    "grant_type": (400, "unsupported_grant_type", "Only authorization_code."),
    "code": (400, "invalid_grant", 'Invalid "code" in request.'),
    "redirect_uri": (400, "invalid_grant", 'Invalid "redirect_uri" in request.'),
    "code_verifier": (400, "invalid_grant", 'Invalid "code_verifier" in request.'),
}
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
    nonce: str | None = None  # OpenID Connect: what the authorization request sent
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
    token_fixture: ClassVar[tuple[str, str]]  # (provider, file) of the token answer's example
    pkce: ClassVar[str] = "required"  # or "optional": checked only when a challenge came
    client_auth: ClassVar[frozenset[str]] = frozenset({"basic", "post"})
    code_lifetime = 600.0
    # RFC 6749 4.1.3 as most providers apply it: the token request repeats the redirect
    # URI. True: it may leave it out (when given, it must still match).
    token_redirect_uri_optional: ClassVar[bool] = False
    token_prefix: ClassVar[str] = ""  # GitHub's tokens start with "gho_"
    # RFC 6749 4.1.2: a code used twice SHOULD revoke the tokens it gave.
    replay_revokes_tokens: ClassVar[bool] = True
    bearer_schemes: ClassVar[tuple[str, ...]] = ("bearer",)  # lower case
    failure_areas: ClassVar[tuple[str, ...]] = ("authorize", "token", "api")
    failure_modes: ClassVar[tuple[str, ...]] = ("timeout", "malformed", "html", "huge", "empty")
    denied_params: ClassVar[dict[str, str]] = {}  # besides error=access_denied and state

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
        self._holds: dict[str, asyncio.Event] = {}
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
        """Make "authorize", "token" or "api" (`failure_areas`) answer `status` (an HTTP
        status, "timeout": hang until the server stops, "malformed": broken JSON, "html":
        an HTML page, "huge": an endless JSON body, "empty": nothing) the next `times`
        times (None: until clear_failures())."""
        assert area in self.failure_areas, area
        assert isinstance(status, int) or status in self.failure_modes, status
        self._failures[area] = Failure(status, times)

    def hold(self, area: str) -> Callable[[], None]:
        """Make requests to `area` (or a subclass's finer place, such as GitHub's "user")
        wait until the returned function is called: a provider slow for exactly as long as
        a test needs, with no clock involved."""
        gate = self._holds[area] = asyncio.Event()

        def release() -> None:
            gate.set()
            if self._holds.get(area) is gate:
                del self._holds[area]

        return release

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

    def add_api_routes(self, add: Callable[..., None]) -> None:
        """Add the API's routes: `add(method, path, handler, area="api", place="")`; a
        failure scripted for `place` (GitHub's "user") hits that route only."""
        raise NotImplementedError

    def api_error(self, status: int) -> web.Response:
        """The provider's error answer with this status (401, 429, 5xx...)."""
        raise NotImplementedError

    def skip_consent(self, params: dict[str, str], client: FakeClient, scopes: frozenset[str]):
        return False

    def token_body(self, access_token: str, code: IssuedCode) -> dict[str, Any]:
        """The token endpoint's answer for `code` (its account, client, granted scopes and
        nonce). Here: the provider's documented example (`token_fixture`) with the new
        tokens and the granted scopes, space separated."""
        body = fixture(*self.token_fixture)
        body.update(
            access_token=access_token,
            refresh_token=secrets.token_urlsafe(24),
            scope=" ".join(sorted(code.scopes)),
        )
        return body

    def redirect_uri(self, client: FakeClient, params: dict[str, str]) -> str | web.Response:
        """Where the browser goes back to, or the answer refusing the request. Here: an
        exact match with a registered URI, else an error page (never a redirect)."""
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri in client.redirect_uris:
            return redirect_uri
        return _page("Invalid redirect_uri", "It is not registered for the app.", 400)

    def requested_scopes(self, params: dict[str, str]) -> frozenset[str] | None:
        """The scopes asked for; None refuses them (`invalid_scope`). Here: space
        separated, at least one, all of them known."""
        scopes = frozenset(params.get("scope", "").split())
        return scopes if scopes and scopes <= self.known_scopes else None

    def granted_scopes(self, scopes: frozenset[str]) -> frozenset[str]:
        """What the signed-in person allows of `scopes` (see `sign_in_as`)."""
        return scopes if self._grants is None else scopes & self._grants

    def consent_page(self, client: FakeClient, scopes: frozenset[str], ticket: str) -> str:
        """The consent page: it posts `ticket` and `decision` ("authorize" or not) back to
        the authorize path."""
        return _consent_page(self, client, scopes, ticket)

    def token_params(self, request: web.Request, form: dict[str, str]) -> dict[str, str] | None:
        """The token request's parameters; None refuses it. Here: a form-encoded body."""
        if request.content_type != "application/x-www-form-urlencoded":
            return None
        return form

    def token_answer(
        self, request: web.Request, body: dict[str, Any], status: int = 200
    ) -> web.Response:
        """How the token endpoint answers, with tokens or a refusal."""
        return web.json_response(body, status=status)

    def token_refusal(self, request: web.Request, reason: str) -> web.Response:
        """The token endpoint's refusal for `reason`, a key of TOKEN_REFUSALS."""
        status, error, description = TOKEN_REFUSALS[reason]
        body = {"error": error, "error_description": description}
        return self.token_answer(request, body, status)

    def seen(self, request: web.Request, form: dict[str, str], area: str) -> SeenRequest:
        """How a request is logged: secrets redacted, their keys kept."""
        return SeenRequest(
            request.method,
            request.path,
            request.raw_path,
            dict(request.query),
            {k: _redact_header(k, v) for k, v in request.headers.items()},
            {k: "<redacted>" if k in SECRET_FORM_FIELDS else v for k, v in form.items()},
            area,
        )

    # --- serving ----------------------------------------------------------------------

    async def __aenter__(self) -> FakeOAuthServer:
        app = web.Application()

        def add(
            method: str, path: str, handler: Handler, area: str = "api", place: str = ""
        ) -> None:
            app.router.add_route(method, path, self._wrap(handler, area, place))

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

    def _wrap(self, handler: Handler, area: str, place: str = "") -> Handler:
        """Log the request, then answer a scripted failure of its `place` (a finer area a
        subclass names, such as GitHub's "user") or its area, else the handler."""

        async def wrapped(request: web.Request) -> web.StreamResponse:
            form: dict[str, str] = {}
            if request.content_type == "application/x-www-form-urlencoded":
                form = {k: str(v) for k, v in (await request.post()).items()}
            self.requests.append(self.seen(request, form, area))
            for gate in [self._holds.get(where) for where in (place, area) if where]:
                if gate is not None:
                    await _first(gate.wait(), self._stopping.wait())
            for where in (place, area):
                failure = self._failures.get(where) if where else None
                if failure is None:
                    continue
                if failure.times is not None:
                    failure.times -= 1
                    if failure.times <= 0:
                        del self._failures[where]
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
        # Never redirect to an address the application did not register.
        redirect_uri = self.redirect_uri(client, params)
        if isinstance(redirect_uri, web.Response):
            return redirect_uri
        params["redirect_uri"] = redirect_uri
        state = params.get("state", "")
        if not state:
            return _page("Missing state", "The application must send a state.", 400)
        if params.get("response_type") != "code":
            return _back(redirect_uri, error="unsupported_response_type", state=state)
        scopes = self.requested_scopes(params)
        if scopes is None:
            return _back(redirect_uri, error="invalid_scope", state=state)
        challenge, method = params.get("code_challenge"), params.get("code_challenge_method")
        if (challenge or self.pkce == "required") and (
            method != "S256" or not challenge or len(challenge) != 43  # a SHA-256, base64url
        ):
            return _back(redirect_uri, error="invalid_request", state=state)
        if self.signed_in is None:
            return _page("Not signed in", f"No one is signed in at {self.provider_name}.", 401)
        if self.auto_approve == "deny":
            return self._denied(params)
        if self.auto_approve or self.skip_consent(params, client, scopes):
            return self._issue(client, params, scopes)
        ticket = secrets.token_urlsafe(16)
        self._pending[ticket] = (client, params, scopes)
        page = self.consent_page(client, scopes, ticket)
        return web.Response(text=page, content_type="text/html")

    async def _consent(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        pending = self._pending.pop(str(form.get("ticket", "")), None)
        if pending is None:
            return _page("Expired", "This consent page was already used.", 400)
        client, params, scopes = pending
        if form.get("decision") != "authorize":
            return self._denied(params)
        return self._issue(client, params, scopes)

    def _denied(self, params: dict[str, str]) -> web.Response:
        return _back(
            params["redirect_uri"],
            error="access_denied",
            **self.denied_params,
            state=params["state"],
        )

    def _issue(
        self, client: FakeClient, params: dict[str, str], scopes: frozenset[str]
    ) -> web.Response:
        code = secrets.token_urlsafe(24)
        self._codes[code] = IssuedCode(
            client.client_id,
            params["redirect_uri"],
            self.signed_in,
            self.granted_scopes(scopes),
            params.get("code_challenge"),
            params.get("nonce"),
        )
        return _back(params["redirect_uri"], code=code, state=params["state"])

    # --- token endpoint ----------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        form = {}
        if request.content_type == "application/x-www-form-urlencoded":
            form = {k: str(v) for k, v in (await request.post()).items()}
        params = self.token_params(request, form)
        if params is None:
            return self.token_refusal(request, "not_form")
        client = self._authenticate(request, params)
        if client is None:
            return self.token_refusal(request, "client")
        if params.get("grant_type") != "authorization_code":
            return self.token_refusal(request, "grant_type")
        issued = self._codes.get(params.get("code", ""))
        if issued is None:
            return self.token_refusal(request, "code")
        if issued.used:
            for token in issued.tokens if self.replay_revokes_tokens else ():
                self._tokens[token].revoked = True
            return self.token_refusal(request, "code")
        issued.used = True
        too_old = time.monotonic() - issued.issued_at > self.code_lifetime
        if issued.expired or too_old or issued.client_id != client.client_id:
            return self.token_refusal(request, "code")
        redirect_uri = params.get("redirect_uri")
        if redirect_uri != issued.redirect_uri and not (
            redirect_uri is None and self.token_redirect_uri_optional
        ):
            return self.token_refusal(request, "redirect_uri")
        verifier = params.get("code_verifier")
        if issued.challenge is not None and (
            verifier is None or s256(verifier) != issued.challenge
        ):
            return self.token_refusal(request, "code_verifier")
        access_token = self.token_prefix + secrets.token_urlsafe(24)
        self._tokens[access_token] = IssuedToken(issued.account, issued.scopes, client.client_id)
        issued.tokens.append(access_token)
        return self.token_answer(request, self.token_body(access_token, issued))

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
        """The live token the request's Authorization header carries (`bearer_schemes`)."""
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        token = self._tokens.get(value) if scheme.lower() in self.bearer_schemes else None
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


def s256(verifier: str) -> str:
    """The PKCE S256 challenge of a code verifier (RFC 7636 4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _back(redirect_uri: str, **params: str) -> web.Response:
    separator = "&" if "?" in redirect_uri else "?"
    return web.Response(
        status=302, headers={"Location": f"{redirect_uri}{separator}{urlencode(params)}"}
    )


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


async def _first(*waits: Awaitable[Any]) -> None:
    """Return when the first of `waits` is done (a held request ends when the server stops)."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
