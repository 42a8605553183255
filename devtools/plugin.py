"""The plugin as the tests, benches and demo install it: built, uploaded, configured."""

from __future__ import annotations

import json
from pathlib import Path
import re

import attrs

from devtools import pack_plugin
from devtools.matrix_user import MatrixUser
from devtools.maubot_server import MaubotServer
from devtools.synapse import SynapseServer

REPO_ROOT = Path(__file__).resolve().parents[1]
PLUGIN_ID = "org.thirdparty_invite.bot"
LINK_PATTERN = re.compile(r"(https?://\S+/invite)#([A-Za-z0-9_-]+)")


def build_mbp(directory: Path | None = None) -> Path:
    """Pack the plugin with build.sh's packer (devtools/pack_plugin.py, same archive as mbc)
    into `directory` (default .tmp/build, leaving dist/ to build.sh). Callers that may run
    alongside another build pass a directory of their own."""
    directory = directory or REPO_ROOT / ".tmp" / "build"
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / f"{PLUGIN_ID}.mbp"
    return pack_plugin.build(REPO_ROOT, out)


def instance_config(synapse: SynapseServer, operators: list[str], **extra: object) -> str:
    config = {
        "operators": operators,
        # Synapse on loopback is reached through the operator mapping, never by discovery.
        "identity": {"server_urls": {synapse.server_name: synapse.base_url}},
        **extra,
    }
    return json.dumps(config)  # JSON is YAML


@attrs.define
class RunningPlugin:
    maubot: MaubotServer
    bot: MatrixUser
    instance_id: str

    @property
    def web_url(self) -> str:
        return self.maubot.instance_url(self.instance_id)

    @property
    def origin(self) -> str:
        return self.maubot.base_url


async def start_plugin(
    maubot: MaubotServer,
    synapse: SynapseServer,
    bot: MatrixUser,
    operators: list[str],
    instance_id: str,
    mbp: Path,
    **config: object,
) -> RunningPlugin:
    await maubot.upload_plugin(mbp)
    # autojoin off: the plugin itself decides which room invites to accept.
    await maubot.create_client(bot, synapse.base_url, autojoin=False)
    await maubot.create_instance(
        instance_id, PLUGIN_ID, bot, instance_config(synapse, operators, **config)
    )
    return RunningPlugin(maubot, bot, instance_id)


def find_link(body: str) -> tuple[str, str]:
    match = LINK_PATTERN.search(body)
    assert match, f"no invite link in: {body}"
    return match.group(1), match.group(2)


async def room_managed_by_bot(admin: MatrixUser, bot: MatrixUser, name: str) -> str:
    """A room (Synapse's default version) the bot has joined with power to invite."""
    room_id = await admin.create_room(
        name,
        invite=[bot.user_id],
        # Room v12: the creator must not be listed in "users".
        power_level_content_override={"invite": 50, "users": {bot.user_id: 50}},
    )
    await admin.wait_for_membership(room_id, bot.user_id, "join", timeout=60)
    return room_id


async def ask_for_link(
    admin: MatrixUser, bot: MatrixUser, room_id: str, args: str = ""
) -> tuple[str, str]:
    """`!invitebot link ARGS` typed by the admin; the link's (page URL, token)."""
    await admin.send_text(room_id, f"!invitebot link {args}".strip())
    reply = await admin.wait_for_message(
        room_id,
        lambda c: "m.in_reply_to" in c.get("m.relates_to", {}),
        sender=bot.user_id,
        timeout=60,
    )
    return find_link(reply["body"])
