"""Webhooks end to end: a signed delivery from the local GitHub (`membership`) or
Patreon (`members:pledge:delete`) reaches maubot's web server, and the binding it
concerns is re-checked at once on the real stack (Synapse, maubot running the .mbp): under
`kick`, whoever no longer qualifies is gone within seconds. Unsigned and badly signed
deliveries change nothing; a replayed one is applied once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
import secrets
import time

import pytest
import pytest_asyncio
from support.providers.github import FakeGitHub
from support.providers.github_webhooks import GitHubWebhookSender, team_membership
from support.providers.patreon import FakePatreon
from support.providers.patreon_webhooks import PatreonWebhookSender, member_document
from test_provider_bindings import (
    bind,
    command,
    follow_callback,
    post,
    progress,
)
from test_rechecks import admitted
import yarl

from devtools.stack import RunningStack

pytestmark = pytest.mark.integration

ORG = "matrix-org"
SECRET = secrets.token_hex(32)
PATREON_SECRET = secrets.token_hex(16)
# DESIGN.md: a webhook acts within 5 s. Twice that here: the suite shares two cores.
ACTS_WITHIN = 10.0


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def providers(stack: RunningStack) -> AsyncIterator[tuple[FakeGitHub, FakePatreon]]:
    callback = f"{stack.web_url}api/oauth/callback"
    async with FakeGitHub() as github, FakePatreon() as patreon:
        github.auto_approve = patreon.auto_approve = True
        section = github.config_section(callback_url=callback)
        owner = github.add_account(f"owner{secrets.token_hex(2)}").join_org(ORG, role="admin")
        section["recheck"] = {"token": github.listings.personal_token(owner, {"read:org"})}
        section["webhook_secret"] = SECRET
        patreon_section = patreon.config_section(redirect_uris=[callback], recheck=True)
        patreon_section["webhook_secret"] = PATREON_SECRET
        await stack.configure(providers={"github": section, "patreon": patreon_section})
        yield github, patreon
        await stack.configure()


@pytest.fixture
def github(providers: tuple[FakeGitHub, FakePatreon]) -> FakeGitHub:
    return providers[0]


@pytest.fixture
def patreon(providers: tuple[FakeGitHub, FakePatreon]) -> FakePatreon:
    return providers[1]


@pytest.fixture
def sender(stack: RunningStack) -> GitHubWebhookSender:
    return GitHubWebhookSender(f"{stack.web_url}api/webhooks/github", SECRET)


async def test_a_signed_delivery_removes_who_left_the_team_within_seconds(
    stack: RunningStack, github: FakeGitHub, sender: GitHubWebhookSender
) -> None:
    team = f"core{secrets.token_hex(3)}"
    github.add_team(ORG, team)
    room_id = await stack.room(f"Team {team}")
    _, binding = await bind(stack, room_id, f"github team:{ORG}/{team}")
    reply = await command(stack, room_id, f"!invitebot policy {binding} kick")
    assert "policy **kick**" in reply, reply
    alice, alice_at_github = await admitted(stack, github, room_id, binding, team)
    # Others in the team, never admitted: one leaving is a small part of the listing, so
    # the shrink guard has nothing to say.
    for _ in range(9):
        github.add_account(f"t{secrets.token_hex(3)}").join_team(ORG, team)
    reply = await command(stack, room_id, f"!invitebot recheck {binding}")
    assert "all still qualify" in reply, reply

    del alice_at_github.teams[f"{ORG}/{team}".lower()]
    removed = team_membership("removed", alice_at_github, ORG, team)
    # Unsigned, or signed with another secret: refused, and nothing happens.
    for kwargs in ({"signed": False}, {"secret": "not the secret"}):
        status, answer = await sender.send(removed, **kwargs)
        assert (status, answer["errcode"]) == (401, "TPI_WEBHOOK_SIGNATURE"), answer
    assert "webhook" not in await command(stack, room_id, "!invitebot audit 10")
    assert await stack.admin.membership(room_id, alice.user_id) == "join"

    started = time.monotonic()
    assert await sender.send(removed) == (200, {"outcome": "applied", "rechecks": 1})
    await stack.admin.wait_for_membership(room_id, alice.user_id, "leave", timeout=ACTS_WITHIN)
    elapsed = time.monotonic() - started
    print(f"webhook to kick: {elapsed:.2f} s")
    event = await stack.admin.get_state_event(room_id, "m.room.member", alice.user_id)
    assert team in event["reason"], event

    # GitHub's redelivery keeps the id: applied once.
    assert await sender.send(removed) == (200, {"outcome": "repeat", "rechecks": 0})
    log = await command(stack, room_id, "!invitebot audit 10")
    assert log.count("webhook:github") == 1 and "membership removed" in log, log


async def test_a_delivery_for_another_team_leaves_the_binding_alone(
    stack: RunningStack, github: FakeGitHub, sender: GitHubWebhookSender
) -> None:
    team = f"core{secrets.token_hex(3)}"
    github.add_team(ORG, team)
    room_id = await stack.room(f"Team {team}")
    await bind(stack, room_id, f"github team:{ORG}/{team}")
    stranger = github.add_account(f"s{secrets.token_hex(3)}")
    elsewhere = team_membership("removed", stranger, "element-hq", "core")
    assert await sender.send(elsewhere) == (200, {"outcome": "applied", "rechecks": 0})
    assert "webhook" not in await command(stack, room_id, "!invitebot audit 10")


async def test_a_signed_patreon_delivery_removes_a_former_patron_within_seconds(
    stack: RunningStack, patreon: FakePatreon
) -> None:
    room_id = await stack.room("Gold patrons")
    _, binding = await bind(stack, room_id, "patreon tier:Gold")
    reply = await command(stack, room_id, f"!invitebot policy {binding} kick")
    assert "policy **kick**" in reply, reply
    person = await stack.user("patron")
    at_patreon = patreon.add_account("Pat Patron")
    pledge = patreon.pledge(at_patreon, "Gold")
    for number in range(9):  # a small part of the listing leaves: no shrink guard
        patreon.pledge(patreon.add_account(f"Other Patron {number}"), "Gold")
    async with await stack.signed_in(person) as http:
        patreon.sign_in_as(at_patreon)
        status, started = await post(
            http, "api/oauth/start", {"binding": binding, "provider": "patreon"}
        )
        assert status == 200, started
        back = await patreon.approve(started["authorize_url"])
        await follow_callback(
            http, yarl.URL(f"{stack.web_url}api/oauth/callback").with_query(back)
        )
        assert (await progress(http, binding))["granted"] is True
    await stack.admin.wait_for_membership(room_id, person.user_id, "invite", timeout=60)
    await person.join(room_id)
    reply = await command(stack, room_id, f"!invitebot recheck {binding}")
    assert "all still qualify" in reply, reply

    pledge.patron_status, pledge.tiers, pledge.amount_cents = "former_patron", [], 0
    body = member_document(pledge)
    sender = PatreonWebhookSender(f"{stack.web_url}api/webhooks/patreon", PATREON_SECRET)
    for kwargs in ({"signed": False}, {"secret": "not the secret"}):
        status, answer = await sender.send("members:pledge:delete", body, **kwargs)
        assert (status, answer["errcode"]) == (401, "TPI_WEBHOOK_SIGNATURE"), answer
    assert await stack.admin.membership(room_id, person.user_id) == "join"

    started_at = time.monotonic()
    answer = await sender.send("members:pledge:delete", body)
    assert answer == (200, {"outcome": "applied", "rechecks": 1})
    await stack.admin.wait_for_membership(room_id, person.user_id, "leave", timeout=ACTS_WITHIN)
    print(f"Patreon webhook to kick: {time.monotonic() - started_at:.2f} s")
    repeat = await sender.send("members:pledge:delete", body)
    assert repeat == (200, {"outcome": "repeat", "rechecks": 0})
    log = await command(stack, room_id, "!invitebot audit 10")
    assert log.count("webhook:patreon") == 1 and "members:pledge:delete" in log, log
