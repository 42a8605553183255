"""Re-checks through GitLab's `members/all`, end to end on the real stack with the local
GitLab and the operator's group access token: someone removed from the group, someone
whose membership went back to awaiting a seat and a blocked user are kicked, while a
member through a shared group and a member by inheritance stay; a rate limit removes
nobody.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from support.bot_commands import command
from support.providers.gitlab import FakeGitLab, GitLabAccount
from test_gitlab_oidc_verdicts import bind, walk

from devtools.matrix_user import MatrixUser
from devtools.stack import RunningStack

pytestmark = pytest.mark.integration

CROWD = 30  # members who never came to the room (keeps the shrink guard calm)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gitlab(stack: RunningStack) -> AsyncIterator[FakeGitLab]:
    callback = f"{stack.web_url}api/oauth/callback"
    async with FakeGitLab() as server:
        server.auto_approve = True
        server.page_size_cap = 7  # many short pages
        for n in range(CROWD):
            server.add_account(f"crowd{n}", groups={"gnome": "guest"})
        section = server.config_section(redirect_uris=[callback])
        section["recheck"] = {"token": server.add_group_token("gnome")}
        await stack.configure(providers={"gitlab": section})
        yield server
        await stack.configure()


async def test_gitlab_leavers_awaiting_and_blocked_go_shared_and_inherited_stay(
    stack: RunningStack, gitlab: FakeGitLab
) -> None:
    gitlab.add_group("gnome/infra")
    gitlab.share_group("gnome", "friends", "developer")
    room_id, binding = await bind(stack, "gitlab group:gnome/infra")
    assert "policy **kick**" in await command(stack, room_id, f"!invitebot policy {binding} kick")
    people: dict[str, tuple[MatrixUser, GitLabAccount]] = {}
    for name, groups in [
        ("leaver", {"gnome": "developer"}),
        ("awaiting", {"gnome": "developer"}),
        ("blocked", {"gnome/infra": "developer"}),
        ("friend", {"friends": "owner"}),
        ("inherited", {"gnome": "owner"}),
    ]:
        account = gitlab.add_account(name, groups=groups)
        person = await stack.user("gitlab")
        gitlab.sign_in_as(account)
        step, invites, _ = await walk(stack, "gitlab", binding, gitlab.approve, person)
        assert step["state"] == "passed" and invites, step
        await stack.admin.wait_for_membership(room_id, person.user_id, "invite", timeout=60)
        await person.join(room_id)
        people[name] = (person, account)
    reply = await command(stack, room_id, f"!invitebot recheck {binding}")
    assert "5 people checked; all still qualify" in reply, reply

    gitlab.set_role(people["leaver"][1], "gnome", None)
    gitlab.set_role(people["awaiting"][1], "gnome", None)
    gitlab.set_awaiting(people["awaiting"][1], "gnome", "developer")
    people["blocked"][1].state = "blocked"
    reply = await command(stack, room_id, f"!invitebot recheck {binding}")
    assert "3 no longer qualify" in reply, reply
    for gone in ("leaver", "awaiting", "blocked"):
        await stack.admin.wait_for_membership(room_id, people[gone][0].user_id, "leave", 60)
    for stays in ("friend", "inherited"):
        assert await stack.admin.membership(room_id, people[stays][0].user_id) == "join"

    # A rate limit stops the re-check; nobody is touched.
    gitlab.set_role(people["inherited"][1], "gnome", None)
    gitlab.fail("members", 429)
    try:
        reply = await command(stack, room_id, f"!invitebot recheck {binding}")
    finally:
        gitlab.clear_failures()
    assert "Nobody was touched" in reply and "rate limited" in reply, reply
    assert await stack.admin.membership(room_id, people["inherited"][0].user_id) == "join"
