"""A stand-in for Discord's OAuth2 and user API on a loopback port.

    async with FakeDiscord() as discord:
        alice = discord.add_account("alice")
        alice.join(GUILD, roles=[ROLE])
        discord.sign_in_as(alice)
        discord.auto_approve = True
        section = discord.config_section(client_id="1234", client_secret="s3cret",
                                         redirect_uris=[callback_url])

Answers are the documented examples of tests/fixtures/discord with the world's data filled
in; the undocumented ones (not a member: 404 Unknown Guild; a missing scope) are
constructed (tests/fixtures/discord/README.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
import secrets
from typing import Any

from aiohttp import web
import attrs
from support.providers.fake_oauth import (
    FakeClient,
    FakeOAuthServer,
    Handler,
    IssuedToken,
    fixture,
)


def new_snowflake() -> str:
    """A random Discord-shaped ID (18 digits)."""
    return str(secrets.randbelow(9 * 10**17) + 10**17)


@attrs.define
class DiscordAccount:
    username: str
    id: str = attrs.field(factory=new_snowflake)
    global_name: str | None = None
    guilds: dict[str, list[str]] = attrs.field(factory=dict)  # server ID -> role IDs

    @property
    def name(self) -> str:
        return self.username

    def join(self, guild_id: str, roles: Iterable[str] = ()) -> None:
        self.guilds[guild_id] = list(roles)

    def leave(self, guild_id: str) -> None:
        self.guilds.pop(guild_id, None)


class FakeDiscord(FakeOAuthServer):
    """Discord's OAuth2 (`/oauth2/authorize`, `/api[/v10]/oauth2/token`) and the two user
    API calls the provider makes. PKCE is required here (Discord accepts it); client
    authentication by HTTP Basic or form fields, as Discord's docs allow."""

    provider_name = "Discord"
    authorize_path = "/oauth2/authorize"
    token_paths = ("/api/oauth2/token", "/api/v10/oauth2/token")
    known_scopes = frozenset(
        {"identify", "email", "guilds", "guilds.members.read", "guilds.join", "connections"}
    )
    token_fixture = ("discord", "oauth2-token.200.json")

    def __init__(self, *, host: str = "127.0.0.1") -> None:
        super().__init__(host=host)
        self.accounts: list[DiscordAccount] = []
        self._authorized: dict[tuple[str, str], frozenset[str]] = {}

    def add_account(
        self, username: str, *, global_name: str | None = None, id: str | None = None
    ) -> DiscordAccount:
        account = DiscordAccount(username, id or new_snowflake(), global_name)
        self.accounts.append(account)
        return account

    def config_section(
        self,
        client_id: str = "1234567890123456789",
        client_secret: str = "fake-discord-secret",
        redirect_uris: Iterable[str] = (),
    ) -> dict[str, str]:
        self.register_client(client_id, client_secret, redirect_uris)
        return {
            "client_id": client_id,
            "client_secret": client_secret,
            "web_url": self.url,
            "api_url": f"{self.url}/api/v10",
        }

    def skip_consent(self, params: dict[str, str], client: FakeClient, scopes: frozenset[str]):
        # prompt=none skips the screen for someone who already allowed these scopes.
        key = (client.client_id, self.signed_in.id)
        return params.get("prompt") == "none" and scopes <= self._authorized.get(key, frozenset())

    def _issue(self, client, params, scopes):  # type: ignore[no-untyped-def]
        key = (client.client_id, self.signed_in.id)
        self._authorized[key] = self._authorized.get(key, frozenset()) | scopes
        return super()._issue(client, params, scopes)

    def api_error(self, status: int) -> web.Response:
        if status == 429:
            headers = {"Retry-After": "65", "X-RateLimit-Scope": "user"}
            body = fixture("discord", "error-429.user.json")
        elif status == 401:
            headers = {}
            body = fixture("discord", "error-code-50014-invalid-authentication-token.json")
        else:
            headers, body = {}, {"message": f"{status}: Error", "code": 0}
        return web.json_response(body, status=status, headers=headers)

    def add_api_routes(self, add: Callable[[str, str, Handler], None]) -> None:
        for prefix in ("/api", "/api/v10"):
            add("GET", f"{prefix}/users/@me", self._me)
            add("GET", f"{prefix}/users/@me/guilds/{{guild}}/member", self._member)

    def _user_object(self, account: DiscordAccount) -> dict[str, Any]:
        user = fixture("discord", "users-me.200.json")
        for needs_other_scopes in ("email", "verified", "premium_type"):
            user.pop(needs_other_scopes)  # `identify` alone: no email, no premium
        user.update(
            id=account.id,
            username=account.username,
            global_name=account.global_name,
            discriminator="0",
        )
        return user

    def _token_with(self, request: web.Request, scope: str) -> IssuedToken | web.Response:
        token = self.bearer(request)
        if token is None:
            return self.api_error(401)
        if scope not in token.scopes:
            return web.json_response(
                fixture("discord", "error-403-missing-scope.constructed.json"), status=403
            )
        return token

    async def _me(self, request: web.Request) -> web.Response:
        token = self._token_with(request, "identify")
        if isinstance(token, web.Response):
            return token
        return web.json_response(self._user_object(token.account))

    async def _member(self, request: web.Request) -> web.Response:
        token = self._token_with(request, "guilds.members.read")
        if isinstance(token, web.Response):
            return token
        account: DiscordAccount = token.account
        roles = account.guilds.get(request.match_info["guild"])
        if roles is None:
            body = fixture("discord", "users-me-guilds-guild_id-member.404.constructed.json")
            return web.json_response(body, status=404)
        member = fixture("discord", "users-me-guilds-guild_id-member.200.json")
        member.update(user=self._user_object(account), nick=None, roles=list(roles))
        return web.json_response(member)
