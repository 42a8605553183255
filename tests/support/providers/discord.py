"""A stand-in for Discord's OAuth2 and user API on a loopback port.

    async with FakeDiscord() as discord:
        alice = discord.add_account("alice")
        alice.join(GUILD, roles=[ROLE])
        discord.sign_in_as(alice)
        discord.auto_approve = True
        section = discord.config_section(client_id="1234", client_secret="s3cret",
                                         redirect_uris=[callback_url])

Answers are the documented examples of tests/fixtures/discord with the world's data filled
in; the undocumented ones (not a member: 404 Unknown Guild; a missing scope; Missing
Access) are constructed (tests/fixtures/discord/README.md).

Members can be in screening (`pending`), voice guests (flag IS_GUEST), quarantined by
AutoMod (flags) or timed out: `alice.join(GUILD, pending=True, flags=1 << 4)`. A bot lists
a server's members (`token = discord.add_bot([GUILD])`, `members_intent=False` for a bot
without the Server Members intent), page by page after the highest user id, with
Discord's rate-limit headers (`bucket_size` requests per `bucket_window` seconds, then a
429); `page_cap` makes pages shorter than asked. `POST .../oauth2/token/revoke` (RFC 7009)
kills a token.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
import secrets
import time
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


IS_GUEST = 1 << 4
QUARANTINED_USERNAME = 1 << 7
QUARANTINED_GUILD_TAG = 1 << 10
MISSING_ACCESS = {"message": "Missing Access", "code": 50001}


@attrs.define
class GuildMember:
    roles: list[str]
    pending: bool | None = None  # None: no `pending` key, as in Discord's example
    flags: int = 0  # 0 is sent as no `flags` key, as in Discord's example
    timeout_until: str | None = None  # communication_disabled_until


@attrs.define
class DiscordAccount:
    username: str
    id: str = attrs.field(factory=new_snowflake)
    global_name: str | None = None
    memberships: dict[str, GuildMember] = attrs.field(factory=dict)  # by server ID

    @property
    def name(self) -> str:
        return self.username

    def join(
        self,
        guild_id: str,
        roles: Iterable[str] = (),
        *,
        pending: bool | None = None,
        flags: int = 0,
        timeout_until: str | None = None,
    ) -> GuildMember:
        member = GuildMember(list(roles), pending, flags, timeout_until)
        self.memberships[guild_id] = member
        return member

    def leave(self, guild_id: str) -> None:
        self.memberships.pop(guild_id, None)


@attrs.define
class FakeBot:
    token: str
    guilds: set[str]
    members_intent: bool = True


class FakeDiscord(FakeOAuthServer):
    """Discord's OAuth2 (`/oauth2/authorize`, `/api[/v10]/oauth2/token`) and the two user
    API calls the provider makes. PKCE is required here (Discord accepts it); client
    authentication by HTTP Basic or form fields, as Discord's docs allow."""

    provider_name = "Discord"
    authorize_path = "/oauth2/authorize"
    token_paths = ("/api/oauth2/token", "/api/v10/oauth2/token")
    failure_areas = ("authorize", "token", "api", "revoke")
    known_scopes = frozenset(
        {"identify", "email", "guilds", "guilds.members.read", "guilds.join", "connections"}
    )
    token_fixture = ("discord", "oauth2-token.200.json")

    def __init__(self, *, host: str = "127.0.0.1") -> None:
        super().__init__(host=host)
        self.accounts: list[DiscordAccount] = []
        self._authorized: dict[tuple[str, str], frozenset[str]] = {}
        self.bots: dict[str, FakeBot] = {}
        self.page_cap: int | None = None
        self.bucket_size = 1000
        self.bucket_window = 1.0
        self._bucket: tuple[float, int] = (0.0, 0)  # (window start, requests in it)

    def add_account(
        self, username: str, *, global_name: str | None = None, id: str | None = None
    ) -> DiscordAccount:
        account = DiscordAccount(username, id or new_snowflake(), global_name)
        self.accounts.append(account)
        return account

    def add_bot(self, guilds: Iterable[str], *, members_intent: bool = True) -> str:
        """A bot in `guilds`; its token."""
        token = secrets.token_urlsafe(40)
        self.bots[token] = FakeBot(token, set(guilds), members_intent)
        return token

    def config_section(
        self,
        client_id: str = "1234567890123456789",
        client_secret: str = "fake-discord-secret",
        redirect_uris: Iterable[str] = (),
        *,
        bot_token: str | None = None,
    ) -> dict[str, Any]:
        self.register_client(client_id, client_secret, redirect_uris)
        section: dict[str, Any] = {
            "client_id": client_id,
            "client_secret": client_secret,
            "web_url": self.url,
            "api_url": f"{self.url}/api/v10",
        }
        if bot_token is not None:
            section["recheck"] = {"bot_token": bot_token}
        return section

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
            add("GET", f"{prefix}/guilds/{{guild}}/members", self._guild_members)
            add("POST", f"{prefix}/oauth2/token/revoke", self._revoke, "revoke")

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
        member = account.memberships.get(request.match_info["guild"])
        if member is None:
            body = fixture("discord", "users-me-guilds-guild_id-member.404.constructed.json")
            return web.json_response(body, status=404)
        return web.json_response(self._member_object(account, member))

    def _member_object(self, account: DiscordAccount, member: GuildMember) -> dict[str, Any]:
        body = fixture("discord", "users-me-guilds-guild_id-member.200.json")
        body.update(user=self._user_object(account), nick=None, roles=list(member.roles))
        if member.pending is not None:
            body["pending"] = member.pending
        if member.flags:
            body["flags"] = member.flags
        if member.timeout_until is not None:
            body["communication_disabled_until"] = member.timeout_until
        return body

    async def _revoke(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        client = self._authenticate(request, form)
        if client is None:
            return web.json_response({"error": "invalid_client"}, status=401)
        issued = self._tokens.get(form.get("token", ""))
        if issued is not None and issued.client_id == client.client_id:
            issued.revoked = True
        return web.json_response({})  # RFC 7009: 200 whether or not the token was live

    # --- the bot's member listing ---------------------------------------------------------

    def _rate_limit_headers(self) -> tuple[dict[str, str], bool]:
        """Discord's headers for this request, and whether the bucket was already empty."""
        now = time.monotonic()
        start, used = self._bucket
        if now - start >= self.bucket_window:
            start, used = now, 0
        over = used >= self.bucket_size
        used = min(used + 1, self.bucket_size)
        self._bucket = (start, used)
        reset_after = max(0.0, self.bucket_window - (now - start))
        return {
            "X-RateLimit-Limit": str(self.bucket_size),
            "X-RateLimit-Remaining": str(self.bucket_size - used),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": "guild-members",
        }, over

    async def _guild_members(self, request: web.Request) -> web.Response:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        bot = self.bots.get(value) if scheme == "Bot" else None
        if bot is None:
            body = fixture("discord", "error-code-50014-invalid-authentication-token.json")
            return web.json_response(body, status=401)
        headers, over = self._rate_limit_headers()
        if over:
            body = fixture("discord", "error-429.user.json")
            body["retry_after"] = float(headers["X-RateLimit-Reset-After"])
            headers.update({"Retry-After": str(int(body["retry_after"]) + 1)})
            headers["X-RateLimit-Scope"] = "user"
            return web.json_response(body, status=429, headers=headers)
        guild = request.match_info["guild"]
        if guild not in bot.guilds or not bot.members_intent:
            return web.json_response(MISSING_ACCESS, status=403, headers=headers)
        limit, after = request.query.get("limit", "1"), request.query.get("after", "0")
        if not limit.isdigit() or not 1 <= int(limit) <= 1000 or not after.isdigit():
            body = fixture("discord", "error-code-50035-invalid-form-body.object.json")
            return web.json_response(body, status=400, headers=headers)
        members = sorted(
            ((int(a.id), a) for a in self.accounts if guild in a.memberships),
            key=lambda pair: pair[0],
        )
        size = min(int(limit), self.page_cap or int(limit))
        page = [a for user_id, a in members if user_id > int(after)][:size]
        body = [self._member_object(a, a.memberships[guild]) for a in page]
        return web.json_response(body, headers=headers)
