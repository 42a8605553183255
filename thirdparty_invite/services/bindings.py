"""Bindings: rooms open to whoever satisfies every rule of a binding at its providers.

`!invitebot bind github team:matrix-org/maintainers and patreon tier:Gold` makes one
binding of two rules; a room with several bindings admits anyone who satisfies one. A
binding's public id is random (it is in the shareable link, and nobody can walk the list
of a server's bindings); the provider check is what gates it.
"""

from __future__ import annotations

import secrets

import attrs

from ..durations import DurationError, format_duration, now_ms, parse_duration
from ..errors import UserFacingError
from ..providers.base import Provider, ProviderUnavailable, Rule, RuleError
from ..providers.registry import ProviderRegistry
from ..storage import Binding, BindingRule, Storage

MAX_RULES = 5
PUBLIC_ID_BYTES = 12  # 96 random bits, 16 URL-safe characters


def _refuse(message: str) -> UserFacingError:
    return UserFacingError("TPI_BAD_RULE", message, 400)


@attrs.frozen
class DescribedRule:
    provider: Provider
    rule: Rule
    description: str


@attrs.frozen
class BindingView:
    """A binding with its rules parsed and said in words."""

    binding: Binding
    rules: tuple[DescribedRule, ...]
    # Set by `create` only: what the providers could not check at bind time, for the admin.
    notes: tuple[str, ...] = ()

    @property
    def description(self) -> str:
        """ "members of team maintainers of matrix-org on GitHub, and Patreon patrons of
        tier Gold" """
        return join_descriptions([r.description for r in self.rules])

    @property
    def providers(self) -> list[Provider]:
        """Each provider once, in the order its first rule appears: one sign-in each."""
        seen: dict[str, Provider] = {}
        for described in self.rules:
            seen.setdefault(described.provider.id, described.provider)
        return list(seen.values())

    def rules_of(self, provider_id: str) -> list[Rule]:
        return [r.rule for r in self.rules if r.provider.id == provider_id]


def join_descriptions(words: list[str]) -> str:
    """Rules in words, joined as `bind` says them: "A, B, and C"."""
    if len(words) <= 2:
        return ", and ".join(words) if len(words) == 2 else "".join(words)
    return ", ".join(words[:-1]) + ", and " + words[-1]


POLICIES = ("kick", "notify", "dry-run")


def policy_needs(policy: str) -> tuple[str, ...]:
    """What the bot must be able to do in a binding's rooms for this policy: removing
    people needs its power to kick, checked when the policy is set rather than at a loss."""
    return ("invite", "kick") if policy == "kick" else ("invite",)


MAX_GRACE = 90 * 86400


def grace_seconds(text: str) -> float:
    """A policy's grace period from what an admin typed (`12h`, `3d`, `0`)."""
    try:
        grace = parse_duration(text)
    except DurationError:
        raise UserFacingError(
            "M_INVALID_PARAM", "--grace takes a duration such as 12h, 3d or 0."
        ) from None
    if grace > MAX_GRACE:
        raise UserFacingError(
            "M_INVALID_PARAM", f"--grace is at most {format_duration(MAX_GRACE)}."
        )
    return grace


class BindingService:
    def __init__(
        self, storage: Storage, registry: ProviderRegistry, recheck_interval: float = 6 * 3600
    ) -> None:
        self.storage = storage
        self.registry = registry
        self.recheck_interval_ms = int(recheck_interval * 1000)

    def parse(self, text: str) -> list[tuple[Provider, Rule]]:
        """Rules from `github team:o/t and patreon tier:Gold`; UserFacingError naming what
        is wrong (unknown or unconfigured provider, a malformed rule)."""
        groups: list[list[str]] = [[]]
        for word in (text or "").split():
            if word.lower() == "and":
                groups.append([])
            else:
                groups[-1].append(word)
        if any(not group for group in groups):
            raise _refuse(
                "Give one rule per provider, joined by `and`, e.g. "
                "`github team:matrix-org/maintainers and patreon tier:Gold`."
            )
        if len(groups) > MAX_RULES:
            raise _refuse(f"A binding may have at most {MAX_RULES} rules.")
        if self.registry.unavailable:
            raise UserFacingError("TPI_PROVIDERS_UNAVAILABLE", self.registry.unavailable, 503)
        parsed = []
        for provider_word, *rule_words in groups:
            provider = self._provider(provider_word)
            try:
                rule = provider.parse_rule(" ".join(rule_words))
            except RuleError as e:
                raise _refuse(f"{provider.display_name}: {e}") from None
            parsed.append((provider, rule))
        return parsed

    def describe_text(self, text: str) -> tuple[list[DescribedRule], str]:
        """The rules of `text` said in words, as `bind` would say them (raises as parse)."""
        described = [
            DescribedRule(provider, rule, provider.describe(rule))
            for provider, rule in self.parse(text)
        ]
        return described, join_descriptions([d.description for d in described])

    def _provider(self, word: str) -> Provider:
        provider = self.registry.get(word)
        if provider is not None:
            return provider
        configured = ", ".join(p.id for p in self.registry.all()) or "none yet"
        if word.lower() in self.registry.known_kinds():
            raise _refuse(
                f"{word} is not set up on this bot: its operator must add a "
                f"`providers.{word.lower()}` section (client ID and secret) to the instance "
                f"config. Set up here: {configured}."
            )
        raise _refuse(f"There is no provider {word!r} here. Set up here: {configured}.")

    async def create(self, created_by: str, text: str, rooms: tuple[str, ...]) -> BindingView:
        parsed = self.parse(text)
        notes = await self._validate(parsed)
        public_id = secrets.token_urlsafe(PUBLIC_ID_BYTES)
        rules = tuple(BindingRule(provider.id, rule.text) for provider, rule in parsed)
        now = now_ms()
        binding = await self.storage.bindings.create(
            public_id, created_by, rules, rooms, now, now + self.recheck_interval_ms
        )
        view = attrs.evolve(self._view(binding), notes=notes)
        for room_id in rooms:
            await self.storage.audit.add(
                now, created_by, "binding_created", room_id, public_id, view.description
            )
        return view

    async def _validate(self, parsed: list[tuple[Provider, Rule]]) -> tuple[str, ...]:
        """Ask each provider whether its rule can ever be checked (Provider.validate_rule):
        refuse the rule when it cannot; what could not be asked now becomes a note."""
        notes = []
        for provider, rule in parsed:
            try:
                note = await provider.validate_rule(rule)
            except RuleError as e:
                raise _refuse(f"{provider.display_name}: {e}") from None
            except ProviderUnavailable as e:  # the contract says never; bind anyway
                note = f"could not check this rule now ({e.detail})."
            if note:
                notes.append(f"{provider.display_name}: {note}")
        return tuple(notes)

    async def get(self, public_id: str) -> BindingView:
        """The binding behind a link; unknown ids (and removed bindings) raise."""
        binding = None
        if isinstance(public_id, str) and 8 <= len(public_id) <= 64:
            binding = await self.storage.bindings.get_by_public_id(public_id)
        if binding is None:
            raise UserFacingError(
                "TPI_BINDING_UNKNOWN",
                "This invite link is not valid. Check that you copied all of it.",
                404,
            )
        if binding.removed_at is not None:
            raise UserFacingError(
                "TPI_BINDING_REMOVED",
                "This invite link was withdrawn by a room admin.",
                410,
            )
        return self._view(binding)

    async def by_id(self, binding_id: int) -> BindingView | None:
        binding = await self.storage.bindings.get(binding_id)
        return None if binding is None else self._view(binding)

    async def for_room(self, room_id: str) -> list[BindingView]:
        return [self._view(b) for b in await self.storage.bindings.for_room(room_id)]

    async def set_policy(
        self, view: BindingView, policy: str, grace_ms: int, changed_by: str
    ) -> BindingView:
        """What happens to people who no longer qualify: kick, notify or dry-run, after
        an optional grace period."""
        if policy not in POLICIES:
            raise UserFacingError(
                "M_INVALID_PARAM", f"The policy is one of {', '.join(POLICIES)}.", 400
            )
        await self.storage.bindings.set_policy(view.binding.id, policy, grace_ms)
        now = now_ms()
        detail = policy + (f", grace {grace_ms // 1000}s" if grace_ms else "")
        for room_id in view.binding.rooms:
            await self.storage.audit.add(
                now, changed_by, "policy_changed", room_id, view.binding.public_id, detail
            )
        binding = attrs.evolve(view.binding, policy=policy, grace_ms=grace_ms)
        return attrs.evolve(view, binding=binding)

    async def counts(self, view: BindingView) -> tuple[int, int, int]:
        """(people admitted, their invites queued, failed), for `status`."""
        return await self.storage.bindings.counts(view.binding.id)

    async def remove(self, view: BindingView, removed_by: str) -> bool:
        now = now_ms()
        removed = await self.storage.bindings.remove(view.binding.id, removed_by, now)
        if removed:
            for room_id in view.binding.rooms:
                await self.storage.audit.add(
                    now, removed_by, "binding_removed", room_id, view.binding.public_id
                )
        return removed

    def _view(self, binding: Binding) -> BindingView:
        """Parse the stored rules again. A provider the operator has since removed, or a
        rule its provider no longer reads, is shown as such and never passes."""
        described = []
        for stored in binding.rules:
            provider = self.registry.get(stored.provider)
            if provider is None:
                provider = _Unavailable(stored.provider, self.registry.unavailable)
            try:
                rule = provider.parse_rule(stored.rule)
                description = provider.describe(rule)
            except RuleError:
                rule = Rule(stored.provider, "unreadable", (), stored.rule)
                description = f"{stored.provider} {stored.rule} (no longer understood)"
            described.append(DescribedRule(provider, rule, description))
        return BindingView(binding, tuple(described))


class _Unavailable(Provider):
    """Stands in for a provider that is not configured (any more): it describes its
    rules as they were written and refuses every sign-in, saying why."""

    kind = "unavailable"

    def __init__(self, provider_id: str, why: str) -> None:
        super().__init__(provider_id, provider_id)
        self.why = why or f"{provider_id} is not set up on this bot any more"

    @classmethod
    def from_config(cls, provider_id, section, http):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def parse_rule(self, text: str) -> Rule:
        return Rule(self.id, "unavailable", (), text)

    def describe(self, rule: Rule) -> str:
        return f"{self.id} {rule.text} (not available: {self.why})"

    def scopes(self, rules):  # type: ignore[no-untyped-def]
        return []

    def authorization_request(self, rules, redirect_uri, state):  # type: ignore[no-untyped-def]
        raise UserFacingError("TPI_PROVIDER_NOT_CONFIGURED", self.why, 503)

    async def finish(self, rules, code, redirect_uri, request):  # type: ignore[no-untyped-def]
        raise UserFacingError("TPI_PROVIDER_NOT_CONFIGURED", self.why, 503)
