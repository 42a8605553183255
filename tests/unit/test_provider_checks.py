"""The callback answers at once and the check runs behind it: the real sign-in service over
the plugin's database (SQLite, and PostgreSQL where available), the real GitHub provider
against the local GitHub, and the real grants. Whatever happens to a check (a pass, a no,
a slow or broken provider, a stop), its "checking" row is replaced by an outcome the page
can word: `problem` says which kind of no it is."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
import secrets
from typing import Any

import attrs
import pytest
import pytest_asyncio
from support.providers.github import Account, FakeGitHub

from thirdparty_invite.durations import now_ms
from thirdparty_invite.net.guard import AddressPolicy
from thirdparty_invite.net.http import OutboundHTTP
from thirdparty_invite.providers.registry import ProviderRegistry, read_provider_settings
from thirdparty_invite.services import provider_checks
from thirdparty_invite.services.bindings import BindingService
from thirdparty_invite.services.grants import GrantService
from thirdparty_invite.services.provider_signin import (
    CHECK_ABANDONED_MS,
    ProviderSignIn,
    secret_hash,
)
from thirdparty_invite.storage import BindingAttempt, Storage

CALLBACK = "http://127.0.0.1:9/api/oauth/callback"  # never contacted: tests read the redirect
ROOM = "!gated:example.org"


@attrs.define
class World:
    github: FakeGitHub
    signin: ProviderSignIn
    storage: Storage
    binding: str


@pytest_asyncio.fixture
async def world(storage: Storage) -> AsyncIterator[World]:
    async with FakeGitHub() as github:
        github.auto_approve = True
        github.add_org("matrix-org")
        http = OutboundHTTP(timeout=5.0, policy=AddressPolicy())
        problems: list[str] = []
        settings = read_provider_settings(
            {"github": github.config_section(callback_url=CALLBACK)}, problems
        )
        assert problems == []
        registry = ProviderRegistry(settings, http)
        bindings = BindingService(storage, registry)
        view = await bindings.create("@admin:example.org", "github org:matrix-org", (ROOM,))
        grants = GrantService(storage, lambda: None)
        signin = ProviderSignIn(storage, bindings, grants, CALLBACK, 1)
        try:
            yield World(github, signin, storage, view.binding.public_id)
        finally:
            await signin.stop(grace=1.0)
            await registry.close()
            await http.close()


@attrs.frozen
class Person:
    session_id: str
    user_id: str


def person(name: str) -> Person:
    return Person(secrets.token_urlsafe(24), f"@{name}{secrets.token_hex(3)}:example.org")


def member(world: World, name: str) -> Account:
    return world.github.add_account(f"{name}{secrets.token_hex(2)}").join_org("matrix-org")


async def come_back(world: World, who: Person, **answer: Any) -> None:
    """Start at GitHub, come back: the callback must answer within a second."""
    url = await world.signin.start(who.session_id, who.user_id, world.binding, "github")
    back = await world.github.visit_authorize(url)
    query = dict(back.query) | answer
    result = await asyncio.wait_for(
        world.signin.callback(
            who.session_id, query.get("state"), query.get("code"), query.get("error")
        ),
        1.0,
    )
    assert (result.public_id, result.problem) == (world.binding, None)


async def step(world: World, who: Person) -> dict[str, Any]:
    progress = await world.signin.progress(who.session_id, who.user_id, world.binding)
    [provider] = progress.providers
    return attrs.asdict(provider) | {"granted": progress.granted is not None}


async def settled(world: World, who: Person, timeout: float = 15) -> dict[str, Any]:
    """The step once its check has ended (as the page polls)."""
    for _ in range(int(timeout / 0.02)):
        state = await step(world, who)
        if state["state"] != "checking":
            return state
        await asyncio.sleep(0.02)
    raise AssertionError(f"still checking after {timeout} s")


async def checking(world: World, who: Person) -> Callable[[], None]:
    """Come back while GitHub's API is held: the step reads "checking" until released."""
    release = world.github.hold("api")
    await come_back(world, who)
    state = await step(world, who)
    assert (state["state"], state["problem"], state["account"]) == ("checking", None, None)
    assert state["granted"] is False
    return release


async def test_the_callback_answers_while_github_is_slow_and_the_outcome_follows(
    world: World,
) -> None:
    alice = person("alice")
    world.github.sign_in_as(member(world, "alice"))
    release = await checking(world, alice)
    await asyncio.sleep(0.2)
    assert (await step(world, alice))["state"] == "checking"  # still held: nothing guessed
    release()
    state = await settled(world, alice)
    assert (state["state"], state["problem"], state["granted"]) == ("passed", None, True)


async def test_each_kind_of_no_is_recorded_apart(world: World) -> None:
    outsider = person("outsider")
    world.github.sign_in_as(world.github.add_account(f"out{secrets.token_hex(2)}"))
    await come_back(world, outsider)
    state = await settled(world, outsider)
    assert (state["state"], state["problem"]) == ("failed", "not_qualified")

    # One GitHub account admits one Matrix ID here: the second is told it was used.
    shared = member(world, "shared")
    first, second = person("first"), person("second")
    world.github.sign_in_as(shared)
    await come_back(world, first)
    assert (await settled(world, first))["granted"] is True
    await come_back(world, second)
    state = await settled(world, second)
    assert (state["state"], state["problem"], state["granted"]) == (
        "failed",
        "account_in_use",
        False,
    )

    canceller = person("canceller")
    await come_back(world, canceller, error="access_denied", code="")
    state = await step(world, canceller)  # nothing to check: recorded at once
    assert (state["state"], state["problem"]) == ("error", "cancelled")

    down = person("down")
    world.github.fail("api", 503)
    await come_back(world, down)
    state = await settled(world, down)
    world.github.recover()
    assert (state["state"], state["problem"], state["granted"]) == ("error", "unknown", False)


async def test_a_check_that_breaks_or_overruns_ends_as_unknown(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    bob = person("bob")
    world.github.sign_in_as(member(world, "bob"))
    [provider] = world.signin.bindings.registry.all()

    async def broken(*args: object) -> None:
        raise RuntimeError("a bug in a provider")

    with monkeypatch.context() as patch:
        patch.setattr(provider, "finish", broken)
        await come_back(world, bob)
        state = await settled(world, bob)
    assert (state["state"], state["problem"]) == ("error", "unknown")
    assert "went wrong on our side" in state["reason"]

    monkeypatch.setattr(provider_checks, "CHECK_DEADLINE_S", 0.3)
    release = await checking(world, bob)
    state = await settled(world, bob)
    release()
    assert (state["state"], state["problem"], state["granted"]) == ("error", "unknown", False)
    assert "took too long" in state["reason"]


async def test_stop_ends_running_checks_with_an_outcome_and_takes_no_more(world: World) -> None:
    carol, dave = person("carol"), person("dave")
    world.github.sign_in_as(member(world, "carol"))
    release = await checking(world, carol)
    await asyncio.wait_for(world.signin.stop(grace=0.2), 2.0)
    release()
    state = await step(world, carol)
    assert (state["state"], state["problem"], state["granted"]) == ("error", "unknown", False)
    assert "restarted" in state["reason"]
    # A callback that reaches the stopped service starts nothing and says so.
    await come_back(world, dave)
    state = await step(world, dave)
    assert (state["state"], state["problem"]) == ("error", "unknown")


async def test_a_check_whose_instance_died_reads_as_unfinished(world: World) -> None:
    erin = person("erin")
    view = await world.signin.bindings.get(world.binding)
    long_ago = now_ms() - CHECK_ABANDONED_MS - 1
    await world.storage.signins.record_attempt(
        BindingAttempt(
            session_hash=secret_hash(erin.session_id),
            binding_id=view.binding.id,
            provider="github",
            outcome="checking",
            external_id=None,
            display_name=None,
            reason="",
            remedy="",
            at=long_ago,
            expires_at=now_ms() + 60_000,
        )
    )
    state = await step(world, erin)
    assert (state["state"], state["problem"]) == ("error", "unknown")
    assert "did not finish" in state["reason"]
