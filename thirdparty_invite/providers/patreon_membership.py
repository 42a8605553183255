"""Patreon: one membership of the campaign as API v2 describes it, and what it is worth
against a rule. The sign-in (identity document) and the re-check listing (campaign
members) read members the same way and judge them the same way, here.

What counts (docs/PROVIDERS.md says it for operators):
- Active: `patron_status == "active_patron"`, or a gifted membership (`is_gifted`) that
  entitles to a tier: a gift has no charge and an amount of 0, yet counts as its tier.
- Free members (nothing pledged: `patron_status` null, or an active status with an
  entitled amount of 0 and no paid tier, not gifted) are not patrons: no rule admits them.
- Amounts are per month: `currently_entitled_amount_cents` is what one charge covers, and
  `pledge_cadence` the months between charges (12 for an annual patron, whose amount is
  the year's). When Patreon does not say the cadence, only amounts that hold (or fail)
  whatever the cadence are decided; the others are unknown.
- Anything not shaped as documented raises UnreadableDocument: a wrong shape must never
  read as "not a patron".
"""

from __future__ import annotations

from typing import Any

import attrs

from .base import Verdict

INACTIVE_REASONS = {
    "declined_patron": (
        "your pledge is not active (declined payment)",
        "Update your payment method on Patreon; once the payment goes through, start again.",
    ),
    "former_patron": (
        "your pledge is not active (you are a former patron)",
        "Pledge again on Patreon, then start again.",
    ),
    None: (
        "your membership is free (you follow the campaign but have not pledged)",
        "Become a paying patron on Patreon, then start again.",
    ),
}
MAX_CADENCE = 120  # months; anything above is not a billing cadence


class UnreadableDocument(ValueError):
    """A Patreon answer that does not have the shape Patreon documents."""


@attrs.frozen
class Tier:
    id: str
    title: str
    amount_cents: int | None  # per month; None: Patreon did not say


@attrs.frozen
class Membership:
    """A membership of the configured campaign, as Patreon answered it."""

    patron_status: str | None
    entitled_cents: int | None  # what one charge covers; None: not said
    entitled_tiers: tuple[Tier, ...]
    campaign_tiers: tuple[Tier, ...] | None  # None: Patreon did not list them
    cadence_months: int | None = 1  # None: Patreon did not say
    gifted: bool = False

    @property
    def active(self) -> bool:
        if self.gifted and self.entitled_tiers:
            return True
        return self.patron_status == "active_patron"

    @property
    def free(self) -> bool:
        """Entitled to nothing that costs money (a free membership)."""
        if self.gifted or self.entitled_cents is None or self.entitled_cents > 0:
            return False
        return all(t.amount_cents == 0 for t in self.entitled_tiers)


def money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def _normalized(title: str) -> str:
    return " ".join(title.split()).casefold()


def membership_verdict(membership: Membership, kind: str, args: tuple[str, ...]) -> Verdict:
    """What `membership` is worth against the rule `kind:args` (patron, tier, min_cents)."""
    if not membership.active:
        reason, remedy = INACTIVE_REASONS.get(
            membership.patron_status,
            (f"your pledge is not active (Patreon says {membership.patron_status!r})", ""),
        )
        return Verdict.no(reason, remedy)
    if membership.free:
        reason, remedy = INACTIVE_REASONS[None]
        return Verdict.no(reason, remedy)
    if kind == "patron":
        return Verdict.yes()
    if kind == "min_cents":
        return _check_amount(membership, int(args[0]))
    if kind == "tier":
        return _check_tier(membership, args[0])
    return Verdict.unknown(f"this check cannot judge the rule {kind!r}")


def _check_amount(membership: Membership, minimum: int) -> Verdict:
    cents, cadence = membership.entitled_cents, membership.cadence_months
    if membership.gifted and not cents:
        # A gift charges nothing: it is worth its tier's monthly amount.
        amounts = [t.amount_cents for t in membership.entitled_tiers]
        if None in amounts:
            return Verdict.unknown("Patreon did not say what your gifted tier costs")
        cents, cadence = max(a for a in amounts if a is not None), 1
    if cents is None:
        return Verdict.unknown("Patreon did not say how much you pledge")
    if cadence is None:
        if cents >= minimum * MAX_CADENCE:
            return Verdict.yes()
        if cents >= minimum:  # enough a month only if charged monthly: cannot tell
            return Verdict.unknown("Patreon did not say how often your pledge is charged")
        cadence = 1
    if cents >= minimum * cadence:
        return Verdict.yes()
    per_month = f"{money(cents // cadence)} a month"
    return Verdict.no(
        f"your pledge ({per_month}) is below the {money(minimum)} a month this room asks for",
        "Raise your pledge on Patreon, then start again.",
    )


def _check_tier(membership: Membership, wanted: str) -> Verdict:
    key = _normalized(wanted)

    def matches(tier: Tier) -> bool:
        return tier.id == wanted or (bool(tier.title) and _normalized(tier.title) == key)

    if any(matches(tier) for tier in membership.entitled_tiers):
        return Verdict.yes()
    known = [*(membership.campaign_tiers or ()), *membership.entitled_tiers]
    # An ID names one tier; a title could name several: the cheapest sets the bar.
    named = [t for t in known if matches(t)]
    bars = [t.amount_cents for t in named if t.amount_cents is not None]
    if not named and membership.campaign_tiers is not None:
        return Verdict.unknown(
            f"this room's rule names the Patreon tier {wanted!r}, which the campaign "
            "does not have",
            "Tell the room's admins: the tier may have been renamed.",
        )
    amounts = [t.amount_cents for t in membership.entitled_tiers]
    if bars and any(a is not None and a >= min(bars) for a in amounts):
        return Verdict.yes()
    if not bars or None in amounts:
        return Verdict.unknown(f"Patreon did not say how your tier compares with {wanted}")
    titles = ", ".join(t.title or t.id for t in membership.entitled_tiers)
    return Verdict.no(
        f"your tier ({titles}) is below {wanted}"
        if titles
        else f"your pledge does not include a tier ({wanted} or above is needed)",
        f"Move your pledge to {wanted} or above on Patreon, then start again.",
    )


# --- reading JSON:API documents ----------------------------------------------------------

Index = dict[tuple[str, str], dict[str, Any]]


def index_included(document: dict[str, Any]) -> Index:
    """`included` by (type, id). Raises UnreadableDocument when it is not a list."""
    included = document.get("included", [])
    if not isinstance(included, list):
        raise UnreadableDocument("included is not a list")
    return {
        (str(item.get("type")), item["id"]): item
        for item in included
        if isinstance(item, dict) and isinstance(item.get("id"), str)
    }


def read_member(
    member: dict[str, Any], index: Index, campaign_tiers: tuple[Tier, ...] | None
) -> Membership:
    """One `member` resource (attributes as asked with fields[member], entitled tiers
    resolved through `index`)."""
    attributes = as_object(member.get("attributes", {}), "member.attributes")
    status = attributes.get("patron_status")
    if status is not None and not isinstance(status, str):
        raise UnreadableDocument("patron_status is not a string")
    entitled_cents = None  # not said
    if "currently_entitled_amount_cents" in attributes:
        cents = attributes["currently_entitled_amount_cents"]
        entitled_cents = 0 if cents is None else cents  # null: nothing pledged
        if not _whole(entitled_cents) or entitled_cents < 0:
            raise UnreadableDocument("currently_entitled_amount_cents is not a whole number")
    cadence = None  # not said (absent or null)
    if attributes.get("pledge_cadence") is not None:
        cadence = attributes["pledge_cadence"]
        if not _whole(cadence) or not 1 <= cadence <= MAX_CADENCE:
            raise UnreadableDocument("pledge_cadence is not a number of months")
    gifted = attributes.get("is_gifted", False)
    if gifted is None:
        gifted = False
    if not isinstance(gifted, bool):
        raise UnreadableDocument("is_gifted is not a boolean")
    entitled = tuple(_tier(ref, index) for ref in linkage(member, "currently_entitled_tiers"))
    return Membership(status, entitled_cents, entitled, campaign_tiers, cadence, gifted)


def campaign_tiers_of(campaign: dict[str, Any], index: Index) -> tuple[Tier, ...] | None:
    """The tiers of a `campaign` resource; None when its `tiers` relationship is absent."""
    if "tiers" not in as_object(campaign.get("relationships", {}), "campaign.relationships"):
        return None
    return tuple(_tier(ref, index) for ref in linkage(campaign, "tiers"))


def _tier(tier_id: str, index: Index) -> Tier:
    attributes = as_object(index.get(("tier", tier_id), {}).get("attributes", {}), "tier")
    title, amount = attributes.get("title"), attributes.get("amount_cents")
    return Tier(
        tier_id,
        title.strip() if isinstance(title, str) else "",
        amount if _whole(amount) and amount >= 0 else None,
    )


def linkage(resource: dict[str, Any], name: str) -> list[str]:
    """The IDs in `resource.relationships[name].data` (one link or a list of them)."""
    relationships = as_object(resource.get("relationships", {}), "relationships")
    data = as_object(relationships.get(name, {}), f"relationships.{name}").get("data")
    items = [] if data is None else data if isinstance(data, list) else [data]
    if not all(isinstance(i, dict) and isinstance(i.get("id"), str) for i in items):
        raise UnreadableDocument(f"relationships.{name} holds something that is not a link")
    return [i["id"] for i in items]


def as_object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UnreadableDocument(f"{where} is not an object")
    return value


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
