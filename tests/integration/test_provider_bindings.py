"""Rooms gated by a provider, end to end: a room admin binds a room with a real command,
people sign in with their Matrix ID (a real OpenID token from Synapse) and at a local
GitHub that answers as GitHub documents, and the bot invites them through the real queue.

The browser tests walk the same path in Chromium; these drive the HTTP API directly so
the adversarial cases (forged, replayed, foreign and expired state, racing accounts) can
be aimed precisely.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import contextlib
import re
import secrets
import sqlite3

import aiohttp
import pytest
import pytest_asyncio
from support.bot_commands import bind, command, post
from support.providers.github import FakeGitHub
import yarl

from devtools.matrix_user import MatrixUser
from devtools.stack import RunningStack

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def github(stack: RunningStack) -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub() as server:
        server.auto_approve = True
        section = server.config_section(callback_url=f"{stack.web_url}api/oauth/callback")
        await stack.configure(providers={"github": section})
        yield server
        await stack.configure()


async def sign_in_at_github(
    http: aiohttp.ClientSession, github: FakeGitHub, binding: str
) -> yarl.URL:
    """Leave for GitHub from the page and come back: where the callback sends the page."""
    status, started = await post(
        http, "api/oauth/start", {"binding": binding, "provider": "github"}
    )
    assert status == 200, started
    back = await github.visit_authorize(started["authorize_url"])
    return await follow_callback(http, back)


async def follow_callback(http: aiohttp.ClientSession, back: yarl.URL) -> yarl.URL:
    async with http.get(back, allow_redirects=False) as resp:
        assert resp.status == 303, await resp.text()
        return yarl.URL(resp.headers["Location"])


async def progress_now(http: aiohttp.ClientSession, binding: str) -> dict:
    status, body = await post(http, "api/bindings/progress", {"binding": binding})
    assert status == 200, body
    return body


async def progress(http: aiohttp.ClientSession, binding: str, timeout: float = 30) -> dict:
    """Where the walk stands once no provider's check is running (as the page asks)."""
    for _ in range(int(timeout / 0.1)):
        body = await progress_now(http, binding)
        if all(p["state"] != "checking" for p in body["providers"]):
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"still checking after {timeout} s: {body}")


async def invited_rooms(http: aiohttp.ClientSession, timeout: float = 60) -> dict[str, dict]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        async with http.get("api/invites") as resp:
            invites = {i["room_id"]: i for i in (await resp.json())["invites"]}
        if invites and all(i["state"] != "pending" for i in invites.values()):
            return invites
        if asyncio.get_running_loop().time() > deadline:
            return invites
        await asyncio.sleep(0.25)


async def test_a_team_member_gets_in_and_others_are_told_why_not(
    stack: RunningStack, github: FakeGitHub
) -> None:
    room_id = await stack.room("Core team")
    reply, binding = await bind(stack, room_id, "github team:matrix-org/core")
    assert "members of team core of matrix-org on GitHub" in reply.replace("the ", "")

    alice = await stack.user("alice")
    alice_at_github = github.add_account(f"alice{secrets.token_hex(2)}").join_team(
        "matrix-org", "core"
    )
    async with await stack.signed_in(alice) as http:
        status, inspected = await post(http, "api/bindings/inspect", {"binding": binding})
        assert status == 200 and inspected["providers"] == [{"id": "github", "name": "GitHub"}]
        assert [r["room_id"] for r in inspected["rooms"]] == [room_id]
        github.sign_in_as(alice_at_github)
        landing = await sign_in_at_github(http, github, binding)
        assert landing.path.endswith("/join") and landing.fragment == binding
        state = await progress(http, binding)
        assert state["granted"] is True
        assert state["providers"][0]["state"] == "passed"
        assert state["providers"][0]["account"] == alice_at_github.login
        invites = await invited_rooms(http)
    assert invites[room_id]["outcome"] == "invited"
    await stack.admin.wait_for_membership(room_id, alice.user_id, "invite", timeout=60)
    # PKCE was used, and the client secret never travelled in a URL.
    token_requests = github.requests_to("/login/oauth/access_token")
    assert token_requests and all("client_secret" not in r.query for r in token_requests)
    assert any("code_challenge" in r.query for r in github.requests_to("/login/oauth/authorize"))

    bob = await stack.user("bob")
    bob_at_github = github.add_account(f"bob{secrets.token_hex(2)}").join_org("matrix-org")
    async with await stack.signed_in(bob) as http:
        github.sign_in_as(bob_at_github)
        await sign_in_at_github(http, github, binding)
        state = await progress(http, binding)
        assert state["granted"] is False
        [github_state] = state["providers"]
        assert (github_state["state"], github_state["problem"]) == ("failed", "not_qualified")
        assert "core" in github_state["reason"] and "matrix-org" in github_state["reason"]
        async with http.get("api/invites") as resp:
            assert (await resp.json())["invites"] == []


async def test_one_github_account_admits_one_matrix_id_even_when_racing(
    stack: RunningStack, github: FakeGitHub
) -> None:
    room_id = await stack.room("One seat each")
    _, binding = await bind(stack, room_id, "github org:matrix-org")
    shared = github.add_account(f"shared{secrets.token_hex(2)}").join_org("matrix-org")
    people = [await stack.user(f"racer{i}") for i in range(3)]
    sessions = [await stack.signed_in(person) for person in people]
    try:
        github.sign_in_as(shared)
        backs = []
        for http in sessions:
            _, started = await post(
                http, "api/oauth/start", {"binding": binding, "provider": "github"}
            )
            backs.append(await github.visit_authorize(started["authorize_url"]))
        # All three come back at once with the same GitHub account.
        await asyncio.gather(
            *(follow_callback(h, b) for h, b in zip(sessions, backs, strict=True))
        )
        states = [await progress(http, binding) for http in sessions]
    finally:
        for http in sessions:
            await http.close()
    granted = [s for s in states if s["granted"]]
    refused = [s for s in states if not s["granted"]]
    assert len(granted) == 1 and len(refused) == 2
    for state in refused:
        [github_state] = state["providers"]
        assert (github_state["state"], github_state["problem"]) == ("failed", "account_in_use")
        assert "already been used" in github_state["reason"]
        # The refusal does not say who holds the seat.
        assert all(p.user_id not in github_state["reason"] for p in people)


async def test_forged_replayed_foreign_and_missing_state_do_nothing(
    stack: RunningStack, github: FakeGitHub
) -> None:
    room_id = await stack.room("Guarded")
    _, binding = await bind(stack, room_id, "github org:matrix-org")
    carol, mallory = await stack.user("carol"), await stack.user("mallory")
    carol_at_github = github.add_account(f"carol{secrets.token_hex(2)}").join_org("matrix-org")
    async with (
        await stack.signed_in(carol) as carol_http,
        await stack.signed_in(mallory) as mallory_http,
    ):
        # A state nobody issued.
        forged = f"{stack.web_url}api/oauth/callback?code=abc&state={secrets.token_urlsafe(32)}"
        landing = await follow_callback(carol_http, yarl.URL(forged))
        assert landing.fragment == "problem=state_invalid"
        # No state, hostile values, an absurd code: still a clean redirect.
        for query in ("code=abc", "state=%00%ff&code=x", f"state={'a' * 5000}&code=x", ""):
            landing = await follow_callback(
                carol_http, yarl.URL(f"{stack.web_url}api/oauth/callback?{query}", encoded=True)
            )
            assert landing.fragment.startswith("problem=")

        github.sign_in_as(carol_at_github)
        _, started = await post(
            carol_http, "api/oauth/start", {"binding": binding, "provider": "github"}
        )
        back = await github.visit_authorize(started["authorize_url"])
        # Carol's callback in Mallory's browser (a login-CSRF or a stolen URL): refused,
        # and Carol's state survives it.
        landing = await follow_callback(mallory_http, back)
        assert landing.fragment == "problem=state_invalid"
        assert (await progress(mallory_http, binding))["granted"] is False
        # Without any session cookie at all.
        async with aiohttp.ClientSession() as anonymous:
            async with anonymous.get(back, allow_redirects=False) as resp:
                assert resp.status == 303
                assert yarl.URL(resp.headers["Location"]).fragment == "problem=session_missing"
        # Carol finishes; the same callback again (a reload, a replay) does nothing more.
        landing = await follow_callback(carol_http, back)
        assert landing.fragment == binding
        assert (await progress(carol_http, binding))["granted"] is True
        landing = await follow_callback(carol_http, back)
        assert landing.fragment == "problem=state_invalid"


async def test_provider_down_records_nothing_and_a_retry_works(
    stack: RunningStack, github: FakeGitHub
) -> None:
    room_id = await stack.room("Flaky provider")
    _, binding = await bind(stack, room_id, "github org:matrix-org")
    dave = await stack.user("dave")
    dave_at_github = github.add_account(f"dave{secrets.token_hex(2)}").join_org("matrix-org")
    async with await stack.signed_in(dave) as http:
        github.sign_in_as(dave_at_github)
        for failure in (503, "timeout", "malformed"):
            github.fail("api", failure)
            await sign_in_at_github(http, github, binding)
            state = await progress(http, binding)
            assert state["granted"] is False
            assert state["providers"][0]["state"] == "error", failure
            assert state["providers"][0]["problem"] == "unknown", failure
            assert "GitHub" in state["providers"][0]["reason"]
            github.recover()
        async with http.get("api/invites") as resp:
            assert (await resp.json())["invites"] == []
        github.fail("token", 502)
        await sign_in_at_github(http, github, binding)
        assert (await progress(http, binding))["providers"][0]["state"] == "error"
        github.recover()
        # Declining at GitHub is an error outcome too, with words for it.
        github.auto_approve = "deny"
        await sign_in_at_github(http, github, binding)
        [cancelled] = (await progress(http, binding))["providers"]
        assert (cancelled["state"], cancelled["problem"]) == ("error", "cancelled")
        assert "cancelled" in cancelled["reason"]
        github.auto_approve = True
        await sign_in_at_github(http, github, binding)
        assert (await progress(http, binding))["granted"] is True


async def test_a_binding_link_sent_by_dm_answers_with_a_personal_sign_in_link(
    stack: RunningStack, github: FakeGitHub
) -> None:
    room_id = await stack.room("By direct message")
    _, binding = await bind(stack, room_id, "github org:matrix-org")
    erin: MatrixUser = await stack.user("erin")
    erin_at_github = github.add_account(f"erin{secrets.token_hex(2)}").join_org("matrix-org")
    dm = await erin.create_dm(stack.bot.user_id)
    await erin.wait_for_membership(dm, stack.bot.user_id, "join", timeout=60)
    await erin.send_text(dm, f"!invitebot claim {stack.web_url}join#{binding}")
    reply = await erin.wait_for_message(
        dm, lambda c: "/join#" in c.get("body", ""), sender=stack.bot.user_id, timeout=60
    )
    match = re.search(r"/join#([A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]{43})", reply["body"])
    assert match and match.group(1) == binding, reply["body"]
    ticket = match.group(2)
    async with stack.web_client() as http:
        status, redeemed = await post(http, "api/session/ticket", {"ticket": ticket})
        assert status == 200 and redeemed["user_id"] == erin.user_id
        assert redeemed["binding"] == binding
        github.sign_in_as(erin_at_github)
        await sign_in_at_github(http, github, binding)
        assert (await progress(http, binding))["granted"] is True
        assert (await invited_rooms(http))[room_id]["outcome"] == "invited"
    # A ticket works once.
    async with stack.web_client() as http:
        status, body = await post(http, "api/session/ticket", {"ticket": ticket})
        assert (status, body["errcode"]) == (410, "TPI_TICKET_INVALID")


async def test_bind_refuses_what_it_cannot_check_and_unbind_withdraws_the_link(
    stack: RunningStack, github: FakeGitHub
) -> None:
    room_id = await stack.room("Strict")
    for rules, expected in (
        ("gitlab group:x", "not set up on this bot"),
        ("nosuch org:x", "no provider 'nosuch'"),
        ("github team:nonsense", "team"),
        ("github org:ok and", "one rule per provider"),
    ):
        reply = await command(stack, room_id, f"!invitebot bind {rules}")
        assert expected in reply, (rules, reply)
    _, binding = await bind(stack, room_id, "github org:matrix-org")
    listed = await command(stack, room_id, "!invitebot bindings")
    assert binding in listed and "organisation matrix-org" in listed, listed
    assert "is removed" in await command(stack, room_id, f"!invitebot unbind {binding}")
    async with stack.web_client() as http:
        status, body = await post(http, "api/bindings/inspect", {"binding": binding})
        assert (status, body["errcode"]) == (410, "TPI_BINDING_REMOVED")


async def test_expired_state_another_sessions_code_and_another_binding_pass_nothing(
    stack: RunningStack, github: FakeGitHub
) -> None:
    room_a, room_b = await stack.room("Open to the org"), await stack.room("Open to a team")
    _, binding_a = await bind(stack, room_a, "github org:matrix-org")
    _, binding_b = await bind(stack, room_b, "github team:matrix-org/secret-team")
    frank, grace = await stack.user("frank"), await stack.user("grace")
    frank_at_github = github.add_account(f"frank{secrets.token_hex(2)}").join_org("matrix-org")
    grace_at_github = github.add_account(f"grace{secrets.token_hex(2)}").join_org("matrix-org")
    async with (
        await stack.signed_in(frank) as frank_http,
        await stack.signed_in(grace) as grace_http,
    ):
        # Passing binding A's rules says nothing about binding B's.
        github.sign_in_as(frank_at_github)
        await sign_in_at_github(frank_http, github, binding_a)
        assert (await progress(frank_http, binding_a))["granted"] is True
        state_b = await progress(frank_http, binding_b)
        assert state_b["granted"] is False and state_b["providers"][0]["state"] == "todo"

        # Grace's code, brought back with a state of Frank's own: the code was issued
        # for Grace's PKCE challenge, so the exchange fails and nothing is recorded.
        github.sign_in_as(grace_at_github)
        _, grace_started = await post(
            grace_http, "api/oauth/start", {"binding": binding_b, "provider": "github"}
        )
        grace_back = await github.visit_authorize(grace_started["authorize_url"])
        _, frank_started = await post(
            frank_http, "api/oauth/start", {"binding": binding_b, "provider": "github"}
        )
        frank_state = yarl.URL(frank_started["authorize_url"]).query["state"]
        spliced = grace_back.update_query(state=frank_state)
        assert (await follow_callback(frank_http, spliced)).fragment == binding_b
        [spliced_state] = (await progress(frank_http, binding_b))["providers"]
        assert spliced_state["state"] == "error" and spliced_state["account"] is None

        # A state past its 10 minutes: refused with words, nothing recorded.
        _, started = await post(
            grace_http, "api/oauth/start", {"binding": binding_a, "provider": "github"}
        )
        back = await github.visit_authorize(started["authorize_url"])
        with contextlib.closing(sqlite3.connect(stack.plugin_database())) as db, db:
            db.execute("UPDATE oauth_states SET expires_at = 1")
        assert (await follow_callback(grace_http, back)).fragment == binding_a
        [expired] = (await progress(grace_http, binding_a))["providers"]
        assert expired["state"] == "error" and "10 minutes" in expired["reason"]
        assert (await progress(grace_http, binding_a))["granted"] is False


async def test_the_callback_answers_at_once_while_github_is_slow(
    stack: RunningStack, github: FakeGitHub
) -> None:
    """Back from GitHub, the browser is on the page at once: the exchange and the checks
    run behind the redirect, the page reads "checking", and the outcome follows."""
    room_id = await stack.room("Patient")
    _, binding = await bind(stack, room_id, "github org:matrix-org")
    heidi = await stack.user("heidi")
    heidi_at_github = github.add_account(f"heidi{secrets.token_hex(2)}").join_org("matrix-org")
    async with await stack.signed_in(heidi) as http:
        github.sign_in_as(heidi_at_github)
        _, started = await post(
            http, "api/oauth/start", {"binding": binding, "provider": "github"}
        )
        back = await github.visit_authorize(started["authorize_url"])
        asked_about_people = len(github.requests_to("/api/v3/user"))
        release = github.hold("token")  # GitHub does not answer the code exchange yet
        try:
            # GitHub may take 10 s: the redirect may not.
            landing = await asyncio.wait_for(follow_callback(http, back), 2)
            assert landing.fragment == binding
            for _ in range(3):  # and it stays "checking" for as long as GitHub is slow
                state = await progress_now(http, binding)
                [github_state] = state["providers"]
                assert (github_state["state"], github_state["problem"]) == ("checking", None)
                assert state["granted"] is False and github_state["account"] is None
                await asyncio.sleep(0.3)
            # Nothing was asked or guessed meanwhile.
            assert len(github.requests_to("/api/v3/user")) == asked_about_people
        finally:
            release()
        state = await progress(http, binding)
        [github_state] = state["providers"]
        assert (github_state["state"], github_state["problem"]) == ("passed", None)
        assert github_state["account"] == heidi_at_github.login and state["granted"] is True
        assert (await invited_rooms(http))[room_id]["outcome"] == "invited"


async def test_a_restart_during_a_check_ends_it_with_an_outcome(
    stack: RunningStack, github: FakeGitHub
) -> None:
    """A config change rebuilds the services while GitHub still holds a check: the check
    is stopped, and its step says so instead of staying "checking"; a new try works."""
    room_id = await stack.room("Interrupted")
    _, binding = await bind(stack, room_id, "github org:matrix-org")
    ivan = await stack.user("ivan")
    ivan_at_github = github.add_account(f"ivan{secrets.token_hex(2)}").join_org("matrix-org")
    async with await stack.signed_in(ivan) as http:
        github.sign_in_as(ivan_at_github)
        _, started = await post(
            http, "api/oauth/start", {"binding": binding, "provider": "github"}
        )
        back = await github.visit_authorize(started["authorize_url"])
        release = github.hold("token")
        try:
            await asyncio.wait_for(follow_callback(http, back), 2)
            assert (await progress_now(http, binding))["providers"][0]["state"] == "checking"
            section = github.config_section(callback_url=f"{stack.web_url}api/oauth/callback")
            # The same settings, written differently: maubot hands the plugin a new config.
            await stack.configure(providers={"github": section, "max_matrix_ids_per_account": 1})
            [interrupted] = (await progress(http, binding))["providers"]
        finally:
            release()
        assert (interrupted["state"], interrupted["problem"]) == ("error", "unknown")
        assert "restarted" in interrupted["reason"]
        await sign_in_at_github(http, github, binding)
        assert (await progress(http, binding))["granted"] is True
