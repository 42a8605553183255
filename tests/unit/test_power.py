"""Power checks in room versions 10 and 12 (whose creators are not in power_levels)."""

from __future__ import annotations

import math

from thirdparty_invite.matrix.power import RoomPower, creators_outrank_everyone

PL = {"users": {"@admin:x": 100, "@mod:x": 50, "@bot:x": 0}, "invite": 50, "kick": 75}


def create_event(version: str, sender: str = "@creator:x", **extra: object) -> dict:
    return {
        "type": "m.room.create",
        "sender": sender,
        "content": {"room_version": version, **extra},
    }


def test_room_v10_reads_power_levels_only() -> None:
    power = RoomPower.from_state(create_event("10"), PL)
    assert power.can("@admin:x", "invite") and power.can("@mod:x", "invite")
    assert not power.can("@mod:x", "kick")
    assert not power.can("@creator:x", "invite")  # v10 creators are just users in PL
    assert not power.can("@nobody:x", "invite")
    assert power.missing("@bot:x", ("invite", "kick")) == [
        "invite (needs power level 50, has 0)",
        "kick (needs power level 75, has 0)",
    ]


def test_room_v12_creators_outrank_everyone() -> None:
    power = RoomPower.from_state(create_event("12", additional_creators=["@co:x"]), PL)
    assert math.isinf(power.level_of("@creator:x")) and math.isinf(power.level_of("@co:x"))
    assert power.can("@creator:x", "kick") and power.can("@co:x", "invite")
    assert not power.can("@bot:x", "invite")
    assert power.missing("@creator:x", ("invite", "kick")) == []


def test_defaults_when_power_levels_are_absent() -> None:
    power = RoomPower.from_state(create_event("10"), None)
    assert power.required("invite") == 0 and power.required("kick") == 50
    assert math.isinf(power.level_of("@creator:x"))  # before PL exist, the creator rules
    assert power.can("@anyone:x", "invite")


def test_garbage_levels_fall_back_to_defaults() -> None:
    power = RoomPower.from_state(
        create_event("10"), {"users": {"@a:x": "high"}, "invite": None, "users_default": "x"}
    )
    assert power.level_of("@a:x") == 0 and power.required("invite") == 0


def test_versions() -> None:
    assert creators_outrank_everyone("12") and creators_outrank_everyone("13")
    assert creators_outrank_everyone("org.matrix.hydra.11")
    assert not creators_outrank_everyone("10") and not creators_outrank_everyone("1")
