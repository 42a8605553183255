"""Claiming by direct message: finding the code in what people paste, DMs, the answers."""

from __future__ import annotations

import pytest

from thirdparty_invite.services.direct_chats import is_private_chat
from thirdparty_invite.services.direct_claims import describe_outcome, parse_claim_code
from thirdparty_invite.storage import QueuedInvite

TOKEN = "Zm9vYmFyYmF6cXV4LXF1dXhfY29yZ2U1"
LINK = f"https://bot.example.org/_matrix/maubot/plugin/tpi/invite#{TOKEN}"


@pytest.mark.parametrize(
    "pasted",
    [
        TOKEN,
        f"  {TOKEN}\n",
        LINK,
        f"<{LINK}>",
        f"`{LINK}`",
        f"`<{LINK}>`",
        f"```{LINK}```",
        f"`{TOKEN}`",
        f'"{TOKEN}"',
        f"bot.example.org/invite#{TOKEN}",
        f"here it is: {LINK}",
    ],
)
def test_the_code_is_found_in_what_people_paste(pasted: str) -> None:
    assert parse_claim_code(pasted) == TOKEN


@pytest.mark.parametrize("pasted", ["", "   ", None, "``", "<>"])
def test_nothing_pasted(pasted: str | None) -> None:
    assert parse_claim_code(pasted) == ""


def test_words_that_are_no_link_stay_together_and_fail_the_token_check() -> None:
    # LinkService refuses anything with a space: "not valid", never a partial guess.
    assert parse_claim_code("my code please") == "my code please"


def test_a_dm_is_the_bot_and_the_sender_alone() -> None:
    bot, alice, bob = "@bot:x", "@alice:x", "@bob:x"
    assert is_private_chat(frozenset({bot, alice}), bot, alice)
    assert not is_private_chat(frozenset({bot, alice, bob}), bot, alice)
    assert not is_private_chat(frozenset({bot, bob}), bot, alice)
    assert not is_private_chat(frozenset({bot}), bot, bot)
    assert not is_private_chat(frozenset({alice}), bot, alice)


def _item(state: str, outcome: str | None = None, errcode: str | None = None) -> QueuedInvite:
    return QueuedInvite(
        id=1,
        room_id="!r:x",
        user_id="@alice:x",
        grant_id=1,
        state=state,
        outcome=outcome,
        errcode=errcode,
        error="@alice:x is refused for a reason the queue wrote down.",
        attempts=1,
        next_attempt_at=0,
        updated_at=0,
    )


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (_item("done", "invited"), "invited! Accept the invite in your client"),
        (_item("done", "already_invited"), "you already have an invite"),
        (_item("done", "already_joined"), "you are already a member"),
        (_item("failed", errcode="TPI_USER_BANNED"), "you are banned from this room"),
        (_item("failed", errcode="TPI_INVITE_BLOCKED"), "does not accept invites"),
        (_item("failed", errcode="TPI_BOT_LACKS_POWER"), "its admins have been told"),
        (_item("failed", errcode="M_UNKNOWN"), "for a reason the queue wrote down"),
        (_item("pending"), "still queued"),
        (None, "still queued"),
    ],
)
def test_outcomes_are_told_to_the_person(item: QueuedInvite | None, expected: str) -> None:
    line = describe_outcome(item, "Lobby", "!r:x")
    assert line.startswith("**Lobby**: ") and expected in line
    if item is not None and item.state == "done":
        assert "https://matrix.to/#/!r:x" in line
