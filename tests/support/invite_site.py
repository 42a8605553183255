"""The stack the browser tests run against: an OpenID provider, Synapse using it for SSO,
maubot with the plugin, a room admin and the bot."""

from __future__ import annotations

import hashlib
from pathlib import Path
import secrets
import sqlite3

import attrs

from devtools.matrix_user import MatrixUser
from devtools.maubot_server import MaubotServer
from devtools.oidc_provider import OIDCProvider
from devtools.plugin import RunningPlugin, ask_for_link
from devtools.synapse import SynapseServer

PASSWORD = "correct horse battery staple"
IDP_NAME = "Example Login"  # the single sign-on provider, as Synapse names it to users


async def device_ids(user: MatrixUser) -> set[str]:
    """The user's devices: the page's temporary sign-in must leave this unchanged."""
    return {device["device_id"] for device in await user.devices()}


@attrs.define
class Site:
    """The running stack: Synapse, maubot with the plugin, a room admin and the bot."""

    synapse: SynapseServer
    maubot: MaubotServer
    plugin: RunningPlugin
    admin: MatrixUser
    bot: MatrixUser
    oidc: OIDCProvider

    async def user(self, prefix: str = "visitor") -> MatrixUser:
        return await self.synapse.register_user(f"{prefix}-{secrets.token_hex(3)}", PASSWORD)

    async def sso_user(self, prefix: str = "sso") -> tuple[MatrixUser, str]:
        """A Matrix user who also has an account at the OpenID provider (same localpart:
        Synapse maps the SSO account onto the existing user); (user, provider password)."""
        user = await self.user(prefix)
        password = secrets.token_urlsafe(12)
        self.oidc.add_account(user.localpart, password, name=f"{prefix.title()} Person")
        return user, password

    async def room(self, name: str, topic: str | None = None) -> str:
        room_id = await self.admin.create_room(
            name,
            topic=topic,
            invite=[self.bot.user_id],
            power_level_content_override={"invite": 50, "users": {self.bot.user_id: 50}},
        )
        await self.admin.wait_for_membership(room_id, self.bot.user_id, "join", timeout=60)
        return room_id

    async def link(self, room_id: str, args: str = "") -> str:
        url, token = await ask_for_link(self.admin, self.bot, room_id, args)
        return f"{url}#{token}"

    def plugin_database(self) -> Path:
        return self.maubot.workdir / "plugin_dbs" / f"{self.plugin.instance_id}.db"

    def link_id(self, token: str) -> int:
        """The number admins use for a link (`!invitebot revoke N`), from the plugin's DB."""
        token_hash = hashlib.sha256(token.encode()).hexdigest()
        with sqlite3.connect(self.plugin_database()) as db:
            row = db.execute(
                "SELECT id FROM invite_links WHERE token_hash = ?", (token_hash,)
            ).fetchone()
        assert row, "no such link"
        return int(row[0])

    def expire_link(self, token: str) -> None:
        """Time travel for one link: its expiry moves into the past in the plugin's DB."""
        with sqlite3.connect(self.plugin_database()) as db:
            db.execute(
                "UPDATE invite_links SET expires_at = 1 WHERE id = ?", (self.link_id(token),)
            )
