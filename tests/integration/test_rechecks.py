"""Re-checks end to end: people admitted through a GitHub team binding on the real stack
(Synapse, maubot running the .mbp, the local GitHub with its member listings), then
removed from the team at GitHub, and the binding's policy doing what the admins chose:
`kick` removes them with a reason naming the rule, `notify` tells the room, `dry-run`
only writes the audit log. A provider that fails, times out, rate limits or answers with
a listing much shorter than last time removes nobody.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
import secrets

import pytest
import pytest_asyncio
from support.bot_commands import bind, command
from support.providers.github import Account, FakeGitHub
from test_provider_bindings import progress, sign_in_at_github

from devtools.matrix_user import MatrixUser
from devtools.stack import RunningStack

pytestmark = pytest.mark.integration

ORG = "matrix-org"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def github(stack: RunningStack) -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub() as server:
        server.auto_approve = True
        section = server.config_section(callback_url=f"{stack.web_url}api/oauth/callback")
        owner = server.add_account(f"owner{secrets.token_hex(2)}").join_org(ORG, role="admin")
        section["recheck"] = {"token": server.listings.personal_token(owner, {"read:org"})}
        section["webhook_secret"] = "a webhook secret"
        await stack.configure(providers={"github": section})
        yield server
        await stack.configure()


async def team_room(stack: RunningStack, github: FakeGitHub, policy: str) -> tuple[str, str, str]:
    """A room bound to a new team of the organisation, with `policy`: (room, binding, team)."""
    team = f"core{secrets.token_hex(3)}"
    github.add_team(ORG, team)
    room_id = await stack.room(f"Team {team}")
    _, binding = await bind(stack, room_id, f"github team:{ORG}/{team}")
    reply = await command(stack, room_id, f"!invitebot policy {binding} {policy}")
    assert f"policy **{policy.split()[0]}**" in reply, reply
    return room_id, binding, team


async def admitted(
    stack: RunningStack, github: FakeGitHub, room_id: str, binding: str, team: str
) -> tuple[MatrixUser, Account]:
    """Someone of the team who walked the binding's page, was invited and joined."""
    person = await stack.user("member")
    at_github = github.add_account(f"m{secrets.token_hex(3)}").join_team(ORG, team)
    async with await stack.signed_in(person) as http:
        github.sign_in_as(at_github)
        await sign_in_at_github(http, github, binding)
        assert (await progress(http, binding))["granted"] is True
    await stack.admin.wait_for_membership(room_id, person.user_id, "invite", timeout=60)
    await person.join(room_id)
    return person, at_github


def leave_team(account: Account, team: str) -> None:
    del account.teams[f"{ORG}/{team}".lower()]


async def audit_actions(stack: RunningStack, room_id: str) -> str:
    return await command(stack, room_id, "!invitebot audit 50")


async def test_kick_removes_who_left_the_team_with_the_rule_named(
    stack: RunningStack, github: FakeGitHub
) -> None:
    room_id, binding, team = await team_room(stack, github, "kick")
    alice, alice_at_github = await admitted(stack, github, room_id, binding, team)
    bob, _ = await admitted(stack, github, room_id, binding, team)
    reply = await command(stack, room_id, "!invitebot recheck")
    assert "2 people checked; all still qualify" in reply, reply

    leave_team(alice_at_github, team)
    reply = await command(stack, room_id, f"!invitebot recheck {binding}")
    assert "1 no longer qualify" in reply, reply
    await stack.admin.wait_for_membership(room_id, alice.user_id, "leave", timeout=60)
    event = await stack.admin.get_state_event(room_id, "m.room.member", alice.user_id)
    assert team in event["reason"] and "no longer" in event["reason"], event
    assert await stack.admin.membership(room_id, bob.user_id) == "join"
    log = await audit_actions(stack, room_id)
    assert "kicked" in log and alice.user_id in log
    status = await command(stack, room_id, "!invitebot status")
    assert f"`{binding}`: 2 admitted" in status and "policy kick" in status, status
    assert "last re-check" in status and "API calls" in status


async def test_notify_tells_the_room_and_dry_run_only_logs(
    stack: RunningStack, github: FakeGitHub
) -> None:
    for policy in ("notify", "dry-run"):
        room_id, binding, team = await team_room(stack, github, policy)
        carol, carol_at_github = await admitted(stack, github, room_id, binding, team)
        leave_team(carol_at_github, team)
        reply = await command(stack, room_id, f"!invitebot recheck {binding}")
        assert "1 no longer qualify" in reply, reply
        log = await audit_actions(stack, room_id)
        assert f"loss_{policy.replace('-', '_')}" in log and carol.user_id in log, log
        assert await stack.admin.membership(room_id, carol.user_id) == "join"
        notices = [
            m["body"]
            for m in await stack.admin.messages(room_id)
            if m.get("body", "").startswith("These people admitted through binding")
            and carol.user_id in m["body"]
        ]
        assert len(notices) == (1 if policy == "notify" else 0), notices


async def test_grace_waits_and_a_return_within_it_cancels(
    stack: RunningStack, github: FakeGitHub
) -> None:
    room_id, binding, team = await team_room(stack, github, "kick --grace 1d")
    dana, dana_at_github = await admitted(stack, github, room_id, binding, team)
    leave_team(dana_at_github, team)
    reply = await command(stack, room_id, f"!invitebot recheck {binding}")
    assert "1 no longer qualify" in reply, reply
    assert await stack.admin.membership(room_id, dana.user_id) == "join"
    dana_at_github.join_team(ORG, team)
    reply = await command(stack, room_id, f"!invitebot recheck {binding}")
    assert "all still qualify" in reply, reply
    log = await audit_actions(stack, room_id)
    assert "qualifies_again" in log and "kick_queued" not in log, log
    assert await stack.admin.membership(room_id, dana.user_id) == "join"


@pytest.mark.parametrize("fault", [500, "timeout", "rate_limit", "secondary", "malformed"])
async def test_a_failing_listing_removes_nobody(
    stack: RunningStack, github: FakeGitHub, fault: int | str
) -> None:
    room_id, binding, team = await team_room(stack, github, "kick")
    erin, erin_at_github = await admitted(stack, github, room_id, binding, team)
    leave_team(erin_at_github, team)
    github.listings.fail(fault)
    try:
        reply = await command(stack, room_id, f"!invitebot recheck {binding}")
    finally:
        github.listings.recover()
    assert "stopped before the end" in reply and "Nobody was touched" in reply, reply
    assert await stack.admin.membership(room_id, erin.user_id) == "join"
    assert "kick_queued" not in await audit_actions(stack, room_id)


async def test_a_listing_half_as_long_stops_and_tells_the_admins(
    stack: RunningStack, github: FakeGitHub
) -> None:
    room_id, binding, team = await team_room(stack, github, "kick")
    crowd = github.listings.generate(f"{ORG}/{team}", 40)
    frank, frank_at_github = await admitted(stack, github, room_id, binding, team)
    assert "all still qualify" in await command(stack, room_id, f"!invitebot recheck {binding}")
    crowd.remove(*crowd.ids[:20])  # half the team gone at once
    leave_team(frank_at_github, team)
    reply = await command(stack, room_id, f"!invitebot recheck {binding}")
    assert "shrank too much" in reply and "Nobody was touched" in reply, reply
    assert await stack.admin.membership(room_id, frank.user_id) == "join"
    reply = await command(stack, room_id, f"!invitebot recheck {binding} --accept-shrink")
    assert "1 no longer qualify" in reply, reply
    await stack.admin.wait_for_membership(room_id, frank.user_id, "leave", timeout=60)


async def test_policy_and_recheck_need_a_room_admin(
    stack: RunningStack, github: FakeGitHub
) -> None:
    room_id, binding, _ = await team_room(stack, github, "notify")
    grace = await stack.user("grace")
    await stack.admin.invite(room_id, grace.user_id)
    await grace.join(room_id)
    for text in (f"!invitebot policy {binding} kick", f"!invitebot recheck {binding}"):
        event_id = await grace.send_text(room_id, text)
        reply = await grace.wait_for_message(
            room_id,
            lambda c, e=event_id: (
                c.get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id") == e
            ),
            sender=stack.bot.user_id,
            timeout=60,
        )
        assert "Only people who may invite" in reply["body"], reply
    reply = await command(stack, room_id, f"!invitebot policy {binding} evict")
    assert "kick, notify, dry-run" in reply
    reply = await command(stack, room_id, f"!invitebot policy {binding} kick --grace soon")
    assert "--grace takes a duration" in reply


async def test_providers_names_the_webhook_url_to_register(
    stack: RunningStack, github: FakeGitHub
) -> None:
    room_id = await stack.room("Providers")
    reply = await command(stack, room_id, "!invitebot providers")
    assert f"GitHub: {stack.web_url}api/webhooks/github" in reply, reply
    assert "Patreon:" not in reply.partition("Webhook URLs")[2]


async def test_nobody_at_or_above_the_bots_power_is_removed(
    stack: RunningStack, github: FakeGitHub
) -> None:
    room_id, binding, team = await team_room(stack, github, "kick")
    moderator, moderator_at_github = await admitted(stack, github, room_id, binding, team)
    await stack.admin.set_power_level(room_id, moderator.user_id, 50)  # the bot's own level
    leave_team(moderator_at_github, team)
    reply = await command(stack, room_id, f"!invitebot recheck {binding}")
    assert "1 no longer qualify" in reply, reply
    told = await stack.admin.wait_for_message(
        room_id,
        lambda c: "Could not remove" in c.get("body", "") and moderator.user_id in c["body"],
        sender=stack.bot.user_id,
        timeout=60,
    )
    assert "at or above mine" in told["body"]
    assert await stack.admin.membership(room_id, moderator.user_id) == "join"


async def test_a_binding_on_a_space_removes_from_the_space_and_its_rooms(
    stack: RunningStack, github: FakeGitHub
) -> None:
    team = f"space{secrets.token_hex(3)}"
    github.add_team(ORG, team)
    space = await stack.admin.create_room(
        f"Space {team}",
        invite=[stack.bot.user_id],
        creation_content={"type": "m.space"},
        power_level_content_override={"invite": 50, "users": {stack.bot.user_id: 50}},
    )
    await stack.admin.wait_for_membership(space, stack.bot.user_id, "join", timeout=60)
    child = await stack.room(f"Room of {team}")
    via = {"via": [stack.admin.server_name]}
    await stack.admin.send_state(space, "m.space.child", via, state_key=child)
    _, binding = await bind(stack, space, f"github team:{ORG}/{team}")
    reply = await command(stack, space, f"!invitebot policy {binding} kick")
    assert "policy **kick**" in reply, reply
    person = await stack.user("spacer")
    at_github = github.add_account(f"s{secrets.token_hex(3)}").join_team(ORG, team)
    async with await stack.signed_in(person) as http:
        github.sign_in_as(at_github)
        await sign_in_at_github(http, github, binding)
        assert (await progress(http, binding))["granted"] is True
    for room_id in (space, child):
        await stack.admin.wait_for_membership(room_id, person.user_id, "invite", timeout=60)
        await person.join(room_id)
    leave_team(at_github, team)
    reply = await command(stack, space, f"!invitebot recheck {binding}")
    assert "1 no longer qualify" in reply, reply
    for room_id in (space, child):
        await stack.admin.wait_for_membership(room_id, person.user_id, "leave", timeout=60)
