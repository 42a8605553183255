"""The GitHub App side of the fake GitHub: Apps with their keys, installations on
accounts, and installation tokens traded for the App's JWT, as GitHub documents them
(RS256 with the App's public key, `iss` the App's ID, `exp` at most 10 minutes ahead;
tokens that expire). A part of `GitHubListings` (github_listing.py), whose listing routes
take these tokens.
"""

from __future__ import annotations

import base64
import copy
import json
import secrets
import time
from typing import Any

from aiohttp import web
import attrs
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey


@attrs.define
class Installation:
    id: int
    app_id: str
    account: str  # the login it is installed on, lowercased
    permissions: dict[str, str]


@attrs.define
class FakeApp:
    app_id: str
    public_key: Any
    slug: str


@attrs.define
class InstallationToken:
    installation: Installation
    expires_at: float


class AppInstallations:
    """GitHub Apps: mixed into GitHubListings, which holds the state (`apps`,
    `installations`, `installation_tokens`, `token_lifetime`, `minted`, `app_calls`)."""

    github: Any
    apps: dict[str, FakeApp]
    installations: dict[int, Installation]
    installation_tokens: dict[str, InstallationToken]
    token_lifetime: float
    minted: int
    app_calls: int
    _ids: Any

    def register_app(self, app_id: str | None = None) -> tuple[str, str]:
        """A GitHub App: its ID and its private key (PEM), as GitHub hands them out."""
        app_id = app_id or str(next(self._ids))
        key = RSAKey.generate_key(2048, private=True)
        self.apps[app_id] = FakeApp(
            app_id, RSAKey.import_key(key.as_pem(private=False)), "invites"
        )
        return app_id, key.as_pem(private=True).decode()

    def install_app(
        self, app_id: str, account: str, permissions: dict[str, str] | None = None
    ) -> int:
        permissions = (
            {"members": "read", "metadata": "read"} if permissions is None else permissions
        )
        installation = Installation(next(self._ids), app_id, account.lower(), permissions)
        self.installations[installation.id] = installation
        return installation.id

    def expire_installation_tokens(self) -> None:
        for token in self.installation_tokens.values():
            token.expires_at = 0.0

    def _app(self, request: web.Request) -> tuple[FakeApp | None, web.Response | None]:
        """The App whose JWT the request carries; GitHub's 401 otherwise."""
        self.app_calls += 1
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        refusal = web.json_response(
            {
                "message": "A JSON web token could not be decoded",
                "documentation_url": "https://docs.github.com/rest",
            },
            status=401,
        )
        if scheme.lower() != "bearer" or value.count(".") != 2:
            return None, refusal
        try:
            unverified = json.loads(_b64(value.split(".")[1]))
            app = self.apps.get(str(unverified.get("iss")))
            if app is None:
                return None, refusal
            token = jwt.decode(value, app.public_key, algorithms=["RS256"])
        except (JoseError, ValueError, TypeError, AttributeError):
            return None, refusal
        claims, now = token.claims, time.time()
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or not isinstance(exp, int):
            return None, refusal
        # GitHub: exp no more than 10 minutes into the future; not expired; iat not ahead.
        if exp <= now or exp - now > 600 or iat > now + 60 or exp - iat > 660:
            return None, refusal
        return app, None

    def _installation_of(self, request: web.Request, app: FakeApp) -> Installation | web.Response:
        try:
            installation = self.installations.get(int(request.match_info["id"]))
        except ValueError:
            installation = None
        if installation is None or installation.app_id != app.app_id:
            from support.providers.github import fixture

            return web.json_response(fixture("error-404-not-found.constructed.json"), status=404)
        return installation

    async def _installation(self, request: web.Request) -> web.Response:
        app, refused = self._app(request)
        if refused is not None:
            return refused
        installation = self._installation_of(request, app)
        if isinstance(installation, web.Response):
            return installation
        org = self.github.orgs.get(installation.account)
        account = {
            "login": org.login if org else installation.account,
            "id": org.id if org else 1,
            "type": "Organization" if org else "User",
        }
        return web.json_response(
            {
                "id": installation.id,
                "account": account,
                "app_id": int(app.app_id),
                "app_slug": app.slug,
                "target_type": account["type"],
                "permissions": installation.permissions,
                "repository_selection": "all",
                "events": ["organization", "membership", "member"],
            }
        )

    async def _access_token(self, request: web.Request) -> web.Response:
        app, refused = self._app(request)
        if refused is not None:
            return refused
        installation = self._installation_of(request, app)
        if isinstance(installation, web.Response):
            return installation
        from support.providers.github import fixture

        value = "ghs_" + secrets.token_urlsafe(27)
        expires = time.time() + self.token_lifetime
        self.installation_tokens[value] = InstallationToken(installation, expires)
        self.minted += 1
        body = fixture("app-installations-access-tokens.201.constructed.json")
        body.update(
            token=value,
            expires_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires)),
            permissions=copy.deepcopy(installation.permissions),
            repository_selection="all",
        )
        return web.json_response(body, status=201)


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
