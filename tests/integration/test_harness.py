"""Smoke test of the devtools harness itself: a real Synapse and a real maubot server."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
import textwrap
import zipfile

import aiohttp
import pytest

from devtools.matrix_user import MatrixRequestError, MatrixUser
from devtools.maubot_server import InstanceStartError, MaubotAPIError, MaubotServer
from devtools.synapse import SynapseServer

pytestmark = pytest.mark.integration

MakeUser = Callable[..., Awaitable[MatrixUser]]

SMOKE_PLUGIN_ID = "dev.devtools.smoke"

SMOKE_MAUBOT_YAML = f"""\
maubot: 0.6.0
id: {SMOKE_PLUGIN_ID}
version: 1.0.0
license: MIT
modules: [devtools_smoke_plugin]
main_class: SmokePlugin
webapp: true
database: false
"""

SMOKE_PLUGIN_SOURCE = """\
from aiohttp.web import Request, Response, json_response
from maubot import MessageEvent, Plugin
from maubot.handlers import command, web


class SmokePlugin(Plugin):
    async def start(self) -> None:
        if self.id.endswith("-broken"):
            raise RuntimeError("smoke plugin refuses to start on purpose")

    @web.get("/ping")
    async def web_ping(self, request: Request) -> Response:
        return json_response({"instance": self.id})

    @command.new("ping")
    async def ping(self, evt: MessageEvent) -> None:
        await evt.reply("pong")
"""


def build_smoke_plugin(directory: Path) -> Path:
    """A minimal .mbp (a zip with maubot.yaml and one module)."""
    path = directory / "smoke.mbp"
    with zipfile.ZipFile(path, "w") as mbp:
        mbp.writestr("maubot.yaml", SMOKE_MAUBOT_YAML)
        mbp.writestr("devtools_smoke_plugin.py", textwrap.dedent(SMOKE_PLUGIN_SOURCE))
    return path


async def _room_version(user: MatrixUser, room_id: str) -> str:
    create = await user.get_state_event(room_id, "m.room.create")
    return str(create.get("room_version", "1"))


async def test_synapse_rooms_invites_and_openid(synapse: SynapseServer, make_user: MakeUser):
    alice = await make_user("alice")
    bob = await make_user("bob")
    assert alice.user_id.endswith(f":{synapse.server_name}")
    assert (await alice.whoami())["user_id"] == alice.user_id

    v12 = await alice.create_room(name="v12 room", room_version="12")
    v10 = await alice.create_room(name="v10 room", room_version="10")
    assert await _room_version(alice, v12) == "12"
    assert await _room_version(alice, v10) == "10"
    assert ":" not in v12  # v12 room IDs carry no server name
    assert v10.endswith(f":{synapse.server_name}")

    for room_id in (v12, v10):
        await alice.invite(room_id, bob.user_id)
        invite_state = await bob.wait_for_invite(room_id, timeout=60)
        assert any(evt.get("type") == "m.room.name" for evt in invite_state)
        assert await alice.membership(room_id, bob.user_id) == "invite"
        assert await bob.join(room_id) == room_id
        members = await alice.members(room_id)
        assert members == {alice.user_id: "join", bob.user_id: "join"}

    await alice.send_text(v12, "hello bob")
    content = await bob.wait_for_message(v12, lambda c: c.get("body") == "hello bob", timeout=60)
    assert content["msgtype"] == "m.text"

    await alice.set_power_level(v10, bob.user_id, 50)
    levels = await alice.get_state_event(v10, "m.room.power_levels")
    assert levels["users"][bob.user_id] == 50
    await alice.kick(v10, bob.user_id, reason="harness smoke test")
    assert await alice.membership(v10, bob.user_id) == "leave"

    # OpenID: the federation userinfo endpoint is served on the same loopback listener.
    token = await alice.request_openid_token()
    assert token["matrix_server_name"] == synapse.server_name
    assert token["token_type"] == "Bearer"
    userinfo_url = f"{synapse.base_url}/_matrix/federation/v1/openid/userinfo"
    async with aiohttp.ClientSession() as http:
        async with http.get(userinfo_url, params={"access_token": token["access_token"]}) as r:
            assert r.status == 200
            assert await r.json() == {"sub": alice.user_id}
        async with http.get(userinfo_url, params={"access_token": "not-a-token"}) as r:
            assert r.status == 401
            assert (await r.json())["errcode"] == "M_UNKNOWN_TOKEN"

    with pytest.raises(MatrixRequestError) as excinfo:
        await bob.invite(v10, alice.user_id)  # bob was kicked: not in the room
    assert excinfo.value.status == 403
    assert excinfo.value.errcode == "M_FORBIDDEN"


async def test_maubot_clients_and_instances(
    synapse: SynapseServer,
    maubot_server: MaubotServer,
    make_user: MakeUser,
    tmp_path: Path,
):
    bot = await make_user("bot")
    client = await maubot_server.create_client(bot, synapse.base_url)
    assert client["id"] == bot.user_id
    assert client["started"] is True
    assert bot.user_id in {c["id"] for c in await maubot_server.list_clients()}

    with pytest.raises(MaubotAPIError) as excinfo:
        await maubot_server.create_instance("nope", "no.such.plugin", bot, "")
    assert excinfo.value.status == 404
    assert excinfo.value.errcode == "plugin_type_not_found"

    plugin_id = await maubot_server.upload_plugin(build_smoke_plugin(tmp_path))
    assert plugin_id == SMOKE_PLUGIN_ID

    info = await maubot_server.create_instance("smoke", plugin_id, bot)
    assert info["started"] is True
    url = maubot_server.instance_url("smoke")
    assert url == f"{maubot_server.base_url}/_matrix/maubot/plugin/smoke/"
    async with aiohttp.ClientSession() as http, http.get(url + "ping") as r:
        assert r.status == 200
        assert await r.json() == {"instance": "smoke"}

    # A plugin whose start() raises: maubot answers 201 with started=false.
    with pytest.raises(InstanceStartError, match="refuses to start on purpose"):
        await maubot_server.create_instance("smoke-broken", plugin_id, bot)
    assert (await maubot_server.get_instance("smoke-broken"))["started"] is False

    # The bot answers commands: it autojoins a DM and replies through Synapse.
    alice = await make_user("alice")
    room_id = await alice.create_dm(bot.user_id)
    await alice.wait_for_membership(room_id, bot.user_id, "join", timeout=60)
    await alice.send_text(room_id, "!ping")
    reply = await alice.wait_for_message(
        room_id, lambda c: c.get("body") == "pong", sender=bot.user_id, timeout=60
    )
    assert reply["msgtype"] == "m.notice"

    stopped = await maubot_server.set_instance_started("smoke", False)
    assert stopped["started"] is False
    restarted = await maubot_server.set_instance_started("smoke", True)
    assert restarted["started"] is True


async def test_maubot_restart_keeps_state(synapse: SynapseServer, tmp_path: Path, make_user):
    """restart() reuses port and state; a separate server so the session one stays put."""
    bot = await make_user("restartbot")
    async with MaubotServer(tmp_path / "maubot", homeserver_url=synapse.base_url) as server:
        await server.create_client(bot)
        port = server.port
        await server.restart()
        assert server.port == port
        assert bot.user_id in {c["id"] for c in await server.list_clients()}
        assert "Initializing maubot" in server.log_text()
    assert not server.running
