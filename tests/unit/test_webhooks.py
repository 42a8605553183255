"""Webhooks from GitHub and Patreon: signatures, what each event concerns, and the routes
through the web app into the re-check schedule, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
import hashlib
import hmac
import json
from pathlib import Path
import secrets
import urllib.parse

import aiohttp
import pytest
import pytest_asyncio
from support.plugin_web import serve_plugin_web

from thirdparty_invite.durations import now_ms
from thirdparty_invite.providers.github import GitHubProvider
from thirdparty_invite.services.webhooks import (
    github_concern,
    github_signature_problem,
    patreon_campaign,
    patreon_signature_problem,
)
from thirdparty_invite.storage import Binding, BindingRule, Storage
from thirdparty_invite.webapp.webhooks import MAX_WEBHOOK_BODY

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
GITHUB_SECRET = "It's a Secret to Everybody"
PATREON_SECRET = "hereisaverycomplexsecret"
CAMPAIGN = "123456"  # the campaign of Patreon's documented webhook body
HOUR_MS = 3_600_000


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def github_signature(body: bytes, secret: str = GITHUB_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def patreon_signature(body: bytes, secret: str = PATREON_SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.md5).hexdigest()


# ---- signatures ---------------------------------------------------------------------


def test_github_signature_from_githubs_documentation() -> None:
    # GitHub's docs ("Validating webhook deliveries"): this secret and payload give this
    # signature.
    body = b"Hello, World!"
    header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert github_signature(body) == header
    assert github_signature_problem(GITHUB_SECRET, body, header) is None
    assert github_signature_problem(GITHUB_SECRET, body, "sha256=" + header[7:].upper()) is None
    assert github_signature_problem(GITHUB_SECRET, body, " " + header + " ") is None


@pytest.mark.parametrize(
    ("header", "why"),
    [
        (None, "no X-Hub-Signature-256"),
        ("", "no X-Hub-Signature-256"),
        ("sha1=" + "0" * 40, "must be sha256="),  # the old X-Hub-Signature algorithm
        ("sha256", "must be sha256="),
        ("sha256=" + "z" * 64, "must be sha256="),
        ("sha256=" + "ab " * 32, "must be sha256="),  # bytes.fromhex would take the spaces
        ("sha256=" + "0" * 63, "must be sha256="),
        ("sha512=" + "0" * 128, "must be sha256="),
        ("sha256=" + "0" * 64, "does not match"),
    ],
)
def test_github_signature_refusals(header: str | None, why: str) -> None:
    problem = github_signature_problem(GITHUB_SECRET, b"{}", header)
    assert problem is not None and why in problem


def test_github_signature_is_over_the_exact_bytes_with_the_exact_secret() -> None:
    body = fixture("github/webhook-membership-removed.constructed.json")
    assert github_signature_problem(GITHUB_SECRET, body, github_signature(body)) is None
    reformatted = json.dumps(json.loads(body)).encode()  # same JSON, other bytes
    assert github_signature_problem(GITHUB_SECRET, reformatted, github_signature(body))
    assert github_signature_problem(GITHUB_SECRET + " ", body, github_signature(body))


def test_patreon_signature() -> None:
    body = fixture("patreon/webhook-member.json")
    assert patreon_signature_problem(PATREON_SECRET, body, patreon_signature(body)) is None
    assert patreon_signature_problem(PATREON_SECRET, body, patreon_signature(body).upper()) is None
    for header in (None, "", "md5=" + patreon_signature(body), "0" * 32, "0" * 64):
        assert patreon_signature_problem(PATREON_SECRET, body, header) is not None
    other = patreon_signature(body, "another secret")
    assert "does not match" in (patreon_signature_problem(PATREON_SECRET, body, other) or "")


# ---- what an event concerns ---------------------------------------------------------

RULES = (
    "org:matrix-org",
    "team:matrix-org/core",
    "team:matrix-org/other",
    "repo:matrix-org/synapse",
    "repo:matrix-org/dendrite:admin",
    "sponsor:octocat",
    "sponsor:octocat:500",
    "org:element-hq",
    "team:element-hq/core",
    "repo:element-hq/synapse",
    "sponsor:matrix-org",
)


def concerned(fixture_name: str, event: str) -> set[str]:
    github = GitHubProvider.from_config("github", {"client_id": "a", "client_secret": "b"}, None)
    payload = json.loads(fixture(fixture_name))
    concern = github_concern(event, payload["action"], payload)
    return {text for text in RULES if concern.matches(github.parse_rule(text))}


def test_organization_member_removed_concerns_the_orgs_rules() -> None:
    # Leaving an organisation ends its team memberships and the access they gave.
    assert concerned(
        "github/webhook-organization-member_removed.constructed.json", "organization"
    ) == {
        "org:matrix-org",
        "team:matrix-org/core",
        "team:matrix-org/other",
        "repo:matrix-org/synapse",
        "repo:matrix-org/dendrite:admin",
    }


def test_team_membership_concerns_the_orgs_team_and_repo_rules() -> None:
    # Nested teams and the repositories teams give: not only the team named.
    expected = {
        "team:matrix-org/core",
        "team:matrix-org/other",
        "repo:matrix-org/synapse",
        "repo:matrix-org/dendrite:admin",
    }
    assert (
        concerned("github/webhook-membership-removed.constructed.json", "membership") == expected
    )
    deleted = "github/webhook-membership-removed.deleted-team.constructed.json"
    assert concerned(deleted, "membership") == expected


def test_collaborator_change_concerns_that_repositorys_rules() -> None:
    assert concerned("github/webhook-member-removed.constructed.json", "member") == {
        "repo:matrix-org/synapse"
    }


def test_sponsorship_concerns_the_sponsored_accounts_rules() -> None:
    assert concerned("github/webhook-sponsorship-cancelled.constructed.json", "sponsorship") == {
        "sponsor:octocat",
        "sponsor:octocat:500",
    }


@pytest.mark.parametrize(
    ("event", "payload"),
    [
        ("organization", {"action": "member_removed"}),
        ("organization", {"action": "member_removed", "organization": {"login": 5}}),
        ("membership", {"action": "removed", "organization": "matrix-org"}),
        ("member", {"action": "removed", "repository": {"full_name": "no-slash"}}),
        ("member", {"action": "removed", "repository": {"name": "synapse"}}),
        ("sponsorship", {"action": "cancelled", "sponsorship": {"sponsor": {"login": "x"}}}),
    ],
)
def test_payloads_without_what_the_event_documents_are_refused(event: str, payload: dict) -> None:
    with pytest.raises(Exception) as refused:
        github_concern(event, payload["action"], payload)
    assert getattr(refused.value, "http_status", None) == 400


def test_patreon_campaign() -> None:
    assert patreon_campaign(json.loads(fixture("patreon/webhook-member.json"))) == CAMPAIGN
    number = {"data": {"relationships": {"campaign": {"data": {"id": 123456}}}}}
    assert patreon_campaign(number) == CAMPAIGN
    for unknown in ({}, {"data": []}, {"data": {"relationships": {"campaign": None}}}):
        assert patreon_campaign(unknown) is None


# ---- through the web app ------------------------------------------------------------

PROVIDERS = {
    "github": {"client_id": "gh", "client_secret": "gh-s", "webhook_secret": GITHUB_SECRET},
    "patreon": {
        "client_id": "pt",
        "client_secret": "pt-s",
        "campaign_id": CAMPAIGN,
        "webhook_secret": PATREON_SECRET,
    },
}


@pytest_asyncio.fixture(loop_scope="session")
async def web(storage: Storage) -> AsyncIterator[tuple[aiohttp.ClientSession, object]]:
    async with serve_plugin_web(storage, {"providers": PROVIDERS}) as (_, services, base):
        # Servers send no Origin and no cookie.
        async with aiohttp.ClientSession(base_url=str(base)) as http:
            yield http, services


async def bind(services, rules: str, rooms: tuple[str, ...] = ("!room:hs.test",)) -> Binding:
    """A binding of `github team:o/t and patreon patron`, first re-checked in six hours."""
    parsed = []
    for text in rules.split(" and "):
        provider_id, _, rule = text.partition(" ")
        canonical = services.providers.get(provider_id).parse_rule(rule).text
        parsed.append(BindingRule(provider_id, canonical))
    now = now_ms()
    return await services.storage.bindings.create(
        secrets.token_urlsafe(12), "@admin:hs.test", tuple(parsed), rooms, now, now + 6 * HOUR_MS
    )


async def due(services, binding: Binding) -> bool:
    state = await services.storage.rechecks.get(binding.id)
    return state.next_at <= now_ms()


async def post_github(
    http: aiohttp.ClientSession,
    body: bytes,
    event: str,
    delivery: str | None = None,
    signature: str | None = "sign",
) -> tuple[int, dict]:
    headers = {"X-GitHub-Event": event, "Content-Type": "application/json"}
    headers["X-GitHub-Delivery"] = delivery or secrets.token_hex(16)
    if signature == "sign":
        signature = github_signature(body)
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    async with http.post("api/webhooks/github", data=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def post_patreon(
    http: aiohttp.ClientSession, body: bytes, event: str, signature: str | None = "sign"
) -> tuple[int, dict]:
    headers = {"X-Patreon-Event": event, "Content-Type": "application/json"}
    if signature == "sign":
        signature = patreon_signature(body)
    if signature is not None:
        headers["X-Patreon-Signature"] = signature
    async with http.post("api/webhooks/patreon", data=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def webhook_audit(services) -> list:
    return [e for e in await services.storage.audit.recent(None, 500) if e.action == "webhook"]


async def test_github_delivery_makes_the_concerned_bindings_due_once(web) -> None:
    http, services = web
    team = await bind(services, "github team:matrix-org/core", rooms=("!a:hs.test", "!b:hs.test"))
    both = await bind(services, "github org:matrix-org and patreon patron")
    other = await bind(services, "github team:element-hq/core")
    patrons = await bind(services, "patreon patron")
    body = fixture("github/webhook-membership-removed.constructed.json")
    delivery = "72d3162e-cc78-11e3-81ab-4c9367dc0958"

    assert await post_github(http, body, "membership", delivery) == (
        200,
        {"outcome": "applied", "rechecks": 1},
    )
    assert await due(services, team)
    assert not await due(services, both)  # an org rule: a team change leaves it as it was
    assert not await due(services, other) and not await due(services, patrons)
    entries = await webhook_audit(services)
    assert sorted(e.room_id for e in entries) == ["!a:hs.test", "!b:hs.test"]
    assert all(e.actor == "webhook:github" for e in entries)
    assert "membership removed: octocat, team Matrix-Org/core" in entries[0].detail
    assert team.public_id in entries[0].detail

    # The same delivery again (GitHub's redelivery keeps its id): nothing happens again.
    await services.storage.db.execute(
        "UPDATE rechecks SET next_at=$2 WHERE binding_id=$1", team.id, now_ms() + HOUR_MS
    )
    assert await post_github(http, body, "membership", delivery) == (
        200,
        {"outcome": "repeat", "rechecks": 0},
    )
    assert not await due(services, team)
    assert len(await webhook_audit(services)) == 2


async def test_each_github_event_reaches_its_bindings(web) -> None:
    http, services = web
    org = await bind(services, "github org:matrix-org")
    repo = await bind(services, "github repo:matrix-org/synapse:admin")
    sponsor = await bind(services, "github sponsor:octocat:500")
    assert await post_github(
        http, fixture("github/webhook-member-removed.constructed.json"), "member"
    ) == (200, {"outcome": "applied", "rechecks": 1})
    assert await due(services, repo) and not await due(services, org)
    assert not await due(services, sponsor)
    assert await post_github(
        http, fixture("github/webhook-sponsorship-cancelled.constructed.json"), "sponsorship"
    ) == (200, {"outcome": "applied", "rechecks": 1})
    assert await due(services, sponsor) and not await due(services, org)
    body = fixture("github/webhook-organization-member_removed.constructed.json")
    assert (await post_github(http, body, "organization"))[0] == 200
    assert await due(services, org)


async def test_a_delivery_concerning_no_binding_is_recorded_once_without_a_room(web) -> None:
    http, services = web
    body = fixture("github/webhook-sponsorship-cancelled.constructed.json")
    assert await post_github(http, body, "sponsorship") == (
        200,
        {"outcome": "applied", "rechecks": 0},
    )
    [entry] = await webhook_audit(services)
    assert entry.room_id is None and "no binding concerned" in entry.detail


@pytest.mark.parametrize(
    ("signature", "why"),
    [
        (None, "no X-Hub-Signature-256"),
        ("sha256=" + "0" * 64, "does not match"),
        ("sha1=" + hmac.new(GITHUB_SECRET.encode(), b"", hashlib.sha1).hexdigest(), "sha256="),
        ("sha256=" + hmac.new(b"guess", b"", hashlib.sha256).hexdigest(), "does not match"),
    ],
)
async def test_unsigned_or_badly_signed_github_deliveries_change_nothing(
    web, signature: str | None, why: str
) -> None:
    http, services = web
    team = await bind(services, "github team:matrix-org/core")
    body = fixture("github/webhook-membership-removed.constructed.json")
    status, answer = await post_github(http, body, "membership", "d-1", signature)
    assert status == 401 and answer["errcode"] == "TPI_WEBHOOK_SIGNATURE"
    assert set(answer) == {"errcode", "error"} and why in answer["error"]
    assert not await due(services, team)
    assert await webhook_audit(services) == []
    # Its delivery id was not spent: the real, signed delivery is still applied.
    assert (await post_github(http, body, "membership", "d-1"))[1]["outcome"] == "applied"


async def test_ping_other_events_and_other_actions(web) -> None:
    http, services = web
    team = await bind(services, "github team:matrix-org/core")
    ping = fixture("github/webhook-ping.constructed.json")
    assert await post_github(http, ping, "ping") == (200, {"outcome": "ping", "rechecks": 0})
    push = json.dumps({"ref": "refs/heads/main", "commits": []}).encode()
    assert await post_github(http, push, "push") == (202, {"outcome": "ignored", "rechecks": 0})
    invited = json.loads(fixture("github/webhook-organization-member_removed.constructed.json"))
    invited["action"] = "member_invited"  # an invitation changes nobody until accepted
    assert (await post_github(http, json.dumps(invited).encode(), "organization"))[0] == 202
    assert not await due(services, team)
    # Even an ignored event must be signed.
    assert (await post_github(http, push, "push", signature=None))[0] == 401


async def test_signed_github_deliveries_we_cannot_read(web) -> None:
    http, _ = web
    status, answer = await post_github(http, b"not json", "membership")
    assert (status, answer["errcode"]) == (400, "M_NOT_JSON")
    status, answer = await post_github(http, b'{"action": "removed"}', "membership")
    assert (status, answer["errcode"]) == (400, "M_BAD_JSON")
    body = fixture("github/webhook-membership-removed.constructed.json")
    status, answer = await post_github(http, body, "membership", delivery="bad id")
    assert (status, answer["errcode"]) == (400, "M_MISSING_PARAM")


async def test_a_form_encoded_github_delivery_is_read_from_its_payload_field(web) -> None:
    # GitHub's other content type: the JSON in the form's `payload`, the form signed.
    http, services = web
    team = await bind(services, "github team:matrix-org/core")
    body = urllib.parse.urlencode(
        {"payload": fixture("github/webhook-membership-removed.constructed.json").decode()}
    ).encode()
    headers = {
        "X-GitHub-Event": "membership",
        "X-GitHub-Delivery": secrets.token_hex(16),
        "X-Hub-Signature-256": github_signature(body),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    async with http.post("api/webhooks/github", data=body, headers=headers) as resp:
        assert (resp.status, await resp.json()) == (200, {"outcome": "applied", "rechecks": 1})
    assert await due(services, team)
    for form in (b"other=%7B%7D", b"payload=%7B", b"="):  # no payload, not JSON, no form
        headers["X-Hub-Signature-256"] = github_signature(form)
        async with http.post("api/webhooks/github", data=form, headers=headers) as resp:
            assert (resp.status, (await resp.json())["errcode"]) == (400, "M_NOT_JSON")


async def test_patreon_delivery_makes_patreon_bindings_due_once(web) -> None:
    http, services = web
    patrons = await bind(services, "patreon tier:Gold", rooms=("!p:hs.test",))
    team = await bind(services, "github team:matrix-org/core")
    body = fixture("patreon/webhook-member.json")
    assert await post_patreon(http, body, "members:pledge:delete") == (
        200,
        {"outcome": "applied", "rechecks": 1},
    )
    assert await due(services, patrons) and not await due(services, team)
    [entry] = await webhook_audit(services)
    assert (entry.actor, entry.room_id) == ("webhook:patreon", "!p:hs.test")
    assert "members:pledge:delete" in entry.detail
    # No delivery id: the same event with the same body is the same delivery.
    assert (await post_patreon(http, body, "members:pledge:delete"))[1]["outcome"] == "repeat"
    assert (await post_patreon(http, body, "members:update"))[1]["outcome"] == "applied"


async def test_patreon_refusals_and_other_campaigns(web) -> None:
    http, services = web
    patrons = await bind(services, "patreon patron")
    body = fixture("patreon/webhook-member.json")
    for signature in (None, "0" * 32, patreon_signature(body, "wrong")):
        status, answer = await post_patreon(http, body, "members:update", signature)
        assert (status, answer["errcode"]) == (401, "TPI_WEBHOOK_SIGNATURE")
    other = body.replace(b'"id": "123456"', b'"id": "999"')
    assert (await post_patreon(http, other, "members:update"))[0] == 202
    assert (await post_patreon(http, body, "posts:publish"))[0] == 202
    assert not await due(services, patrons)


async def test_unconfigured_sources_are_not_found(storage: Storage) -> None:
    github_only = {
        "github": {k: v for k, v in PROVIDERS["github"].items() if k != "webhook_secret"}
    }
    async with serve_plugin_web(storage, {"providers": github_only}) as (_, _, base):
        async with aiohttp.ClientSession(base_url=str(base)) as http:
            for source in ("github", "patreon"):
                async with http.post(f"api/webhooks/{source}", data=b"{}") as resp:
                    assert resp.status == 404
                    assert (await resp.json())["errcode"] == "M_NOT_FOUND"


async def test_bodies_are_size_limited_while_read(web) -> None:
    http, _ = web
    big = b"{" + b" " * MAX_WEBHOOK_BODY + b"}"
    status, answer = await post_github(http, big, "membership")
    assert (status, answer["errcode"]) == (413, "M_TOO_LARGE")

    async def chunks():  # no Content-Length: the limit holds while streaming
        for _ in range(MAX_WEBHOOK_BODY // 65536 + 2):
            yield b" " * 65536

    headers = {"X-Patreon-Event": "members:update", "X-Patreon-Signature": "0" * 32}
    async with http.post("api/webhooks/patreon", data=chunks(), headers=headers) as resp:
        assert resp.status == 413


async def test_webhooks_are_rate_limited_per_address(web) -> None:
    http, _ = web
    statuses = []
    for _ in range(70):
        async with http.post("api/webhooks/github", data=b"{}") as resp:
            statuses.append(resp.status)
            if resp.status == 429:
                assert int(resp.headers["Retry-After"]) >= 1
                break
    assert statuses[-1] == 429 and set(statuses[:-1]) == {401}
    assert len(statuses) > 50  # a burst of deliveries passes


# ---- config -------------------------------------------------------------------------


def test_webhook_secrets_in_the_config() -> None:
    from support.plugin_web import load_settings

    from thirdparty_invite.config import ConfigError
    from thirdparty_invite.providers.registry import ProviderRegistry

    registry = ProviderRegistry(load_settings({"providers": PROVIDERS}).providers, None)
    assert registry.get("github").webhook_secret == GITHUB_SECRET
    assert registry.get("patreon").webhook_secret == PATREON_SECRET
    github = {k: v for k, v in PROVIDERS["github"].items() if k != "webhook_secret"}
    empty = {"github": {**github, "webhook_secret": ""}}  # as base-config.yaml has it
    assert (
        ProviderRegistry(load_settings({"providers": empty}).providers, None)
        .get("github")
        .webhook_secret
        is None
    )
    wrong = {
        "github": {**github, "webhook_secret": 12345},
        "patreon": {**PROVIDERS["patreon"], "webhook_secret": " pasted with a space"},
    }
    with pytest.raises(ConfigError) as refused:
        load_settings({"providers": wrong})
    assert [p.split(":")[0] for p in refused.value.problems] == [
        "providers.github.webhook_secret",
        "providers.patreon.webhook_secret",
    ]
