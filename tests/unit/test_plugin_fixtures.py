"""The plugin class under maubot's own pytest fixtures (TestBot, plugin db, config)."""

from __future__ import annotations

import logging
from pathlib import Path

from mautrix.types import MessageType
import pytest

from thirdparty_invite.bot import InviteBot
from thirdparty_invite.config import Config
from thirdparty_invite.matrix.rooms import InviteAttempt
from thirdparty_invite.services.invite_queue import classify_refusal
from thirdparty_invite.storage import upgrade_table

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def maubot_plugin_path() -> Path:
    return ROOT


@pytest.fixture
def maubot_plugin_class() -> type[InviteBot]:
    return InviteBot


@pytest.fixture
def maubot_plugin_config_class() -> type[Config]:
    return Config


@pytest.fixture
def maubot_upgrade_table():
    return upgrade_table


@pytest.fixture
def maubot_plugin_config_overrides() -> dict:
    return {"operators": ["@op:example.com"]}


async def test_plugin_starts_and_answers_help(maubot_plugin, maubot_test_bot) -> None:
    assert maubot_plugin.services is not None
    assert maubot_plugin.services.settings.operators == frozenset({"@op:example.com"})
    await maubot_test_bot.send("!invitebot help")
    [reply] = maubot_test_bot.responded
    body = reply.content.body
    assert "!invitebot link [--uses N] [--expires 7d|never] [--register] [room ...]" in body
    assert "!invitebot revoke <id>" in body
    for sub in ("help", "links", "status"):
        assert f"!invitebot {sub}" in body
    # claim is for anyone; the admin commands are introduced as such, after it.
    everyone, admins = body.split("For room admins")
    assert "`!invitebot claim <link>`" in everyone and "!invitebot link " in admins
    assert reply.content.msgtype == MessageType.NOTICE
    await maubot_plugin.internal_stop()


async def test_direct_messages_are_accepted_by_default(maubot_plugin, maubot_test_bot) -> None:
    assert maubot_plugin.services.settings.accept_direct_messages is True
    await maubot_test_bot.send("!invitebot claim")
    assert "`!invitebot claim <link>`" in maubot_test_bot.responded[0].content.body
    await maubot_plugin.internal_stop()


async def test_bad_link_arguments_are_explained(maubot_plugin, maubot_test_bot) -> None:
    await maubot_test_bot.send("!invitebot link --uses lots")
    assert "--uses takes a number" in maubot_test_bot.responded[0].content.body
    await maubot_test_bot.send("!invitebot link --expires soon")
    assert "--expires takes a duration" in maubot_test_bot.responded[1].content.body
    await maubot_plugin.internal_stop()


async def test_a_wrong_config_keeps_the_bot_running_on_the_old_one(
    maubot_plugin, maubot_test_bot, maubot_plugin_config_dict
) -> None:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    maubot_plugin.log.addHandler(handler)
    maubot_plugin_config_dict["admin_room"] = "!admins:example.com"
    await maubot_plugin.on_external_config_update()
    running = maubot_plugin.services
    assert running.settings.admin_room == "!admins:example.com"

    maubot_plugin_config_dict["operators"] = "x"
    maubot_plugin_config_dict["invites"] = {"max_attempts": "many"}
    await maubot_plugin.on_external_config_update()
    # Nothing was stopped or rebuilt: the queue that delivers claims is the one running.
    assert maubot_plugin.services is running
    assert running.queue.loop.task is not None and not running.queue.loop.task.done()
    assert running.settings.operators == frozenset({"@op:example.com"})
    [logged] = [r for r in records if "NOT applied" in r.getMessage()]
    assert "operators:" in logged.getMessage() and "invites.max_attempts:" in logged.getMessage()
    [notice] = maubot_test_bot.responded
    assert notice.room_id == "!admins:example.com"
    assert "operators:" in notice.content.body and "invites.max_attempts:" in notice.content.body

    # The bot still answers commands, and a fixed config applies at once.
    await maubot_test_bot.send("!invitebot help")
    assert "!invitebot link" in maubot_test_bot.responded[-1].content.body
    maubot_plugin_config_dict["operators"] = ["@new:example.com"]
    maubot_plugin_config_dict["invites"] = {"max_attempts": 3}
    await maubot_plugin.on_external_config_update()
    assert maubot_plugin.services is not running
    assert maubot_plugin.services.settings.operators == frozenset({"@new:example.com"})
    assert maubot_plugin.services.settings.invites.max_attempts == 3
    await maubot_plugin.internal_stop()


async def test_without_authlib_links_work_and_bindings_say_what_to_install(
    maubot_plugin, maubot_test_bot, monkeypatch
) -> None:
    from thirdparty_invite.providers import registry

    monkeypatch.setattr(registry, "authlib_missing", lambda: True)
    await maubot_plugin.on_external_config_update()  # rebuilds the services without it
    assert "pip install authlib" in maubot_plugin.services.providers.unavailable
    await maubot_test_bot.send("!invitebot bind github org:matrix-org")
    assert "pip install authlib" in maubot_test_bot.responded[-1].content.body
    await maubot_test_bot.send("!invitebot help")
    assert "!invitebot link" in maubot_test_bot.responded[-1].content.body
    await maubot_plugin.internal_stop()


@pytest.mark.parametrize(
    ("attempt", "errcode"),
    [
        (InviteAttempt(403, "M_INVITE_BLOCKED", "Invites blocked"), "TPI_INVITE_BLOCKED"),
        (InviteAttempt(403, "M_FORBIDDEN", "user is banned from the room"), "TPI_USER_BANNED"),
        (
            InviteAttempt(403, "M_FORBIDDEN", "You don't have permission to invite users"),
            "TPI_BOT_LACKS_POWER",
        ),
        (InviteAttempt(404, "M_NOT_FOUND", "Unknown room"), "TPI_ROOM_UNKNOWN"),
        (InviteAttempt(403, "M_FORBIDDEN", "Something else"), "M_FORBIDDEN"),
    ],
)
def test_refusals_are_classified(attempt: InviteAttempt, errcode: str) -> None:
    code, message = classify_refusal(attempt, "@u:x")
    assert (code == errcode and message.endswith(".")) or "refused" in message
