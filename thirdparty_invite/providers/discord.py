"""Discord: membership of a Discord server ("guild"), optionally holding one role.

Rules: `guild:ID` (a member of that server) and `guild:ID:ROLE_ID` (a member holding that
role). IDs are snowflakes: names cannot be read without a bot token in the server, so rules
and their descriptions name IDs. Scopes: `identify` (who the person is) and
`guilds.members.read` (their member object in one server, with its roles); nothing else.

Discord does not document what `GET /users/@me/guilds/{guild}/member` answers for someone
who is not in the server. This module reads a 404, or the JSON error codes 10004 (Unknown
Guild) and 10007 (Unknown Member), as "not a member". Anything else that is not a member
object (a rate limit, a 5xx, a 404 with code 0, which is Discord's "no such route") is
"unknown", which never counts as a loss. A member object is read as discord_listing.py
says (screening not passed and voice guests: no; AutoMod quarantine: unknown; a timeout:
still a member).

The person's token is revoked when the session closes (`POST <api_url>/oauth2/token/revoke`,
RFC 7009, as Discord documents), in the background: dropped is not revoked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
import logging
import re
from typing import Any

from .base import (
    AuthorizationRequest,
    ExternalAccount,
    Provider,
    ProviderSession,
    ProviderUnavailable,
    Rule,
    RuleError,
    RuleField,
    RuleShape,
    SignInFailed,
    Verdict,
)
from .discord_listing import GuildMembers, failure_detail_of, read_recheck, standing
from .listing import MemberListing
from .oauth import OAuthClient, OAuthEndpoints
from .settings import refuse_unknown_settings, text_setting, url_setting

log = logging.getLogger(__name__)

DEFAULT_WEB_URL = "https://discord.com"
DEFAULT_API_URL = "https://discord.com/api/v10"
SCOPES = ("identify", "guilds.members.read")
# Snowflakes are unsigned 64-bit integers written in decimal: 17 to 20 digits today.
SNOWFLAKE = re.compile(r"[0-9]{17,20}")
REVOKE_TIMEOUT = 5.0  # seconds a background revocation may take
NOT_A_MEMBER_CODES = frozenset({10004, 10007})  # Unknown Guild, Unknown Member
SETTINGS = ("client_id", "client_secret", "web_url", "api_url", "recheck")
RULE_FORMS = "guild:<server ID> or guild:<server ID>:<role ID>"
HOW_TO_COPY_IDS = (
    "IDs are the long numbers Discord shows with Developer Mode on "
    "(User Settings > Advanced): right-click the server or the role, Copy ID."
)


# --- the provider ------------------------------------------------------------------


def _snowflake(value: str, what: str) -> str:
    value = value.strip()
    if not SNOWFLAKE.fullmatch(value) or int(value) >= 2**64:
        raise RuleError(f"{value!r} is not a Discord {what} ID. {HOW_TO_COPY_IDS}")
    return value


class DiscordProvider(Provider):
    kind = "discord"

    def __init__(
        self,
        provider_id: str,
        *,
        client_id: str,
        client_secret: str,
        web_url: str,
        api_url: str,
        http: Any,
        bot_token: str | None = None,
    ) -> None:
        super().__init__(provider_id, "Discord")
        self.web_url = web_url
        self.api_url = api_url
        self._bot_token = bot_token  # for re-check listings (config `recheck.bot_token`)
        self._revocations: set[asyncio.Task[Any]] = set()
        self._oauth = OAuthClient(
            self.display_name,
            client_id,
            client_secret,
            OAuthEndpoints(
                authorize_url=f"{web_url}/oauth2/authorize",
                token_url=f"{api_url}/oauth2/token",
                # Discord takes either; Basic keeps the secret out of the form body, which
                # some proxies log.
                token_auth="client_secret_basic",
            ),
            http,
        )

    @classmethod
    def from_config(cls, provider_id: str, section: dict[str, Any], http: Any) -> Provider:
        refuse_unknown_settings(section, SETTINGS)
        return cls(
            provider_id,
            client_id=text_setting(section, "client_id"),
            client_secret=text_setting(section, "client_secret"),
            web_url=url_setting(section, "web_url", DEFAULT_WEB_URL),
            api_url=url_setting(section, "api_url", DEFAULT_API_URL),
            http=http,
            bot_token=read_recheck(section),
        )

    def parse_rule(self, text: str) -> Rule:
        words = text.strip()
        if not words:
            raise RuleError(f"Say which Discord server: {RULE_FORMS}.")
        kind, _, rest = words.partition(":")
        parts = rest.split(":")
        if kind.strip().lower() != "guild" or not rest.strip() or len(parts) > 2:
            raise RuleError(f"Unknown Discord rule {words!r}: use {RULE_FORMS}.")
        guild = _snowflake(parts[0], "server")
        role = _snowflake(parts[1], "role") if len(parts) == 2 else None
        # The @everyone role has the server's own ID and is never listed in a member's
        # roles, though every member holds it: it means "any member".
        args = (guild,) if role is None or role == guild else (guild, role)
        return Rule(self.id, "guild", args, "guild:" + ":".join(args))

    def rule_shapes(self) -> list[RuleShape]:
        return [
            RuleShape(
                "guild",
                "guild:",
                RULE_FORMS,
                HOW_TO_COPY_IDS,
                (RuleField("guild", "Server ID"), RuleField("role", "Role ID", ":", True)),
            )
        ]

    def describe(self, rule: Rule) -> str:
        if len(rule.args) == 2:
            return f"members with role {rule.args[1]} in the Discord server {rule.args[0]}"
        return f"members of the Discord server {rule.args[0]}"

    def revoke_later(self, access_token: str) -> None:
        """Revoke a person's token in the background (RFC 7009): their outcome never waits
        for Discord's answer. Best effort and bounded; a failure is logged by the client."""
        task = asyncio.get_running_loop().create_task(self._revoke(access_token))
        self._revocations.add(task)
        task.add_done_callback(self._revocations.discard)

    async def _revoke(self, access_token: str) -> None:
        url = f"{self.api_url}/oauth2/token/revoke"
        try:
            await asyncio.wait_for(self._oauth.revoke_token(url, access_token), REVOKE_TIMEOUT)
        except (asyncio.TimeoutError, TimeoutError):
            log.info("Discord: revoking a token took longer than %s s", REVOKE_TIMEOUT)

    async def revocations_done(self) -> None:
        """Wait for the background revocations (each bounded by REVOKE_TIMEOUT)."""
        while self._revocations:
            await asyncio.gather(*self._revocations, return_exceptions=True)

    async def close(self) -> None:
        await self.revocations_done()

    def listing(self, rule: Rule) -> MemberListing | None:
        if self._bot_token is None or rule.kind != "guild" or not rule.args:
            return None
        return GuildMembers(self, rule, self._bot_token)

    def scopes(self, rules: Sequence[Rule]) -> list[str]:
        return list(SCOPES)  # every rule needs the member object, and who the person is

    def authorization_request(
        self, rules: Sequence[Rule], redirect_uri: str, state: str
    ) -> AuthorizationRequest:
        # prompt=none: someone who already allowed these scopes goes straight back; the
        # consent screen is still shown to everyone else (Discord's OAuth2 docs).
        return self._oauth.authorization_request(
            redirect_uri, self.scopes(rules), state, extra={"prompt": "none"}
        )

    async def finish(
        self,
        rules: Sequence[Rule],
        code: str,
        redirect_uri: str,
        request: AuthorizationRequest,
    ) -> ProviderSession:
        token = await self._oauth.exchange_code(code, redirect_uri, request)
        if token.granted_scopes is not None and not set(SCOPES) <= token.granted_scopes:
            raise SignInFailed(
                "Discord did not share your server memberships, which this room needs to "
                "check. Start again and allow the app to read your member info.",
                "TPI_PROVIDER_SCOPES_DENIED",
            )
        me = await self._oauth.get_json(f"{self.api_url}/users/@me", token.access_token)
        if me.status != 200:
            raise ProviderUnavailable(self.display_name, failure_detail_of(me))
        body = me.body if isinstance(me.body, dict) else {}
        user_id, username = body.get("id"), body.get("username")
        if not isinstance(user_id, str) or not SNOWFLAKE.fullmatch(user_id):
            raise ProviderUnavailable(self.display_name, "it answered without an account ID")
        name = username if isinstance(username, str) and username else user_id
        global_name = body.get("global_name")
        if isinstance(global_name, str) and global_name and global_name != name:
            name = f"{global_name} ({name})"
        account = ExternalAccount(self.id, user_id, name)
        return DiscordSession(self, account, token.access_token)


class DiscordSession(ProviderSession):
    def __init__(self, provider: DiscordProvider, account: ExternalAccount, token: str) -> None:
        self.account = account
        self._provider = provider
        self._token = token
        # guild ID -> the member object, or None when not a member: rules on one server
        # share one call.
        self._members: dict[str, dict[str, Any] | None] = {}

    async def check(self, rule: Rule) -> Verdict:
        if rule.kind != "guild" or not rule.args or not self._token:
            return Verdict.unknown(f"this sign-in cannot check the rule {rule.text!r}")
        guild = rule.args[0]
        try:
            member = await self._member(guild)
        except ProviderUnavailable as e:
            return Verdict.unknown(f"Discord is not answering properly right now ({e.detail})")
        who = f"the Discord account {self.account.display_name}"
        if member is None:
            return Verdict.no(
                f"{who} is not a member of the Discord server {guild}",
                "Join the server with this Discord account (or sign in with the account "
                "that is in it), then start again.",
            )
        role = rule.args[1] if len(rule.args) == 2 else None
        where = standing(member, role)
        if where == "member":
            return Verdict.yes()
        if where == "pending":
            return Verdict.no(
                f"{who} has not finished the membership screening of the Discord server {guild}",
                "Open the server in Discord, accept its rules (complete the screening), "
                "then start again.",
            )
        if where == "guest":
            return Verdict.no(
                f"{who} is only a guest in a voice channel of the Discord server {guild}, "
                "not a member",
                "Join the server as a member with this Discord account, then start again.",
            )
        if where == "quarantined":
            return Verdict.unknown(
                f"Discord's AutoMod has quarantined {who} in the server {guild}, so it "
                "cannot be told whether you count as a member",
                "Change the name (or server tag) AutoMod blocks, or ask the server's "
                "moderators, then start again.",
            )
        if where == "unreadable":
            return Verdict.unknown("Discord answered a member object it did not document")
        return Verdict.no(
            f"{who} does not have role {role} in the Discord server {guild}",
            "Ask the server's moderators about that role, then start again.",
        )

    async def _member(self, guild: str) -> dict[str, Any] | None:
        if guild in self._members:
            return self._members[guild]
        provider = self._provider
        response = await provider._oauth.get_json(
            f"{provider.api_url}/users/@me/guilds/{guild}/member", self._token
        )
        body = response.body if isinstance(response.body, dict) else None
        code = body.get("code") if body is not None else None
        if response.status == 200 and body is not None:
            member: dict[str, Any] | None = body
        elif code in NOT_A_MEMBER_CODES or (
            response.status == 404 and body is not None and code is None
        ):
            member = None
        else:
            raise ProviderUnavailable(provider.display_name, failure_detail_of(response))
        self._members[guild] = member
        return member

    async def close(self) -> None:
        token, self._token = self._token, ""
        self._members.clear()
        if token:
            self._provider.revoke_later(token)
