"""The `registration:` section: off by default, every wrong key named."""

from __future__ import annotations

import pytest
from support.plugin_web import load_settings

from thirdparty_invite.config import ConfigError


def problems_of(section: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings({"registration": section})
    return caught.value.problems


def test_registration_is_off_by_default() -> None:
    settings = load_settings({})
    assert not settings.registration.enabled
    assert settings.registration.token_lifetime == 3600
    assert settings.registration.daily_cap == 20


def test_a_complete_section_is_read() -> None:
    section = {
        "server_name": "example.org",
        "admin_api_url": "http://localhost:8008/",
        "admin_token": "syt_secret",
        "token_lifetime": "30m",
        "daily_cap": 5,
    }
    registration = load_settings({"registration": section}).registration
    assert registration.enabled and registration.admin_api_url == "http://localhost:8008"
    assert registration.token_lifetime == 1800 and registration.daily_cap == 5
    assert "syt_secret" not in repr(registration)


def test_every_wrong_key_is_named() -> None:
    problems = problems_of(
        {
            "server_name": "not a server",
            "admin_api_url": "ftp://x",
            "daily_cap": 0,
            "token_lifetime": "soon",
            "bogus": 1,
        }
    )
    keys = sorted(p.split(":")[0] for p in problems)
    assert keys == [
        "registration.admin_api_url",
        "registration.admin_token",
        "registration.bogus",
        "registration.daily_cap",
        "registration.server_name",
        "registration.token_lifetime",
    ], problems


def test_a_server_name_needs_the_admin_api() -> None:
    keys = sorted(p.split(":")[0] for p in problems_of({"server_name": "example.org"}))
    assert keys == ["registration.admin_api_url", "registration.admin_token"]
