"""What the admin panel's API answers about a room: its links, bindings, people, invites
and audit log, as plain records (the routes turn them into JSON)."""

from __future__ import annotations

import attrs

from .bindings import DescribedRule
from .managed_rooms import ManagedRoom


@attrs.frozen
class RuleCard:
    provider: str
    provider_name: str
    text: str
    description: str

    @classmethod
    def of(cls, described: DescribedRule) -> RuleCard:
        return cls(
            described.provider.id,
            described.provider.display_name,
            described.rule.text,
            described.description,
        )


@attrs.frozen
class Joined:
    user_id: str
    at: int


@attrs.frozen
class LinkCard:
    id: int
    name: str | None
    rooms: list[str]
    hidden_rooms: int
    uses: int
    max_uses: int | None
    uses_left: int | None
    expires_at: int | None
    revoked: bool
    state: str
    created_by: str
    created_at: int
    joined: list[Joined]
    register: bool  # offers new accounts to people without one (issue 12, part 2)


@attrs.frozen
class LastRecheck:
    at: int
    outcome: str | None
    detail: str
    calls: int


@attrs.frozen
class BindingCard:
    id: str
    description: str
    rules: list[RuleCard]
    rooms: list[str]
    hidden_rooms: int
    policy: str
    grace_seconds: int
    last_recheck: LastRecheck | None
    next_recheck_at: int | None
    url: str
    created_by: str
    created_at: int
    register: bool


@attrs.frozen
class AccountCard:
    provider: str  # the provider's id in the rules ("github")
    name: str  # the account's name there when it signed in ("octocat")


@attrs.frozen
class PersonCard:
    user_id: str
    how: str  # "link" | "binding"
    link_id: int | None
    binding: str | None
    at: int
    # The external accounts that admitted them, only where the operator turned on
    # web.show_external_accounts; empty otherwise.
    accounts: list[AccountCard] = attrs.Factory(list)


@attrs.frozen
class InviteCard:
    user_id: str
    errcode: str | None
    error: str | None
    updated_at: int


@attrs.frozen
class AuditCard:
    at: int
    actor: str
    action: str
    target: str | None
    detail: str


@attrs.frozen
class RoomView:
    room: ManagedRoom
    links: list[LinkCard]
    bindings: list[BindingCard]
    people: list[PersonCard]
    invites: dict[str, list[InviteCard]]
    audit: list[AuditCard]
