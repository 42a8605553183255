"""The lifecycle commands: `policy`, `recheck`, `audit`, and the bindings' part of `status`.

Each parses its arguments, checks the sender through RoomAdmin (in every room of the
binding it changes) and calls a service; the replies are built here, in one place.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
import shlex
import time
from typing import TYPE_CHECKING

from ..durations import format_duration, now_ms
from ..services.bindings import POLICIES, BindingView, grace_seconds, policy_needs
from ..services.rechecks import RecheckOutcome
from ..storage import RecheckState
from .arguments import CommandError

if TYPE_CHECKING:
    from ..services.container import Services

# (services, sender, room typed in, raw arguments) -> the reply; UserFacingError says no.
Handler = Callable[["Services", str, str, str], Awaitable[str]]
AUDIT_DEFAULT, AUDIT_MAX = 10, 50
POLICY_WORDS = {
    "kick": "people who no longer qualify are removed from its rooms",
    "notify": "the room's admins are told about people who no longer qualify",
    "dry-run": "people who no longer qualify are only written in the audit log",
}
OUTCOME_WORDS = {
    "ok": "done",
    "incomplete": "stopped before the end",
    "shrunk": "stopped: the list shrank too much",
    "not_listable": "not possible",
    "busy": "already running",
    "removed": "binding removed",
}


async def _binding_of(services: Services, room_id: str, ref: str) -> BindingView:
    view = None
    try:
        view = await services.bindings.get(ref.strip("`"))
    except Exception:  # UserFacingError for unknown or removed ones: said below
        view = None
    if view is None or room_id not in view.binding.rooms:
        raise CommandError(f"This room has no binding {ref}. `!invitebot bindings` lists them.")
    return view


async def _require_all_rooms(
    services: Services, sender: str, view: BindingView, asked_in: str, bot_needs: tuple[str, ...]
) -> None:
    for room_id in view.binding.rooms:
        await services.room_admin.require_manager(
            sender, room_id, bot_needs=bot_needs, asked_in=asked_in
        )


async def policy(services: Services, sender: str, room_id: str, args: str) -> str:
    """`policy <binding> kick|notify|dry-run [--grace 3d]`."""
    words = _split(args)
    usage = "Use `!invitebot policy <binding> kick|notify|dry-run [--grace 3d]`."
    if len(words) not in (2, 4) or (len(words) == 4 and words[2] != "--grace"):
        raise CommandError(usage)
    ref, chosen = words[0], words[1].lower()
    if chosen not in POLICIES:
        raise CommandError(f"The policy is one of {', '.join(POLICIES)}. {usage}")
    grace = grace_seconds(words[3]) if len(words) == 4 else 0.0
    view = await _binding_of(services, room_id, ref)
    bot_needs = policy_needs(chosen)
    await _require_all_rooms(services, sender, view, room_id, bot_needs)
    view = await services.bindings.set_policy(view, chosen, int(grace * 1000), sender)
    gaps = await services.spaces.power_gaps(view.binding.rooms, bot_needs)
    gap_words = "".join(f"\n\n{gap}" for gap in gaps)
    grace_words = (
        f" after a grace period of {format_duration(grace)} (someone who qualifies again "
        "meanwhile is left alone)"
        if grace
        else ""
    )
    return (
        f"Binding `{view.binding.public_id}` now has the policy **{chosen}**: "
        f"{POLICY_WORDS[chosen]}{grace_words}. An unknown answer or a provider error never "
        f"counts as no longer qualifying.{gap_words}"
    )


async def recheck(services: Services, sender: str, room_id: str, args: str) -> str:
    """`recheck [binding] [--accept-shrink]`: run now, answer with the outcome."""
    words = _split(args)
    accept_shrink = "--accept-shrink" in words
    refs = [w for w in words if w != "--accept-shrink"]
    if len(refs) > 1 or any(w.startswith("--") for w in refs):
        raise CommandError("Use `!invitebot recheck [binding] [--accept-shrink]`.")
    if refs:
        views = [await _binding_of(services, room_id, refs[0])]
    else:
        views = await services.bindings.for_room(room_id)
        if not views:
            raise CommandError("This room has no bindings to re-check.")
    for view in views:
        await _require_all_rooms(services, sender, view, room_id, ())
    lines = []
    for view in views:
        outcome = await services.rechecks.recheck_now(view, accept_shrink=accept_shrink)
        lines.append(_outcome_line(view, outcome))
    return "Re-check:\n\n" + "\n".join(lines)


def _outcome_line(view: BindingView, outcome: RecheckOutcome) -> str:
    calls = f" ({outcome.calls} API calls)" if outcome.calls else ""
    word = OUTCOME_WORDS.get(outcome.outcome, outcome.outcome)
    return f"* `{view.binding.public_id}`: {word}{calls}. {outcome.detail}"


async def audit(services: Services, sender: str, room_id: str, args: str) -> str:
    """`audit [n]`: the room's last n audit entries, newest first."""
    words = _split(args)
    count = AUDIT_DEFAULT
    if words:
        if len(words) > 1 or not words[0].isdigit() or not 1 <= int(words[0]) <= AUDIT_MAX:
            raise CommandError(f"Use `!invitebot audit [n]`, n from 1 to {AUDIT_MAX}.")
        count = int(words[0])
    await services.room_admin.require_manager(sender, room_id, bot_needs=(), asked_in=room_id)
    entries = await services.reporter.recent(room_id, count)
    if not entries:
        return "Nothing is in this room's audit log yet."
    lines = []
    for entry in entries:
        what = " ".join(part for part in (entry.action, entry.target or "") if part)
        detail = f": {entry.detail}" if entry.detail else ""
        lines.append(f"* {_when(entry.at)} {entry.actor}: {what}{detail}")
    return f"The last {len(entries)} entries of this room's audit log:\n\n" + "\n".join(lines)


async def binding_status(services: Services, views: list[BindingView]) -> list[str]:
    """One line per binding for `status`: people, policy, last and next re-check."""
    lines = []
    now = now_ms()
    for view in views:
        binding = view.binding
        people, pending, failed = await services.bindings.counts(view)
        grace = f", grace {format_duration(binding.grace_ms / 1000)}" if binding.grace_ms else ""
        state = await services.rechecks.state(binding.id)
        lines.append(
            f"  * `{binding.public_id}`: {people} admitted ({pending} invites queued, {failed} "
            f"failed); policy {binding.policy}{grace}; {_recheck_words(state, now)}"
        )
    return lines


def _recheck_words(state: RecheckState | None, now: int) -> str:
    if state is None:
        return "never re-checked"
    last = "not re-checked yet"
    if state.last_finished_at is not None:
        outcome = OUTCOME_WORDS.get(state.last_outcome or "", state.last_outcome or "")
        last = (
            f"last re-check {_when(state.last_finished_at)}: {outcome}, "
            f"{state.last_calls} API calls ({state.last_detail})"
        )
    if state.in_progress:
        following = "a re-check is under way"
    elif state.next_at <= now:
        following = "next re-check due now"
    else:
        following = f"next in {format_duration((state.next_at - now) / 1000)}"
    return f"{last}; {following}"


def _when(at_ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(at_ms / 1000))


def _split(args: str) -> list[str]:
    try:
        return shlex.split(args or "")
    except ValueError as e:
        raise CommandError(f"Could not read the arguments: {e}.") from None
