"""The sentences re-checks and loss policies say to room admins, in one place (the next
step is translating them)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..durations import format_duration

if TYPE_CHECKING:
    from ..providers.base import ProviderUnavailable
    from .bindings import BindingView, DescribedRule

BUSY = "Another re-check of this binding is running right now; its outcome will be recorded."
STOPPED = "The bot was stopping: the re-check resumes where it stopped. Nobody was touched."


def not_listable(view: BindingView) -> str:
    names = sorted({r.provider.display_name for r in view.rules})
    return (
        f"Not re-checked: {', '.join(names)} cannot list members here (the operator can set "
        "re-check credentials for the provider, or keep refresh tokens where no listing "
        "exists; see the README)."
    )


def incomplete(error: ProviderUnavailable) -> str:
    wait = ""
    if error.retry_after and error.retry_after > 0:
        wait = f"; it asked to wait {format_duration(max(error.retry_after, 1))}"
    return (
        f"{error.reason.rstrip('.')}{wait}. Nobody was touched; the re-check resumes where "
        "it stopped."
    )


def shrunk(view: BindingView, described: DescribedRule, listed: int, before: int) -> str:
    share = 100 * (before - listed) / before
    return (
        f"Re-check of binding `{view.binding.public_id}` stopped: the list of "
        f"{described.description} has {listed} entries, {share:.0f}% fewer than the "
        f"{before} of the last complete re-check. Nobody was touched. If the change is real, "
        f"run `!invitebot recheck {view.binding.public_id} --accept-shrink` in the room."
    )


def done(checked: int, lost: int, unknown: int = 0) -> str:
    people = "person" if checked == 1 else "people"
    unseen = (
        f" {unknown} could not be checked (they are left alone until they sign in again)."
        if unknown
        else ""
    )
    if not lost and not unknown:
        return f"{checked} {people} checked; all still qualify."
    return f"{checked} {people} checked; {lost} no longer qualify.{unseen}"


def kick_reason(template: str, rule: str) -> str:
    try:
        return template.format(rule=rule)
    except (KeyError, IndexError, ValueError):
        return template


def loss_notice(view: BindingView, action: str, people: Sequence[tuple[str, str]]) -> str:
    """One notice per room and re-check: who no longer qualifies, and what was done."""
    what = {
        "kick": "I am removing them (policy `kick`).",
        "notify": "Nothing was done (policy `notify`): remove them yourselves if you wish.",
    }[action]
    lines = "\n".join(f"* {user_id}: no longer among {reason}" for user_id, reason in people)
    return (
        f"These people admitted through binding `{view.binding.public_id}` no longer "
        f"qualify:\n\n{lines}\n\n{what}"
    )


def pending_notice(view: BindingView, grace_ms: int, people: Sequence[str]) -> str:
    return (
        f"{len(people)} people admitted through binding `{view.binding.public_id}` no longer "
        f"qualify ({', '.join(people)}). Policy `{view.binding.policy}` applies in "
        f"{format_duration(grace_ms / 1000)} unless they qualify again."
    )
