"""GitHub's verdicts that are safe to act on, end to end through the real bot and Synapse
with the local GitHub: what GitHub hides from the app (an organisation's OAuth app
restrictions, single sign-on, a scope not granted) reads "could not tell", never "not a
member", and records nothing; `bind` refuses a repo rule on a repository GitHub does not
show the app, and binds with a note when GitHub cannot be asked; the person's token no
longer works once the check is over.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import secrets

import aiohttp
import pytest
import pytest_asyncio
from support.bot_commands import BINDING_LINK, bind, command, post
from support.providers.github import FakeGitHub
import yarl

from devtools.stack import RunningStack

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def github(stack: RunningStack) -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub() as server:
        server.auto_approve = True
        server.add_repo("matrix-org/synapse")
        server.add_repo("matrix-org/secret", private=True)
        section = server.config_section(callback_url=f"{stack.web_url}api/oauth/callback")
        await stack.configure(providers={"github": section})
        yield server
        await stack.configure()


async def sign_in_at_github(http: aiohttp.ClientSession, github: FakeGitHub, binding: str) -> None:
    status, started = await post(
        http, "api/oauth/start", {"binding": binding, "provider": "github"}
    )
    assert status == 200, started
    back = await github.visit_authorize(started["authorize_url"])
    async with http.get(yarl.URL(back), allow_redirects=False) as resp:
        assert resp.status == 303, await resp.text()


async def github_step(http: aiohttp.ClientSession, binding: str, timeout: float = 30) -> dict:
    """The GitHub step once its check has ended (as the page polls)."""
    for _ in range(int(timeout / 0.1)):
        status, body = await post(http, "api/bindings/progress", {"binding": binding})
        assert status == 200, body
        [step] = body["providers"]
        if step["state"] != "checking":
            assert body["granted"] is (step["state"] == "passed")
            return step
        await asyncio.sleep(0.1)
    raise AssertionError(f"still checking after {timeout} s")


async def api_status(github: FakeGitHub, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as client,
        client.get(f"{github.url}/api/v3/user", headers=headers) as response,
    ):
        return response.status


async def test_bind_refuses_a_repository_github_does_not_show_and_binds_when_it_cannot_ask(
    stack: RunningStack, github: FakeGitHub
) -> None:
    room_id = await stack.room("Repository people")
    for repo in ("matrix-org/secret", "matrix-org/not-there"):
        reply = await command(stack, room_id, f"!invitebot bind github repo:{repo}")
        assert "it is private, or it does not exist" in reply, reply
        assert "`repo` scope" in reply and "team rule" in reply, reply
        assert not BINDING_LINK.search(reply), reply
    reply, _ = await bind(stack, room_id, "github repo:matrix-org/synapse")
    assert "people with push access to matrix-org/synapse on GitHub" in reply
    assert "Note:" not in reply
    github.fail("api", 503)
    try:
        reply, _ = await bind(stack, room_id, "github repo:matrix-org/secret")
    finally:
        github.recover()
    assert "Note: GitHub: could not check that the repository matrix-org/secret" in reply


@pytest.mark.parametrize("hidden_by", ["restrictions", "sso", "scope"])
async def test_what_github_hides_is_unknown_records_nothing_and_the_token_is_revoked(
    stack: RunningStack, github: FakeGitHub, hidden_by: str
) -> None:
    org = f"org-{secrets.token_hex(3)}"
    github.add_org(
        org, restricts_apps=hidden_by == "restrictions", requires_sso=hidden_by == "sso"
    )
    room_id = await stack.room(f"Hidden by {hidden_by}")
    _, binding = await bind(stack, room_id, f"github team:{org}/core")
    carol = await stack.user("carol")
    at_github = github.add_account(f"carol{secrets.token_hex(2)}").join_org(org)
    at_github.join_team(org, "core")
    github.sign_in_as(at_github, grants=set() if hidden_by == "scope" else None)
    revoked_before = github.revoked_tokens
    async with await stack.signed_in(carol) as http:
        await sign_in_at_github(http, github, binding)
        step = await github_step(http, binding)
        assert step["state"] == "error" and step.get("problem") in (None, "unknown"), step
        expected = {
            "restrictions": ("has not approved this app", "press Request next to"),
            "sso": ("single sign-on", f"/orgs/{org}/sso"),
            "scope": ("you did not allow", "Sign in again and allow read:org"),
        }[hidden_by]
        assert expected[0] in step["reason"] and expected[1] in step["remedy"], step
        async with http.get("api/invites") as resp:
            assert (await resp.json())["invites"] == []
    # The token is revoked once the check is over (in the background: the outcome above
    # did not wait for it).
    for _ in range(300):
        if github.revoked_tokens > revoked_before:
            break
        await asyncio.sleep(0.1)
    assert github.revoked_tokens == revoked_before + 1
    [token] = [t for t, issued in github._tokens.items() if issued.account is at_github]
    assert await api_status(github, token) == 401
