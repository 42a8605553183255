"""Per-person re-checks at an OpenID provider (it has no member list), end to end on the
real stack with the real OpenID provider (devtools/oidc): with `keep_refresh_tokens` and
`rechecks.token_key`, a person who left the group is kicked at the next re-check, one who
stays stays, and one whose refresh token the provider no longer accepts is "could not
tell", never a loss.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
import os

import pytest
import pytest_asyncio
from support.bot_commands import command
from support.providers.oidc_login import log_in
from test_gitlab_oidc_verdicts import bind, walk

from devtools.matrix_user import MatrixUser
from devtools.oidc_provider import OIDCAccount, OIDCProvider
from devtools.stack import RunningStack

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def op(
    stack: RunningStack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[OIDCProvider]:
    callback = f"{stack.web_url}api/oauth/callback"
    async with OIDCProvider(tmp_path_factory.mktemp("op")) as provider:
        section = provider.config_section(redirect_uris=[callback], name="Staff SSO")
        section["keep_refresh_tokens"] = True
        key = base64.urlsafe_b64encode(os.urandom(32)).decode()
        await stack.configure(providers={"oidc": {"sso": section}}, rechecks={"token_key": key})
        yield provider
        await stack.configure()


async def admitted(
    stack: RunningStack, op: OIDCProvider, room_id: str, binding: str, account: OIDCAccount
) -> MatrixUser:
    person = await stack.user("sso")
    callback = f"{stack.web_url}api/oauth/callback"

    async def approve(url: str) -> dict:
        return await log_in(url, account, callback)

    step, invites, url = await walk(stack, "sso", binding, approve, person)
    assert step["state"] == "passed" and invites, step
    assert "offline_access" in url  # the refresh token is what the re-check needs
    await stack.admin.wait_for_membership(room_id, person.user_id, "invite", timeout=60)
    await person.join(room_id)
    return person


async def test_leavers_go_stayers_stay_and_lost_tokens_are_not_a_loss(
    stack: RunningStack, op: OIDCProvider
) -> None:
    room_id, binding = await bind(stack, "sso groups:staff")
    assert "policy **kick**" in await command(stack, room_id, f"!invitebot policy {binding} kick")
    accounts = {name: op.add_account(f"{name}-op", "pw", groups=["staff"]) for name in "abc"}
    people = {
        name: await admitted(stack, op, room_id, binding, account)
        for name, account in accounts.items()
    }
    reply = await command(stack, room_id, f"!invitebot recheck {binding}")
    assert "3 people checked; all still qualify" in reply, reply

    op.set_groups("a-op", ["visitors"])  # left staff
    op.remove_account("c-op")  # its refresh token no longer works: cannot tell
    reply = await command(stack, room_id, f"!invitebot recheck {binding}")
    assert "1 no longer qualify" in reply and "1 could not be checked" in reply, reply
    await stack.admin.wait_for_membership(room_id, people["a"].user_id, "leave", 60)
    for stays in ("b", "c"):
        assert await stack.admin.membership(room_id, people[stays].user_id) == "join"
