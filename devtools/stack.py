"""The running stack, built one way for the tests, the benches and the demo.

Synapse (signing people in through a test OpenID provider too, with ``sso``), a full maubot
server running the built .mbp, a room admin who is the plugin's operator, the bot account
as maubot's client (autojoin off), and the plugin instance configured for this Synapse:

    async with running_stack(workdir, sso=SSO(), instance_config={"web": {...}}) as stack:
        room_id = await stack.room("Book club")
        link = await stack.link(room_id, "--uses 3")
        user = await stack.user()
        async with await stack.signed_in(user) as http:
            ...

Everything listens on 127.0.0.1 and lives below ``workdir`` (synapse/, maubot/, oidc/,
build/). When the block ends, the stack stops the servers it started (maubot, Synapse, the
OpenID provider). A Synapse or maubot passed in is shared: it is left running, and the
stack removes its own instance and client from a shared maubot.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import contextlib
import hashlib
import logging
import os
from pathlib import Path
import secrets
import sqlite3
from typing import Literal

import aiohttp
import attrs

from devtools.matrix_user import MatrixUser
from devtools.maubot_server import MaubotAPIError, MaubotServer
from devtools.oidc_provider import OIDCProvider
from devtools.plugin import (
    RunningPlugin,
    ask_for_link,
    build_mbp,
    room_managed_by_bot,
    start_plugin,
)
from devtools.plugin import instance_config as render_instance_config
from devtools.ports import ManagedServer
from devtools.synapse import SynapseServer, deep_merge, oidc_provider_config
from devtools.web_client import signed_in_session, wait_web_ready, web_client

log = logging.getLogger(__name__)

DEFAULT_POSTGRES_URL = os.environ.get(
    "TPI_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
REPO_ROOT = Path(__file__).resolve().parent.parent
# Every stack's Synapse: the invite page finds the homeserver from a Matrix ID through
# .well-known, as it would for any server.
BASE_SYNAPSE_CONFIG = {"serve_client_wellknown": True}


def rate_limits_off() -> dict[str, dict]:
    """Instance config that turns off each of the plugin's per-address rate limits (those
    base-config.yaml names): every client of a test stack comes from 127.0.0.1."""
    from ruamel.yaml import YAML  # maubot's YAML library, in the venv that runs maubot

    base = YAML(typ="safe").load((REPO_ROOT / "base-config.yaml").read_text())
    return {"rate_limits": {name: {"burst": 0} for name in base.get("rate_limits") or {}}}


@attrs.frozen
class SSO:
    """Single sign-on on the stack's Synapse through a test OpenID provider; Synapse names
    the identity provider ``oidc-<idp_id>`` and shows ``idp_name`` to people."""

    idp_id: str = "test"
    idp_name: str = "Test OpenID Provider"


@attrs.define
class Homeserver:
    synapse: SynapseServer
    oidc: OIDCProvider | None = None
    started: list[ManagedServer] = attrs.Factory(list)


@contextlib.asynccontextmanager
async def running_homeserver(
    workdir: Path,
    *,
    sso: SSO | None = None,
    synapse_config: dict | None = None,
    rc_invites: dict | None = None,
) -> AsyncIterator[Homeserver]:
    """Synapse alone, or with ``sso`` behind an OpenID provider whose client allows
    Synapse's callback. ``synapse_config`` is deep-merged over the generated config;
    ``rc_invites`` replaces the relaxed invite limits (see SynapseServer)."""
    async with contextlib.AsyncExitStack() as servers:
        extra = {**BASE_SYNAPSE_CONFIG, **(synapse_config or {})}
        oidc = None
        if sso is not None:
            oidc = await servers.enter_async_context(OIDCProvider(workdir / "oidc"))
            entry = oidc_provider_config(oidc, idp_id=sso.idp_id, idp_name=sso.idp_name)
            extra["oidc_providers"] = [entry]
        synapse = SynapseServer(workdir / "synapse", rc_invites=rc_invites, extra_config=extra)
        await servers.enter_async_context(synapse)
        if oidc is not None:
            # Synapse's port, and so its callback URL, is known only now.
            oidc.allow_redirect_uri(synapse.oidc_callback_url)
        yield Homeserver(synapse, oidc, [s for s in (oidc, synapse) if s is not None])


@attrs.define
class RunningStack:
    """The running stack (see the module): servers, accounts, the plugin, and helpers."""

    synapse: SynapseServer
    maubot: MaubotServer
    oidc: OIDCProvider | None
    admin: MatrixUser
    bot: MatrixUser
    plugin: RunningPlugin
    base_config: dict  # the instance config's own keys, before configure() overrides
    workdir: Path
    database: Literal["sqlite", "postgres"]
    password: str | None  # of the admin and of the people user() makes (None: random)
    started: list[ManagedServer]  # the servers this stack started, and will stop

    @property
    def instance_id(self) -> str:
        return self.plugin.instance_id

    @property
    def web_url(self) -> str:
        """The plugin's web base, with a trailing slash (``invite``, ``api/...`` below)."""
        return self.plugin.web_url

    @property
    def origin(self) -> str:
        return self.plugin.origin

    # -- people, rooms, links ---------------------------------------------------------------

    async def user(self, prefix: str = "visitor", *, admin: bool = False) -> MatrixUser:
        """A new person on the Synapse, ``@<prefix>-<random>``, with the stack's password."""
        localpart = f"{prefix}-{secrets.token_hex(3)}"
        return await self.synapse.register_user(localpart, self.password, admin=admin)

    async def sso_user(self, prefix: str = "sso") -> tuple[MatrixUser, str]:
        """A new person who also has an account at the OpenID provider (same localpart:
        Synapse maps the SSO account onto the existing user); (user, provider password)."""
        if self.oidc is None:
            raise RuntimeError("this stack has no OpenID provider: start it with sso=SSO()")
        user = await self.user(prefix)
        password = secrets.token_urlsafe(12)
        self.oidc.add_account(user.localpart, password, name=f"{prefix.title()} Person")
        return user, password

    async def room(self, name: str, *, topic: str | None = None) -> str:
        """A room of the admin's (Synapse's default version) that the bot joined and may
        invite to."""
        room_id = await room_managed_by_bot(self.admin, self.bot, name)
        if topic is not None:
            await self.admin.send_state(room_id, "m.room.topic", {"topic": topic})
        return room_id

    async def link(self, room_id: str, args: str = "") -> str:
        """``!invitebot link ARGS`` typed by the admin in the room: the whole link."""
        url, token = await ask_for_link(self.admin, self.bot, room_id, args)
        return f"{url}#{token}"

    async def configure(self, **overrides: object) -> None:
        """Replace the instance's config: the stack's own, with ``overrides`` deep-merged
        (maubot hands it to the running plugin)."""
        config = deep_merge(self.base_config, overrides)
        text = render_instance_config(self.synapse, [self.admin.user_id], **config)
        await self.maubot.set_instance_config(self.instance_id, text)

    # -- the plugin's database (SQLite) -----------------------------------------------------

    def plugin_database(self) -> Path:
        if self.database != "sqlite":
            raise RuntimeError(f"the plugin's database is in {self.database}, not a file")
        return self.maubot.workdir / "plugin_dbs" / f"{self.instance_id}.db"

    def link_id(self, token: str) -> int:
        """The number admins use for a link (`!invitebot revoke N`), from the plugin's DB."""
        token_hash = hashlib.sha256(token.encode()).hexdigest()
        with contextlib.closing(sqlite3.connect(self.plugin_database())) as db:
            row = db.execute(
                "SELECT id FROM invite_links WHERE token_hash = ?", (token_hash,)
            ).fetchone()
        assert row, "no such link"
        return int(row[0])

    def expire_link(self, token: str) -> None:
        """Time travel for one link: its expiry moves into the past in the plugin's DB."""
        link_id = self.link_id(token)
        with contextlib.closing(sqlite3.connect(self.plugin_database())) as db, db:
            db.execute("UPDATE invite_links SET expires_at = 1 WHERE id = ?", (link_id,))

    # -- the plugin's web API ---------------------------------------------------------------

    def web_client(self, *, cookies: bool = True, limit: int = 100) -> aiohttp.ClientSession:
        """A browser-like client of the plugin's web API (Origin header, own cookie jar)."""
        return web_client(self.web_url, cookies=cookies, limit=limit)

    async def signed_in(self, user: MatrixUser) -> aiohttp.ClientSession:
        """A web client signed in as ``user`` (OpenID token -> ``api/session``)."""
        return await signed_in_session(self.web_url, user)

    async def wait_web_ready(self, timeout: float = 60.0) -> float:
        """Seconds until the plugin's web API answers (e.g. after a maubot restart)."""
        return await wait_web_ready(self.web_url, timeout)


@contextlib.asynccontextmanager
async def running_stack(
    workdir: Path,
    *,
    synapse: SynapseServer | None = None,
    maubot: MaubotServer | None = None,
    sso: SSO | None = None,
    synapse_config: dict | None = None,
    rc_invites: dict | None = None,
    database: Literal["sqlite", "postgres"] = "sqlite",
    postgres_url: str = DEFAULT_POSTGRES_URL,
    mbp: Path | None = None,
    instance_id: str | None = None,
    instance_config: dict | None = None,
    rate_limits: bool = False,
    password: str | None = None,
    admin_name: str | None = None,
    bot_name: str | None = None,
) -> AsyncIterator[RunningStack]:
    """Build the stack below ``workdir``; stop what it started when the block ends.

    - ``synapse``, ``maubot``: running servers to share instead of starting new ones
      (a shared maubot needs the shared Synapse it points at).
    - ``sso``, ``synapse_config``, ``rc_invites``: for the Synapse the stack starts
      (see :func:`running_homeserver`).
    - ``database="postgres"``: the instance's database is a schema at ``postgres_url``
      (dropped at the end), in a maubot the stack starts; else SQLite in maubot's workdir.
    - ``mbp``: the built plugin (default: built now into ``workdir/build``).
    - ``instance_id`` (default random), ``instance_config``: deep-merged over the
      instance's generated config (operators: the admin; this Synapse's URL; the plugin's
      rate limits off unless ``rate_limits``, as Synapse's are relaxed: a test that wants a
      limit names it in ``instance_config``). ``stack.configure()`` changes it later.
    - ``password``: of the admin and of people made by ``stack.user()`` (default random).
    - ``admin_name``, ``bot_name``: localparts (default ``admin-<random>``, ``bot-<random>``).
    """
    if synapse is not None and (sso or synapse_config or rc_invites):
        raise ValueError("sso, synapse_config and rc_invites need a Synapse the stack starts")
    if maubot is not None and (synapse is None or database != "sqlite"):
        raise ValueError("a shared maubot needs its shared Synapse, and SQLite")
    shared_maubot = maubot is not None
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    mbp = mbp or await asyncio.to_thread(build_mbp, workdir / "build")
    instance_id = instance_id or f"tpi{secrets.token_hex(4)}"
    async with contextlib.AsyncExitStack() as cleanup:
        if synapse is None:
            homeserver = await cleanup.enter_async_context(
                running_homeserver(
                    workdir, sso=sso, synapse_config=synapse_config, rc_invites=rc_invites
                )
            )
        else:
            homeserver = Homeserver(synapse)
        started = list(homeserver.started)
        if database == "postgres":  # runs once maubot has stopped (cleanup is LIFO)
            cleanup.push_async_callback(_drop_schema, postgres_url, instance_id)
        if maubot is None:
            maubot = MaubotServer(
                workdir / "maubot",
                homeserver_url=homeserver.synapse.base_url,
                plugin_postgres_url=postgres_url if database == "postgres" else None,
            )
            await cleanup.enter_async_context(maubot)
            started.append(maubot)
        admin = await homeserver.synapse.register_user(
            admin_name or f"admin-{secrets.token_hex(3)}", password
        )
        bot = await homeserver.synapse.register_user(bot_name or f"bot-{secrets.token_hex(3)}")
        if shared_maubot:
            cleanup.push_async_callback(_remove_from_shared, maubot, instance_id, bot.user_id)
        base_config = deep_merge({} if rate_limits else rate_limits_off(), instance_config or {})
        plugin = await start_plugin(
            maubot, homeserver.synapse, bot, [admin.user_id], instance_id, mbp, **base_config
        )
        yield RunningStack(
            synapse=homeserver.synapse,
            maubot=maubot,
            oidc=homeserver.oidc,
            admin=admin,
            bot=bot,
            plugin=plugin,
            base_config=base_config,
            workdir=workdir,
            database=database,
            password=password,
            started=started,
        )


async def _remove_from_shared(maubot: MaubotServer, instance_id: str, client_id: str) -> None:
    """The stack's instance and bot client leave a maubot that keeps running."""
    for remove, what in ((maubot.delete_instance, instance_id), (maubot.delete_client, client_id)):
        try:
            await remove(what)
        except MaubotAPIError as e:
            if e.status != 404:
                log.warning("could not clean up after the stack in maubot: %s", e)


async def _drop_schema(postgres_url: str, instance_id: str) -> None:
    import asyncpg  # only stacks on PostgreSQL need it

    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "mbp_{instance_id}" CASCADE')
    finally:
        await conn.close()
