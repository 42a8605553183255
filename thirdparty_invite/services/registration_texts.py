"""What people and room admins read about registration tokens (services/registration.py)."""

from __future__ import annotations

from ..errors import UserFacingError


def off() -> UserFacingError:
    return UserFacingError(
        "TPI_REGISTRATION_OFF",
        "This bot does not offer new Matrix accounts (the operator sets `registration:` in "
        "the instance config).",
        404,
    )


def not_offered() -> UserFacingError:
    return UserFacingError(
        "TPI_REGISTRATION_NOT_OFFERED",
        "This invite does not offer a new Matrix account. Sign in with an account you have.",
        403,
    )


def not_qualified() -> UserFacingError:
    return UserFacingError(
        "TPI_NOT_QUALIFIED",
        "Pass every step of this invite first: a new account is offered only to people "
        "who qualify.",
        403,
    )


def link_unusable() -> UserFacingError:
    return UserFacingError(
        "TPI_LINK_UNUSABLE",
        "This invite link admits nobody any more, so no account can be made with it.",
        410,
    )


def account_has_token(provider_name: str) -> UserFacingError:
    return UserFacingError(
        "TPI_ACCOUNT_HAS_TOKEN",
        f"This {provider_name} account was already given a code for a new Matrix account "
        "here (each account gets one). Sign in with the Matrix account you made with it.",
        409,
    )


def link_full() -> UserFacingError:
    return UserFacingError(
        "TPI_LINK_FULL",
        "Every use left on this link is already set aside for a new account being made. "
        "Try again later, or sign in with an account you have.",
        409,
    )


def daily_cap(server_name: str) -> UserFacingError:
    return UserFacingError(
        "TPI_REGISTRATION_CAP",
        f"No more new accounts on {server_name} can be made today. Try again tomorrow, or "
        "sign in with a Matrix account you have elsewhere.",
        429,
    )


def unavailable(server_name: str) -> UserFacingError:
    return UserFacingError(
        "TPI_REGISTRATION_UNAVAILABLE",
        f"{server_name} cannot make new accounts right now. Try again in a few minutes.",
        502,
    )


def token_unknown() -> UserFacingError:
    return UserFacingError(
        "TPI_REGISTRATION_TOKEN_UNKNOWN",
        "This account code is not known here (or it expired unused).",
        404,
    )


def wrong_server(server_name: str) -> UserFacingError:
    return UserFacingError(
        "TPI_REGISTRATION_WRONG_SERVER",
        f"Sign in with the account you just made on {server_name}.",
        403,
    )


def token_not_used() -> UserFacingError:
    return UserFacingError(
        "TPI_REGISTRATION_NOT_DONE",
        "Create the account with this code first, then sign in with it.",
        409,
    )


def not_the_new_account() -> UserFacingError:
    return UserFacingError(
        "TPI_REGISTRATION_NOT_NEW",
        "This code admits only the account made with it. Sign in with that account.",
        403,
    )


def token_claimed() -> UserFacingError:
    return UserFacingError(
        "TPI_REGISTRATION_CLAIMED",
        "This code already admitted another Matrix account.",
        409,
    )


def offered_note(server_name: str) -> str:
    """What `link`/`bind --register` replies add."""
    return (
        f"\n\nPeople without a Matrix account can create one on {server_name} from the page "
        "once they qualify."
    )


def offers_note(server_name: str) -> str:
    """What `links`/`bindings` add to a line of one made with --register."""
    return f"; offers new accounts on {server_name}"


def command_off() -> UserFacingError:
    return UserFacingError(
        "M_INVALID_PARAM",
        "--register: this bot does not offer new accounts (the operator sets `registration:` "
        "in the instance config).",
    )
