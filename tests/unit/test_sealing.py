"""Sealed refresh tokens: they open with their key, for their own row only."""

from __future__ import annotations

import pytest
from support.plugin_web import load_settings

from thirdparty_invite.config import ConfigError
from thirdparty_invite.sealing import TokenVault, VaultError, new_key, read_key


def test_a_sealed_token_opens_only_with_its_key_and_row() -> None:
    vault = TokenVault(read_key(new_key()))
    sealed = vault.seal("staff", "user-1", "refresh-secret")
    assert "refresh-secret" not in sealed
    assert vault.open("staff", "user-1", sealed) == "refresh-secret"
    assert vault.seal("staff", "user-1", "refresh-secret") != sealed  # a fresh nonce each time
    with pytest.raises(VaultError):
        vault.open("staff", "user-2", sealed)  # moved to another account's row
    with pytest.raises(VaultError):
        TokenVault(read_key(new_key())).open("staff", "user-1", sealed)  # another key
    with pytest.raises(VaultError):
        vault.open("staff", "user-1", sealed[:-4] + "AAAA")  # tampered with
    with pytest.raises(VaultError):
        vault.open("staff", "user-1", "not base64 at all!")


@pytest.mark.parametrize("value", ["short", "", 42, "x" * 60])
def test_a_wrong_key_is_named_and_never_echoed(value: object) -> None:
    if value == "":
        assert load_settings({"rechecks": {"token_key": ""}}).rechecks.token_key is None
        return
    with pytest.raises(ConfigError) as caught:
        load_settings({"rechecks": {"token_key": value}})
    [problem] = caught.value.problems
    assert problem.startswith("rechecks.token_key:")
    assert str(value) not in problem.partition(":")[2] or value == 42


def test_a_good_key_is_read() -> None:
    key = new_key()
    settings = load_settings({"rechecks": {"token_key": key}})
    assert settings.rechecks.token_key == read_key(key) and len(read_key(key)) == 32
    assert key not in repr(settings)
