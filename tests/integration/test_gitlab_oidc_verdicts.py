"""GitLab's and OpenID Connect's verdicts that are safe to act on, end to end through the
real bot and Synapse: the local GitLab (members API with the operator's group token) and
the real OpenID provider (devtools/oidc) answering as Keycloak with a group mapper.

GitLab: a member, a member through a shared group and a member by inheritance are
invited; a member of a subgroup only and a membership awaiting a seat are refused; people
grant only `openid`; each token is revoked once the check is over. OpenID Connect: the
Keycloak example works (no `groups` scope asked), an unverified address is refused, an
address whose verification is not said and Entra's group overage are "could not tell".
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import attrs
import pytest
import pytest_asyncio
from support.bot_commands import bind_new_room as bind
from support.bot_commands import command, walk_provider
from support.providers.gitlab import FakeGitLab
from support.providers.oidc_login import log_in
import yarl

from devtools.matrix_user import MatrixUser
from devtools.oidc_provider import OIDCProvider
from devtools.stack import RunningStack

pytestmark = pytest.mark.integration


@attrs.frozen
class Providers:
    gitlab: FakeGitLab
    keycloak: OIDCProvider


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def providers(
    stack: RunningStack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Providers]:
    callback = f"{stack.web_url}api/oauth/callback"
    workdir = tmp_path_factory.mktemp("keycloak")
    async with FakeGitLab() as gitlab, OIDCProvider(workdir, keycloak_like=True) as keycloak:
        gitlab.auto_approve = True
        gitlab_section = gitlab.config_section(redirect_uris=[callback])
        gitlab_section["recheck"] = {"token": gitlab.add_group_token("gnome")}
        kc = keycloak.config_section(redirect_uris=[callback], name="Our Keycloak")
        await stack.configure(providers={"gitlab": gitlab_section, "oidc": {"kc": kc}})
        yield Providers(gitlab, keycloak)
        await stack.configure()


async def test_gitlab_members_as_gitlab_counts_them(
    stack: RunningStack, providers: Providers
) -> None:
    gitlab = providers.gitlab
    gitlab.add_group("gnome/infra")
    gitlab.share_group("gnome", "friends", "reporter")
    room_id, binding = await bind(stack, "gitlab group:gnome")
    cases = [
        (gitlab.add_account("direct", groups={"gnome": "developer"}), "passed", ""),
        (gitlab.add_account("friend", groups={"friends": "owner"}), "passed", ""),
        (gitlab.add_account("sub", groups={"gnome/infra": "owner"}), "failed", "not a member"),
    ]
    waiting = gitlab.add_account("waiting")
    gitlab.set_awaiting(waiting, "gnome", "developer")
    cases.append((waiting, "failed", "waiting for a seat"))  # the operator's token sees it
    for account, outcome, says in cases:
        revoked_before = gitlab.revoked_tokens
        gitlab.sign_in_as(account)
        step, invites, url = await walk(stack, "gitlab", binding, gitlab.approve)
        assert step["state"] == outcome and says in step.get("reason", ""), (account, step)
        assert yarl.URL(url).query["scope"] == "openid"  # the operator's token asks
        if outcome == "passed":
            assert [(i["room_id"], i["outcome"]) for i in invites] == [(room_id, "invited")]
        else:
            assert step["problem"] == "not_qualified" and step["remedy"], step
            assert invites == []
        for _ in range(100):  # revoked in the background, once the check is over
            if gitlab.revoked_tokens > revoked_before:
                break
            await asyncio.sleep(0.05)
        assert gitlab.revoked_tokens == revoked_before + 1


async def test_gitlab_bind_refuses_a_group_the_token_cannot_see(
    stack: RunningStack, providers: Providers
) -> None:
    providers.gitlab.add_group("kde")
    room_id = await stack.room("kde")
    reply = await command(stack, room_id, "!invitebot bind gitlab group:kde")
    assert "cannot see a group kde" in reply, reply


@pytest.mark.parametrize(
    ("account", "rule", "outcome", "says"),
    [
        ({"groups": ["staff"]}, "kc groups:staff", "passed", ""),
        ({"groups": ["visitors"]}, "kc groups:staff", "failed", "not in group staff"),
        ({"groups": ["staff"], "group_overage": True}, "kc groups:staff", "error", "overage"),
        ({"email_verified": False}, "kc email:*@example.test", "failed", "not verified"),
        ({"email_verified": "omit"}, "kc email:*@example.test", "error", "did not say"),
    ],
    ids=["member", "not a member", "group overage", "unverified", "verification unsaid"],
)
async def test_keycloak_verdicts(
    stack: RunningStack, providers: Providers, account: dict, rule: str, outcome: str, says: str
) -> None:
    keycloak = providers.keycloak
    room_id, binding = await bind(stack, rule)
    person = keycloak.add_account(f"kc-{len(keycloak.accounts)}", "kc-password", **account)
    callback = f"{stack.web_url}api/oauth/callback"

    async def approve(url: str) -> dict:
        return await log_in(url, person, callback)

    step, invites, url = await walk(stack, "kc", binding, approve)
    assert step["state"] == outcome and says in step.get("reason", ""), step
    assert "groups" not in yarl.URL(url).query["scope"].split()  # Keycloak would refuse it
    assert [i["room_id"] for i in invites] == ([room_id] if outcome == "passed" else [])
    if outcome != "passed":
        assert step["remedy"], step


async def walk(
    stack: RunningStack,
    provider: str,
    binding: str,
    approve: Callable[[str], Awaitable[dict]],
    user: MatrixUser | None = None,
) -> tuple[dict, list, str]:
    """(The step once checked, the invites, the authorization URL.)"""
    walked = await walk_provider(stack, provider, binding, approve, user)
    return walked.step, walked.invites, walked.authorize_url
