"""Reading a space's children from the hierarchy answer (matrix/spaces.py)."""

from __future__ import annotations

from thirdparty_invite.matrix.spaces import SpaceInfo, child_via

SPACE = "!space:example.org"


def child(room_id: str, content: object, at: int = 0) -> dict:
    return {
        "type": "m.space.child",
        "state_key": room_id,
        "content": content,
        "sender": "@admin:example.org",
        "origin_server_ts": at,
    }


def answer(room_type: str | None, children: list[dict]) -> dict:
    entry = {"room_id": SPACE, "children_state": children}
    if room_type is not None:
        entry["room_type"] = room_type
    return {"rooms": [entry]}


def test_children_with_a_via_in_the_spec_order() -> None:
    info = SpaceInfo.from_hierarchy(
        SPACE,
        answer(
            "m.space",
            [
                child("!late:example.org", {"via": ["example.org"]}, at=30),
                child("!early:example.org", {"via": ["example.org"]}, at=10),
                child("!ordered:example.org", {"via": ["example.org"], "order": "a"}, at=99),
                child("!removed:example.org", {}, at=5),
                child("!empty:example.org", {"via": []}, at=5),
                child("!junk:example.org", {"via": [3, ""]}, at=5),
                child("not a room", {"via": ["example.org"]}),
                child(SPACE, {"via": ["example.org"]}),  # itself: no cycle
                child("!bad-order:example.org", {"via": ["x"], "order": "\n"}, at=20),
            ],
        ),
    )
    assert info.is_space
    assert info.child_ids == (
        "!ordered:example.org",
        "!early:example.org",
        "!bad-order:example.org",
        "!late:example.org",
    )


def test_a_room_that_is_no_space_has_no_children() -> None:
    info = SpaceInfo.from_hierarchy(
        SPACE, answer(None, [child("!a:example.org", {"via": ["example.org"]})])
    )
    assert not info.is_space and info.child_ids == ()


def test_malformed_answers_are_no_space() -> None:
    for data in (None, [], {"rooms": "x"}, {"rooms": [{"room_id": "!other:x"}]}, {"rooms": [3]}):
        info = SpaceInfo.from_hierarchy(SPACE, data)
        assert not info.is_space and info.children == ()


def test_via_must_be_a_list_of_names() -> None:
    assert child_via({"via": ["a.org", 5, "", "b.org"]}) == ["a.org", "b.org"]
    assert child_via({"via": "a.org"}) == []
    assert child_via(None) == []
