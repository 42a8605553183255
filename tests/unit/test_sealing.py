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


async def test_kept_tokens_no_seat_needs_are_forgotten(storage) -> None:  # type: ignore[no-untyped-def]
    from thirdparty_invite.durations import now_ms

    now = now_ms()
    binding = await storage.bindings.create("pub1234567890abc", "@a:x", (), ("!r:x",), now, now)
    async with storage.db.acquire() as conn:
        assert await storage.signins.take_account_slot(
            conn, binding.id, "staff", "u1", "@u:x", 1, now
        )
    await storage.kept_tokens.put("staff", "u1", "sealed-1", now)
    await storage.kept_tokens.put("staff", "u2", "sealed-2", now)  # holds no seat
    assert await storage.kept_tokens.forget_unused() == 1
    assert await storage.kept_tokens.get("staff", "u1") == "sealed-1"
    assert await storage.kept_tokens.get("staff", "u2") is None
    await storage.bindings.remove(binding.id, "@a:x", now)  # its seats need nothing now
    assert await storage.kept_tokens.forget_unused() == 1
