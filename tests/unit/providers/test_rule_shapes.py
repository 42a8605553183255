"""What each provider tells the panel's rule builder (`rule_shapes`) is what its
`parse_rule` reads: every shape, filled in field by field as the page fills it, parses,
with or without its optional fields."""

from __future__ import annotations

import pytest

from thirdparty_invite.providers.base import Provider, RuleShape
from thirdparty_invite.providers.discord import DiscordProvider
from thirdparty_invite.providers.github import GitHubProvider
from thirdparty_invite.providers.gitlab import GitLabProvider
from thirdparty_invite.providers.oidc import OIDCProvider
from thirdparty_invite.providers.patreon import PatreonProvider

SECRETS = {"client_id": "1", "client_secret": "s"}
# A value a person might type for a field of that name.
SAMPLES = {
    "org": "matrix-org",
    "team": "core",
    "owner": "matrix-org",
    "repo": "synapse",
    "login": "octocat",
    "min_cents": "500",
    "path": "gnome/infra",
    "guild": "81384788765712384",
    "role": "175928847299117063",
    "tier": "Gold",
    "cents": "500",
    "value": "staff",
}


def providers() -> list[Provider]:
    return [
        GitHubProvider.from_config("github", SECRETS, None),
        GitLabProvider.from_config("gitlab", SECRETS, None),
        DiscordProvider.from_config("discord", SECRETS, None),
        PatreonProvider.from_config("patreon", {**SECRETS, "campaign_id": "123"}, None),
        OIDCProvider.from_config("staff", {**SECRETS, "issuer": "https://sso.example"}, None),
    ]


def compose(shape: RuleShape, *, optional: bool) -> str:
    text = shape.prefix
    for field in shape.fields:
        if field.optional and not optional:
            continue
        value = field.choices[-1] if field.choices else SAMPLES[field.name]
        if shape.kind == "email_verified":
            value = "true"
        text += field.separator + value
    return text


@pytest.mark.parametrize("provider", providers(), ids=lambda p: p.id)
def test_every_shape_parses(provider: Provider) -> None:
    shapes = provider.rule_shapes()
    assert shapes, provider.id
    for shape in shapes:
        for optional in (False, True):
            text = compose(shape, optional=optional)
            rule = provider.parse_rule(text)
            assert rule.kind in (shape.kind, "claim"), (text, rule)
            assert provider.describe(rule)


def test_github_shapes_are_its_usage() -> None:
    github = GitHubProvider.from_config("github", SECRETS, None)
    assert [(s.kind, s.usage) for s in github.rule_shapes()] == [
        ("org", "org:ORG"),
        ("team", "team:ORG/TEAM"),
        ("repo", "repo:OWNER/REPO[:LEVEL]"),
        ("sponsor", "sponsor:LOGIN[:MIN_CENTS]"),
    ]
