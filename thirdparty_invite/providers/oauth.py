"""The one OAuth 2.0 client every provider uses: authlib's protocol pieces over aiohttp.

authlib has no aiohttp client, so this module uses its protocol functions (authorization
URL, PKCE S256 challenge, token request body, random tokens) and does the HTTP itself
with the plugin's outbound sessions: bounded bodies, a total timeout, no cookies, no
proxies from the environment. Provider endpoints are configured by the operator, so
they are reached with the direct session (a self-hosted GitLab or Keycloak is often on a
private network).

Every failure is one of two kinds: the provider refused the sign-in (`SignInFailed`:
expired or reused code, wrong client, the person declined), or it could not be asked
properly (`ProviderUnavailable`: down, 5xx, timeout, not JSON, rate limited). Tokens and
codes never appear in a log line or an error message.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping, Sequence
from datetime import timezone
from email.utils import parsedate_to_datetime
import logging
import math
import time
from typing import Any
from urllib.parse import parse_qsl, quote_plus

import aiohttp
import attrs

from ..net.http import InvalidJSON, OutboundHTTP, ResponseTooLarge, parse_json, read_body_limited
from .base import AuthorizationRequest, ProviderUnavailable, SignInFailed

try:  # authlib is optional: without it links still work and bindings are refused.
    from authlib.common.security import generate_token
    from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request
    from authlib.oauth2.rfc7636 import create_s256_code_challenge
except ImportError:  # pragma: no cover - exercised by the missing-dependency test
    generate_token = prepare_grant_uri = prepare_token_request = None  # type: ignore[assignment]
    create_s256_code_challenge = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

BODY_LIMIT = 1024 * 1024  # the largest API answer read (a page of 100 members fits easily)
# Seconds for one provider request while a person waits on the page.
REQUEST_TIMEOUT = 10.0


@attrs.frozen
class OAuthEndpoints:
    authorize_url: str
    token_url: str
    pkce: bool = True  # send an S256 code challenge (every provider here accepts it)
    # How the client authenticates at the token endpoint: "client_secret_post" (in the
    # form body) or "client_secret_basic" (HTTP Basic).
    token_auth: str = "client_secret_post"
    scope_separator: str = " "


@attrs.frozen
class TokenResponse:
    access_token: str
    token_type: str
    # The scopes actually granted, when the provider says (people may grant fewer).
    granted_scopes: frozenset[str] | None
    id_token: str | None
    raw: Mapping[str, Any]


@attrs.frozen
class ApiResponse:
    status: int
    headers: Mapping[str, str]
    body: Any  # parsed JSON, or None for an empty body

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def retry_after(self, body_value: Any = None) -> float | None:
        """Seconds the provider asks us to wait before asking again: `body_value` (a number
        from the answer's JSON: Discord's `retry_after`, Patreon's `retry_after_seconds`),
        else `Retry-After` (seconds or an HTTP date), else `X-RateLimit-Reset` (the epoch
        second the limit resets, as GitHub sends it). None when none of them says; zero or
        less when that time has passed."""
        if isinstance(body_value, int | float) and not isinstance(body_value, bool):
            if math.isfinite(body_value):
                return float(body_value)
        now = time.time()
        retry = (self.header("Retry-After") or "").strip()
        seconds = _number(retry)
        if seconds is None and retry:
            try:
                when = parsedate_to_datetime(retry)
            except (TypeError, ValueError, IndexError, OverflowError):
                when = None
            if when is not None:
                when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
                seconds = when.timestamp() - now
        if seconds is not None:
            return seconds
        reset = _number(self.header("X-RateLimit-Reset"))
        return None if reset is None else reset - now


def _number(text: str | None) -> float | None:
    try:
        value = float(text or "")
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def failure_detail(response: ApiResponse, retry_after: Any = None) -> str:
    """Why an API answer cannot be used, in a few words for the person and the log (never
    a token). `retry_after`: the wait the provider's JSON gave with a 429, if any."""
    if response.status == 429:
        wait = response.retry_after(retry_after)
        if wait is None or wait <= 0:
            return "rate limited"
        return f"rate limited, retry in {max(1, round(wait))} s"
    if response.status == 401:
        return "it refused the sign-in it had just granted"
    if response.status == 200:
        return "its answer was not what its documentation describes"
    return f"HTTP {response.status}"


def basic_authorization(client_id: str, client_secret: str) -> str:
    """The `Authorization` header of HTTP Basic client authentication: RFC 6749 2.3.1
    form-urlencodes the ID and the secret before they are joined and base64-encoded."""
    pair = f"{quote_plus(client_id, safe='')}:{quote_plus(client_secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")


class ProviderHTTP:
    """Requests to one provider, every one within the same bounds: the direct outbound
    session, `request_timeout` seconds, `BODY_LIMIT` bytes, no redirects followed. Calls
    as the person (`get_json`) and public documents (`get_public_json`: OpenID discovery,
    signing keys)."""

    def __init__(
        self, provider_name: str, http: OutboundHTTP, request_timeout: float = REQUEST_TIMEOUT
    ) -> None:
        self.provider_name = provider_name
        self.http = http
        self.request_timeout = request_timeout

    async def get_json(
        self,
        url: str,
        access_token: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        method: str = "GET",
        json_body: Any = None,
    ) -> ApiResponse:
        """Call the provider's API as the person. Any status comes back; transport
        failures, timeouts and bodies that are not JSON raise ProviderUnavailable."""
        all_headers = {"Authorization": f"Bearer {access_token}", "Accept": "application/json"}
        all_headers.update(headers or {})
        return await self._send(method, url, headers=all_headers, params=params, json=json_body)

    async def get_public_json(self, url: str, what: str = "its document") -> Any:
        """GET a public JSON document of the provider, without a token. Anything but 200
        with JSON raises ProviderUnavailable, whose detail starts with `what`."""
        headers = {"Accept": "application/json"}
        response = await self._send("GET", url, headers=headers, document=what)
        if response.status != 200:
            raise ProviderUnavailable(
                self.provider_name, f"{what} answered HTTP {response.status}"
            )
        if response.body is None:
            raise ProviderUnavailable(self.provider_name, f"{what} was not JSON")
        return response.body

    async def _send(
        self, method: str, url: str, *, document: str | None = None, **kwargs: Any
    ) -> ApiResponse:
        """One request; a 5xx, a timeout, a body too large or not JSON raise
        ProviderUnavailable. `document` names what a public GET fetches, for the errors."""
        name = self.provider_name
        it, its_answer = document or "it", document or "its answer"
        session = self.http.direct()
        try:
            async with session.request(
                method,
                url,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self.request_timeout),
                **kwargs,
            ) as resp:
                raw = await read_body_limited(resp, BODY_LIMIT)
                status = resp.status
                headers = {k.lower(): v for k, v in resp.headers.items()}
        except (asyncio.TimeoutError, TimeoutError):
            raise ProviderUnavailable(name, f"{it} did not answer in time") from None
        except ResponseTooLarge:
            raise ProviderUnavailable(name, f"{its_answer} was too large") from None
        except (aiohttp.ClientError, OSError) as e:
            log.info("%s: request to %s failed: %s", name, url, type(e).__name__)
            raise ProviderUnavailable(name, f"{it} could not be reached") from None
        if status >= 500:
            raise ProviderUnavailable(
                name, f"{it} answered HTTP {status}" if document else f"HTTP {status}"
            )
        if status == 429 and "json" not in headers.get("content-type", ""):
            # A rate limiter's own page (GitLab's is "Retry later" in plain text): its
            # headers say when to come back, so the answer is kept, without a body.
            return ApiResponse(status, headers, None)
        return ApiResponse(status, headers, _parse_body(raw, headers, name, its_answer))


class OAuthClient(ProviderHTTP):
    """An OAuth 2.0 client of one provider (authorization code grant, PKCE)."""

    def __init__(
        self,
        provider_name: str,
        client_id: str,
        client_secret: str,
        endpoints: OAuthEndpoints,
        http: OutboundHTTP,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        super().__init__(provider_name, http, request_timeout)
        self.client_id = client_id
        self._client_secret = client_secret
        self.endpoints = endpoints

    def authorization_request(
        self,
        redirect_uri: str,
        scopes: Sequence[str],
        state: str,
        *,
        nonce: bool = False,
        extra: Mapping[str, str] | None = None,
    ) -> AuthorizationRequest:
        code_verifier = generate_token(48) if self.endpoints.pkce else None
        nonce_value = generate_token(32) if nonce else None
        params: dict[str, Any] = dict(extra or {})
        if code_verifier is not None:
            params["code_challenge"] = create_s256_code_challenge(code_verifier)
            params["code_challenge_method"] = "S256"
        if nonce_value is not None:
            params["nonce"] = nonce_value
        url = prepare_grant_uri(
            self.endpoints.authorize_url,
            self.client_id,
            "code",
            redirect_uri=redirect_uri,
            # authlib joins with spaces; GitHub and a few others want commas.
            scope=self.endpoints.scope_separator.join(scopes) if scopes else None,
            state=state,
            **params,
        )
        return AuthorizationRequest(url=url, code_verifier=code_verifier, nonce=nonce_value)

    async def exchange_code(
        self, code: str, redirect_uri: str, request: AuthorizationRequest
    ) -> TokenResponse:
        """Trade the authorization code for tokens, on the server."""
        extra: dict[str, str] = {"code": code, "redirect_uri": redirect_uri}
        if request.code_verifier:
            extra["code_verifier"] = request.code_verifier
        return await self._token_request("authorization_code", extra)

    async def refresh(self, refresh_token: str) -> TokenResponse:
        """New tokens for a kept refresh token (RFC 6749 section 6). SignInFailed when the
        provider no longer accepts it (revoked, expired), ProviderUnavailable when it
        could not be asked."""
        return await self._token_request("refresh_token", {"refresh_token": refresh_token})

    async def _token_request(self, grant_type: str, extra: dict[str, str]) -> TokenResponse:
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        if self.endpoints.token_auth == "client_secret_basic":
            headers["Authorization"] = basic_authorization(self.client_id, self._client_secret)
        else:
            extra["client_id"] = self.client_id
            extra["client_secret"] = self._client_secret
        body = prepare_token_request(grant_type, **extra)
        response = await self._send("POST", self.endpoints.token_url, data=body, headers=headers)
        data = response.body if isinstance(response.body, dict) else {}
        if response.status >= 500 or response.status == 429:
            raise ProviderUnavailable(self.provider_name, f"token endpoint {response.status}")
        if "error" in data or response.status != 200:
            raise self._token_error(str(data.get("error") or response.status))
        token = data.get("access_token")
        if not isinstance(token, str) or not token:
            raise ProviderUnavailable(self.provider_name, "the token answer had no access token")
        scope = data.get("scope")
        granted = None
        if isinstance(scope, str):
            granted = frozenset(s for s in scope.replace(",", " ").split() if s)
        id_token = data.get("id_token")
        return TokenResponse(
            access_token=token,
            token_type=str(data.get("token_type") or "bearer"),
            granted_scopes=granted,
            id_token=id_token if isinstance(id_token, str) else None,
            raw=data,
        )

    async def revoke_token(self, revocation_url: str, token: str) -> bool:
        """Revoke `token` at an RFC 7009 endpoint, authenticating as at the token endpoint.
        Best effort, after the rules are checked: a failure is logged (never the token)
        and changes nothing the person sees. True when the provider said 200."""
        form = {"token": token, "token_type_hint": "access_token"}
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if self.endpoints.token_auth == "client_secret_basic":
            headers["Authorization"] = basic_authorization(self.client_id, self._client_secret)
        else:
            form.update(client_id=self.client_id, client_secret=self._client_secret)
        try:
            response = await self._send("POST", revocation_url, data=form, headers=headers)
        except ProviderUnavailable as e:
            log.info("%s: revoking a token failed: %s", self.provider_name, e.detail)
            return False
        if response.status != 200:
            log.info("%s: revoking a token answered %s", self.provider_name, response.status)
        return response.status == 200

    def _token_error(self, error: str) -> SignInFailed:
        # Codes are single use and short-lived: going back, reloading the callback or
        # waiting too long all end here. The person starts the sign-in again.
        if error in ("invalid_grant", "bad_verification_code"):
            return SignInFailed(
                f"{self.provider_name} did not accept the sign-in (it expired or was already "
                "used). Start again from the invite link."
            )
        log.warning("%s refused the code exchange: %s", self.provider_name, error[:100])
        return SignInFailed(
            f"{self.provider_name} refused to complete the sign-in ({error[:100]}). "
            "If this keeps happening, tell the bot's operator: the app's client ID, secret "
            "or callback URL may be wrong.",
            "TPI_PROVIDER_MISCONFIGURED",
        )


def _parse_body(raw: bytes, headers: Mapping[str, str], provider_name: str, what: str) -> Any:
    if not raw.strip():
        return None
    content_type = headers.get("content-type", "")
    if content_type.startswith("application/x-www-form-urlencoded"):
        # GitHub's token endpoint answers form-encoded unless asked for JSON.
        return dict(parse_qsl(raw.decode("utf-8", "replace")))
    try:
        return parse_json(raw)
    except InvalidJSON:
        raise ProviderUnavailable(provider_name, f"{what} was not JSON") from None


def random_token(length: int = 32) -> str:
    """A random URL-safe token (state values and the like)."""
    return generate_token(length)
