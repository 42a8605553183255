"""Reading the instance config: every wrong key is named, all at once."""

from __future__ import annotations

import pytest
from support.plugin_web import load_settings

from thirdparty_invite.config import ConfigError, RateLimit


def problems_of(overrides: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(overrides)
    return caught.value.problems


def test_the_base_config_is_valid() -> None:
    settings = load_settings({})
    assert settings.operators == frozenset()
    assert settings.invites.max_attempts == 8
    assert settings.links.default_expiry == 7 * 86400
    assert settings.rate_limits.session == RateLimit(10, 6.0)
    assert settings.matrix.request_timeout == 5
    assert settings.rechecks.interval == 6 * 3600 and settings.rechecks.max_shrink == 0.2


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"operators": "x"}, "operators"),
        ({"operators": ["not-a-user"]}, "operators"),
        ({"accept_direct_messages": "yes"}, "accept_direct_messages"),
        ({"admin_room": "#alias:x"}, "admin_room"),
        ({"admin_room": 5}, "admin_room"),
        ({"web": {"public_url": "ftp://x"}}, "web.public_url"),
        ({"web": {"show_external_accounts": "yes"}}, "web.show_external_accounts"),
        ({"rechecks": {"interval": "often"}}, "rechecks.interval"),
        ({"rechecks": {"interval": "10s"}}, "rechecks.interval"),
        ({"rechecks": {"max_shrink": "lots"}}, "rechecks.max_shrink"),
        ({"rechecks": {"max_shrink": 1.5}}, "rechecks.max_shrink"),
        ({"rechecks": {"max_shrink": True}}, "rechecks.max_shrink"),
        ({"rechecks": {"kick_reason": 3}}, "rechecks.kick_reason"),
        ({"web": {"session_lifetime": "forever"}}, "web.session_lifetime"),
        ({"web": {"max_body_bytes": True}}, "web.max_body_bytes"),
        ({"web": {"max_body_bytes": 10}}, "web.max_body_bytes"),
        ({"web": {"trusted_origins": ["https://x/path"]}}, "web.trusted_origins"),
        ({"web": {"trusted_proxies": ["not an address"]}}, "web.trusted_proxies"),
        ({"web": {"client_room_url": "http://x/{room_id}"}}, "web.client_room_url"),
        ({"rate_limits": {"session": 5}}, "rate_limits.session"),
        ({"rate_limits": {"link_claim": {"burst": -1}}}, "rate_limits.link_claim"),
        (
            {"rate_limits": {"link_inspect": {"burst": 3, "refill": "x"}}},
            "rate_limits.link_inspect",
        ),
        ({"identity": {"server_urls": ["x"]}}, "identity.server_urls"),
        ({"identity": {"server_urls": {"x": "ftp://y"}}}, "identity.server_urls"),
        ({"identity": {"timeout": [1]}}, "identity.timeout"),
        ({"identity": {"allowed_networks": ["10.0.0.0/33"]}}, "identity.allowed_networks"),
        ({"links": {"default_expiry": "soon"}}, "links.default_expiry"),
        ({"invites": {"max_attempts": "many"}}, "invites.max_attempts"),
        ({"invites": {"max_attempts": 0}}, "invites.max_attempts"),
        ({"invites": {"reason": 42}}, "invites.reason"),
        ({"matrix": {"request_timeout": 0}}, "matrix.request_timeout"),
    ],
)
def test_a_wrong_value_names_its_key(overrides: dict, key: str) -> None:
    [problem] = problems_of(overrides)
    assert problem.startswith(f"{key}: ") or problem.startswith(f"{key}[")


def test_every_wrong_key_is_reported_at_once() -> None:
    problems = problems_of(
        {"operators": "x", "invites": {"max_attempts": "many"}, "identity": {"timeout": "?"}}
    )
    assert [p.split(":")[0] for p in problems] == [
        "operators",
        "identity.timeout",
        "invites.max_attempts",
    ]


def test_empty_expiry_means_never_and_durations_read_as_seconds() -> None:
    settings = load_settings({"links": {"default_expiry": ""}, "invites": {"max_backoff": 90}})
    assert settings.links.default_expiry is None
    assert settings.invites.max_backoff == 90


def test_max_shrink_reads_a_fraction_or_a_percentage() -> None:
    assert load_settings({"rechecks": {"max_shrink": "35%"}}).rechecks.max_shrink == 0.35
    assert load_settings({"rechecks": {"max_shrink": 0.1}}).rechecks.max_shrink == 0.1
    assert load_settings({"rechecks": {"max_shrink": 0}}).rechecks.max_shrink == 0
