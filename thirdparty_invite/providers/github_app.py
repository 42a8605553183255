"""The credentials a GitHub re-check lists members with: a token the operator gave (a
personal access token or an OAuth token with `read:org`), or a GitHub App's installation.

A GitHub App authenticates as itself with a JSON Web Token it signs with its private key
(RS256; `iat` 60 seconds in the past for clock drift, `exp` at most 10 minutes ahead, `iss`
the App's ID), and trades it at `POST /app/installations/{id}/access_tokens` for an
installation token that lasts an hour. That token is kept until shortly before its
`expires_at`, so a re-check of 100 pages mints one token, not a hundred. Before the first
token, the installation is read once (`GET /app/installations/{id}`) for the account it is
installed on: an installation elsewhere would see only an organisation's public members,
and a listing that quietly leaves out the concealed ones would read as people leaving.

joserfc is optional like authlib (registry.authlib_missing() gates providers).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
import time
from typing import Any

from .base import ProviderUnavailable
from .oauth import ApiResponse, ProviderHTTP

try:  # optional, like authlib: without it only invite links work
    from joserfc import jwt
    from joserfc.errors import JoseError
    from joserfc.jwk import RSAKey
except ImportError:  # pragma: no cover - exercised by the missing-dependency test
    jwt = RSAKey = None  # type: ignore[assignment]
    JoseError = Exception  # type: ignore[assignment,misc]

API_HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
JWT_LIFETIME = 540  # seconds; GitHub refuses an `exp` more than 10 minutes ahead
CLOCK_DRIFT = 60  # `iat` this far in the past, as GitHub recommends
# An installation token is replaced this long before it expires, so that a page is never
# asked for with a token that dies on the way.
RENEW_BEFORE = 300


class ListingCredentials:
    """A token for GitHub's listing endpoints, and the requests it cost to get one."""

    # Who the credentials can see everything of: the account an App is installed on.
    # None: a token of a person, whose sight depends on their own memberships.
    installed_on: str | None = None
    # When the token's own membership of an organisation was last read active, by URL.
    verified: dict[str, float]

    async def token(self) -> str:
        raise NotImplementedError

    def take_calls(self) -> int:
        """Requests made for credentials since the last time this was asked."""
        return 0

    def refused(self) -> None:
        """GitHub answered 401 with the token: a cached one is dropped."""


class StaticToken(ListingCredentials):
    def __init__(self, token: str) -> None:
        self._token = token
        self.verified: dict[str, float] = {}

    async def token(self) -> str:
        return self._token


class AppInstallation(ListingCredentials):
    """An installation of a GitHub App: JWT -> installation token, cached."""

    def __init__(
        self,
        http: ProviderHTTP,
        api_url: str,
        app_id: str,
        installation_id: str,
        private_key: Any,
    ) -> None:
        self.http = http
        self.api_url = api_url
        self.app_id = app_id
        self.installation_id = installation_id
        self._key = private_key
        self._token: str | None = None
        self._expires_at = 0.0
        self._margin = float(RENEW_BEFORE)
        self._calls = 0
        self._lock = asyncio.Lock()
        self.installed_on = None
        self.verified = {}
        self.permissions: dict[str, Any] = {}

    @property
    def name(self) -> str:
        return self.http.provider_name

    def app_jwt(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        claims = {
            "iat": int(now) - CLOCK_DRIFT,
            "exp": int(now) + JWT_LIFETIME,
            "iss": self.app_id,
        }
        return jwt.encode({"alg": "RS256", "typ": "JWT"}, claims, self._key)

    async def token(self) -> str:
        async with self._lock:  # pages asked together mint one token, not several
            if self._token is not None and time.time() < self._expires_at - self._margin:
                return self._token
            if self.installed_on is None:
                self.installed_on = await self._account()
            self._token, self._expires_at = await self._mint()
            # A server that gives shorter tokens than GitHub's hour: renewed in their last
            # quarter.
            self._margin = min(RENEW_BEFORE, (self._expires_at - time.time()) / 4)
            return self._token

    def take_calls(self) -> int:
        calls, self._calls = self._calls, 0
        return calls

    def refused(self) -> None:
        self._token = None

    async def _call(self, method: str, path: str) -> ApiResponse:
        self._calls += 1
        url = f"{self.api_url}/app/installations/{self.installation_id}{path}"
        return await self.http.get_json(url, self.app_jwt(), headers=API_HEADERS, method=method)

    async def _account(self) -> str:
        response = await self._call("GET", "")
        self._refusal(response, 200)
        account = response.body.get("account") if isinstance(response.body, dict) else None
        login = account.get("login") if isinstance(account, dict) else None
        if not isinstance(login, str) or not login:
            raise ProviderUnavailable(self.name, "the App's installation named no account")
        return login.lower()

    async def _mint(self) -> tuple[str, float]:
        response = await self._call("POST", "/access_tokens")
        self._refusal(response, 201)
        body = response.body if isinstance(response.body, dict) else {}
        token, expires_at = body.get("token"), body.get("expires_at")
        try:
            expires = datetime.fromisoformat(str(expires_at).replace("Z", "+00:00"))
        except ValueError:
            expires = None
        if not isinstance(token, str) or not token or expires is None or expires.tzinfo is None:
            raise ProviderUnavailable(self.name, "the installation token answer was malformed")
        permissions = body.get("permissions")
        self.permissions = permissions if isinstance(permissions, dict) else {}
        return token, expires.timestamp()

    def _refusal(self, response: ApiResponse, expected: int) -> None:
        """Raise, in words for the operator, unless GitHub answered `expected`."""
        status = response.status
        if status == expected:
            return
        app = f"the GitHub App {self.app_id}"
        if status == 401:
            detail = f"{app} was refused (401): check recheck.app_id and recheck.private_key"
        elif status == 404:
            detail = (
                f"{app} has no installation {self.installation_id} (404): check "
                "recheck.installation_id"
            )
        elif status in (403, 429):
            wait = response.retry_after()
            raise ProviderUnavailable(
                self.name, f"{app} is rate limited", None if wait is None else max(wait, 1.0)
            )
        else:
            detail = f"{app}'s installation answered HTTP {status}"
        raise ProviderUnavailable(self.name, detail)


def read_private_key(pem: Any) -> Any:
    """The App's RSA private key from its PEM text; ValueError when it is not one."""
    if not isinstance(pem, str) or "-----BEGIN" not in pem or len(pem) > 20_000:
        raise ValueError("private_key: must be the App's private key, as PEM text")
    if RSAKey is None:  # pragma: no cover - authlib (and joserfc) missing
        return pem
    try:
        key = RSAKey.import_key(pem)
    except (JoseError, ValueError, TypeError):
        raise ValueError("private_key: must be the App's RSA private key (PEM)") from None
    if not key.is_private:
        raise ValueError("private_key: is a public key; the App's private key is needed")
    return key
