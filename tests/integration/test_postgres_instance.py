"""The .mbp in a maubot whose plugin databases live in PostgreSQL (schema per instance)."""

from __future__ import annotations

import asyncio
import secrets

import aiohttp
import asyncpg
import pytest

from devtools.maubot_server import MaubotServer
from devtools.plugin import ask_for_link, build_mbp, room_managed_by_bot, start_plugin

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


async def test_invite_with_instance_database_on_postgres(synapse, tmp_path) -> None:
    instance_id = f"pg{secrets.token_hex(4)}"
    admin = await synapse.register_user(f"pgadmin-{secrets.token_hex(3)}")
    bot = await synapse.register_user(f"pgbot-{secrets.token_hex(3)}")
    user = await synapse.register_user(f"pguser-{secrets.token_hex(3)}")
    maubot = MaubotServer(
        tmp_path / "maubot", homeserver_url=synapse.base_url, plugin_postgres_url=POSTGRES
    )
    try:
        await maubot.start()
        plugin = await start_plugin(
            maubot, synapse, bot, [admin.user_id], instance_id, build_mbp(tmp_path)
        )
        room_id = await room_managed_by_bot(admin, bot, "Postgres room")
        _, token = await ask_for_link(admin, bot, room_id, "--uses 1")
        async with aiohttp.ClientSession(
            base_url=plugin.web_url,
            headers={"Origin": plugin.origin},
            cookie_jar=aiohttp.CookieJar(unsafe=True),
        ) as http:
            async with http.post("api/session", json=await user.request_openid_token()) as r:
                assert r.status == 200
            async with http.post("api/links/claim", json={"token": token}) as r:
                assert r.status == 202
        await admin.wait_for_membership(room_id, user.user_id, "invite")

        conn = await asyncpg.connect(POSTGRES)
        try:
            schema = f"mbp_{instance_id}"
            uses = await conn.fetchval(f'SELECT uses FROM "{schema}".invite_links')
            invited = await conn.fetchval(
                f"SELECT COUNT(*) FROM \"{schema}\".audit_log WHERE action='invited'"
            )
        finally:
            await conn.close()
        assert (uses, invited) == (1, 1)
    finally:
        await maubot.stop()
        conn = await asyncpg.connect(POSTGRES)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "mbp_{instance_id}" CASCADE')
        finally:
            await conn.close()
        await asyncio.sleep(0)
